//! Identity, as OpenStack's noauth middleware does it: `X-Auth-Token: user:project`
//! names the caller; without a token the caller is an anonymous member of the URL's
//! project; the user `admin` has the admin role. The next issue adds static tokens and
//! policy.

use aggregates::instance::Caller;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::AppState;

/// The authenticated caller of a request below `/v1.0/{project_id}/...`, checked
/// against the URL's project. Use it as a handler argument.
#[derive(Clone, Debug)]
pub struct Identity(pub Caller);

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, &())
            .await
            .map_err(|_| ApiError::no_route())?;
        let project = params
            .iter()
            .find(|(k, _)| *k == "project_id")
            .map(|(_, v)| v.to_string())
            .ok_or_else(ApiError::no_route)?;
        identify(&parts.headers, &project).map(Identity)
    }
}

/// The caller of a request to `/v1.0/{url_project}/...`.
pub fn identify(headers: &HeaderMap, url_project: &str) -> Result<Caller, ApiError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (user, project) = match token {
        // The OpenStack CLI in noauth mode sends a token without a project (`notused`):
        // the caller is then a member of the URL's project.
        Some(t) => match t.split_once(':') {
            Some((u, p)) if !p.is_empty() => (u.to_string(), p.to_string()),
            Some((u, _)) => (u.to_string(), url_project.to_string()),
            None => (t.to_string(), url_project.to_string()),
        },
        None => ("anonymous".to_string(), url_project.to_string()),
    };
    if project != url_project {
        return Err(ApiError::forbidden(format!(
            "User with tenant id {project} cannot access this resource."
        )));
    }
    let roles = if user == "admin" {
        vec!["admin".to_string(), "member".to_string()]
    } else {
        vec!["member".to_string()]
    };
    Ok(Caller {
        user_id: user,
        project_id: project,
        roles,
    })
}

/// Admin-only endpoints refuse others with 401, as upstream does.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "User does not have admin privileges.",
        ))
    }
}
