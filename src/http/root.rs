//! The superuser of an instance (upstream's `DefaultRootController`): enable (with a
//! generated password, or the one given), show whether it is enabled, disable.
//!
//! Enable answers 200 `{"user": {"name": "root", "password": ...}}` — the only time the
//! password is shown; the log keeps it sealed with the instance's vault key
//! (`RootEnabled`). Show answers `{"rootEnabled": bool}`: enabled and not disabled
//! since, as upstream's root history reads. Disable is 204, 404 when root was never
//! enabled.

use aggregates::instance::InstanceCommand;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Extension, Json};
use chacha20poly1305::aead::OsRng;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::guest_admin::{domain, loaded, run_change};
use super::openapi as oa;
use super::request_body::guestdb::RootEnableBody;
use super::{AppState, RequestId};
use crate::secrets::generate_password;

/// Upstream's `default_password_length`.
pub const PASSWORD_LENGTH: usize = 36;

/// The root routes, below `/v1.0/{project_id}/instances/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, enable, disable))
}

/// The superuser's name on the instance's datastore, as upstream's views show it.
fn root_name(manager: &str) -> &'static str {
    match manager {
        "postgresql" => "postgres",
        _ => "root",
    }
}

/// `GET /v1.0/{project_id}/instances/{id}/root`.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/root",
    operation_id = "showRoot",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 200, description = "Whether root is enabled", body = Value,
        example = json!({"rootEnabled": true}))),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    Ok(Json(json!({ "rootEnabled": inst.root_enabled })))
}

/// `POST /v1.0/{project_id}/instances/{id}/root`: enables root (again: a new
/// password). The body is optional: `{"password": "..."}` sets that one.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{id}/root",
    operation_id = "enableRoot",
    tag = "instances",
    params(oa::IdPath),
    request_body(content = Option<RootEnableBody>, description = "Optional: the password to set"),
    responses((status = 200, description = "Enabled; the password, shown once", body = Value,
        example = json!({"user": {"name": "root", "password": "q5BXXMUMbc8XBf5kkVToKZW4Kx3Egv5VjY0P"}}))),
)]
async fn enable(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // No body, `null` and `{}` all mean "generate one" (upstream's
    // `_get_password_from_body`).
    let empty = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Null) => true,
        Ok(Value::Object(m)) => m.is_empty(),
        _ => body.iter().all(u8::is_ascii_whitespace),
    };
    let given = if empty {
        None
    } else {
        let b: RootEnableBody =
            super::request_body::decode(headers.get(header::CONTENT_TYPE), &body)?;
        b.password.map(|p| p.0)
    };
    let (inst, family) = loaded(&state, &caller, &raw_id)?;
    let id = inst.id.unwrap_or_default();
    let password = given.unwrap_or_else(|| generate_password(&mut OsRng, PASSWORD_LENGTH));
    aggregates::instance::guestdb::check_password(family, &password).map_err(domain)?;
    let vault = state.vault.clone();
    let plain = password.clone();
    let sealed = tokio::task::spawn_blocking(move || vault.seal_for(id, &plain))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    let cmd = InstanceCommand::EnableRoot { password: sealed };
    run_change(&state, &caller, &rid, id, cmd).await?;
    let manager = inst.datastore.map(|d| d.manager).unwrap_or_default();
    Ok(Json(json!({
        "user": { "name": root_name(&manager), "password": password }
    })))
}

/// `DELETE /v1.0/{project_id}/instances/{id}/root`: disables root (its password is
/// replaced by one nobody is told). 404 if root was never enabled.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{id}/root",
    operation_id = "disableRoot",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 204, description = "Disabled")),
)]
async fn disable(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let cmd = InstanceCommand::DisableRoot;
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::NO_CONTENT)
}
