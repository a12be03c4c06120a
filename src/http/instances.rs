//! The Trove Instances endpoints (spec `instances-api.md`). Handlers parse and check the
//! request, run commands through the command bus (writes) or read the read models
//! (reads), and render Trove's views.

use std::sync::Arc;

use aggregates::fault::Fault;
use aggregates::instance::{Caller, Instance, InstanceCommand};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use projections::views::{self, ItemKind, Lookup, ModelLookup};
use projections::MgmtFilter;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{require_admin, Identity};
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request::{limit, next_link, offset, param, view_ctx, write_next_link, QueryPairs};
use super::request_body::instance::{
    CreateRequest, InstanceCreateBody, InstancePatchBody, InstancePutBody,
};
use super::request_body::JsonBody;
use super::{AppState, RequestId};
use crate::runtime::codec::CommandMeta;
use crate::secrets::PendingKey;

/// The instance routes, all below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(detail))
        .routes(routes!(show, put, patch, delete))
        .routes(routes!(mgmt_list))
        .routes(routes!(mgmt_show))
}

/// What the instance views look up: replicas from the instance models, configuration
/// group names (`configuration.name`) from the configuration models.
fn lookup(state: &AppState) -> ModelLookup<'_> {
    ModelLookup {
        models: &state.models,
        configuration_name: state.configurations.names(),
    }
}

/// An id from the path; anything that is not a UUID is simply not found (the CLI relies
/// on `GET /instances/<name>` answering 404 before it falls back to listing).
fn path_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::resource_not_found(raw))
}

/// Upstream's instance load with `needs_server` (spec `instances-api.md` §13-14 step 1):
/// missing, soft-deleted or another project's (non-admin) → 404; no compute server
/// yet → 422 `Instance <id> is not ready.`
pub(super) fn instance_with_server(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> ApiResult<Instance> {
    let id = Uuid::parse_str(raw_id).map_err(|_| ApiError::resource_not_found(raw_id))?;
    let instance = state
        .models
        .instance_visible_to(id, &caller.project_id, caller.is_admin())
        .ok_or_else(|| ApiError::resource_not_found(raw_id))?;
    if instance.server_id.is_none() {
        return Err(ApiError::Domain {
            fault: Fault::UnprocessableEntity,
            message: format!("Instance {raw_id} is not ready."),
        });
    }
    Ok(instance)
}

fn meta(caller: &Caller, request_id: &RequestId) -> CommandMeta {
    CommandMeta::for_request(caller, &request_id.0)
}

/// A response with a JSON body rendered to bytes beforehand: the headers `Json` sets.
fn json_bytes(body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, content_type)], Bytes::from(body)).into_response()
}

/// `GET /instances` and `GET /instances/detail`: the page is rendered straight to bytes
/// from the read models (`views::write_list_items`), byte for byte what serializing
/// `{"instances": [basic_view or detail_view, ...], "links": ...}` gives.
async fn list_views(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    q: Vec<(String, String)>,
    kind: ItemKind,
) -> ApiResult<Response> {
    let limit = limit(&q, projections::LIST_PAGE_MAX, None)?;
    let ctx = view_ctx(&state, &headers, &caller);
    let rows = limit.min(projections::LIST_PAGE_MAX);
    let mut body = Vec::with_capacity(256 + rows * views::bytes::ITEM_BYTES_HINT);
    body.extend_from_slice(b"{\"instances\":[");
    let next_marker = views::write_list_items(
        &state.models,
        &caller.project_id,
        param(&q, "marker"),
        limit,
        kind,
        &ctx,
        state.configurations.names(),
        &mut body,
    );
    body.push(b']');
    if let Some(marker) = next_marker {
        let project = &caller.project_id;
        let path = match kind {
            ItemKind::Detail => format!("/v1.0/{project}/instances/detail"),
            _ => format!("/v1.0/{project}/instances"),
        };
        body.extend_from_slice(b",\"links\":");
        write_next_link(&mut body, &ctx.base_url, &path, &q, &marker.to_string());
    }
    body.push(b'}');
    Ok(json_bytes(body))
}

