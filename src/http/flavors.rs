//! (being written)

use axum::Router;

use super::AppState;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
}
