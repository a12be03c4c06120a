//! `POST /v1.0/{project_id}/instances/{id}/action` (Trove's instance actions,
//! `instance-actions.inc`): parses the body into one action and hands it to the module
//! that implements it. No logic of an action lives here: promote and eject are in
//! [`super::replica_actions`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request_body::action::{ActionBody, ActionRequest, InstanceAction};
use super::{auth::Identity, replica_actions, AppState, RequestId};
use crate::runtime::codec::CommandMeta;

/// The action route, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(action))
}

/// `POST /v1.0/{project_id}/instances/{id}/action`: 202 with no body. The body is
/// checked before the id (as upstream's schema validation runs first); an id that is no
/// instance of the caller's project is 404.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{id}/action",
    operation_id = "instanceAction",
    tag = "instances",
    params(oa::IdPath),
    request_body = ActionBody,
    responses((status = 202, description = "Accepted")),
)]
async fn action(
    State(state): State<AppState>,
    Path((_project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    ActionRequest(action): ActionRequest,
) -> ApiResult<StatusCode> {
    let id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::resource_not_found(&raw_id))?;
    let meta = CommandMeta::for_request(&caller, &rid.0);
    match action {
        InstanceAction::PromoteToReplicaSource => {
            replica_actions::promote(&state, id, &caller, &meta).await
        }
        InstanceAction::EjectReplicaSource => {
            replica_actions::eject(&state, id, &caller, &meta).await
        }
    }?;
    Ok(StatusCode::ACCEPTED)
}