/// `GET /v1.0/{project_id}/instances`: the caller's project's instances, basic view,
/// keyset paging by id (spec §6). `include_clustered` is accepted; no clusters exist.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances",
    operation_id = "listInstances",
    tag = "instances",
    params(oa::ProjectPath, oa::InstanceListQuery),
    responses((status = 200, description = "The caller's instances, basic view", body = oa::InstanceList)),
)]
async fn list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Response> {
    list_views(state, caller, headers, q, ItemKind::Basic).await
}

/// `GET /v1.0/{project_id}/instances/detail`: as the list, detail view (spec §7).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/detail",
    operation_id = "listInstancesDetail",
    tag = "instances",
    params(oa::ProjectPath, oa::InstanceListQuery),
    responses((status = 200, description = "The caller's instances, detail view", body = oa::InstanceDetailList)),
)]
async fn detail(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Response> {
    list_views(state, caller, headers, q, ItemKind::Detail).await
}

/// `GET /v1.0/{project_id}/instances/{id}`: the show view (spec §9).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}",
    operation_id = "showInstance",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 200, description = "The instance", body = oa::InstanceShow)),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = path_id(&raw_id)?;
    let ctx = view_ctx(&state, &headers, &caller);
    // Rendered straight to bytes (`views::write_show`), as `show_view` would serialize;
    // visibility as `instance_visible_to` decides it (the caller's project unless admin).
    let mut body = Vec::with_capacity(64 + 2 * views::bytes::ITEM_BYTES_HINT);
    body.extend_from_slice(b"{\"instance\":");
    let names = state.configurations.names();
    let shown = views::write_show(&state.models, id, &ctx, names, &mut body);
    damage_check(&state, id, &caller, shown)?;
    if !shown {
        return Err(ApiError::resource_not_found(&raw_id));
    }
    body.push(b'}');
    Ok(json_bytes(body))
}

/// Fails a show of an instance whose stream holds an unreadable event: its record is
/// missing what that event did, so it is not served as if it were whole. An instance
/// whose `InstanceCreated` is the damaged event has no record at all (`shown` false);
/// it is reported to an admin and to the project the damaged event's envelope names,
/// instead of a 404 that would make it vanish silently.
fn damage_check(state: &AppState, id: Uuid, caller: &Caller, shown: bool) -> ApiResult<()> {
    if state.unreadable.is_empty() {
        return Ok(());
    }
    let Some(bad) = state
        .unreadable
        .first_in(&aggregates::instance::stream_name(id))
    else {
        return Ok(());
    };
    let unrecorded = state.models.instance(id).is_none();
    let owner = bad.project.as_deref().is_some_and(|p| caller.can_see(p));
    if shown || (unrecorded && (caller.is_admin() || owner)) {
        return Err(ApiError::damaged(&bad));
    }
    Ok(())
}

/// `POST /v1.0/{project_id}/instances`: create (spec §8). Answers 200 with the detail
/// view of the new instance in BUILD. With `replica_of` and `replica_count` N > 1, N
/// replicas named `<name>-1..N` are created and the last one is shown (as upstream).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances",
    operation_id = "createInstance",
    tag = "instances",
    params(oa::ProjectPath),
    request_body = InstanceCreateBody,
    responses(
        (status = 200, description = "Created, in BUILD", body = oa::InstanceShow),
        (status = 501, description = "Volumes are not supported", body = oa::ErrorBody),
    ),
)]
async fn create(
    State(state): State<AppState>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InstanceCreateBody>,
) -> ApiResult<Response> {
    let first = body.instance.into_request(Uuid::nil())?;
    super::policy::check_create_extras(&state, &caller, &first.command)?;
    let count = match first.command.replica_of {
        Some(_) => first.command.replica_count.unwrap_or(1).max(1),
        None => 1,
    };
    if let Some(bid) = first.command.restore_backup_id {
        check_stored_backup(&state, &caller, bid).await?;
    }
    let meta = meta(&caller, &rid);
    let mut last: Option<Instance> = None;
    for n in 1..=count {
        let mut req = first.clone();
        req.command.instance_id = Uuid::new_v4();
        if count > 1 {
            req.command.name = format!("{}-{n}", req.command.name);
            // The first create checks the quota for the whole batch; each later one
            // for what is still to come (see `decide`).
            req.command.replica_count = Some(count - n + 1);
        }
        last = Some(create_one(&state, &caller, &meta, req).await?);
    }
    let inst = last.ok_or_else(|| ApiError::internal(&"create produced no instance"))?;
    let ctx = view_ctx(&state, &headers, &caller);
    let view = views::create_view(&inst, &ctx, &lookup(&state));
    Ok((StatusCode::OK, Json(json!({ "instance": view }))).into_response())
}

