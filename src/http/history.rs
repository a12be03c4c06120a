//! Our extension beside the Trove API (docs/api.md, "Extension: instance history"):
//! an instance's events and its state as of a time, for its owner and admins.
//!
//! Both read the instance's stream from the store (the source of truth, not the read
//! models) and build their answers with [`crate::timeline`], as `troved history` does.
//! Visibility: the owner's project or an admin, also after deletion (auditors need the
//! history of deleted instances); anyone else gets 404, as for show.

use aggregates::instance::{self, Caller, Instance};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request::{limit, next_link, param, view_ctx, QueryPairs};
use super::AppState;
use crate::runtime::unreadable::UnreadableEvent;
use crate::store::RecordedEvent;
use crate::timeline::{self, AsOfLookup, HistoryEntry};

/// Entries per page when `limit` is absent.
pub const PAGE_DEFAULT: usize = 50;
/// The most entries a page holds, whatever `limit` says.
pub const PAGE_MAX: usize = 500;

/// The routes of this resource, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(state_as_of))
}

/// `marker`: the position of the last entry of the previous page (a non-negative
/// 64-bit signed integer, as documented).
fn marker(q: &[(String, String)]) -> ApiResult<Option<u64>> {
    param(q, "marker")
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Invalid marker '{v}': must be a non-negative integer."
                    ))
                })
        })
        .transpose()
}

/// The instance's stream if the caller may read its history: it exists (deleted or
/// not) and belongs to the caller's project, or the caller is an admin.
async fn readable_stream(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> ApiResult<(Uuid, Vec<RecordedEvent>)> {
    let id = Uuid::parse_str(raw_id).map_err(|_| ApiError::resource_not_found(raw_id))?;
    let records = state.bus.read(&instance::stream_name(id)).await?;
    let owner = owner_of(&records)?;
    match owner {
        Some(project) if caller.can_see(&project) => Ok((id, records)),
        // A damaged first event whose envelope is gone too: admins may still look.
        None if caller.is_admin() && !records.is_empty() => Ok((id, records)),
        _ => Err(ApiError::resource_not_found(raw_id)),
    }
}

/// The project of the stream's `InstanceCreated`, if it has one. When that event does
/// not decode, the project its envelope names (its creator's), so the owner still sees
/// the history of a damaged instance; if the envelope is gone too, `None` (admins
/// only).
fn owner_of(records: &[RecordedEvent]) -> ApiResult<Option<String>> {
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let event = match crate::runtime::codec::decode(first) {
        Ok((event, _)) => event,
        Err(e) => return Ok(UnreadableEvent::new(first, &e).project),
    };
    let created = aggregates::instance::evolve(Instance::default(), &event);
    Ok(created.exists().then_some(created.project_id))
}

/// One page of entries after `marker` (by position), and whether more follow.
///
/// The marker is an entry's commit position, which is not unique per event in every
/// store: EventStoreDB events written in one explicit transaction (the legacy TCP API,
/// databases written by older servers) share their commit position. A page therefore
/// never ends inside such a group: it takes the rest of the group too (a page may be a
/// little longer than `limit`), so the next page, strictly after the marker, skips
/// nothing.
fn page(entries: Vec<HistoryEntry>, after: Option<u64>, limit: usize) -> (Vec<HistoryEntry>, bool) {
    let mut rest: Vec<HistoryEntry> = entries
        .into_iter()
        .filter(|e| after.is_none_or(|m| e.position > m))
        .collect();
    let mut end = limit.min(rest.len());
    if let Some(last) = end.checked_sub(1).map(|i| rest[i].position) {
        while rest.get(end).is_some_and(|e| e.position == last) {
            end += 1;
        }
    }
    let more = rest.len() > end;
    rest.truncate(end);
    (rest, more)
}

/// `GET /v1.0/{project_id}/instances/{id}/history` (extension): the instance's events,
/// oldest first, keyset paging by position.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/history",
    operation_id = "listInstanceHistory",
    tag = "history",
    params(oa::IdPath, HistoryPaging),
    responses(
        (status = 200, description = "A page of the instance's events, oldest first", body = HistoryList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Path((project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let limit = page_limit(&q)?;
    let after = marker(&q)?;
    let (id, records) = readable_stream(&state, &caller, &raw_id).await?;
    let mut entries = timeline::timeline(&records);
    if !caller.is_admin() {
        entries.iter_mut().for_each(timeline::hide_fault_details);
    }
    let (entries, more) = page(entries, after, limit);
    let mut body = json!({ "history": entries });
    if let (true, Some(last)) = (more, entries.last()) {
        let base = view_ctx(&state, &headers, &caller).base_url;
        let path = format!("/v1.0/{project}/instances/{id}/history");
        body["links"] = next_link(&base, &path, &q, &last.position.to_string());
    }
    Ok(Json(body))
}

/// `GET /v1.0/{project_id}/instances/{id}/history/state?as_of=TIME` (extension): the
/// instance's detail view as it was at `TIME`, folded from its events up to then.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/history/state",
    operation_id = "showInstanceStateAsOf",
    tag = "history",
    params(oa::IdPath, AsOfQuery),
    responses(
        (status = 200, description = "The instance as it was at that time, detail view", body = oa::InstanceShow),
    ),
)]
async fn state_as_of(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let raw_time = param(&q, "as_of").ok_or_else(|| {
        ApiError::BadRequest("Missing as_of: the time to show (RFC 3339).".into())
    })?;
    let t = timeline::parse_time(raw_time)
        .map_err(|e| ApiError::BadRequest(format!("Invalid as_of: {e}.")))?;
    let (id, records) = readable_stream(&state, &caller, &raw_id).await?;
    let folded = timeline::state_as_of(&records, t).map_err(|e| ApiError::damaged(&e))?;
    if !folded.instance.exists() {
        return Err(ApiError::NotFound(format!(
            "Instance {id} did not exist at {}.",
            t.format(timeline::TIME_FORMAT)
        )));
    }
    let inst = &folded.instance;
    let configuration = match inst.configuration_id {
        Some(g) => {
            let group = state
                .bus
                .read(&aggregates::configuration::stream_name(g))
                .await?;
            let name = timeline::configuration_name_as_of(&group, t)
                .map_err(|e| ApiError::internal(&e))?;
            Some((g, name))
        }
        None => None,
    };
    let mut ctx = view_ctx(&state, &headers, &caller);
    ctx.now = t;
    ctx.heartbeat_expiry = None;
    // A past state shows the log's times, not today's heartbeats.
    ctx.heartbeats = projections::views::Heartbeats::new();
    let view = timeline::as_of_view(inst, &ctx, &AsOfLookup { configuration });
    Ok(Json(json!({ "instance": view })))
}

// ---- documentation-only types (see `super::openapi`) ----------------------------------

/// Paging of an instance's history.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HistoryPaging {
    /// Page size (default 50); at most 500 entries are returned whatever the value.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// The `position` of the last entry of the previous page (from the `next` link).
    #[param(minimum = 0, nullable = false)]
    marker: Option<i64>,
}

/// The moment to show.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AsOfQuery {
    /// RFC 3339 (`2026-11-26T14:02:00Z`); a time without zone is UTC. A time to the
    /// second covers that whole second.
    #[param(format = DateTime, example = "2026-11-26T14:02:00Z")]
    as_of: String,
}

