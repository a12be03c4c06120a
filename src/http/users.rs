//! The users of an instance (upstream `users.inc`): list (paged), create (a batch),
//! show, update attributes, new passwords, delete, and a user's access to databases
//! (list, grant, revoke). A user is `name@host` in the path (MySQL family; upstream's
//! `unquote_user_host`: no host means `%`); PostgreSQL users have host `%` only.
//!
//! Passwords are sealed with the instance's vault key before the command is decided
//! (`crate::secrets`), as at create: the log and the read models never hold them.
//! Each change is an event on the instance's stream (ADR 0010).

use std::sync::Arc;

use aggregates::instance::guestdb::{check_password, check_user, find_user, Family};
use aggregates::instance::{
    GuestUser, GuestUserRequest, InstanceCommand, SealedSecret, UserAttributes, UserPassword,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::guest_admin::{domain, loaded, page, run_change, user_and_host};
use super::openapi as oa;
use super::request::{base_url, limit, next_link, param, QueryPairs};
use super::request_body::guestdb::{AccessBody, PasswordsBody, UserPutBody, UsersBody};
use super::request_body::JsonBody;
use super::{AppState, RequestId};
use crate::secrets::Vault;

/// Upstream's `users_page_size`.
pub const PAGE_SIZE: usize = 20;

/// The user routes, below `/v1.0/{project_id}/instances/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create, change_passwords))
        .routes(routes!(show, update, delete))
        .routes(routes!(list_access, grant))
        .routes(routes!(revoke))
}

/// A user of an instance.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The caller's project id.
    pub project_id: String,
    /// The instance's id.
    pub id: String,
    /// `name` or `name@host` (percent-encoded; `.` may be `%2e`).
    pub user: String,
}

/// A user's access to one database.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserDatabasePath {
    /// The caller's project id.
    pub project_id: String,
    /// The instance's id.
    pub id: String,
    /// `name` or `name@host`.
    pub user: String,
    /// The database's name.
    pub name: String,
}

/// A user as upstream's `UserView` shows it.
fn view(u: &GuestUser) -> Value {
    json!({
        "name": u.name,
        "host": u.host,
        "databases": u.databases.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
    })
}

/// Seals `password` with the instance's key (made if it has none), after the
/// datastore's password rules.
async fn seal(
    vault: &Arc<Vault>,
    id: Uuid,
    family: Family,
    password: String,
) -> ApiResult<SealedSecret> {
    check_password(family, &password).map_err(domain)?;
    let vault = vault.clone();
    tokio::task::spawn_blocking(move || vault.seal_for(id, &password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
}

/// `GET /v1.0/{project_id}/instances/{id}/users`: by name and host, paged with `limit`
/// and `marker` (the last `name@host` seen).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/users",
    operation_id = "listUsers",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 200, description = "The instance's users", body = Value,
        example = json!({"users": [{"name": "app", "host": "%", "databases": [{"name": "shop"}]}]}))),
)]
async fn list(
    State(state): State<AppState>,
    Path((project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    headers: HeaderMap,
    Query(q): QueryPairs,
) -> ApiResult<Json<Value>> {
    let limit = limit(&q, PAGE_SIZE, None)?;
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let marker = param(&q, "marker").map(user_and_host);
    let key = |u: &GuestUser| (u.name.clone(), u.host.clone());
    let (items, last) = page(inst.users, key, marker, limit);
    let mut body = json!({ "users": items.iter().map(view).collect::<Vec<_>>() });
    if let Some(i) = last {
        let path = format!("/v1.0/{project}/instances/{raw_id}/users");
        body["links"] = next_link(&base_url(&state, &headers), &path, &q, &items[i].id());
    }
    Ok(Json(body))
}

/// `POST /v1.0/{project_id}/instances/{id}/users`: creates every user of the batch or
/// none (400: reserved or invalid name, host or password, a user twice, an existing
/// `name@host`; 404: a database the instance does not have). 202 once the guest
/// created them (or after a bounded wait), so a login right after works.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{id}/users",
    operation_id = "createUsers",
    tag = "instances",
    params(oa::IdPath),
    request_body = UsersBody,
    responses((status = 202, description = "Accepted")),
)]
async fn create(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<UsersBody>,
) -> ApiResult<StatusCode> {
    let (inst, family) = loaded(&state, &caller, &raw_id)?;
    let id = inst.id.unwrap_or_default();
    let mut users = Vec::with_capacity(body.users.len());
    for u in body.users {
        users.push(GuestUserRequest {
            name: u.name.0,
            host: u.host.map_or_else(|| "%".to_string(), |h| h.0),
            password: seal(&state.vault, id, family, u.password.0).await?,
            databases: u
                .databases
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.name.0)
                .collect(),
        });
    }
    run_change(
        &state,
        &caller,
        &rid,
        id,
        InstanceCommand::CreateUsers { users },
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `PUT /v1.0/{project_id}/instances/{id}/users`: new passwords for existing users
/// (404 for one the instance does not have; nothing changes then).
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/instances/{id}/users",
    operation_id = "changeUserPasswords",
    tag = "instances",
    params(oa::IdPath),
    request_body = PasswordsBody,
    responses((status = 202, description = "Accepted")),
)]
async fn change_passwords(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<PasswordsBody>,
) -> ApiResult<StatusCode> {
    let (inst, family) = loaded(&state, &caller, &raw_id)?;
    let id = inst.id.unwrap_or_default();
    let mut users = Vec::with_capacity(body.users.len());
    for u in body.users {
        users.push(UserPassword {
            name: u.name.0,
            host: u.host.map_or_else(|| "%".to_string(), |h| h.0),
            password: seal(&state.vault, id, family, u.password.0).await?,
        });
    }
    run_change(
        &state,
        &caller,
        &rid,
        id,
        InstanceCommand::ChangeUserPasswords { users },
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// The user of the path, or 404 `User <user> cannot be found on the instance.`
fn user_of(inst: &aggregates::instance::Instance, raw_user: &str) -> ApiResult<GuestUser> {
    let (name, host) = user_and_host(raw_user);
    find_user(inst, &name, &host).cloned().ok_or_else(|| {
        domain(aggregates::instance::DomainError::UserNotFound(
            raw_user.into(),
        ))
    })
}

/// `GET /v1.0/{project_id}/instances/{id}/users/{user}`.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}",
    operation_id = "showUser",
    tag = "instances",
    params(UserPath),
    responses((status = 200, description = "The user", body = Value,
        example = json!({"user": {"name": "app", "host": "%", "databases": [{"name": "shop"}]}}))),
)]
async fn show(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user)): Path<(String, String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let user = user_of(&inst, &raw_user)?;
    Ok(Json(json!({ "user": view(&user) })))
}

