//! The orchestrators' probes, outside the Trove URL space and without a token:
//! `GET /healthz` (the process is up and serving HTTP: restart it if this fails) and
//! `GET /readyz` (it can serve correct answers now: the event store answers and the read
//! models have applied everything it held; send it no traffic while this is 503).
//!
//! Neither says anything about projects or instances, so neither needs identity. Not
//! ready is a 503 in Trove's error format whose message names the failing check, never
//! the store's address or error text (that goes to the log).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::AppState;
use crate::runtime::commands::CommandError;
use crate::store::StoreError;

/// Why not ready when the store refuses troved's credentials or its ACLs deny `$all`.
const DENIED: &str =
    "the event store denied access (check troved's credentials and the ACL of $all)";

/// How long the store may take to tell its head before `/readyz` says it is unreachable:
/// well under the usual probe timeouts (Kubernetes: 1 s by default, often raised).
const STORE_CHECK: Duration = Duration::from_millis(800);

/// How long `/readyz` waits for the read models to reach the store's head, so that
/// events appended a moment before the check do not make it flap.
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);

/// The probe routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /healthz`: 200 `{"status": "ok"}` while the process serves HTTP (liveness). It
/// checks nothing else on purpose: a store outage is not cured by a restart.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operators",
    responses((status = 200, description = "The process is up", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The body of `GET /readyz` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready` (not ready is a 503 in Trove's error format).
    status: &'static str,
    /// Where the read models are.
    read_models: ReadModelsPosition,
}

/// The read models' position and the store's head at the check.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadModelsPosition {
    /// The position every read model has applied.
    applied: u64,
    /// The store's head when checked.
    head: u64,
}

/// `GET /readyz`: 200 when the event store tells its head within 0.8 s and the read
/// models have applied it (waiting up to 0.5 s for them); otherwise 503
/// `serviceUnavailable` (with `Retry-After`) whose message names the check that failed
/// (readiness). The cause is logged, not shown: the probe needs no token.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operators",
    responses(
        (status = 200, description = "Ready: the event store answers and the read models are caught up", body = Readiness),
        (status = 503, description = "Not ready: the message says whether the event store did not answer or the read models are behind", body = oa::ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Readiness>> {
    let head = match tokio::time::timeout(STORE_CHECK, state.bus.head()).await {
        Ok(Ok(head)) => head,
        Ok(Err(e @ CommandError::Store(StoreError::Denied(_)))) => {
            return Err(not_ready(DENIED, &e))
        }
        Ok(Err(e)) => return Err(not_ready("the event store cannot be read", &e)),
        Err(_) => {
            return Err(not_ready(
                "the event store did not answer in time",
                &"no answer within the readiness bound",
            ))
        }
    };
    let (reached, applied) = state.bus.applied_within(head, CATCH_UP_WAIT).await;
    if !reached {
        let why = format!(
            "the read models have not applied the store's head yet (applied {}, head {})",
            applied.commit, head.commit
        );
        return Err(not_ready(&why, &why));
    }
    Ok(Json(Readiness {
        status: "ready",
        read_models: ReadModelsPosition {
            applied: applied.commit,
            head: head.commit,
        },
    }))
}

/// 503 for a failed readiness check: `check` is shown, `cause` logged once (by the
/// request middleware, as every 5xx).
fn not_ready(check: &str, cause: &dyn std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        message: format!("Not ready: {check}."),
        retry_after: 1,
        cause: format!("readiness: {check}: {cause}"),
    }
}
