//! Operator endpoints beside the Trove API: `GET /metrics` (Prometheus), the admin view
//! of the read models' positions, `GET /v1.0/{project_id}/mgmt/projections`, and the
//! admin live rebuild, `POST`/`GET /v1.0/{project_id}/mgmt/projections/rebuild`.
//!
//! `POST /v1.0/{project_id}/mgmt/reconcile` (admin) runs a reconciliation of the log with
//! the provider now ([`crate::reconcile`]) and records what it finds lost.
//!
//! The first two only read (the counters of [`crate::metrics`], the models' positions,
//! the store's head); the rebuild starts background work ([`crate::runtime::rebuild`]).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{require_admin, Identity};
use super::error::{ApiError, ApiResult};
use super::openapi as oa;
use super::AppState;
use crate::metrics::{self, Gauges};
use crate::store;

/// The operator routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scrape))
        .routes(routes!(projections))
        .routes(routes!(start_rebuild, rebuild_status))
        .routes(routes!(reconcile))
}

/// The answer of a reconciliation.
#[derive(Serialize, ToSchema)]
pub struct ReconcileShow {
    reconciliation: crate::reconcile::Report,
}

/// `POST /v1.0/{project_id}/mgmt/reconcile`: admin only. Asks the provider which of the
/// servers and volumes the log claims are gone, records each such instance as lost
/// (`InstanceResourcesLost`: ERROR with a fault, no addresses or volume usage), and
/// answers what it recorded now (losses recorded before are not repeated). Our
/// extension, not Trove's. 503 when the provider cannot answer.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/mgmt/reconcile",
    operation_id = "reconcile",
    tag = "mgmt",
    params(oa::ProjectPath),
    request_body(content = RebuildRequest, description = "Ignored; may be empty or `{}`"),
    responses(
        (status = 200, description = "What this reconciliation found lost and recorded", body = ReconcileShow),
        (status = 503, description = "The provider could not answer; retry later"),
    ),
)]
pub async fn reconcile(
    State(state): State<AppState>,
    Identity(caller): Identity,
    axum::Extension(rid): axum::Extension<super::RequestId>,
) -> ApiResult<Json<ReconcileShow>> {
    use crate::reconcile::LostStateError as E;
    require_admin(&caller)?;
    match state.reconciler.run(&caller, &rid.0).await {
        Ok(report) => Ok(Json(ReconcileShow {
            reconciliation: report,
        })),
        Err(E::Provider(e)) => Err(ApiError::Unavailable {
            message: "The provider could not be asked; retry later.".into(),
            retry_after: 5,
            cause: e.to_string(),
        }),
        Err(E::Command(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// The body of a rebuild request: nothing is needed (any body is ignored).
#[derive(Serialize, ToSchema)]
pub struct RebuildRequest {}

/// A live rebuild's status.
#[derive(Serialize, ToSchema)]
pub struct RebuildShow {
    rebuild: RebuildBody,
}

/// The fields of a live rebuild's status (docs/operations.md).
#[derive(Serialize, ToSchema)]
pub struct RebuildBody {
    /// `idle`, `running`, `done` or `failed`.
    state: String,
    started: Option<String>,
    finished: Option<String>,
    /// Events the new models have applied.
    events: u64,
    /// Position the new models reached.
    position: u64,
    /// The store's head when the rebuild started.
    head: u64,
    error: Option<String>,
}

impl From<crate::runtime::rebuild::RebuildStatus> for RebuildShow {
    fn from(s: crate::runtime::rebuild::RebuildStatus) -> Self {
        RebuildShow {
            rebuild: RebuildBody {
                state: s.state,
                started: s.started.map(|t| t.to_rfc3339()),
                finished: s.finished.map(|t| t.to_rfc3339()),
                events: s.events,
                position: s.position,
                head: s.head,
                error: s.error,
            },
        }
    }
}

/// `POST /v1.0/{project_id}/mgmt/projections/rebuild`: admin only. Rebuilds the
/// instance read models from the log in the background while the current ones keep
/// serving, then swaps them in atomically. 202 with the status; 409 while one runs.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/mgmt/projections/rebuild",
    operation_id = "startProjectionRebuild",
    tag = "mgmt",
    params(oa::ProjectPath),
    request_body(content = RebuildRequest, description = "Ignored; may be empty or `{}`"),
    responses(
        (status = 202, description = "The rebuild started", body = RebuildShow),
        (status = 409, description = "A rebuild is already running"),
    ),
)]
pub async fn start_rebuild(
    State(state): State<AppState>,
    Identity(caller): Identity,
) -> ApiResult<(axum::http::StatusCode, Json<RebuildShow>)> {
    require_admin(&caller)?;
    let status = state
        .rebuilder
        .start()
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(status.into())))
}

