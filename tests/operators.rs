//! Operator tooling, black-box: `GET /metrics`, `GET /mgmt/projections`, and the
//! `troved projections rebuild|verify` commands against a log written by the real server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{create_body, TestServer};
use serde_json::json;

/// Every family `/metrics` must export.
const FAMILIES: [(&str, &str); 9] = [
    ("troved_events_appended_total", "counter"),
    ("troved_commands_total", "counter"),
    ("troved_saga_steps_total", "counter"),
    ("troved_projection_events_total", "counter"),
    ("troved_projection_anomalies_total", "counter"),
    ("troved_projection_position", "gauge"),
    ("troved_store_head_position", "gauge"),
    ("troved_projection_lag_events", "gauge"),
    ("troved_http_request_duration_seconds", "histogram"),
];

/// A scrape: series (`name{labels}` as written) → value. Checks every line's syntax.
async fn scrape(s: &TestServer) -> BTreeMap<String, f64> {
    let resp = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.expect("body");
    for (family, kind) in FAMILIES {
        assert!(
            text.contains(&format!("\n# TYPE {family} {kind}\n")),
            "family {family} ({kind}) missing:\n{text}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "HELP {family}");
    }
    let mut series = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line:?}"
        );
        if name_end < key.len() {
            assert!(key.ends_with('}'), "labels of {line:?}");
        }
        series.insert(key.to_string(), value);
    }
    series
}

