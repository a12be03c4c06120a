//! Identity and the admin check.
//!
//! Two modes ([`AuthMode`]):
//! - `noauth` (default), as OpenStack's noauth middleware: `X-Auth-Token: user:project`
//!   names the caller; a token without `:` (the CLI sends `notused`) or no token at all
//!   makes the caller a member of the URL's project; the user `admin` has the admin role.
//!   Only allowed on a loopback address unless explicitly made insecure (`server.rs`).
//! - `tokens:FILE`: static tokens from a TOML file (`[[token]]` tables with `token`,
//!   `user`, `project`, `roles`). A missing or unknown token is 401.
//! - `keystone`: Keystone tokens (`super::keystone`); the mode is built by
//!   `keystone::connect`, which needs the Keystone settings, not by [`AuthMode::from_flag`].
//!
//! In every mode the URL's project must be the caller's (403 otherwise), and admin-only
//! endpoints refuse non-admins with 401, as upstream does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aggregates::instance::Caller;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::error::ApiError;
use super::keystone::Keystone;
use super::AppState;

/// How callers are identified.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// `X-Auth-Token: user:project`.
    NoAuth,
    /// Static tokens: token → caller.
    Tokens(HashMap<String, Caller>),
    /// Keystone tokens, validated with Keystone and cached (`super::keystone`).
    Keystone(Arc<Keystone>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    user: String,
    project: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl AuthMode {
    /// Parses `--auth`: `noauth` or `tokens:FILE`.
    pub fn from_flag(flag: &str) -> anyhow::Result<AuthMode> {
        if flag == "noauth" {
            return Ok(AuthMode::NoAuth);
        }
        let Some(path) = flag.strip_prefix("tokens:") else {
            anyhow::bail!("--auth must be `noauth`, `tokens:FILE` or `keystone`, not `{flag}`");
        };
        AuthMode::load_tokens(Path::new(path))
    }

    /// Reads a token file.
    pub fn load_tokens(path: &Path) -> anyhow::Result<AuthMode> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
        let file: TokenFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for t in file.token {
            if t.token.is_empty() || t.user.is_empty() || t.project.is_empty() {
                anyhow::bail!(
                    "token file {}: empty token, user or project",
                    path.display()
                );
            }
            // Lower-cased as Keystone's roles are here: `Caller::is_admin` (the admin
            // views, other projects' resources) matches `admin` exactly, while the
            // policy's role checks ignore case; "Admin" must mean the same to both.
            let caller = Caller {
                user_id: t.user,
                project_id: t.project,
                roles: t.roles.iter().map(|r| r.to_lowercase()).collect(),
            };
            if tokens.insert(t.token, caller).is_some() {
                anyhow::bail!("token file {}: a token appears twice", path.display());
            }
        }
        Ok(AuthMode::Tokens(tokens))
    }

    /// Whether this mode trusts whatever the client says (noauth).
    pub fn is_noauth(&self) -> bool {
        matches!(self, AuthMode::NoAuth)
    }

    /// The caller of a request to `/v1.0/{url_project}/...`.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        url_project: &str,
    ) -> Result<Caller, ApiError> {
        let token = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let caller = match self {
            AuthMode::NoAuth => noauth_caller(token, url_project),
            AuthMode::Keystone(keystone) => keystone.caller(token).await?,
            AuthMode::Tokens(tokens) => {
                token.and_then(|t| tokens.get(t)).cloned().ok_or_else(|| {
                    ApiError::Unauthorized(
                        "The request you have made requires authentication.".into(),
                    )
                })?
            }
        };
        if caller.project_id != url_project {
            return Err(ApiError::Forbidden(format!(
                "User with tenant id {} cannot access this resource.",
                caller.project_id
            )));
        }
        Ok(caller)
    }
}

fn noauth_caller(token: Option<&str>, url_project: &str) -> Caller {
    let (user, project) = match token {
        Some(t) => match t.split_once(':') {
            Some((u, p)) if !p.is_empty() => (u.to_string(), p.to_string()),
            Some((u, _)) => (u.to_string(), url_project.to_string()),
            None => (t.to_string(), url_project.to_string()),
        },
        None => ("anonymous".to_string(), url_project.to_string()),
    };
    let roles = if user == "admin" {
        vec!["admin".to_string(), "member".to_string()]
    } else {
        vec!["member".to_string()]
    };
    Caller {
        user_id: user,
        project_id: project,
        roles,
    }
}

