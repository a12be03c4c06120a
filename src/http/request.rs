//! What handlers read off a request besides its body: query parameters, paging
//! parameters, the `next` link, and the context views build links with. One copy for
//! every resource, so paging errors and links look the same everywhere.

use aggregates::instance::Caller;
use axum::extract::Query;
use axum::http::HeaderMap;
use chrono::Utc;
use projections::views::ViewCtx;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::AppState;

/// The query string as ordered pairs (order matters for `next` links).
pub type QueryPairs = Query<Vec<(String, String)>>;

/// The last value of a query parameter (upstream's webob `GET.get`).
pub fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// oslo's `bool_from_string`: only these spellings are true.
fn truthy(v: Option<&str>) -> bool {
    v.map(|s| s.trim().to_ascii_lowercase())
        .is_some_and(|s| matches!(s.as_str(), "1" | "t" | "true" | "on" | "y" | "yes"))
}

/// What a `GET /backups` lists beyond the caller's project: a non-empty `project_id`
/// (Python's truthiness makes an empty one absent, upstream) or a true `all_projects`,
/// each by its last value if repeated (webob's `GET.get`, [`param`]). The one reading of
/// the query for both the policy layer (`http::policy`) and the handler
/// (`http::backups`), so that the rule checked is the rule of what is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListScope<'q> {
    pub project: Option<&'q str>,
    pub all_projects: bool,
}

impl<'q> ListScope<'q> {
    pub fn of(q: &'q [(String, String)]) -> ListScope<'q> {
        ListScope {
            project: param(q, "project_id").filter(|p| !p.is_empty()),
            all_projects: truthy(param(q, "all_projects")),
        }
    }

    /// Whether the list needs `backup:index:all_projects` (upstream's
    /// `BackupController.index`: `if project_id or all_projects`).
    pub fn needs_all_projects(&self) -> bool {
        self.project.is_some() || self.all_projects
    }
}

/// `limit`: `default` when absent, capped at `cap` when given. Upstream answers 500 for
/// a non-integer or non-positive limit; we answer 400 (spec §3.4 recommendation).
pub fn limit(q: &[(String, String)], default: usize, cap: Option<usize>) -> ApiResult<usize> {
    match param(q, "limit") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n > 0 => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Ok(cap.map_or(n, |c| n.min(c)))
            }
            _ => Err(ApiError::BadRequest(format!(
                "Invalid limit '{v}': must be a positive integer."
            ))),
        },
    }
}

/// An offset `marker` (paging scheme B): 0 when absent; 400 unless a non-negative
/// integer (upstream: 500).
pub fn offset(q: &[(String, String)]) -> ApiResult<usize> {
    match param(q, "marker") {
        None => Ok(0),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Invalid marker '{v}': must be a non-negative integer."
            ))
        }),
    }
}

/// `https://<Host>` (spec §3.3: always https), or the configured public URL.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // Not `format!`: this runs on every read and the formatting machinery cost more
    // than the rest of the function.
    let mut url = String::with_capacity("https://".len() + host.len());
    url.push_str("https://");
    url.push_str(host);
    url
}

/// The links context of a request (spec §3.3): the base URL, the caller's project and
/// admin flag, the clock and the heartbeat rule.
pub fn view_ctx(state: &AppState, headers: &HeaderMap, caller: &Caller) -> ViewCtx {
    ViewCtx {
        base_url: base_url(state, headers),
        api_version: "1.0".into(),
        caller_project: caller.project_id.clone(),
        caller_is_admin: caller.is_admin(),
        now: Utc::now(),
        heartbeat_expiry: state.heartbeat_expiry,
        heartbeats: state.heartbeats.clone(),
        running_backups: state.backups.running(),
    }
}

/// The `next` link: the request URL on `base`, with `marker` replaced in place (or
/// appended) and the other parameters kept in order (spec §3.4).
pub fn next_link(base: &str, path: &str, q: &[(String, String)], marker: &str) -> Value {
    json!([{"rel": "next", "href": next_href(base, path, q, marker)}])
}

/// [`next_link`] serialized, without building the value (the list endpoints render
/// their bodies to bytes): `[{"href":"…","rel":"next"}]`.
pub fn write_next_link(
    out: &mut Vec<u8>,
    base: &str,
    path: &str,
    q: &[(String, String)],
    marker: &str,
) {
    out.extend_from_slice(b"[{\"href\":");
    // Serializing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, &next_href(base, path, q, marker));
    out.extend_from_slice(b",\"rel\":\"next\"}]");
}

/// The `href` of the `next` link.
fn next_href(base: &str, path: &str, q: &[(String, String)], marker: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(q.len() + 1);
    let mut replaced = false;
    for (k, v) in q {
        if k != "marker" {
            pairs.push((k, v));
        } else if !replaced {
            pairs.push((k, marker));
            replaced = true;
        }
    }
    if !replaced {
        pairs.push(("marker", marker));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{base}{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn truthy_is_oslo_bool_from_string() {
        for t in ["1", "true", "True", "T", "on", "yes", " Y "] {
            assert!(truthy(Some(t)), "{t}");
        }
        for f in ["0", "false", "False", "no", "", "2", "enabled"] {
            assert!(!truthy(Some(f)), "{f}");
        }
        assert!(!truthy(None));
    }

    #[test]
    fn limit_is_positive_defaulted_and_capped() {
        assert_eq!(limit(&q(&[]), 20, Some(20)).unwrap(), 20);
        assert_eq!(limit(&q(&[("limit", "7")]), 20, Some(20)).unwrap(), 7);
        assert_eq!(limit(&q(&[("limit", "99")]), 20, Some(20)).unwrap(), 20);
        assert_eq!(limit(&q(&[("limit", "99")]), 20, None).unwrap(), 99);
        for bad in ["0", "-1", "x", ""] {
            assert_eq!(
                limit(&q(&[("limit", bad)]), 20, None)
                    .unwrap_err()
                    .status_code(),
                400
            );
        }
    }

    #[test]
    fn offset_is_a_non_negative_integer() {
        assert_eq!(offset(&q(&[])).unwrap(), 0);
        assert_eq!(offset(&q(&[("marker", "40")])).unwrap(), 40);
        assert_eq!(
            offset(&q(&[("marker", "-1")])).unwrap_err().status_code(),
            400
        );
    }

    #[test]
    fn next_link_replaces_the_marker_in_place_and_keeps_the_rest() {
        let link = next_link(
            "https://h",
            "/v1.0/p/instances",
            &q(&[("marker", "a"), ("limit", "2")]),
            "b",
        );
        assert_eq!(
            link[0]["href"],
            "https://h/v1.0/p/instances?marker=b&limit=2"
        );
        let link = next_link("https://h", "/x", &q(&[("limit", "2")]), "b");
        assert_eq!(link[0]["href"], "https://h/x?limit=2&marker=b");
    }

    #[test]
    fn the_written_next_link_is_the_serialized_value() {
        for (base, pairs) in [
            (
                "https://h",
                q(&[("marker", "a"), ("limit", "2"), ("marker", "c")]),
            ),
            (
                "https://we\"ird",
                q(&[("x", "a b&c=\u{1}é"), ("limit", "2")]),
            ),
            ("https://h:1", q(&[])),
        ] {
            let mut out = Vec::new();
            write_next_link(&mut out, base, "/v1.0/p/instances", &pairs, "m\"k");
            let value = next_link(base, "/v1.0/p/instances", &pairs, "m\"k");
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }
}
