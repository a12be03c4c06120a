//! `--auth keystone`: callers are identified by Keystone tokens, as keystonemiddleware's
//! `auth_token` does for upstream Trove.
//!
//! Each request's `X-Auth-Token` is validated with `GET /v3/auth/tokens?nocatalog`
//! (`X-Subject-Token`), authenticated by a token of troved's own service user (which
//! needs Keystone's `service` role to validate others' tokens). The caller is the token's
//! user, project and roles (lower-cased, as oslo.policy compares them); a token without
//! a project scope is refused. Answers are cached ([`cache`]), so a revoked token keeps
//! working until its entry ends (at most `--token-cache-secs`).
//!
//! Failures: a missing, unknown, expired or revoked token is 401; Keystone unreachable,
//! slow, answering 5xx, or refusing troved's own service user is 503 with `Retry-After`:
//! a request is never let through, and never waits on Keystone for more than
//! [`VALIDATION_DEADLINE`].
//!
//! Must not: log or keep a user's token (only its SHA-256) or the service password.

mod cache;
mod client;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::instance::Caller;
use chrono::Utc;
use keystone_http::header::HeaderValue;
use tokio::sync::Mutex;

use self::cache::{Source, TokenCache, Validated};
use self::client::{Answer, Client, TokenInfo};
use super::error::ApiError;
use crate::config::{KeystoneSettings, ServeConfig};
use crate::metrics;

pub use self::cache::MAX_ENTRIES;

/// The longest one validation may take, a renewal of the service token and one retry
/// included; then the request is answered 503.
pub const VALIDATION_DEADLINE: Duration = Duration::from_secs(10);

/// The service token is renewed when less than this much of its life is left (or a
/// quarter of its lifetime, if that is less).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// After Keystone refused troved's own credentials, how long troved answers 503 without
/// asking again: retrying on every request could lock the service user out (Keystone's
/// `lockout_failure_attempts`).
const REFUSED_BACKOFF: Duration = Duration::from_secs(10);

/// `Retry-After` of a 503 caused by Keystone.
const RETRY_AFTER_SECS: u64 = 5;

/// Why Keystone could not answer what troved asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeystoneError {
    #[error("Keystone at {url} cannot be reached: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("Keystone answered HTTP {status} to a {what} request")]
    Status { what: &'static str, status: u16 },
    #[error("Keystone refused troved's service credentials (HTTP {0}): check TROVED_KEYSTONE_USER, TROVED_KEYSTONE_PASSWORD, TROVED_KEYSTONE_PROJECT and their domains")]
    CredentialsRefused(u16),
    #[error("Keystone URL {url} answered 404: check --keystone-url (it normally ends in /v3)")]
    UrlNotFound { url: String },
    #[error("Keystone refused to let troved's service user validate tokens (HTTP 403): give it the `service` role (openstack role add --user USER --project PROJECT service)")]
    NotAService,
    #[error("Keystone's answer to a {what} request could not be read: {cause}")]
    BadAnswer { what: &'static str, cause: String },
    #[error("the HTTP client for Keystone could not be built: {0}")]
    Client(String),
}

impl KeystoneError {
    /// The `outcome` label of `troved_keystone_calls_total`.
    fn outcome(&self) -> &'static str {
        match self {
            KeystoneError::Unreachable { .. } => "unreachable",
            KeystoneError::Status { .. } | KeystoneError::BadAnswer { .. } => "error",
            KeystoneError::CredentialsRefused(_) => "credentials_refused",
            KeystoneError::UrlNotFound { .. } => "not_found",
            KeystoneError::NotAService => "forbidden",
            KeystoneError::Client(_) => "error",
        }
    }
}

/// Token validation with Keystone: the client, the service token, the cache.
pub struct Keystone {
    client: Client,
    service: ServiceToken,
    cache: TokenCache,
}

impl std::fmt::Debug for Keystone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystone")
            .field("url", &self.client.url())
            .field("cache_secs", &self.cache.ttl().as_secs())
            .finish_non_exhaustive()
    }
}

