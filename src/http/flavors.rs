//! The flavor endpoints (spec `supporting-resources.md` §1): the catalog's flavors,
//! read-only, in catalog order, with upstream's flavor shape.

use aggregates::catalog::Flavor;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use projections::views::ViewCtx;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Identity;
use super::datastores::find_version_in_datastore;
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request::view_ctx;
use super::AppState;

/// The flavor routes, all below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(list_for_version))
}

/// Upstream's `id`: an integer when the id is a string of digits not starting with
/// `0` (python-troveclient then sends it back as a JSON integer `flavorRef`), else
/// `null` and clients use `str_id`. Digit strings beyond `u64` are rendered `null`.
fn integer_id(id: &str) -> Value {
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    if digits && !id.starts_with('0') {
        id.parse::<u64>().map(Value::from).unwrap_or(Value::Null)
    } else {
        Value::Null
    }
}

/// The flavor object (spec §1.2). `local_storage` = `ephemeral`: upstream emits it
/// under its default settings (`trove_volume_support` false, `device_path` set).
fn flavor_view(f: &Flavor, ctx: &ViewCtx) -> Value {
    json!({
        "id": integer_id(&f.id),
        "str_id": f.id,
        "name": f.name,
        "ram": f.ram,
        "vcpus": f.vcpus,
        "disk": f.disk,
        "ephemeral": f.ephemeral,
        "local_storage": f.ephemeral,
        "links": ctx.links("flavors", &f.id),
    })
}

fn flavors_body<'a>(flavors: impl IntoIterator<Item = &'a Flavor>, ctx: &ViewCtx) -> Value {
    let items: Vec<Value> = flavors.into_iter().map(|f| flavor_view(f, ctx)).collect();
    json!({ "flavors": items })
}

/// `GET /v1.0/{project_id}/flavors` (`flavor:index`, anyone): every flavor, catalog
/// order, no pagination.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/flavors",
    operation_id = "listFlavors",
    tag = "flavors",
    params(oa::ProjectPath),
    responses(
        (status = 200, description = "Every flavor", body = oa::FlavorList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> Json<Value> {
    let ctx = view_ctx(&state, &headers, &caller);
    Json(flavors_body(&state.catalog.flavors, &ctx))
}

/// `GET /v1.0/{project_id}/flavors/{id}` (`flavor:show`, anyone); an unknown id is 404
/// `Resource <id> cannot be found.` (the CLI's name lookup relies on the 404).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/flavors/{id}",
    operation_id = "showFlavor",
    tag = "flavors",
    params(oa::IdPath),
    responses(
        (status = 200, description = "The flavor", body = oa::FlavorShow),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let flavor = state
        .catalog
        .flavor(&id)
        .ok_or_else(|| ApiError::resource_not_found(&id))?;
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(json!({ "flavor": flavor_view(flavor, &ctx) })))
}

/// `GET /v1.0/{project_id}/datastores/{ds}/versions/{version}/flavors`
/// (`datastore:list_associated_flavors`, anyone): the flavors bound to the version, or
/// every flavor when none is bound. The version is resolved as upstream's
/// `get_datastore_version` does, so an inactive version is 400 `Datastore version
/// '<name>' is not active.`
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/datastores/{ds}/versions/{version}/flavors",
    operation_id = "listVersionFlavors",
    tag = "flavors",
    params(oa::DatastoreVersionPath),
    responses(
        (status = 200, description = "The flavors of the version", body = oa::FlavorList),
    ),
)]
async fn list_for_version(
    State(state): State<AppState>,
    Path((_project, ds, version)): Path<(String, String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, v) = find_version_in_datastore(&state.catalog, &ds, &version)?;
    if !v.active {
        return Err(ApiError::BadRequest(format!(
            "Datastore version '{}' is not active.",
            v.name
        )));
    }
    let ctx = view_ctx(&state, &headers, &caller);
    Ok(Json(flavors_body(state.catalog.flavors_for(v), &ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_id_follows_upstream() {
        assert_eq!(integer_id("6"), json!(6));
        assert_eq!(integer_id("1234"), json!(1234));
        assert_eq!(integer_id("0"), Value::Null);
        assert_eq!(integer_id("07"), Value::Null);
        assert_eq!(integer_id("custom"), Value::Null);
        assert_eq!(integer_id("-1"), Value::Null);
        assert_eq!(integer_id(""), Value::Null);
        assert_eq!(integer_id("99999999999999999999999"), Value::Null);
    }
}
