//! The backup read endpoints (spec `supporting-resources.md` §4.3 and
//! `instances-api.md` §13): lists and show over [`projections::backups`]. Creating and
//! deleting backups is a later issue.
//!
//! Paging is scheme B (`instances-api.md` §3.4): `marker` is an offset, `limit`
//! defaults to 20 (`backups_page_size`) and is not capped, rows are `updated`
//! descending, and a `next` link is emitted whenever the page is full.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use projections::backups::{backup_view, BackupFilter, BackupRecord};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::datastores::find_datastore;
use super::error::{ApiError, ApiResult};
use super::instances::instance_with_server;
use super::openapi as oa;
use super::request::{limit, offset, param, view_ctx, QueryPairs};
use super::AppState;

/// `backups_page_size`: the default page size (not a cap).
const BACKUPS_PAGE_SIZE: usize = 20;

/// The backup routes, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(instance_backups))
}

/// oslo's `bool_from_string`: only these spellings are true.
fn truthy(v: Option<&str>) -> bool {
    v.map(|s| s.trim().to_ascii_lowercase())
        .is_some_and(|s| matches!(s.as_str(), "1" | "t" | "true" | "on" | "y" | "yes"))
}

/// `(offset, limit)` from `marker` and `limit`. Upstream answers 500 to non-integers;
/// we answer 400 (spec §3.4 recommendation), with the instance lists' wording.
fn paging(q: &[(String, String)]) -> ApiResult<(usize, usize)> {
    Ok((offset(q)?, limit(q, BACKUPS_PAGE_SIZE, None)?))
}

/// `{"backups": [...]}` plus, when the page is full, a `next` link: the request URL
/// with the public base, `marker` replaced (or appended) by `offset + limit`, the other
/// parameters kept in order.
fn page_body(
    base_url: &str,
    uri: &Uri,
    q: &[(String, String)],
    page: &[BackupRecord],
    (offset, limit): (usize, usize),
) -> Value {
    let items: Vec<Value> = page.iter().map(backup_view).collect();
    let mut body = json!({ "backups": items });
    if page.len() == limit {
        let marker = offset.saturating_add(limit).to_string();
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(q.len() + 1);
        let mut replaced = false;
        for (k, v) in q {
            if k != "marker" {
                pairs.push((k, v));
            } else if !replaced {
                pairs.push(("marker", &marker));
                replaced = true;
            }
        }
        if !replaced {
            pairs.push(("marker", &marker));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        body["links"] = json!([{
            "rel": "next",
            "href": format!("{base_url}{}?{query}", uri.path()),
        }]);
    }
    body
}

/// `GET /v1.0/{project_id}/backups` (`backup:index`): the caller's project's backups.
/// Filters `datastore` (name or id; unknown → 404), `instance_id`; `project_id` or a
/// true `all_projects` need `backup:index:all_projects` (admin), else 403.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/backups",
    operation_id = "listBackups",
    tag = "backups",
    params(oa::ProjectPath, oa::BackupListQuery),
    responses(
        (status = 200, description = "A page of backups", body = oa::BackupList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
    uri: Uri,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    // An empty `project_id=` is absent, as Python's truthiness makes it upstream.
    let project = param(&q, "project_id").filter(|p| !p.is_empty());
    let all_projects = truthy(param(&q, "all_projects"));
    if (project.is_some() || all_projects) && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "Policy doesn't allow backup:index:all_projects to be performed.".into(),
        ));
    }
    let paging = paging(&q)?;
    let datastore_id = match param(&q, "datastore").filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => Some(find_datastore(&state.catalog, d)?.id),
    };
    let instance = param(&q, "instance_id").filter(|i| !i.is_empty());
    let instance_id = match instance {
        None => None,
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            // No backup has a non-UUID instance id: an empty page, as upstream's
            // plain string comparison gives.
            Err(_) => Some(Uuid::nil()),
        },
    };
    let filter = BackupFilter {
        project_id: match project {
            Some(p) => Some(p.to_string()),
            None if all_projects => None,
            None => Some(caller.project_id.clone()),
        },
        instance_id,
        datastore_id,
    };
    let page = state.backups.page(&filter, paging.0, paging.1);
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(page_body(&ctx.base_url, &uri, &q, &page, paging)))
}

