//! The datastore endpoints (spec `supporting-resources.md` §2.2) and an instance's
//! default configuration (§5, `instances-api.md` §14), both read from the catalog.
//!
//! Visibility: non-admins see only active versions (and only datastores having one)
//! in lists; admins see everything plus the admin fields of each version. A
//! datastore's `default_version` is emitted only when it is one of the versions listed
//! beside it: python-troveclient's `datastore show` crashes otherwise.

use aggregates::catalog::{Datastore, DatastoreVersion};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use projections::views::ViewCtx;
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::instances::instance_with_server;
use super::openapi as oa;
use super::request::view_ctx;
use super::AppState;
use crate::catalog::defaults::{default_configuration, TemplateError, TemplateInput};
use crate::catalog::StaticCatalog;

/// The datastore routes and `/instances/{id}/configuration`, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(version_by_uuid))
        .routes(routes!(show))
        .routes(routes!(versions))
        .routes(routes!(version_show))
        .routes(routes!(instance_configuration))
}

/// A datastore by id or name; unknown → 404 `Datastore '<x>' cannot be found.`
pub(super) fn find_datastore<'a>(
    catalog: &'a StaticCatalog,
    key: &str,
) -> ApiResult<&'a Datastore> {
    catalog
        .datastore(key)
        .ok_or_else(|| ApiError::NotFound(format!("Datastore '{key}' cannot be found.")))
}

/// Upstream's `DatastoreVersion.load(datastore, id_or_name)`: a UUID-like key must be
/// a version of this datastore (404 `DBDatastoreVersion Not Found`); a name must match
/// exactly one version (400 otherwise). No active check here.
pub(super) fn find_version_in_datastore<'a>(
    catalog: &'a StaticCatalog,
    ds_key: &str,
    version_key: &str,
) -> ApiResult<(&'a Datastore, &'a DatastoreVersion)> {
    let ds = find_datastore(catalog, ds_key)?;
    if let Ok(id) = Uuid::parse_str(version_key) {
        return ds
            .versions
            .iter()
            .find(|v| v.id == id)
            .map(|v| (ds, v))
            .ok_or_else(|| ApiError::NotFound("DBDatastoreVersion Not Found".into()));
    }
    let named: Vec<&DatastoreVersion> = ds
        .versions
        .iter()
        .filter(|v| v.name == version_key)
        .collect();
    match named.as_slice() {
        [v] => Ok((ds, v)),
        [] => Err(ApiError::BadRequest(format!(
            "Datastore version '{version_key}' cannot be found."
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "Multiple datastore versions found for '{version_key}', use an UUID or specify both the name and version number to be more specific."
        ))),
    }
}

/// The version object (spec §2.2). `datastore` is the datastore id, omitted inside a
/// datastore's `versions`; admins get the admin fields.
fn version_view(
    catalog: &StaticCatalog,
    v: &DatastoreVersion,
    datastore: Option<Uuid>,
    ctx: &ViewCtx,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(v.id));
    m.insert("name".into(), json!(v.name));
    m.insert("version".into(), json!(v.version));
    m.insert(
        "links".into(),
        ctx.links("datastores/versions", &v.id.to_string()),
    );
    if let Some(ds) = datastore {
        m.insert("datastore".into(), json!(ds));
    }
    if ctx.caller_is_admin {
        let x = catalog.version_extras(v.id);
        m.insert("active".into(), json!(v.active));
        m.insert("packages".into(), json!(x.packages));
        m.insert("image".into(), json!(x.image));
        m.insert("registry_ext".into(), json!(x.registry_ext));
        m.insert("repl_strategy".into(), json!(x.repl_strategy));
        m.insert("image_tags".into(), json!(x.image_tags));
    }
    Value::Object(m)
}

/// The datastore object with the given versions embedded.
fn datastore_view(
    catalog: &StaticCatalog,
    ds: &Datastore,
    versions: &[&DatastoreVersion],
    ctx: &ViewCtx,
) -> Value {
    let items: Vec<Value> = versions
        .iter()
        .map(|v| version_view(catalog, v, None, ctx))
        .collect();
    let mut body = json!({
        "id": ds.id,
        "name": ds.name,
        "links": ctx.links("datastores", &ds.id.to_string()),
        "versions": items,
    });
    if let Some(d) = ds.default_version_id {
        if versions.iter().any(|v| v.id == d) {
            body["default_version"] = json!(d);
        }
    }
    body
}

fn active(ds: &Datastore) -> Vec<&DatastoreVersion> {
    ds.versions.iter().filter(|v| v.active).collect()
}