/// The authenticated caller of a request below `/v1.0/{project_id}/...`, checked
/// against the URL's project. Use it as a handler argument.
#[derive(Clone, Debug)]
pub struct Identity(pub Caller);

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Identified once already by the policy layer (`http::policy`).
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        let params = RawPathParams::from_request_parts(parts, &())
            .await
            .map_err(|_| ApiError::no_route())?;
        let project = params
            .iter()
            .find(|(k, _)| *k == "project_id")
            .map(|(_, v)| v.to_string())
            .ok_or_else(ApiError::no_route)?;
        state
            .auth
            .identify(&parts.headers, &project)
            .await
            .map(Identity)
    }
}

/// Admin-only endpoints refuse others with 401, as upstream does.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "User does not have admin privileges.".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert("x-auth-token", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn noauth_reads_user_and_project_from_the_token() {
        let c = AuthMode::NoAuth
            .identify(&headers(Some("alice:p1")), "p1")
            .await
            .unwrap();
        assert_eq!(
            (c.user_id.as_str(), c.project_id.as_str(), c.is_admin()),
            ("alice", "p1", false)
        );
        let c = AuthMode::NoAuth
            .identify(&headers(Some("notused")), "p9")
            .await
            .unwrap();
        assert_eq!(c.project_id, "p9");
        let c = AuthMode::NoAuth
            .identify(&headers(None), "p9")
            .await
            .unwrap();
        assert_eq!(c.user_id, "anonymous");
        assert!(AuthMode::NoAuth
            .identify(&headers(Some("admin:p1")), "p1")
            .await
            .unwrap()
            .is_admin());
        let e = AuthMode::NoAuth
            .identify(&headers(Some("alice:p1")), "p2")
            .await
            .unwrap_err();
        assert_eq!(e.status_code().as_u16(), 403);
    }

    #[tokio::test]
    async fn token_file_maps_tokens_to_callers_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\ntoken = \"t-alice\"\nuser = \"alice\"\nproject = \"p1\"\nroles = [\"member\"]\n\n\
             [[token]]\ntoken = \"t-root\"\nuser = \"ops\"\nproject = \"admin-p\"\nroles = [\"admin\"]\n",
        )
        .unwrap();
        let auth = AuthMode::from_flag(&format!("tokens:{}", path.display())).unwrap();
        let c = auth
            .identify(&headers(Some("t-alice")), "p1")
            .await
            .unwrap();
        assert_eq!(c.user_id, "alice");
        assert!(auth
            .identify(&headers(Some("t-root")), "admin-p")
            .await
            .unwrap()
            .is_admin());
        for bad in [None, Some("nope"), Some("alice:p1")] {
            let e = auth.identify(&headers(bad), "p1").await.unwrap_err();
            assert_eq!(e.status_code().as_u16(), 401, "{bad:?}");
        }
        assert_eq!(
            auth.identify(&headers(Some("t-alice")), "p2")
                .await
                .unwrap_err()
                .status_code()
                .as_u16(),
            403
        );
    }

    #[tokio::test]
    async fn token_file_roles_are_lower_cased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\ntoken = \"t-ops\"\nuser = \"ops\"\nproject = \"p1\"\nroles = [\"Admin\", \"READER\"]\n",
        )
        .unwrap();
        let auth = AuthMode::load_tokens(&path).unwrap();
        let c = auth.identify(&headers(Some("t-ops")), "p1").await.unwrap();
        assert_eq!(c.roles, ["admin", "reader"]);
        assert!(c.is_admin(), "\"Admin\" is the admin role");
    }

    #[test]
    fn bad_flags_and_files_are_refused() {
        assert!(AuthMode::from_flag("keystone").is_err());
        assert!(AuthMode::from_flag("tokens:/nonexistent/file").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[[token]]\ntoken = \"a\"\nuser = \"u\"\nproject = \"p\"\n[[token]]\ntoken = \"a\"\nuser = \"v\"\nproject = \"p\"\n").unwrap();
        assert!(AuthMode::load_tokens(&path).is_err(), "duplicate token");
    }
}
