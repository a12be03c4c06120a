//! `POST /v1.0/{project_id}/instances/{id}/action` (upstream "Instance actions"): the
//! body names one action ([`decode_action`]), which becomes one command on the
//! instance's aggregate. The dispatcher only parses and runs it: each action's rules are
//! `decide`'s (`aggregates::instance::actions`), its effects the saga's. Promote and
//! eject span a replica set's streams: [`super::replica_actions`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Identity;
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::request_body::action::{decode_action, InstanceAction, InstanceActionBody};
use super::{policy, replica_actions, AppState, RequestId};
use crate::runtime::codec::CommandMeta;

/// The action route, below `/v1.0/{project_id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(action))
}

/// `POST /v1.0/{project_id}/instances/{id}/action`: `restart`, `resize` (`flavorRef` or
/// `volume.size`), `reset_status` (admin), `promote_to_replica_source`,
/// `eject_replica_source`. 202 with an empty body, as upstream. The body
/// is checked before the instance is looked up, as upstream validates its schema first;
/// then the action's policy rule (`http::policy::action_rule`, 403).
/// Deviations: an unknown or a second action key is a 400 (upstream: 500, or the last
/// key wins); a resize is refused when the project's quota cannot take the larger
/// flavor or volume (413, as a create).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{id}/action",
    operation_id = "instanceAction",
    tag = "instances",
    params(oa::IdPath),
    request_body = InstanceActionBody,
    responses(
        (status = 202, description = "Accepted"),
        (status = 400, description = "Bad body, same flavor, shrinking volume, not a replica", body = oa::ErrorBody),
        (status = 403, description = "reset_status by a non-admin", body = oa::ErrorBody),
        (status = 413, description = "Quota exceeded", body = oa::ErrorBody),
        (status = 422, description = "The instance cannot act now", body = oa::ErrorBody),
    ),
)]
async fn action(
    State(state): State<AppState>,
    Path((project, raw_id)): Path<(String, String)>,
    Identity(caller): Identity,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let action = decode_action(headers.get(header::CONTENT_TYPE), &body)?;
    policy::check(
        &state,
        policy::action_rule(&action, &body),
        &caller,
        &project,
    )?;
    let id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::resource_not_found(&raw_id))?;
    let meta = CommandMeta::for_request(&caller, &rid.0);
    match action {
        InstanceAction::Command(cmd) => state
            .bus
            .execute(id, &[cmd], &caller, &meta)
            .await
            .map(drop)
            .map_err(ApiError::from),
        InstanceAction::PromoteToReplicaSource => {
            replica_actions::promote(&state, id, &caller, &meta).await
        }
        InstanceAction::EjectReplicaSource => {
            replica_actions::eject(&state, id, &caller, &meta).await
        }
    }?;
    Ok(StatusCode::ACCEPTED)
}