/// One event of an instance's history.
#[derive(ToSchema)]
#[schema(as = HistoryEntry)]
#[allow(dead_code)]
pub struct HistoryEntryDoc {
    /// Position in the global log; the paging marker.
    position: u64,
    /// Revision within the instance's stream, from 0.
    revision: u64,
    event_id: String,
    /// When the event was decided, UTC, to the second (`2026-11-26T14:02:00Z`).
    time: String,
    /// The event type (docs/events.md), e.g. `InstanceRenamed`.
    event_type: String,
    /// `user@project` of the caller (`troved-saga@service` for lifecycle steps).
    actor: String,
    /// The request's `x-openstack-request-id`, or `saga:<Command>`.
    request_id: String,
    /// Groups the events of one workflow.
    correlation_id: String,
    /// What changed, in one line.
    summary: String,
    /// The event's body (docs/events.md) without secrets; `fault.details` is null for
    /// non-admins.
    #[schema(value_type = Object)]
    data: Value,
}

/// `GET /instances/{id}/history`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HistoryList {
    history: Vec<HistoryEntryDoc>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    links: Option<Vec<oa::Link>>,
}

/// `limit`: [`PAGE_DEFAULT`] when absent, capped at [`PAGE_MAX`].
fn page_limit(q: &[(String, String)]) -> ApiResult<usize> {
    limit(q, PAGE_DEFAULT, Some(PAGE_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limit_defaults_caps_and_refuses_non_positive() {
        assert_eq!(page_limit(&q(&[])).unwrap(), PAGE_DEFAULT);
        assert_eq!(page_limit(&q(&[("limit", "7")])).unwrap(), 7);
        assert_eq!(page_limit(&q(&[("limit", "100000")])).unwrap(), PAGE_MAX);
        for bad in ["0", "-1", "x", ""] {
            assert_eq!(
                page_limit(&q(&[("limit", bad)])).unwrap_err().status_code(),
                400
            );
        }
        assert_eq!(marker(&q(&[("marker", "12")])).unwrap(), Some(12));
        for bad in ["-1", "9223372036854775808", "x"] {
            assert_eq!(
                marker(&q(&[("marker", bad)])).unwrap_err().status_code(),
                400
            );
        }
    }

    fn entry_at(position: u64, revision: u64) -> HistoryEntry {
        HistoryEntry {
            position,
            revision,
            event_id: Uuid::new_v4(),
            time: String::new(),
            event_type: "InstanceRenamed".into(),
            actor: String::new(),
            request_id: String::new(),
            correlation_id: Uuid::nil(),
            summary: String::new(),
            data: Value::Null,
            unreadable: None,
        }
    }

    /// Paging by a commit position several events share (an EventStoreDB transaction)
    /// skips none of them: a page takes the whole group.
    #[test]
    fn pages_never_split_events_sharing_a_position() {
        let entries: Vec<HistoryEntry> = [(10, 0), (20, 1), (20, 2), (20, 3), (30, 4)]
            .iter()
            .map(|&(p, r)| entry_at(p, r))
            .collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (got, more) = page(entries.clone(), after, 2);
            seen.extend(got.iter().map(|e| e.revision));
            after = got.last().map(|e| e.position);
            if !more {
                break;
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        let (first, more) = page(entries.clone(), None, 2);
        assert_eq!(first.len(), 4, "10, then all of 20");
        assert!(more);
        let (all, more) = page(entries, None, 5);
        assert_eq!((all.len(), more), (5, false));
    }

    #[test]
    fn next_link_keeps_other_parameters_and_replaces_the_marker() {
        let link = next_link(
            "https://h",
            "/v1.0/p1/instances/i/history",
            &q(&[("limit", "2"), ("marker", "3")]),
            "9",
        );
        assert_eq!(
            link[0]["href"],
            "https://h/v1.0/p1/instances/i/history?limit=2&marker=9"
        );
    }
}
