//! Version documents: `GET /` and `GET /v1.0`. openstacksdk discovers the API with them
//! before its first call (spec `clients.md` §2), without a token.

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::openapi as oa;

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /`: the list of versions.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "listVersions",
    tag = "versions",
    responses((status = 200, description = "The API versions", body = oa::VersionList)),
)]
pub async fn root(headers: HeaderMap) -> impl IntoResponse {
    let href = format!("{}/v1.0/", base(&headers));
    Json(json!({"versions": [{
        "id": "v1.0", "status": "CURRENT", "updated": "2012-08-01T00:00:00Z",
        "links": [{"rel": "self", "href": href}]
    }]}))
}

/// `GET /v1.0`: this version.
#[utoipa::path(
    get,
    path = "/v1.0",
    operation_id = "showVersion",
    tag = "versions",
    responses((status = 200, description = "This version", body = oa::VersionShow)),
)]
pub async fn v1(headers: HeaderMap) -> impl IntoResponse {
    let href = format!("{}/v1.0/", base(&headers));
    Json(json!({"version": {
        "id": "v1.0", "status": "CURRENT", "updated": "2012-08-01T00:00:00Z",
        "links": [{"rel": "self", "href": href}]
    }}))
}

/// `GET /v1.0/`: as `GET /v1.0`.
#[utoipa::path(
    get,
    path = "/v1.0/",
    operation_id = "showVersionSlash",
    tag = "versions",
    responses((status = 200, description = "This version", body = oa::VersionShow)),
)]
pub async fn v1_slash(headers: HeaderMap) -> impl IntoResponse {
    v1(headers).await
}
