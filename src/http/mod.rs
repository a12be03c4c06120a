//! The HTTP shell: the Trove v1.0 routes (axum), identity, request ids, and Trove's
//! error format for everything that goes wrong, including unknown routes and bad JSON.
//!
//! - One module per resource (`instances`, `actions`, `flavors`, `datastores`, `backups`,
//!   `configurations`, `databases`, `users`, `root`, `history`, `operators`, `versions`),
//!   each with its `router()` ([`guest_admin`]: what databases, users and root share);
//!   [`health`]: the orchestrators' probes (`/healthz`, `/readyz`).
//! - [`request_body`]: the typed request bodies, which parse a request and document it.
//! - [`request`]: what handlers read besides the body (query, paging, links).
//! - [`error`]: [`ApiError`], the only place a status code is chosen.
//! - [`auth`]: who the caller is; [`policy`]: what they may do (oslo.policy rules).
//! - [`openapi`]: the OpenAPI document (responses and parameters are described there).

pub mod actions;
pub mod auth;
pub mod backups;
pub mod configurations;
pub mod databases;
pub mod datastores;
pub mod error;
pub mod flavors;
pub mod guest_admin;
pub mod health;
pub mod history;
pub mod instances;
pub mod keystone;
pub mod openapi;
pub mod operators;
pub mod policy;
pub mod quotas;
pub mod replica_actions;
pub mod request;
pub mod request_body;
pub mod root;
pub mod users;
pub mod versions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use projections::backups::BackupModels;
use projections::configurations::ConfigurationModels;
use projections::InstanceModels;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::StaticCatalog;
use crate::runtime::commands::CommandBus;
use crate::secrets::Vault;
use error::ApiError;

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub bus: CommandBus,
    pub models: Arc<InstanceModels>,
    /// Configuration group read models.
    pub configurations: Arc<ConfigurationModels>,
    /// Backup read models.
    pub backups: Arc<BackupModels>,
    /// Events of the log that do not decode: show names them.
    pub unreadable: Arc<crate::runtime::unreadable::UnreadableEvents>,
    pub catalog: Arc<StaticCatalog>,
    pub vault: Arc<Vault>,
    /// Reconciliation of the log with the provider (admin endpoint).
    pub reconciler: Arc<crate::reconcile::Reconciler>,
    /// Live rebuilds of the read models (admin endpoint).
    pub rebuilder: Arc<crate::runtime::rebuild::Rebuilder>,
    /// How callers are identified.
    pub auth: Arc<auth::AuthMode>,
    /// The authorization rules (upstream's defaults, or the `--policy-file`'s).
    pub policy: Arc<crate::policy::Policy>,
    /// Base of the links we emit (`https://host:port`); `None` = from the request's Host.
    pub public_url: Option<String>,
    /// Heartbeat expiry for `operating_status`; `None` while no guest sends heartbeats
    /// (the simulated cloud), `Some` with the local provider's supervisor.
    pub heartbeat_expiry: Option<chrono::Duration>,
    /// The last good heartbeat per instance (in memory, written by the supervisor).
    pub heartbeats: projections::views::Heartbeats,
    /// What the provider can back up (a create's 422 and 400 checks).
    pub backup_agent: Arc<dyn crate::saga::ports::BackupAgent>,
    /// Where backup artifacts are (a restore's checks at create).
    pub backup_store: Arc<dyn crate::backup_store::BackupStore>,
}

/// The request id of the current request (`req-<uuid>`), set by [`request_id`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Every route of the API with its OpenAPI description: each is registered with
/// `routes!`, which takes the path and method from the handler's `#[utoipa::path]`, so
/// the router and the document ([`openapi`]) come from the same registrations.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(versions::root))
        .routes(routes!(versions::v1))
        .routes(routes!(versions::v1_slash))
        .routes(routes!(openapi::openapi_json))
        .merge(instances::router())
        .merge(actions::router())
        .merge(flavors::router())
        .merge(datastores::router())
        .merge(backups::router())
        .merge(configurations::router())
        .merge(quotas::router())
        .merge(history::router())
        .merge(operators::router())
        .merge(health::router())
        .merge(databases::router())
        .merge(users::router())
        .merge(root::router())
}

/// Bounds on every request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest body, bytes (413 `overLimit` beyond).
    pub max_bytes: usize,
    /// The whole body must arrive within this long of the request's head (408
    /// `requestTimeout` otherwise, and the connection is closed).
    pub read_timeout: Duration,
}

