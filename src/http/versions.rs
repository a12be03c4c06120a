//! Version documents: `GET /` and `GET /v1.0`. openstacksdk discovers the API with them
//! before its first call (spec `clients.md` §2), without a token.

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /`: the list of versions.
pub async fn root(headers: HeaderMap) -> impl IntoResponse {
    let href = format!("{}/v1.0/", base(&headers));
    Json(json!({"versions": [{
        "id": "v1.0", "status": "CURRENT", "updated": "2012-08-01T00:00:00Z",
        "links": [{"rel": "self", "href": href}]
    }]}))
}

/// `GET /v1.0`: this version.
pub async fn v1(headers: HeaderMap) -> impl IntoResponse {
    let href = format!("{}/v1.0/", base(&headers));
    Json(json!({"version": {
        "id": "v1.0", "status": "CURRENT", "updated": "2012-08-01T00:00:00Z",
        "links": [{"rel": "self", "href": href}]
    }}))
}
