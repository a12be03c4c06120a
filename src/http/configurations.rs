//! The configuration group endpoints (spec `supporting-resources.md` §3) and the
//! parameter catalogue of datastore versions (`configuration parameter list/show`).
//!
//! Writes run the ConfigurationGroup aggregate through its command path
//! ([`crate::runtime::configurations`]) on streams `configuration-<uuid>`; reads come from the configuration read models. Handlers
//! check the request's shape (upstream's JSON schema); every rule that needs state or
//! the catalog is the aggregate's.

use aggregates::catalog::DatastoreVersion;
use aggregates::configuration::{self, parameters, Configuration, ConfigurationCommand};
use aggregates::instance::{Caller, DatastoreRequest};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use projections::configurations::{detail_view, parameter_view, summary_view, PAGE_MAX};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request::{base_url, limit, next_link, param, QueryPairs};
use super::request_body::configuration::{
    ConfigurationCreateBody, ConfigurationPatchBody, ConfigurationPutBody,
};
use super::request_body::JsonBody;
use super::{AppState, RequestId};
use crate::runtime::codec::CommandMeta;

/// The routes of this resource, all below `/v1.0/{project_id}`. The datastore paths use
/// the parameter names of the datastores router (`{ds}`, `{version}`): both routers
/// are merged into one app, and the router refuses two names at one position.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, put, patch, delete))
        .routes(routes!(instances))
        .routes(routes!(parameter_list))
        .routes(routes!(parameter_show))
        .routes(routes!(parameter_list_by_version))
        .routes(routes!(parameter_show_by_version))
}

// ---- reads -----------------------------------------------------------------------------

/// `GET /v1.0/{project_id}/configurations` (`configuration:index`): the caller's
/// project's live groups, every project's for admins; keyset paging by id, limit capped
/// at 20, `links` only when more exist (scheme A). Items in id order (upstream does not
/// re-sort this list).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/configurations",
    operation_id = "listConfigurations",
    tag = "configurations",
    params(oa::ProjectPath, oa::KeysetPaging),
    responses(
        (status = 200, description = "A page of configuration groups", body = oa::ConfigurationList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let limit = limit(&q, PAGE_MAX, Some(PAGE_MAX))?;
    let scope = scope(&caller);
    let page = state
        .configurations
        .page(scope.as_deref(), param(&q, "marker"), limit);
    let items: Vec<Value> = page.configurations.iter().map(summary_view).collect();
    let mut body = json!({ "configurations": items });
    if let Some(marker) = page.next_marker {
        let path = format!("/v1.0/{}/configurations", caller.project_id);
        body["links"] = next_link(&base_url(&state, &headers), &path, &q, &marker.to_string());
    }
    Ok(Json(body))
}

/// `GET /v1.0/{project_id}/configurations/{id}` (`configuration:show`): the detail
/// view; missing, deleted and other projects' groups (non-admin) are the same 404.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/configurations/{id}",
    operation_id = "showConfiguration",
    tag = "configurations",
    params(oa::IdPath),
    responses(
        (status = 200, description = "The group", body = oa::ConfigurationShow),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let group = visible(&state, &caller, &raw_id)?;
    Ok(Json(
        json!({ "configuration": detail(&state, &caller, &group) }),
    ))
}

/// `GET /v1.0/{project_id}/configurations/{id}/instances`: `{"instances": [{"id",
/// "name"}]}` of the live instances using the group (the caller's project's; every
/// project's for admins), keyset paging like the instance list.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/configurations/{id}/instances",
    operation_id = "listConfigurationInstances",
    tag = "configurations",
    params(oa::IdPath, oa::KeysetPaging),
    responses(
        (status = 200, description = "The instances using the group", body = oa::ConfigurationInstanceList),
    ),
)]
async fn instances(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let group = visible(&state, &caller, &raw_id)?;
    let id = group.id.unwrap_or_default();
    let limit = limit(&q, PAGE_MAX, Some(PAGE_MAX))?;
    let scope = scope(&caller);
    let page =
        state
            .configurations
            .instances_using(id, scope.as_deref(), param(&q, "marker"), limit);
    let items: Vec<Value> = page
        .ids
        .iter()
        .filter_map(|i| state.models.instance(*i))
        .filter(|i| i.is_live())
        .map(|i| json!({"id": i.id.map(|id| id.to_string()), "name": i.name}))
        .collect();
    let mut body = json!({ "instances": items });
    if let Some(marker) = page.next_marker {
        let path = format!("/v1.0/{}/configurations/{id}/instances", caller.project_id);
        body["links"] = next_link(&base_url(&state, &headers), &path, &q, &marker.to_string());
    }
    Ok(Json(body))
}

