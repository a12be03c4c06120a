//! The databases of an instance (upstream `databases.inc`): list (paged), create (a
//! batch), delete. Each change is an event on the instance's stream (ADR 0010); the
//! list is the read model's. Deviation: the datastore's name rules are checked here,
//! synchronously (400), where upstream's guest would fail the change later, unseen.

use aggregates::instance::{DatabaseSpec, InstanceCommand};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Identity;
use super::error::ApiResult;
use super::guest_admin::{loaded, page, run_change};
use super::openapi as oa;
use super::request::{base_url, limit, next_link, param, QueryPairs};
use super::request_body::guestdb::DatabasesBody;
use super::request_body::JsonBody;
use super::{AppState, RequestId};

/// Upstream's `databases_page_size`.
pub const PAGE_SIZE: usize = 20;

/// The database routes, below `/v1.0/{project_id}/instances/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
}

/// A database of an instance, by name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DatabasePath {
    /// The caller's project id.
    pub project_id: String,
    /// The instance's id.
    pub id: String,
    /// The database's name.
    pub name: String,
}

/// `GET /v1.0/{project_id}/instances/{id}/databases`: the user databases (never the
/// system ones), by name, paged with `limit` and `marker` (the last name seen).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{id}/databases",
    operation_id = "listDatabases",
    tag = "instances",
    params(oa::IdPath),
    responses((status = 200, description = "The instance's databases", body = Value,
        example = json!({"databases": [{"name": "shop"}]}))),
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
    let marker = param(&q, "marker").map(str::to_string);
    let (items, last) = page(inst.databases, |d| d.name.clone(), marker, limit);
    let mut body = json!({ "databases": items.iter().map(view).collect::<Vec<_>>() });
    if let Some(i) = last {
        let path = format!("/v1.0/{project}/instances/{raw_id}/databases");
        body["links"] = next_link(&base_url(&state, &headers), &path, &q, &items[i].name);
    }
    Ok(Json(body))
}

/// A database as the list shows it (upstream's `SchemaView`: the name only).
fn view(d: &DatabaseSpec) -> Value {
    json!({ "name": d.name })
}

/// `POST /v1.0/{project_id}/instances/{id}/databases`: creates every database of the
/// batch or none (400 for a reserved, invalid, repeated or existing name). 202 once
/// the guest created them (or after a bounded wait).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{id}/databases",
    operation_id = "createDatabases",
    tag = "instances",
    params(oa::IdPath),
    request_body = DatabasesBody,
    responses((status = 202, description = "Accepted")),
)]
async fn create(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<DatabasesBody>,
) -> ApiResult<StatusCode> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let databases = body
        .databases
        .into_iter()
        .map(|d| DatabaseSpec {
            name: d.name.0,
            character_set: d.character_set.map(|c| c.0),
            collate: d.collate.map(|c| c.0),
        })
        .collect();
    let cmd = InstanceCommand::CreateDatabases { databases };
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v1.0/{project_id}/instances/{id}/databases/{name}`: drops the database
/// (404 if the instance has none by that name; 400 for a reserved name).
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{id}/databases/{name}",
    operation_id = "deleteDatabase",
    tag = "instances",
    params(DatabasePath),
    responses((status = 202, description = "Accepted")),
)]
async fn delete(
    State(state): State<AppState>,
    Path((_project, raw_id, name)): Path<(String, String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
) -> ApiResult<StatusCode> {
    let (inst, _) = loaded(&state, &caller, &raw_id)?;
    let cmd = InstanceCommand::DeleteDatabase { name };
    run_change(&state, &caller, &rid, inst.id.unwrap_or_default(), cmd).await?;
    Ok(StatusCode::ACCEPTED)
}
