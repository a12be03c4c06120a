//! A corrupt event in the log, end to end (issue #12, defect 4; docs/operations.md, "An
//! unreadable event"): events are edited in `events.db` while the server is stopped (as
//! a bad disk, a bad restore or a hand edit would), then the real binary must
//! - answer PUT, DELETE and show of the affected instance with a specific error that
//!   names the stream, the position and `troved audit verify` (never the generic 500);
//! - show the instance's history (HTTP and `troved history`) with the readable events
//!   and the unreadable one marked;
//! - not make an instance whose `InstanceCreated` is broken silently vanish: show names
//!   the damage instead of 404;
//! - make the anomaly visible in `/metrics` and as an ERROR at start, whether or not the
//!   start used the read-model snapshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Serve;

/// `troved serve` with no simulated latency and its stderr in `log` (for the ERROR
/// lines).
async fn start(data_dir: &Path, log: PathBuf, extra: &[&str]) -> Serve {
    let mut args = vec!["--sim-latency-ms", "0"];
    args.extend_from_slice(extra);
    Serve::start_logged(data_dir, log, &args).await
}

async fn call(s: &Serve, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = s.req(method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    common::send(rb).await
}

async fn metrics(s: &Serve) -> String {
    s.http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

async fn create_active(s: &Serve, name: &str) -> String {
    let (status, body) = call(
        s,
        reqwest::Method::POST,
        "/instances",
        Some(common::create_body(name)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["instance"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = call(s, reqwest::Method::GET, &format!("/instances/{id}"), None).await;
        if body["instance"]["status"] == "ACTIVE" {
            return id;
        }
        assert!(Instant::now() < deadline, "not ACTIVE: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces the body of the `event_type` event of `stream`; returns its position.
fn corrupt(db: &Path, stream: &str, event_type: &str, data: &[u8]) -> u64 {
    let conn = rusqlite::Connection::open(db).expect("open events.db");
    let position: i64 = conn
        .query_row(
            "SELECT position FROM events WHERE stream = ?1 AND event_type = ?2",
            (stream, event_type),
            |r| r.get(0),
        )
        .expect("the event to corrupt");
    conn.execute(
        "UPDATE events SET data = ?1 WHERE position = ?2",
        (data, position),
    )
    .expect("corrupt it");
    position as u64
}

/// A 500 in Trove's format that names the damage (not the generic message).
fn assert_names_damage(status: u16, body: &Value, stream: &str, position: u64, what: &str) {
    assert_eq!(status, 500, "{what}: {body}");
    let message = body["instanceFault"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not Trove's error format: {body}"));
    assert!(
        message.contains(stream)
            && message.contains(&format!("position {position}"))
            && message.contains("troved audit verify"),
        "{what}: unspecific message: {message}"
    );
}

fn unreadable_gauge(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("troved_unreadable_events "))
        .and_then(|v| v.trim().parse().ok())
}

async fn check_damage_is_visible(
    s: &Serve,
    a: &str,
    a_position: u64,
    b: &str,
    b_position: u64,
    how: &str,
) {
    let a_stream = format!("instance-{a}");
    let b_stream = format!("instance-{b}");
    let (status, body) = call(
        s,
        reqwest::Method::PUT,
        &format!("/instances/{a}"),
        Some(json!({"instance": {"name": "again"}})),
    )
    .await;
    assert_names_damage(status, &body, &a_stream, a_position, "PUT");
    let (status, body) = call(s, reqwest::Method::DELETE, &format!("/instances/{a}"), None).await;
    assert_names_damage(status, &body, &a_stream, a_position, "DELETE");

    // Show reads the read models: after a start from a snapshot, the events before it
    // are checked in the background; wait (bounded) until both are found.
    let deadline = Instant::now() + Duration::from_secs(20);
    while unreadable_gauge(&metrics(s).await) != Some(2) {
        let metrics = metrics(s).await;
        let gauge = metrics
            .lines()
            .find(|l| l.contains("unreadable"))
            .unwrap_or("no troved_unreadable_events");
        assert!(Instant::now() < deadline, "metric ({how}): {gauge}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call(s, reqwest::Method::GET, &format!("/instances/{a}"), None).await;
    assert_names_damage(status, &body, &a_stream, a_position, "show");
    // The broken create: not a silent 404.
    let (status, body) = call(s, reqwest::Method::GET, &format!("/instances/{b}"), None).await;
    assert_names_damage(status, &body, &b_stream, b_position, "show (broken create)");
    let (status, body) = call(s, reqwest::Method::DELETE, &format!("/instances/{b}"), None).await;
    assert_names_damage(
        status,
        &body,
        &b_stream,
        b_position,
        "DELETE (broken create)",
    );

    // History: every readable event, and the unreadable one marked in its place.
    let (status, body) = call(
        s,
        reqwest::Method::GET,
        &format!("/instances/{a}/history"),
        None,
    )
    .await;
    assert_eq!(status, 200, "history: {body}");
    let entries = body["history"].as_array().expect("entries");
    assert!(entries.len() >= 5, "history lost events: {body}");
    let bad: Vec<&Value> = entries
        .iter()
        .filter(|e| e["unreadable"].is_string())
        .collect();
    assert_eq!(bad.len(), 1, "{body}");
    assert_eq!(bad[0]["position"], a_position);
    assert!(entries.iter().any(|e| e["event_type"] == "InstanceCreated"));
    let (status, body) = call(
        s,
        reqwest::Method::GET,
        &format!("/instances/{b}/history"),
        None,
    )
    .await;
    assert_eq!(status, 200, "history of the broken create: {body}");
    assert!(body["history"][0]["unreadable"].is_string(), "{body}");

    let log = s.log();
    let start_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("troved audit verify"))
        .collect();
    assert!(
        start_errors.iter().any(|l| l.contains(&a_stream))
            && start_errors.iter().any(|l| l.contains(&b_stream)),
        "no ERROR naming both streams at start ({how}):\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_events_are_named_in_errors_history_metrics_and_the_start_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let s = start(&data, log("first"), &[]).await;
    let a = create_active(&s, "a").await;
    let (status, body) = call(
        &s,
        reqwest::Method::PUT,
        &format!("/instances/{a}"),
        Some(json!({"instance": {"name": "a2"}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let b = create_active(&s, "b").await;
    s.terminate();
    assert!(data.join("read-models.snapshot").is_file());

    let db = data.join("events.db");
    let a_position = corrupt(
        &db,
        &format!("instance-{a}"),
        "InstanceRenamed",
        b"{not json",
    );
    let b_position = corrupt(
        &db,
        &format!("instance-{b}"),
        "InstanceCreated",
        br#"{"unexpected": true}"#,
    );

    // With the snapshot written at the clean shutdown (it predates the edit, and the
    // events it covers are not replayed)...
    let s = start(&data, log("snapshot"), &[]).await;
    check_damage_is_visible(&s, &a, a_position, &b, b_position, "from the snapshot").await;
    s.terminate();
    // ... and replaying the whole log.
    let s = start(&data, log("replay"), &["--no-snapshot"]).await;
    check_damage_is_visible(&s, &a, a_position, &b, b_position, "from the log").await;
    s.terminate();

    // `troved history` shows the readable events and marks the unreadable one.
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["history", &a, "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "error")
        .output()
        .expect("troved history");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "troved history failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("InstanceCreated"), "{stdout}");
    let marked = stdout
        .lines()
        .find(|l| l.starts_with(&a_position.to_string()))
        .unwrap_or_else(|| panic!("no row for position {a_position}:\n{stdout}"));
    assert!(
        marked.contains("UNREADABLE") && marked.contains("troved audit verify"),
        "{marked}"
    );
}