/// The group as the caller may see it, or upstream's 404 (any non-UUID id included).
fn visible(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<Configuration> {
    Uuid::parse_str(raw_id)
        .ok()
        .and_then(|id| {
            state
                .configurations
                .visible_to(id, &caller.project_id, caller.is_admin())
        })
        .ok_or_else(|| not_found(raw_id))
}

fn not_found(raw_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Configuration group with ID {raw_id} could not be found."
    ))
}

/// Whose rows a caller sees: its project's, or (admin) every project's.
fn scope(caller: &Caller) -> Option<String> {
    (!caller.is_admin()).then(|| caller.project_id.clone())
}

fn detail(state: &AppState, caller: &Caller, group: &Configuration) -> Value {
    let count = group.id.map_or(0, |id| {
        state
            .configurations
            .instance_count(id, scope(caller).as_deref())
    });
    detail_view(group, count)
}

// ---- writes ----------------------------------------------------------------------------

/// `POST /v1.0/{project_id}/configurations` (`configuration:create`): answers 200 with
/// `{"configuration": <detail>}` (upstream's code, not 202).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/configurations",
    operation_id = "createConfiguration",
    tag = "configurations",
    params(oa::ProjectPath),
    request_body = ConfigurationCreateBody,
    responses((status = 200, description = "Created", body = oa::ConfigurationShow)),
)]
async fn create(
    State(state): State<AppState>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<ConfigurationCreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let cmd = body.configuration.command();
    let group = execute(&state, Uuid::new_v4(), &cmd, &caller, &rid).await?;
    let view = detail(&state, &caller, &group);
    Ok((StatusCode::OK, Json(json!({ "configuration": view }))))
}

/// `PUT /v1.0/{project_id}/configurations/{id}` (`configuration:update`): replaces all
/// values (absent `values` leaves none, as upstream) and sets `name`/`description` when
/// given. 202. Deviation: instances using the group keep their status (upstream pushes
/// the new values to them and may mark them RESTART_REQUIRED).
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/configurations/{id}",
    operation_id = "updateConfiguration",
    tag = "configurations",
    params(oa::IdPath),
    request_body = ConfigurationPutBody,
    responses((status = 202, description = "Accepted")),
)]
async fn put(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<ConfigurationPutBody>,
) -> ApiResult<StatusCode> {
    let cmd = body.configuration.command();
    update(&state, &caller, &raw_id, &rid, cmd).await
}

/// `PATCH /v1.0/{project_id}/configurations/{id}` (`configuration:edit`): merges
/// `values` into the group's; other keys are ignored, as upstream. 202.
#[utoipa::path(
    patch,
    path = "/v1.0/{project_id}/configurations/{id}",
    operation_id = "patchConfiguration",
    tag = "configurations",
    params(oa::IdPath),
    request_body = ConfigurationPatchBody,
    responses((status = 202, description = "Accepted")),
)]
async fn patch(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<ConfigurationPatchBody>,
) -> ApiResult<StatusCode> {
    let cmd = body.configuration.command();
    update(&state, &caller, &raw_id, &rid, cmd).await
}

/// `DELETE /v1.0/{project_id}/configurations/{id}` (`configuration:delete`): 202;
/// refused (400) while live instances use the group.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/configurations/{id}",
    operation_id = "deleteConfiguration",
    tag = "configurations",
    params(oa::IdPath),
    responses((status = 202, description = "Accepted")),
)]
async fn delete(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let cmd = ConfigurationCommand::DeleteConfiguration;
    update(&state, &caller, &raw_id, &rid, cmd).await
}

async fn update(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    rid: &RequestId,
    cmd: ConfigurationCommand,
) -> ApiResult<StatusCode> {
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found(raw_id))?;
    execute(state, id, &cmd, caller, rid).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Runs one command on the group's stream ([`CommandBus::execute_configuration`]).
///
/// [`CommandBus::execute_configuration`]: crate::runtime::commands::CommandBus::execute_configuration
async fn execute(
    state: &AppState,
    id: Uuid,
    cmd: &ConfigurationCommand,
    caller: &Caller,
    rid: &RequestId,
) -> ApiResult<Configuration> {
    let meta = CommandMeta::for_request(caller, &rid.0);
    Ok(state
        .bus
        .execute_configuration(id, cmd, caller, &meta)
        .await?)
}

// ---- parameters ------------------------------------------------------------------------

