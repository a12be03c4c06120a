//! The backup endpoints (spec `supporting-resources.md` §4.3 and `instances-api.md`
//! §13): lists and show over [`projections::backups`], create and delete through the
//! backup command path (`runtime::backups`); the saga runner does the copying.
//!
//! Paging is scheme B (`instances-api.md` §3.4): `marker` is an offset, `limit`
//! defaults to 20 (`backups_page_size`) and is not capped, rows are `updated`
//! descending, and a `next` link is emitted whenever the page is full.

use aggregates::backup::{Backup, BackupCommand};
use aggregates::instance::Caller;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::{Extension, Json};
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
use super::request::{limit, offset, param, view_ctx, ListScope, QueryPairs};
use super::request_body::backup::BackupCreateBody;
use super::request_body::JsonBody;
use super::{policy, AppState, RequestId};
use crate::runtime::backups::BackupSupport;
use crate::runtime::codec::CommandMeta;

/// `backups_page_size`: the default page size (not a cap).
const BACKUPS_PAGE_SIZE: usize = 20;

/// The backup routes, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(instance_backups))
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
/// true `all_projects` need `backup:index:all_projects` (admin by default), else 403
/// (checked by `http::policy`).
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
    let scope = ListScope::of(&q);
    // The policy layer checked the same rule from the same reading of the query; checked
    // again here, with the values the filter uses, so that they can never differ.
    if scope.needs_all_projects() {
        policy::check(
            &state,
            "backup:index:all_projects",
            &caller,
            &caller.project_id,
        )?;
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
        project_id: match scope.project {
            Some(p) => Some(p.to_string()),
            None if scope.all_projects => None,
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

/// `POST /v1.0/{project_id}/backups` (`backup:create`): 202 with the new backup (status
/// `NEW`); the instance shows `BACKUP` until the copy ends. Refusals as upstream: an
/// instance that is missing or another project's (404) or cannot act (422, also while
/// another backup of it runs), a datastore the provider cannot back up (422), the
/// `backups` quota (413); stricter: a parent of another instance (400), a parent not
/// completed (409), an increment where the engine has none (400).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/backups",
    operation_id = "createBackup",
    tag = "backups",
    params(oa::ProjectPath),
    request_body = BackupCreateBody,
    responses(
        (status = 202, description = "Accepted", body = oa::BackupShow),
        (status = 404, description = "No such instance or parent backup", body = oa::ErrorBody),
        (status = 413, description = "Quota exceeded", body = oa::ErrorBody),
        (status = 422, description = "The instance cannot be backed up now", body = oa::ErrorBody),
    ),
)]
async fn create(
    State(state): State<AppState>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<BackupCreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = body.backup.command()?;
    let support = state
        .models
        .instance(c.instance_id)
        .and_then(|i| i.datastore)
        .map(|d| BackupSupport {
            backups: state.backup_agent.supports_backups(&d.manager),
            incremental: state
                .backup_agent
                .supports_incremental(&d.manager, &d.version_name),
        })
        .unwrap_or(BackupSupport {
            backups: true,
            incremental: true,
        });
    let cmd = BackupCommand::CreateBackup(Box::new(c));
    let backup = execute(&state, Uuid::new_v4(), &cmd, &caller, &rid, support).await?;
    let view = backup_view(&projections::backups::record_of(&backup));
    Ok((StatusCode::ACCEPTED, Json(json!({ "backup": view }))))
}

/// `DELETE /v1.0/{project_id}/backups/{id}` (`backup:delete`): 202; the backup is gone
/// from lists and show at once, its artifact removed from the store next (a removal
/// that fails brings it back as `DELETE_FAILED`). A running backup (422) and, unlike
/// upstream (which deletes them too), a backup that increments depend on (422) are
/// refused.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/backups/{id}",
    operation_id = "deleteBackup",
    tag = "backups",
    params(oa::IdPath),
    responses(
        (status = 202, description = "Accepted"),
        (status = 404, description = "No such backup", body = oa::ErrorBody),
        (status = 422, description = "Running, or increments depend on it", body = oa::ErrorBody),
    ),
)]
async fn delete(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::resource_not_found(&raw_id))?;
    let support = BackupSupport {
        backups: true,
        incremental: true,
    };
    execute(
        &state,
        id,
        &BackupCommand::DeleteBackup,
        &caller,
        &rid,
        support,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn execute(
    state: &AppState,
    id: Uuid,
    cmd: &BackupCommand,
    caller: &Caller,
    rid: &RequestId,
    support: BackupSupport,
) -> ApiResult<Backup> {
    let meta = CommandMeta::for_request(caller, &rid.0);
    Ok(state
        .bus
        .execute_backup(id, cmd, caller, &meta, support)
        .await?)
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
            checksum: None,
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