/// Spec §4.4: the artifacts of the backup a create restores are in the store, each of
/// the size recorded when it was taken (404 / 409 with upstream's messages); the bytes'
/// SHA-256 is checked as the restore reads them. Only for a backup the caller sees that
/// is complete: `decide` answers the other cases in upstream's order.
async fn check_stored_backup(state: &AppState, caller: &Caller, bid: Uuid) -> ApiResult<()> {
    let Some(b) = state.backups.state(bid) else {
        return Ok(());
    };
    if !b.is_live() || !caller.can_see(&b.project_id) || b.artifact.is_none() {
        return Ok(());
    }
    for (backup_id, a) in state
        .backups
        .chain(bid)
        .into_iter()
        .filter_map(|b| Some((b.id?, b.artifact?)))
    {
        match state.backup_store.size(&a.location).await {
            Ok(Some(size)) if size == a.size_bytes => {}
            Ok(Some(_)) => {
                return Err(ApiError::Domain {
                    fault: aggregates::fault::Fault::Conflict,
                    message: format!(
                        "Current stored object checksum does not match original checksum for backup {backup_id}."
                    ),
                })
            }
            Ok(None) => {
                return Err(ApiError::Domain {
                    fault: aggregates::fault::Fault::ItemNotFound,
                    message: format!(
                        "Backup file in {} was not found in the object storage.",
                        a.location
                    ),
                })
            }
            Err(e) => {
                return Err(ApiError::Unavailable {
                    message: "The backup store cannot be reached; try again.".into(),
                    retry_after: 5,
                    cause: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Seals the passwords with a fresh per-instance key, makes the key durable, then runs
/// the create. A refused create shreds the key again.
async fn create_one(
    state: &AppState,
    caller: &Caller,
    meta: &CommandMeta,
    mut req: CreateRequest,
) -> ApiResult<Instance> {
    let id = req.command.instance_id;
    let key = if req.passwords.is_empty() {
        None
    } else {
        let key = Arc::new(PendingKey::generate(id));
        for (user, password) in req.command.users.iter_mut().zip(&req.passwords) {
            user.password = key.seal(password).map_err(|e| ApiError::internal(&e))?;
        }
        let (vault, k) = (state.vault.clone(), key.clone());
        tokio::task::spawn_blocking(move || vault.store(&k))
            .await
            .map_err(|e| ApiError::internal(&e))??;
        Some(key)
    };
    let cmd = InstanceCommand::CreateInstance(Box::new(req.command));
    match state.bus.execute(id, &[cmd], caller, meta).await {
        Ok(done) => Ok(done.state),
        Err(e) => {
            if key.is_some() {
                let vault = state.vault.clone();
                let _ = tokio::task::spawn_blocking(move || vault.shred(id)).await;
            }
            Err(e.into())
        }
    }
}

/// Runs a PUT's or PATCH's commands (the body is checked before the id).
async fn update(
    state: AppState,
    caller: Caller,
    raw_id: String,
    rid: RequestId,
    cmds: Vec<InstanceCommand>,
) -> ApiResult<StatusCode> {
    let id = path_id(&raw_id)?;
    state
        .bus
        .execute(id, &cmds, &caller, &meta(&caller, &rid))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `PUT /v1.0/{project_id}/instances/{id}`: rename, attach/detach configuration, detach
/// replica, upgrade, access (spec §11). Deviation: a rename combined with a refused
/// second operation is refused as a whole (upstream keeps the rename); we never
/// half-apply a request.
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/instances/{id}",
    operation_id = "updateInstance",
    tag = "instances",
    params(oa::IdPath),
    request_body = InstancePutBody,
    responses((status = 202, description = "Accepted")),
)]
async fn put(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<InstancePutBody>,
) -> ApiResult<StatusCode> {
    let cmds = body.instance.commands()?;
    update(state, caller, raw_id, rid, cmds).await
}

/// `PATCH /v1.0/{project_id}/instances/{id}`: as PUT, with `slave_of` and without
/// `access` (spec §11.1).
#[utoipa::path(
    patch,
    path = "/v1.0/{project_id}/instances/{id}",
    operation_id = "patchInstance",
    tag = "instances",
    params(oa::IdPath),
    request_body = InstancePatchBody,
    responses((status = 202, description = "Accepted")),
)]
async fn patch(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<InstancePatchBody>,
) -> ApiResult<StatusCode> {
    let cmds = body.instance.commands()?;
    update(state, caller, raw_id, rid, cmds).await
}

/// `DELETE /v1.0/{project_id}/instances/{id}` (spec §12): 202; refused in BUILD (422)
/// and for a source with live replicas (403); a repeated DELETE is a no-op 202.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{id}",
    operation_id = "deleteInstance",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 202, description = "Accepted (also when already deleted)")),
)]
async fn delete(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let id = path_id(&raw_id)?;
    state
        .bus
        .execute(
            id,
            &[InstanceCommand::DeleteInstance],
            &caller,
            &meta(&caller, &rid),
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

fn true_ish(v: Option<&str>) -> Option<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// `GET /v1.0/{project_id}/mgmt/instances`: admin only; every project, soft-deleted
/// included unless `deleted` says otherwise; offset paging (spec §10.1).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/mgmt/instances",
    operation_id = "listMgmtInstances",
    tag = "mgmt",
    params(oa::ProjectPath, oa::MgmtListQuery),
    responses((status = 200, description = "Every project's instances (admin)", body = oa::MgmtInstanceList)),
)]
async fn mgmt_list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    require_admin(&caller)?;
    let project = caller.project_id.clone();
    let limit = limit(&q, 20, None)?;
    let offset = offset(&q)?;
    let filter = MgmtFilter {
        deleted: true_ish(param(&q, "deleted")),
        project: param(&q, "project_id").map(str::to_string),
    };
    let page = state.models.mgmt_page(&filter, offset, limit);
    let ctx = view_ctx(&state, &headers, &caller);
    let lk = lookup(&state);
    let items: Vec<Value> = page
        .iter()
        .map(|i| views::mgmt_list_item(i, &ctx, &lk as &dyn Lookup))
        .collect();
    let mut body = json!({ "instances": items });
    if page.len() == limit {
        let path = format!("/v1.0/{project}/mgmt/instances");
        body["links"] = next_link(&ctx.base_url, &path, &q, &(offset + limit).to_string());
    }
    Ok(Json(body))
}

/// `GET /v1.0/{project_id}/mgmt/instances/{id}`: admin only; `deleted=true` also shows
/// a soft-deleted instance (spec §10.2).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/mgmt/instances/{id}",
    operation_id = "showMgmtInstance",
    tag = "mgmt",
    params(oa::IdPath, oa::MgmtShowQuery),
    responses((status = 200, description = "The instance, admin view", body = oa::MgmtInstanceShow)),
)]
async fn mgmt_show(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    require_admin(&caller)?;
    let id = path_id(&raw_id)?;
    let with_deleted = true_ish(param(&q, "deleted")) == Some(true);
    let inst = state
        .models
        .instance(id)
        .filter(|i| with_deleted || i.is_live())
        .ok_or_else(|| ApiError::resource_not_found(&raw_id))?;
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(
        json!({ "instance": views::mgmt_show(&inst, &ctx, &lookup(&state)) }),
    ))
}