/// `PUT /v1.0/{project_id}/instances/{id}/users/{user}`: new name, host and/or
/// password (400 if the new `name@host` exists or is reserved).
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}",
    operation_id = "updateUser",
    tag = "instances",
    params(UserPath),
    request_body = UserPutBody,
    responses((status = 202, description = "Accepted")),
)]
async fn update(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user)): Path<(String, String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<UserPutBody>,
) -> ApiResult<StatusCode> {
    let (inst, family) = loaded(&state, &caller, &raw_id)?;
    let id = inst.id.unwrap_or_default();
    let u = body.user;
    if u.name.is_none() && u.host.is_none() && u.password.is_none() {
        return Err(ApiError::Validation(
            "user {} does not have enough properties".into(),
        ));
    }
    let user = user_of(&inst, &raw_user)?;
    let password = match u.password {
        Some(p) => Some(seal(&state.vault, id, family, p.0).await?),
        None => None,
    };
    let update = UserAttributes {
        name: u.name.map(|n| n.0),
        host: u.host.map(|h| h.0),
        password,
    };
    let cmd = InstanceCommand::UpdateUserAttributes {
        name: user.name,
        host: user.host,
        update,
    };
    run_change(&state, &caller, &rid, id, cmd).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v1.0/{project_id}/instances/{id}/users/{user}`.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}",
    operation_id = "deleteUser",
    tag = "instances",
    params(UserPath),
    responses((status = 202, description = "Accepted")),
)]
async fn delete(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user)): Path<(String, String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let (inst, family) = loaded(&state, &caller, &raw_id)?;
    let (name, host) = user_and_host(&raw_user);
    // Upstream refuses a reserved name (400) before it looks the user up (404).
    if family.is_reserved_user(&name) {
        check_user(family, &name, &host).map_err(domain)?;
    }
    if find_user(&inst, &name, &host).is_none() {
        return Err(domain(aggregates::instance::DomainError::UserNotFound(
            raw_user,
        )));
    }
    let cmd = InstanceCommand::DeleteUser { name, host };
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /v1.0/{project_id}/instances/{id}/users/{user}/databases`: the databases the
/// user has access to.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}/databases",
    operation_id = "listUserAccess",
    tag = "instances",
    params(UserPath),
    responses((status = 200, description = "The user's databases", body = Value,
        example = json!({"databases": [{"name": "shop"}]}))),
)]
async fn list_access(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user)): Path<(String, String, String)>,
    Identity(caller): Identity,
) -> ApiResult<Json<Value>> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let user = user_of(&inst, &raw_user)?;
    let dbs: Vec<Value> = user.databases.iter().map(|d| json!({"name": d})).collect();
    Ok(Json(json!({ "databases": dbs })))
}

/// `PUT /v1.0/{project_id}/instances/{id}/users/{user}/databases`: grants the user
/// access to databases of the instance (404 for one it does not have).
#[utoipa::path(
    put,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}/databases",
    operation_id = "grantUserAccess",
    tag = "instances",
    params(UserPath),
    request_body = AccessBody,
    responses((status = 202, description = "Accepted")),
)]
async fn grant(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user)): Path<(String, String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<AccessBody>,
) -> ApiResult<StatusCode> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let user = user_of(&inst, &raw_user)?;
    let cmd = InstanceCommand::GrantUserAccess {
        name: user.name,
        host: user.host,
        databases: body.databases.into_iter().map(|d| d.name.0).collect(),
    };
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v1.0/{project_id}/instances/{id}/users/{user}/databases/{name}`: revokes
/// the user's access to the database (404 if it has none).
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{id}/users/{user}/databases/{name}",
    operation_id = "revokeUserAccess",
    tag = "instances",
    params(UserDatabasePath),
    responses((status = 202, description = "Accepted")),
)]
async fn revoke(
    State(state): State<AppState>,
    Path((_project, raw_id, raw_user, database)): Path<(String, String, String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let user = user_of(&inst, &raw_user)?;
    let cmd = InstanceCommand::RevokeUserAccess {
        name: user.name,
        host: user.host,
        database,
    };
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::ACCEPTED)
}