/// The whole API, every request body bounded by `limits`.
pub fn router(state: AppState, limits: BodyLimits) -> Router {
    let (routes, _document) = api().split_for_parts();
    routes
        // Identity and the policy rule of each route, once (`policy`); only for routes
        // that matched, so an unknown path is still a 404 whoever asks.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            policy::enforce,
        ))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        // Our own limit (`per_request`) has already bounded the body.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(limits, per_request))
        .with_state(state)
}

/// The answer to a connection beyond the connection limit when every connection is busy
/// (`crate::net`): 503 `serviceUnavailable`, `Retry-After: 1`, and `Connection: close`.
pub fn too_many_connections() -> Response {
    let mut resp = ApiError::Unavailable {
        message: "Too many connections; retry later.".into(),
        retry_after: 1,
        cause: "connection limit reached".into(),
    }
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// No route (or no method) matches: Trove answers 404, never 405.
async fn fallback(_uri: Uri) -> ApiError {
    ApiError::no_route()
}

/// What every request goes through, outermost first: its latency is observed
/// ([`observe_latency`]), it gets a request id ([`request_id`]), its body is bounded in
/// size and time ([`limit_body`]). One middleware rather than three layers: each `from_fn` layer
/// clones the boxed inner service and allocates a future per request, which showed in
/// the profile of the read endpoints (~10% of a `GET /instances/{id}`).
async fn per_request(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    observe_latency(req, |req| {
        request_id(req, |req| limit_body(limits, req, next))
    })
    .await
}

/// Gives every request an `x-openstack-request-id` and echoes it on the response. Inside
/// the request's span, errors that did not come from our handlers get Trove's shape
/// ([`trove_shaped`]) and a server error is logged, once ([`error::log_server_error`]).
async fn request_id<F: Future<Output = Response>>(
    mut req: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    // A random (v4) UUID; with uuid's `fast-rng` it comes from a thread-local generator
    // seeded by the OS, not from a system call per request.
    let id = format!("req-{}", uuid::Uuid::new_v4());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = async {
        let mut resp = inner(req).await;
        if !is_json(&resp) && (resp.status().is_client_error() || resp.status().is_server_error()) {
            resp = trove_shaped(resp).await;
        }
        error::log_server_error(&mut resp);
        resp
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::try_from(id) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

/// Observes every request's latency (`troved_http_request_duration_seconds`) by method,
/// route template and status class. Outermost, so it covers the body limit and the
/// error rewriting too; the template (axum's [`MatchedPath`]), not the path, keeps the
/// number of series bounded.
async fn observe_latency<F: Future<Output = Response>>(
    req: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = inner(req).await;
    crate::metrics::global().http_request(
        &method,
        route.as_ref().map(MatchedPath::as_str),
        resp.status(),
        started.elapsed(),
    );
    resp
}

/// Bounds request bodies at `limits.max_bytes` (413 `overLimit` beyond). A body
/// somewhat over the limit is still read to its end before the refusal: answering while
/// the client is still sending makes the kernel reset the connection, and the client
/// would see a broken connection instead of the 413. A request that says it has no body
/// (a GET without `Content-Length`) goes through untouched. A body that has not arrived
/// whole within `limits.read_timeout` (a client sending a byte a second, or not at all)
/// is answered 408 and its connection closed: a deadline for the whole body, not between
/// bytes, since a trickle would reset an inactivity timer forever.
async fn limit_body(limits: BodyLimits, req: Request, next: Next) -> Response {
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let max = limits.max_bytes;
    let drain_cap = max.saturating_mul(4).max(64 * 1024);
    let read = tokio::time::timeout(limits.read_timeout, axum::body::to_bytes(body, drain_cap));
    match read.await {
        Err(_elapsed) => {
            crate::metrics::global()
                .connection_closed(crate::metrics::ConnectionClosed::BodyTimeout);
            ApiError::RequestTimeout(format!(
                "The request body did not arrive within {} s.",
                limits.read_timeout.as_secs_f64()
            ))
            .into_response()
        }
        Ok(Ok(bytes)) if bytes.len() <= max => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(_) => ApiError::OverLimit(format!("Request body is too large (limit {max} bytes)."))
            .into_response(),
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Rewrites an error that did not come from our handlers (an axum extractor rejection:
/// a path or query that does not parse, a body over the limit, ...) into Trove's error
/// shape, so every error a client sees has one format.
async fn trove_shaped(resp: Response) -> Response {
    let status = resp.status();
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::OverLimit("Request body is too large.".into()),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ApiError::no_route(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::BadMediaType,
        s if s.is_server_error() => ApiError::internal(&text),
        _ if text.is_empty() => ApiError::BadRequest("Bad request.".into()),
        _ => ApiError::BadRequest(text),
    };
    err.into_response()
}
