//! The two calls troved makes to Keystone's identity API v3, and nothing else: issue a
//! service token (`POST /auth/tokens`, password method, project scope) and validate a
//! user's token with it (`GET /auth/tokens?nocatalog`). Each call has a connect timeout
//! and a total timeout, so no request of troved waits on Keystone for longer.
//!
//! Must not: cache, retry, or log a token or the password (a transport error names the
//! URL only; tokens travel in headers, which errors do not repeat).

use std::time::Duration;

use chrono::{DateTime, Utc};
use keystone_http::{header::HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::KeystoneError;
use crate::config::KeystoneSettings;
use crate::metrics;

/// A connection to Keystone that is not up after this long counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole call (connect, send, answer) that takes longer counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Keystone's HTTP client, with the service user's credentials.
pub(super) struct Client {
    http: keystone_http::Client,
    settings: KeystoneSettings,
}

/// A token Keystone issued to troved's service user.
pub(super) struct Issued {
    /// The token (Keystone's `X-Subject-Token` answer header).
    pub token: HeaderValue,
    pub expires_at: DateTime<Utc>,
}

/// What Keystone said of a user's token.
pub(super) enum Answer {
    Valid(TokenInfo),
    /// 404 (or 400): unknown, expired, revoked or malformed.
    Invalid,
    /// 401: the service token itself is no longer accepted (revoked, expired early).
    ServiceTokenRejected,
}

/// The parts of a validated token troved uses.
#[derive(Debug, Deserialize)]
pub(super) struct TokenInfo {
    pub user: Named,
    /// Absent for a domain- or system-scoped token.
    pub project: Option<Named>,
    #[serde(default)]
    pub roles: Vec<Role>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Named {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Role {
    pub name: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfoOrExpiry,
}

#[derive(Deserialize)]
struct TokenInfoOrExpiry {
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct ValidatedBody {
    token: TokenInfo,
}

impl Client {
    pub fn new(settings: KeystoneSettings) -> Result<Client, KeystoneError> {
        let http = keystone_http::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| KeystoneError::Client(e.to_string()))?;
        Ok(Client { http, settings })
    }

    /// The identity API's base URL.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// `POST /auth/tokens`: a project-scoped token for troved's service user.
    pub async fn authenticate(&self) -> Result<Issued, KeystoneError> {
        let s = &self.settings;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.user,
                "domain": {"name": s.user_domain},
                "password": s.password.expose(),
            }}},
            "scope": {"project": {"name": s.project, "domain": {"name": s.project_domain}}},
        }});
        let sent = self
            .http
            .post(format!("{}/auth/tokens?nocatalog", s.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let result = self.issued(sent).await;
        count("authenticate", &result.as_ref().map(|_| "ok"));
        result
    }

    async fn issued(
        &self,
        sent: Result<keystone_http::Response, keystone_http::Error>,
    ) -> Result<Issued, KeystoneError> {
        let resp = sent.map_err(|e| self.unreachable(&e))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(KeystoneError::CredentialsRefused(resp.status().as_u16()))
            }
            // Keystone answers 401 to wrong credentials; a 404 is a URL that has no
            // `/auth/tokens` (typically one without `/v3`).
            StatusCode::NOT_FOUND => {
                return Err(KeystoneError::UrlNotFound {
                    url: self.settings.url.clone(),
                })
            }
            s => return Err(status("authentication", s)),
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .cloned()
            .ok_or_else(|| bad_answer("authentication", "no X-Subject-Token header"))?;
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let body: TokenBody = serde_json::from_slice(&bytes)
            .map_err(|e| bad_answer("authentication", &e.to_string()))?;
        Ok(Issued {
            token,
            expires_at: body.token.expires_at,
        })
    }

    /// `GET /auth/tokens?nocatalog`: what Keystone says of `subject`.
    pub async fn validate(
        &self,
        service: &HeaderValue,
        subject: &str,
    ) -> Result<Answer, KeystoneError> {
        let Ok(subject) = HeaderValue::from_str(subject) else {
            return Ok(Answer::Invalid);
        };
        let sent = self
            .http
            .get(format!("{}/auth/tokens?nocatalog", self.settings.url))
            .header("x-auth-token", service)
            .header("x-subject-token", subject)
            .send()
            .await;
        let result = self.answer(sent).await;
        let outcome = result.as_ref().map(|a| match a {
            Answer::Valid(_) => "valid",
            Answer::Invalid => "invalid",
            Answer::ServiceTokenRejected => "service_token_rejected",
        });
        count("validate", &outcome);
        result
    }

    async fn answer(
        &self,
        sent: Result<keystone_http::Response, keystone_http::Error>,
    ) -> Result<Answer, KeystoneError> {
        let resp = sent.map_err(|e| self.unreachable(&e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => return Ok(Answer::Invalid),
            StatusCode::UNAUTHORIZED => return Ok(Answer::ServiceTokenRejected),
            StatusCode::FORBIDDEN => return Err(KeystoneError::NotAService),
            s => return Err(status("token validation", s)),
        }
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let body: ValidatedBody = serde_json::from_slice(&bytes)
            .map_err(|e| bad_answer("token validation", &e.to_string()))?;
        Ok(Answer::Valid(body.token))
    }

    fn unreachable(&self, e: &keystone_http::Error) -> KeystoneError {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        KeystoneError::Unreachable {
            url: self.settings.url.clone(),
            cause: format!("{what}: {}", error_chain(e)),
        }
    }
}

/// An error and its sources on one line (reqwest's own message is only "error sending
/// request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn status(what: &'static str, s: StatusCode) -> KeystoneError {
    KeystoneError::Status {
        what,
        status: s.as_u16(),
    }
}

fn bad_answer(what: &'static str, cause: &str) -> KeystoneError {
    KeystoneError::BadAnswer {
        what,
        cause: cause.to_string(),
    }
}

/// Counts one call in `troved_keystone_calls_total`.
fn count(kind: &'static str, outcome: &Result<&'static str, &KeystoneError>) {
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => e.outcome(),
    };
    metrics::global().keystone_call(kind, outcome);
}
