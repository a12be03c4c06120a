//! The history extension (being written).

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