/// `GET /v1.0/{project_id}/datastores/{ds}/versions/{version}/parameters`: the
/// catalogue of the version (resolved as at instance create: by id or name, active
/// only), `{"configuration-parameters": [...]}`.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}/versions/{version}/parameters",
    operation_id = "listParameters",
    tag = "configurations",
    params(oa::DatastoreVersionPath),
    responses(
        (status = 200, description = "The version's parameters", body = oa::ConfigurationParameterList),
    ),
)]
async fn parameter_list(
    State(state): State<AppState>,
    Path((_project, ds, version)): Path<(String, String, String)>,
    Identity(_caller): Identity,
) -> ApiResult<Json<Value>> {
    let v = active_version(&state, &ds, &version)?;
    Ok(Json(catalogue(&v)))
}

/// `GET /v1.0/{project_id}/datastores/{ds}/versions/{version}/parameters/{name}`: one
/// parameter (unwrapped, as upstream); unknown → 404 `Resource <name> cannot be found.`
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}/versions/{version}/parameters/{name}",
    operation_id = "showParameter",
    tag = "configurations",
    params(oa::ParameterPath),
    responses(
        (status = 200, description = "The parameter", body = oa::ConfigurationParameter),
    ),
)]
async fn parameter_show(
    State(state): State<AppState>,
    Path((_project, ds, version, name)): Path<(String, String, String, String)>,
    Identity(_caller): Identity,
) -> ApiResult<Json<Value>> {
    let v = active_version(&state, &ds, &version)?;
    one_parameter(&v, &name)
}

/// `GET /v1.0/{project_id}/datastores/versions/{version}/parameters`: as above with the
/// version by UUID only (the CLI without `--datastore`); unknown → 400
/// `Datastore version '<v>' cannot be found.`
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/versions/{version}/parameters",
    operation_id = "listParametersByVersion",
    tag = "configurations",
    params(oa::VersionPath),
    responses(
        (status = 200, description = "The version's parameters", body = oa::ConfigurationParameterList),
    ),
)]
async fn parameter_list_by_version(
    State(state): State<AppState>,
    Path((_project, version)): Path<(String, String)>,
    Identity(_caller): Identity,
) -> ApiResult<Json<Value>> {
    let v = version_by_uuid(&state, &version)?;
    Ok(Json(catalogue(&v)))
}

/// `GET /v1.0/{project_id}/datastores/versions/{version}/parameters/{name}`.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/versions/{version}/parameters/{name}",
    operation_id = "showParameterByVersion",
    tag = "configurations",
    params(oa::VersionParameterPath),
    responses(
        (status = 200, description = "The parameter", body = oa::ConfigurationParameter),
    ),
)]
async fn parameter_show_by_version(
    State(state): State<AppState>,
    Path((_project, version, name)): Path<(String, String, String)>,
    Identity(_caller): Identity,
) -> ApiResult<Json<Value>> {
    let v = version_by_uuid(&state, &version)?;
    one_parameter(&v, &name)
}

fn catalogue(v: &DatastoreVersion) -> Value {
    let items: Vec<Value> = parameters::parameters(&v.manager)
        .iter()
        .map(|p| parameter_view(p, v.id))
        .collect();
    json!({ "configuration-parameters": items })
}

fn one_parameter(v: &DatastoreVersion, name: &str) -> ApiResult<Json<Value>> {
    parameters::parameter(&v.manager, name)
        .map(|p| Json(parameter_view(p, v.id)))
        .ok_or_else(|| ApiError::resource_not_found(name))
}

/// The version by datastore and version (each by id or name) as an instance create
/// resolves it: active versions only (the aggregate's `resolve_datastore_version`).
fn active_version(state: &AppState, ds: &str, version: &str) -> ApiResult<DatastoreVersion> {
    let req = DatastoreRequest {
        datastore_type: Some(ds.to_string()),
        version: Some(version.to_string()),
        version_number: None,
    };
    configuration::resolve_datastore_version(state.bus.lookups(), &req)
        .map(|(_, v)| v)
        .map_err(|e| ApiError::Domain {
            fault: e.fault(),
            message: e.to_string(),
        })
}

fn version_by_uuid(state: &AppState, raw: &str) -> ApiResult<DatastoreVersion> {
    Uuid::parse_str(raw)
        .ok()
        .and_then(|id| {
            state
                .catalog
                .datastores
                .iter()
                .flat_map(|d| d.versions.iter())
                .find(|v| v.id == id)
                .cloned()
        })
        .ok_or_else(|| ApiError::BadRequest(format!("Datastore version '{raw}' cannot be found.")))
}