/// The validator of `--auth keystone`: reads the settings, then asks Keystone for a
/// service token once. Keystone refusing the credentials stops the start (a typo would
/// otherwise turn every request into a 503); Keystone unreachable does not (it may be
/// starting too): troved serves, and answers 503 until Keystone answers.
pub async fn connect(cfg: &ServeConfig) -> Result<Arc<Keystone>, String> {
    let settings = cfg.keystone_settings()?;
    let keystone = Keystone::new(settings).map_err(|e| e.to_string())?;
    match keystone.service.token(&keystone.client).await {
        Ok(_) => tracing::info!(
            url = keystone.client.url(),
            "Keystone accepted troved's service user"
        ),
        Err(e @ (KeystoneError::CredentialsRefused(_) | KeystoneError::UrlNotFound { .. })) => {
            return Err(e.to_string())
        }
        Err(e) => tracing::warn!(
            error = %e,
            "Keystone not available at start; requests are answered 503 until it is"
        ),
    }
    Ok(Arc::new(keystone))
}

/// Adds keystonemiddleware's challenge, `WWW-Authenticate: Keystone uri="<url>"`, to
/// every 401 answer (RFC 9110 asks a 401 to say how to authenticate; the admin-only
/// refusals are 401s too and get it as well).
pub fn with_challenge(router: axum::Router, keystone: &Keystone) -> axum::Router {
    let Ok(challenge) =
        axum::http::HeaderValue::from_str(&format!("Keystone uri=\"{}\"", keystone.url()))
    else {
        return router;
    };
    router.layer(axum::middleware::map_response(
        move |mut resp: axum::response::Response| {
            let challenge = challenge.clone();
            async move {
                if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
                    resp.headers_mut()
                        .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
                }
                resp
            }
        },
    ))
}

impl Keystone {
    /// A validator for `settings` (no call to Keystone yet).
    pub fn new(settings: KeystoneSettings) -> Result<Keystone, KeystoneError> {
        let cache = TokenCache::new(Duration::from_secs(settings.cache_secs), MAX_ENTRIES);
        Ok(Keystone {
            client: Client::new(settings)?,
            service: ServiceToken::default(),
            cache,
        })
    }