fn value(series: &BTreeMap<String, f64>, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

/// The sum of every series of `name` whose labels contain all of `labels`.
fn sum(series: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    series
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn metrics_count_events_commands_saga_steps_and_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let before = scrape(&s).await;

    let (status, _) = s.get("alice", "p1", "/instances").await;
    assert_eq!(status, 200);
    let created = s.create("alice", "p1", "metered").await;
    let id = created["id"].as_str().expect("id").to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    // A refusal: no such configuration group.
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &format!("/instances/{id}"),
            &json!({"instance": {"configuration": "6f0b1f0e-2d55-4c1e-9d0a-53a4a8f0c001"}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // No route.
    let (status, _) = s.get("alice", "p1", "/nothing-here").await;
    assert_eq!(status, 404);

    let after = scrape(&s).await;
    let moved =
        |name: &str, labels: &[&str]| sum(&after, name, labels) - sum(&before, name, labels);

    // Create + every provisioning report: at least created, volume, server, completed.
    assert!(
        moved("troved_events_appended_total", &["category=\"instance\""]) >= 4.0,
        "{after:#?}"
    );
    assert_eq!(
        moved(
            "troved_commands_total",
            &["command=\"CreateInstance\"", "outcome=\"ok\""]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "troved_commands_total",
            &[
                "command=\"AttachConfiguration\"",
                "outcome=\"refused\"",
                "fault=\"itemNotFound\""
            ]
        ),
        1.0,
        "{after:#?}"
    );
    assert!(moved("troved_saga_steps_total", &["outcome=\"recorded\""]) >= 3.0);
    assert!(
        moved(
            "troved_saga_steps_total",
            &["step=\"create_server\"", "outcome=\"recorded\""]
        ) >= 1.0
    );
    assert!(moved("troved_projection_events_total", &[]) >= 4.0);
    assert_eq!(sum(&after, "troved_projection_anomalies_total", &[]), 0.0);

    // Gauges: the head is at least what was applied, and the lag is the difference.
    let position = value(&after, "troved_projection_position");
    let head = value(&after, "troved_store_head_position");
    assert!(position >= 4.0 && head >= position, "{position} {head}");
    assert_eq!(
        value(&after, "troved_projection_lag_events"),
        head - position
    );

    // Latency by route template, not by path; a request no route matched is `unmatched`.
    let create = "method=\"POST\",route=\"/v1.0/{project_id}/instances\",status=\"2xx\"";
    assert_eq!(
        value(
            &after,
            &format!("troved_http_request_duration_seconds_count{{{create}}}")
        ),
        1.0,
        "{after:#?}"
    );
    assert_eq!(
        value(
            &after,
            &format!("troved_http_request_duration_seconds_bucket{{{create},le=\"+Inf\"}}")
        ),
        1.0
    );
    assert!(
        moved(
            "troved_http_request_duration_seconds_count",
            &[
                "route=\"/v1.0/{project_id}/instances/{id}\"",
                "status=\"2xx\""
            ]
        ) >= 1.0
    );
    assert!(
        moved(
            "troved_http_request_duration_seconds_count",
            &["route=\"unmatched\"", "status=\"4xx\""]
        ) >= 1.0
    );
    assert!(
        !after.keys().any(|k| k.contains(&id)),
        "an instance id leaked into a label"
    );
}

#[tokio::test]
async fn projection_positions_are_shown_to_admins_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    s.create("alice", "p1", "one").await;

    let (status, body) = s.get("alice", "p1", "/mgmt/projections").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["unauthorized"]["code"], 401);

    let (status, body) = s.get("admin", "p1", "/mgmt/projections").await;
    assert_eq!(status, 200, "{body}");
    let p = &body["projections"];
    let (position, head, lag) = (
        p["position"].as_u64().expect("position"),
        p["head"].as_u64().expect("head"),
        p["lag"].as_u64().expect("lag"),
    );
    // Read your writes: the create's event is applied before its 200.
    assert!(position >= 1 && head >= position, "{body}");
    assert_eq!(lag, head - position);
    for model in ["records", "lists", "mgmt", "replicas", "quota"] {
        let at = p["models"][model].as_u64().expect(model);
        assert!(at >= position && at <= head, "{model}: {body}");
    }
    assert_eq!(p["instances"], 1);
    assert_eq!(p["backups"], 0);
}

/// Runs `troved projections <what> --data-dir <dir>`.
fn projections(what: &str, data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["projections", what, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run troved projections")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The store's files, byte for byte (the WAL holds the last commits after a SIGKILL).
fn store_files(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["events.db", "events.db-wal"]
        .iter()
        .filter_map(|f| {
            std::fs::read(data_dir.join(f))
                .ok()
                .map(|b| (f.to_string(), b))
        })
        .collect()
}

/// Writes a log with some history: instances in two projects, renames, a configuration
/// group attached, a deletion carried out; then stops the server.
async fn write_history(data_dir: &Path) {
    let mut s = TestServer::start(data_dir, &["--sim-latency-ms", "0"]).await;
    let a = s.create("alice", "p1", "a").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let b = s.create("alice", "p1", "b").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let c = s.create("bob", "p2", "c").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    for id in [&a, &b, &c] {
        let project = if *id == c { "p2" } else { "p1" };
        s.wait_for("alice", project, id, |i| i["status"] == "ACTIVE")
            .await;
    }
    for name in ["a-2", "a-3"] {
        let (status, body) = s
            .patch(
                "alice",
                "p1",
                &format!("/instances/{a}"),
                &json!({"instance": {"name": name}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, group) = s
        .post(
            "alice",
            "p1",
            "/configurations",
            &json!({"configuration": {
                "name": "tuned",
                "values": {"connect_timeout": 20},
                "datastore": {"type": "mysql", "version": "8.0"}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().expect("group id");
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &format!("/instances/{a}"),
            &json!({"instance": {"configuration": gid}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = s.delete("alice", "p1", &format!("/instances/{b}")).await;
    assert_eq!(status, 202, "{body}");
    s.wait_for("alice", "p1", &b, |i| i.is_null()).await;
    let (status, body) = s.post("bob", "p2", "/instances", &create_body("d")).await;
    assert_eq!(status, 200, "{body}");
    // Let the saga runner finish what it started, then stop without ceremony: a
    // crash-stop leaves the last commits in the WAL, which the commands must read too.
    let d = body["instance"]["id"].as_str().expect("id").to_string();
    s.wait_for("bob", "p2", &d, |i| i["status"] == "ACTIVE")
        .await;
    s.kill();
}

#[tokio::test]
async fn rebuild_and_verify_replay_a_stopped_servers_log_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    write_history(&data).await;
    let files = store_files(&data);
    assert!(!files.is_empty());

    let out = projections("rebuild", &data);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "rebuild failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("rebuilt every read model from"), "{stdout}");
    assert!(
        stdout.contains("instances       4 (3 listed in 2 project(s), 1 deleted)"),
        "{stdout}"
    );
    assert!(stdout.contains("configurations  1 (1 live)"), "{stdout}");
    assert!(
        stdout.contains("skipped         0 undecodable event(s), 0 after a revision gap"),
        "{stdout}"
    );
    assert!(stdout.contains("events/s"), "{stdout}");
    // Not a terminal: plain progress lines, the last at 100%.
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("rebuild: position "))
        .unwrap_or_else(|| panic!("no progress line:\n{stderr}"));
    assert!(last.contains("(100%)"), "{last}");

    let out = projections("verify", &data);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "verify failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("read models match an independent fold of the log"),
        "{stdout}"
    );
    assert!(
        stdout.contains("instances       4 (3 live) in 2 project(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("configurations  1"), "{stdout}");

    // Read only: the store's bytes are exactly as the server left them.
    assert_eq!(store_files(&data), files, "the commands changed the store");

    // And the server still starts on it, with the same instances.
    let s = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    let (status, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["instances"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    // Beside a running server, verify reads the log as of its start and still agrees.
    let out = projections("verify", &data);
    assert!(
        out.status.success(),
        "verify beside a running server:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_missing_store_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    for what in ["rebuild", "verify"] {
        let out = projections(what, dir.path());
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("no event store at"), "{what}");
    }
    assert!(!dir.path().join("events.db").exists());
}