/// `GET /v1.0/{project_id}/datastores` (`datastore:index`, anyone). Non-admins: the
/// datastores having an active version, each with its active versions only; admins:
/// every datastore with every version.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores",
    operation_id = "listDatastores",
    tag = "datastores",
    params(oa::ProjectPath),
    responses(
        (status = 200, description = "The datastores", body = oa::DatastoreList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> Json<Value> {
    let ctx = view_ctx(&state, &headers, &caller);
    let catalog = &state.catalog;
    let items: Vec<Value> = catalog
        .datastores
        .iter()
        .filter_map(|ds| {
            let versions: Vec<&DatastoreVersion> = if ctx.caller_is_admin {
                ds.versions.iter().collect()
            } else {
                active(ds)
            };
            (ctx.caller_is_admin || !versions.is_empty())
                .then(|| datastore_view(catalog, ds, &versions, &ctx))
        })
        .collect();
    Json(json!({ "datastores": items }))
}

/// `GET /v1.0/{project_id}/datastores/{ds}` (`datastore:show`): by id or name, with
/// its active versions only (for admins too, as upstream).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}",
    operation_id = "showDatastore",
    tag = "datastores",
    params(oa::DatastorePath),
    responses(
        (status = 200, description = "The datastore", body = oa::DatastoreShow),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, key)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let ds = find_datastore(&state.catalog, &key)?;
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(
        json!({ "datastore": datastore_view(&state.catalog, ds, &active(ds), &ctx) }),
    ))
}

/// `GET /v1.0/{project_id}/datastores/{ds}/versions` (`datastore:version_index`):
/// active versions for non-admins, all for admins; each with its `datastore` id.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}/versions",
    operation_id = "listDatastoreVersions",
    tag = "datastores",
    params(oa::DatastorePath),
    responses(
        (status = 200, description = "The datastore's versions", body = oa::DatastoreVersionList),
    ),
)]
async fn versions(
    State(state): State<AppState>,
    Path((_project, key)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let ds = find_datastore(&state.catalog, &key)?;
    let ctx = view_ctx(&state, &headers, &caller);
    let items: Vec<Value> = ds
        .versions
        .iter()
        .filter(|v| ctx.caller_is_admin || v.active)
        .map(|v| version_view(&state.catalog, v, Some(ds.id), &ctx))
        .collect();
    Ok(Json(json!({ "versions": items })))
}

/// `GET /v1.0/{project_id}/datastores/{ds}/versions/{version}`
/// (`datastore:version_show`): the version by id or name inside the datastore (errors
/// in [`find_version_in_datastore`]). Inactive versions are shown to anyone, as upstream.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}/versions/{version}",
    operation_id = "showDatastoreVersion",
    tag = "datastores",
    params(oa::DatastoreVersionPath),
    responses(
        (status = 200, description = "The version", body = oa::DatastoreVersionShow),
    ),
)]
async fn version_show(
    State(state): State<AppState>,
    Path((_project, ds_key, version_key)): Path<(String, String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (ds, v) = find_version_in_datastore(&state.catalog, &ds_key, &version_key)?;
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(
        json!({ "version": version_view(&state.catalog, v, Some(ds.id), &ctx) }),
    ))
}

/// `GET /v1.0/{project_id}/datastores/versions/{uuid}`
/// (`datastore:version_show_by_uuid`): any datastore's version by id; unknown (or not
/// a UUID) → **400** `Datastore version '<uuid>' cannot be found.`, as upstream.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/versions/{version}",
    operation_id = "showDatastoreVersionById",
    tag = "datastores",
    params(oa::VersionPath),
    responses(
        (status = 200, description = "The version", body = oa::DatastoreVersionShow),
    ),
)]
async fn version_by_uuid(
    State(state): State<AppState>,
    Path((_project, key)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (ds, v) = Uuid::parse_str(&key)
        .ok()
        .and_then(|id| state.catalog.version(id))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("Datastore version '{key}' cannot be found."))
        })?;
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(
        json!({ "version": version_view(&state.catalog, v, Some(ds.id), &ctx) }),
    ))
}

/// `GET /v1.0/{project_id}/instances/{id}/configuration` (`instance:configuration`):
/// the default configuration template rendered for the instance's current flavor RAM
/// and datastore version (spec `supporting-resources.md` §5). 404 / 422 as every
/// "needs a server" load; a manager without a parser → 400. It never includes the
/// values of an attached configuration group.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/configuration",
    operation_id = "showInstanceConfiguration",
    tag = "instances",
    params(oa::IdPath),
    responses(
        (status = 200, description = "The default configuration", body = oa::DefaultConfigurationShow),
        (status = 422, description = "The instance has no server yet", body = oa::ErrorBody),
    ),
)]
async fn instance_configuration(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let instance = instance_with_server(&state, &caller, &raw_id)?;
    // Every create resolves a datastore version, so a live instance always has one.
    let ds = instance
        .datastore
        .as_ref()
        .ok_or_else(|| ApiError::internal(&format!("instance {raw_id} has no datastore")))?;
    let id = instance.id.unwrap_or_default();
    let pairs = default_configuration(&TemplateInput {
        datastore_name: &ds.datastore_name,
        manager: &ds.manager,
        version_name: &ds.version_name,
        version_number: &ds.version_number,
        ram_mb: instance.flavor.ram,
        instance_id: id,
    })
    .map_err(|e| match e {
        TemplateError::NoParser(_) => ApiError::BadRequest(e.to_string()),
    })?;
    let configuration: Map<String, Value> = pairs.into_iter().collect();
    Ok(Json(
        json!({ "instance": { "configuration": configuration } }),
    ))
}