    /// The identity API's URL (for `WWW-Authenticate`).
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// The caller `token` stands for: 401 if it is missing or not valid, 503 if
    /// Keystone cannot tell.
    pub async fn caller(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(unauthorized)?;
        let (outcome, source) = self
            .cache
            .get_or_validate(cache::key(token), || self.validate_in_time(token))
            .await;
        metrics::global().token_cache(source == Source::Hit);
        match outcome {
            Ok(Validated {
                caller: Some(caller),
                ..
            }) => Ok(caller),
            Ok(_) => Err(unauthorized()),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn validate_in_time(&self, token: &str) -> Result<Validated, KeystoneError> {
        tokio::time::timeout(VALIDATION_DEADLINE, self.validate(token))
            .await
            .unwrap_or_else(|_| {
                Err(KeystoneError::Unreachable {
                    url: self.client.url().to_string(),
                    cause: format!("no answer within {VALIDATION_DEADLINE:?}"),
                })
            })
    }

    /// Asks Keystone; a service token Keystone no longer accepts is renewed once.
    async fn validate(&self, token: &str) -> Result<Validated, KeystoneError> {
        let service = self.service.token(&self.client).await?;
        let answer = match self.client.validate(&service, token).await? {
            Answer::ServiceTokenRejected => {
                self.service.forget(&service).await;
                let renewed = self.service.token(&self.client).await?;
                self.client.validate(&renewed, token).await?
            }
            answer => answer,
        };
        match answer {
            Answer::Valid(info) => Ok(self.validated(info)),
            Answer::Invalid => Ok(Validated {
                caller: None,
                until: Instant::now() + self.cache.ttl(),
            }),
            Answer::ServiceTokenRejected => Err(KeystoneError::Status {
                what: "token validation",
                status: 401,
            }),
        }
    }

    /// The caller of a valid token, believed until the cache time or the token's
    /// expiry, whichever comes first.
    fn validated(&self, info: TokenInfo) -> Validated {
        let left = (info.expires_at - Utc::now()).to_std().unwrap_or_default();
        let until = Instant::now() + left.min(self.cache.ttl());
        let caller = info.project.map(|project| Caller {
            user_id: info.user.id,
            project_id: project.id,
            roles: info
                .roles
                .into_iter()
                .map(|r| r.name.to_lowercase())
                .collect(),
        });
        Validated { caller, until }
    }
}

/// troved's own token, renewed before it expires. The lock is held while a new one is
/// asked for, so concurrent requests wait for one renewal instead of each asking.
#[derive(Default)]
struct ServiceToken {
    current: Mutex<Option<Current>>,
    /// Keystone's last refusal of troved's credentials (or URL), and until when no new
    /// token is asked for ([`REFUSED_BACKOFF`]).
    refused: Mutex<Option<(Instant, KeystoneError)>>,
}

struct Current {
    token: Arc<HeaderValue>,
    renew_at: Instant,
}

impl ServiceToken {
    async fn token(&self, client: &Client) -> Result<Arc<HeaderValue>, KeystoneError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let mut refused = self.refused.lock().await;
        if let Some((until, e)) = refused.as_ref().filter(|(u, _)| Instant::now() < *u) {
            tracing::debug!(left = ?until.saturating_duration_since(Instant::now()), "service credentials refused recently: not asking Keystone");
            return Err(e.clone());
        }
        let issued = match client.authenticate().await {
            Ok(issued) => issued,
            Err(e @ (KeystoneError::CredentialsRefused(_) | KeystoneError::UrlNotFound { .. })) => {
                if refused.is_none() {
                    tracing::error!(error = %e, backoff = ?REFUSED_BACKOFF, "Keystone refuses troved's service user: requests are answered 503, and Keystone is asked again at most once per backoff");
                }
                *refused = Some((Instant::now() + REFUSED_BACKOFF, e.clone()));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if refused.take().is_some() {
            tracing::info!("Keystone accepts troved's service user again");
        }
        let lifetime = (issued.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        let margin = RENEW_MARGIN.min(lifetime / 4);
        let token = Arc::new(issued.token);
        *current = Some(Current {
            token: token.clone(),
            renew_at: Instant::now() + (lifetime - margin),
        });
        Ok(token)
    }

    /// Drops `used` if it still is the current token (Keystone refused it).
    async fn forget(&self, used: &Arc<HeaderValue>) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.token, used))
        {
            *current = None;
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized("The request you have made requires authentication.".into())
}

fn unavailable(e: &KeystoneError) -> ApiError {
    if matches!(e, KeystoneError::NotAService) {
        // An operator's mistake, not an outage: said at error level on each failure.
        tracing::error!(error = %e, "cannot validate tokens");
    }
    ApiError::Unavailable {
        message: "The identity service is temporarily unavailable; retry later.".into(),
        retry_after: RETRY_AFTER_SECS,
        cause: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::Password;

    /// A stand-in for Keystone answering every request with `status` and no body; the
    /// number of `POST /auth/tokens` it was sent.
    async fn fake_keystone(status: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v3", listener.local_addr().unwrap());
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = posts.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if head.starts_with(b"POST /v3/auth/tokens") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, posts)
    }

    fn keystone(url: &str) -> Keystone {
        Keystone::new(KeystoneSettings {
            url: url.to_string(),
            user: "troved".into(),
            password: Password::for_tests("changed-since"),
            project: "service".into(),
            user_domain: "Default".into(),
            project_domain: "Default".into(),
            cache_secs: 0,
        })
        .unwrap()
    }

    /// Refused service credentials: 503, and Keystone is not asked again on every
    /// request (which could lock the service user out).
    #[tokio::test]
    async fn refused_service_credentials_back_off() {
        let (url, posts) = fake_keystone("401 Unauthorized").await;
        let ks = keystone(&url);
        for token in ["t1", "t2", "t3", "t1"] {
            let e = ks.caller(Some(token)).await.unwrap_err();
            assert_eq!(e.status_code().as_u16(), 503, "{token}");
        }
        assert_eq!(posts.load(Ordering::SeqCst), 1);
    }

    /// A URL without `/v3` (Keystone's root answers 404): said as such.
    #[tokio::test]
    async fn a_404_names_the_keystone_url() {
        let (url, _) = fake_keystone("404 Not Found").await;
        let ks = keystone(&url);
        let e = ks.service.token(&ks.client).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("answered 404"), "{text}");
        assert!(text.contains("check --keystone-url"), "{text}");
        assert!(!text.contains("refused"), "{text}");
    }
}