/// `GET /v1.0/{project_id}/backups/{id}` (`backup:show`): missing, deleted, or another
/// project's (non-admin) → 404 `Resource <id> cannot be found.`
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/backups/{id}",
    operation_id = "showBackup",
    tag = "backups",
    params(oa::IdPath),
    responses(
        (status = 200, description = "The backup", body = oa::BackupShow),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let backup = Uuid::parse_str(&raw_id)
        .ok()
        .and_then(|id| {
            state
                .backups
                .visible_to(id, &caller.project_id, caller.is_admin())
        })
        .ok_or_else(|| ApiError::resource_not_found(&raw_id))?;
    Ok(Json(json!({ "backup": backup_view(&backup) })))
}

/// `GET /v1.0/{project_id}/instances/{id}/backups` (`instance:backups`, spec
/// `instances-api.md` §13): the instance's non-deleted backups (non-admins: of their
/// own project only). The instance must have a compute server (404 / 422 first).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/backups",
    operation_id = "listInstanceBackups",
    tag = "instances",
    params(oa::IdPath, oa::OffsetPaging),
    responses(
        (status = 200, description = "A page of the instance's backups", body = oa::BackupList),
        (status = 422, description = "The instance has no server yet", body = oa::ErrorBody),
    ),
)]
async fn instance_backups(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    uri: Uri,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let instance = instance_with_server(&state, &caller, &raw_id)?;
    let paging = paging(&q)?;
    let filter = BackupFilter {
        project_id: (!caller.is_admin()).then(|| caller.project_id.clone()),
        instance_id: instance.id,
        datastore_id: None,
    };
    let page = state.backups.page(&filter, paging.0, paging.1);
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(page_body(&ctx.base_url, &uri, &q, &page, paging)))
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
    fn truthy_is_oslo_bool_from_string() {
        for t in ["1", "true", "True", "T", "on", "yes", " Y "] {
            assert!(truthy(Some(t)), "{t}");
        }
        for f in ["0", "false", "False", "no", "", "2", "enabled"] {
            assert!(!truthy(Some(f)), "{f}");
        }
        assert!(!truthy(None));
    }

    #[test]
    fn paging_defaults_and_rejects_bad_values() {
        assert_eq!(paging(&q(&[])).unwrap(), (0, 20));
        assert_eq!(
            paging(&q(&[("limit", "50"), ("marker", "40")])).unwrap(),
            (40, 50)
        );
        assert_eq!(
            paging(&q(&[("limit", "0")]))
                .unwrap_err()
                .status_code()
                .as_u16(),
            400
        );
        assert_eq!(
            paging(&q(&[("limit", "x")]))
                .unwrap_err()
                .status_code()
                .as_u16(),
            400
        );
        assert_eq!(
            paging(&q(&[("marker", "-1")]))
                .unwrap_err()
                .status_code()
                .as_u16(),
            400
        );
    }

    #[test]
    fn full_page_gets_a_next_link_with_the_marker_replaced() {
        let record = BackupRecord {
            id: Uuid::from_u128(1),
            name: "b".into(),
            description: None,
            location_ref: None,
            instance_id: None,
            created: chrono::Utc::now(),
            updated: chrono::Utc::now(),
            size: None,
            status: projections::backups::BackupStatus::Completed,
            parent_id: None,
            project_id: "p1".into(),
            datastore: None,
            deleted: false,
        };
        let uri: Uri = "/v1.0/p1/backups?limit=1&marker=3&x=y".parse().unwrap();
        let params = q(&[("limit", "1"), ("marker", "3"), ("x", "y")]);
        let full = page_body(
            "https://h:1",
            &uri,
            &params,
            std::slice::from_ref(&record),
            (3, 1),
        );
        assert_eq!(
            full["links"],
            json!([{"rel": "next", "href": "https://h:1/v1.0/p1/backups?limit=1&marker=4&x=y"}])
        );
        let uri: Uri = "/v1.0/p1/backups".parse().unwrap();
        let first = page_body("https://h:1", &uri, &[], &[record], (0, 1));
        assert_eq!(
            first["links"][0]["href"],
            "https://h:1/v1.0/p1/backups?marker=1"
        );
        let short = page_body("https://h:1", &uri, &[], &[], (0, 2));
        assert_eq!(short, json!({"backups": []}));
    }
}