/// `GET /v1.0/{project_id}/mgmt/projections/rebuild`: admin only; the last (or
/// current) live rebuild's progress.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/mgmt/projections/rebuild",
    operation_id = "showProjectionRebuild",
    tag = "mgmt",
    params(oa::ProjectPath),
    responses((status = 200, description = "The live rebuild's status", body = RebuildShow)),
)]
pub async fn rebuild_status(
    State(state): State<AppState>,
    Identity(caller): Identity,
) -> ApiResult<Json<RebuildShow>> {
    require_admin(&caller)?;
    Ok(Json(state.rebuilder.status().into()))
}

/// `GET /metrics`: every metric in the Prometheus text format 0.0.4. Like
/// `/openapi.json` it needs no token: it names no project, instance or user, only
/// counts by route template, command and step. Not part of the Trove API.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operators",
    responses((status = 200, description = "Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): events appended, commands, saga steps, projection position and lag, HTTP latency. See docs/operations.md, \"Metrics\".")),
)]
pub async fn scrape(State(state): State<AppState>) -> Response {
    let applied = state.models.position();
    let head = match state.bus.head().await {
        Ok(head) => Some(head),
        Err(e) => {
            // Scrapes go on (counters are still worth having); the head gauges are
            // left out so that a broken store does not read as "no lag".
            tracing::warn!(error = %e, "cannot read the store's head for /metrics");
            None
        }
    };
    // Counted up to `METRICS_LAG_MAX` (one read per scrape at most; none without lag).
    let lag_events = match head {
        Some(head) => state
            .bus
            .events_after(applied, head, store::METRICS_LAG_MAX)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "cannot count the lag for /metrics"))
            .ok(),
        None => None,
    };
    let gauges = Gauges {
        applied,
        head,
        cached_streams: state.bus.cached_streams() as u64,
        lag_events,
    };
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::global().render(&gauges),
    )
        .into_response()
}

/// `GET /v1.0/{project_id}/mgmt/projections`: admin only (401 otherwise, like the other
/// mgmt endpoints); where the read models are in the log. Our extension, not Trove's.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/mgmt/projections",
    operation_id = "showProjections",
    tag = "mgmt",
    params(oa::ProjectPath),
    responses((status = 200, description = "The read models' positions and lag (admin)", body = ProjectionsShow)),
)]
async fn projections(
    State(state): State<AppState>,
    Identity(caller): Identity,
) -> ApiResult<Json<ProjectionsShow>> {
    require_admin(&caller)?;
    // Positions first, head second: the head can only be later, so the lag is never
    // negative even while events are being applied.
    let models = state.models.positions();
    let position = models.min().commit;
    // Store errors map as everywhere else (unreachable: 503 with Retry-After).
    let head = state.bus.head().await?;
    let lag = state
        .bus
        .events_after(models.min(), head, store::EVENTS_AFTER_MAX)
        .await?;
    let head = head.commit;
    Ok(Json(ProjectionsShow {
        projections: ProjectionsStatus {
            position,
            head,
            lag,
            models: ModelPositionsView {
                records: models.records.commit,
                lists: models.lists.commit,
                mgmt: models.mgmt.commit,
                replicas: models.replicas.commit,
                quota: models.quota.commit,
            },
            instances: state.models.len(),
            backups: state.backups.len(),
        },
    }))
}

/// The body of `GET /mgmt/projections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsShow {
    pub projections: ProjectionsStatus,
}

/// Where the read models are in the log. Positions are those of `$all` (the embedded
/// store's dense sequence numbers, 0 = nothing applied).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsStatus {
    /// The position every read model has applied: what read-your-writes waits on.
    pub position: u64,
    /// The store's last position.
    pub head: u64,
    /// Events appended but not yet visible in reads, counted (not `head - position`:
    /// EventStoreDB's positions are byte offsets); on EventStoreDB counted up to 10 000.
    pub lag: u64,
    /// Each instance model's last applied position (configuration and backup models are
    /// fed by the same projector, in the same order, and follow `position`).
    pub models: ModelPositionsView,
    /// Instances in the records model, soft-deleted ones included.
    pub instances: usize,
    /// Live backups.
    pub backups: usize,
}

/// Last applied position of each instance model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPositionsView {
    /// Instance records.
    pub records: u64,
    /// Per-project lists (`GET /instances`).
    pub lists: u64,
    /// The admin list (`GET /mgmt/instances`).
    pub mgmt: u64,
    /// The replicas index.
    pub replicas: u64,
    /// Quota usage.
    pub quota: u64,
}
