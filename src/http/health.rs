//! The orchestrators' probes, outside the Trove URL space and without a token:
//! `GET /healthz` (the process is up and serving HTTP: restart it if this fails) and
//! `GET /readyz` (it can serve correct answers now: the event store answers and the read
//! models have applied everything it held; send it no traffic while this is 503).
//!
//! Neither says anything about projects or instances, so neither needs identity; the
//! readiness body names the failing check, never the store's address or error text
//! (that goes to the log).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

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

/// The body of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    status: &'static str,
    checks: Checks,
}

/// Each readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The event store answered (its head position) in time.
    store: Check,
    /// The read models have applied the store's head.
    read_models: Check,
}

/// One readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// The position the read models have applied (read models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<u64>,
    /// The store's head position (read models only; absent if the store did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<u64>,
}

impl Check {
    fn failed(message: impl Into<String>) -> Check {
        Check {
            ok: false,
            message: Some(message.into()),
            applied: None,
            head: None,
        }
    }
}

/// `GET /readyz`: 200 when the event store answers within 0.8 s and the read models
/// have applied its head (waiting up to 0.5 s for them); 503 otherwise, with the check
/// that failed (readiness).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operators",
    responses(
        (status = 200, description = "Ready: the event store answers and the read models are caught up", body = Readiness),
        (status = 503, description = "Not ready: `checks` says which check failed", body = Readiness),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let head = match tokio::time::timeout(STORE_CHECK, state.bus.head()).await {
        Ok(Ok(head)) => Ok(head),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the event store cannot be read");
            Err("the event store cannot be read")
        }
        Err(_) => {
            tracing::warn!("readiness: the event store did not answer in time");
            Err("the event store did not answer in time")
        }
    };
    let (store, read_models) = match head {
        Ok(head) => {
            let (reached, applied) = state.bus.applied_within(head, CATCH_UP_WAIT).await;
            let read_models = Check {
                ok: reached,
                message: (!reached)
                    .then(|| "the read models have not applied the store's head yet".to_string()),
                applied: Some(applied.commit),
                head: Some(head.commit),
            };
            (
                Check {
                    ok: true,
                    message: None,
                    applied: None,
                    head: None,
                },
                read_models,
            )
        }
        Err(why) => (
            Check::failed(why),
            Check::failed("unknown while the event store cannot be read"),
        ),
    };
    let ready = store.ok && read_models.ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" },
        checks: Checks { store, read_models },
    };
    (status, Json(body))
}
