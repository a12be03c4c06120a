//! Quotas and limits (issue #15; upstream `trove/extensions/mgmt/quota/service.py`,
//! `trove/limits/service.py`): an admin reads and changes a project's limits, every
//! project reads its own. A change is the `QuotaLimitsUpdated` event of the project's
//! `quota-<project>` stream (`docs/adr/0009-quotas.md`); usage comes from the instance
//! and backup read models, the same numbers the create decisions check.

use aggregates::instance::Caller;
use aggregates::quota::{UpdateQuotas, RESOURCES};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{require_admin, Identity};
use super::error::{ApiError, ApiResult};
use super::{AppState, RequestId};
use crate::runtime::codec::CommandMeta;

/// `PUT /mgmt/quotas/{project}`'s body (for the OpenAPI document; the handler reads the
/// JSON itself so that every value, even a wrong one, reaches the aggregate's rules).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct QuotaUpdateBody {
    /// Resource (`instances`, `ram`, `backups`, `volumes`) → limit (-1: unlimited).
    quotas: std::collections::BTreeMap<String, i64>,
}

/// The quota and limit routes, all below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show, update))
        .routes(routes!(limits))
}

/// `resource`'s limit for `project`: the admin's override, else the operator's flag.
fn limit_of(state: &AppState, project: &str, resource: &str) -> i64 {
    let l = &state.catalog.limits;
    let default = match resource {
        "instances" => l.quota_instances,
        "ram" => l.quota_ram,
        "volumes" => l.quota_volumes,
        _ => l.quota_backups,
    };
    state
        .bus
        .lookups()
        .quotas
        .limit_or(project, resource, default)
}

/// `GET /v1.0/{project_id}/mgmt/quotas/{user_project}`: usage and limit per resource
/// (`reserved` is always 0: troved reserves nothing, a create is decided under the
/// project's lock). An admin may read any project; others only their own (403, as
/// upstream's `TroveOperationAuthError`).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/mgmt/quotas/{user_project}",
    operation_id = "showQuotas",
    tag = "quotas",
    params(("project_id" = String, Path), ("user_project" = String, Path)),
    responses((status = 200, description = "Usage and limit per resource")),
)]
async fn show(
    State(state): State<AppState>,
    Path((project, user_project)): Path<(String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    if user_project != caller.project_id && !caller.is_admin() {
        return Err(ApiError::Forbidden(format!(
            "Operation not allowed for tenant {project}."
        )));
    }
    let used = state.models.quota_usage(&user_project);
    let quotas: Vec<Value> = RESOURCES
        .iter()
        .map(|&resource| {
            let in_use = match resource {
                "instances" => used.instances,
                "ram" => used.ram,
                "volumes" => used.volumes,
                _ => state.backups.count_live(&user_project) as i64,
            };
            json!({
                "resource": resource,
                "in_use": in_use,
                "reserved": 0,
                "limit": limit_of(&state, &user_project, resource),
            })
        })
        .collect();
    Ok(Json(json!({ "quotas": quotas })))
}

/// `PUT /v1.0/{project_id}/mgmt/quotas/{user_project}` (admin; 401 otherwise, as
/// upstream): sets the named limits, answers them. The whole body is checked before
/// anything is recorded.
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/mgmt/quotas/{user_project}",
    operation_id = "updateQuotas",
    tag = "quotas",
    params(("project_id" = String, Path), ("user_project" = String, Path)),
    request_body = QuotaUpdateBody,
    responses((status = 200, description = "The limits set")),
)]
async fn update(
    State(state): State<AppState>,
    Path((_project, user_project)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&caller)?;
    let quotas = parse_body(&body)?;
    let cmd = UpdateQuotas {
        project_id: user_project,
        limits: quotas.into_iter().collect(),
    };
    run(&state, &cmd, &caller, &rid).await?;
    let set: Map<String, Value> = cmd
        .limits
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Json(json!({ "quotas": set })))
}

/// The `quotas` object of the body, or upstream's "Invalid request body." (400).
fn parse_body(body: &[u8]) -> ApiResult<Map<String, Value>> {
    let invalid = || ApiError::BadRequest("Invalid request body.".into());
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    match value.get("quotas") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(invalid()),
    }
}

async fn run(
    state: &AppState,
    cmd: &UpdateQuotas,
    caller: &Caller,
    rid: &RequestId,
) -> ApiResult<()> {
    let meta = CommandMeta::for_request(caller, &rid.0);
    state.bus.execute_quota(cmd, caller, &meta).await?;
    Ok(())
}

/// `GET /v1.0/{project_id}/limits` (`limits:index`, the project's members): the
/// absolute limits (`max_<resource>`) and no rate limits: troved has no per-verb rate
/// limiter (upstream lists none either when its rate-limit middleware is off).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/limits",
    operation_id = "listLimits",
    tag = "quotas",
    params(("project_id" = String, Path)),
    responses((status = 200, description = "The absolute limits")),
)]
async fn limits(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Identity(_caller): Identity,
) -> Json<Value> {
    let mut absolute = Map::new();
    absolute.insert("verb".into(), "ABSOLUTE".into());
    for resource in RESOURCES {
        absolute.insert(
            format!("max_{resource}"),
            limit_of(&state, &project, resource).into(),
        );
    }
    Json(json!({ "limits": [absolute] }))
}
