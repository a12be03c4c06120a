//! Operator tooling, black-box: `GET /metrics`, `GET /mgmt/projections`, and the
//! `troved projections rebuild|verify` commands against a log written by the real server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{create_body, TestServer};
use serde_json::json;

/// Every family `/metrics` must export.
const FAMILIES: [(&str, &str); 10] = [
    ("troved_events_appended_total", "counter"),
    ("troved_commands_total", "counter"),
    ("troved_saga_steps_total", "counter"),
    ("troved_projection_events_total", "counter"),
    ("troved_projection_anomalies_total", "counter"),
    ("troved_unreadable_events", "gauge"),
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

/// What the metrics tests observe: an instance created and taken to ACTIVE, a command
/// refused (404: no such configuration group) and a request no route matches. Returns
/// the instance's id.
async fn create_refuse_and_miss(s: &TestServer, name: &str) -> String {
    let created = s.create("alice", "p1", name).await;
    let id = created["id"].as_str().expect("id").to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &format!("/instances/{id}"),
            &json!({"instance": {"configuration": "6f0b1f0e-2d55-4c1e-9d0a-53a4a8f0c001"}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = s.get("alice", "p1", "/nothing-here").await;
    assert_eq!(status, 404);
    id
}

#[tokio::test]
async fn metrics_count_events_commands_saga_steps_and_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let before = scrape(&s).await;

    let (status, _) = s.get("alice", "p1", "/instances").await;
    assert_eq!(status, 200);
    let id = create_refuse_and_miss(&s, "metered").await;

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

/// Every family `/metrics` exports: name, type and help text, as a user finds them.
const DECLARED: [(&str, &str, &str); 15] = [
    (
        "troved_events_appended_total",
        "counter",
        "Events appended to the event store by this process, by stream category (a retried append deduplicated by the store counts again).",
    ),
    (
        "troved_commands_total",
        "counter",
        "Commands decided, by command type and outcome (ok, refused with the Trove fault name, conflict after every retry, error).",
    ),
    (
        "troved_saga_steps_total",
        "counter",
        "Saga runner steps, by step and outcome (recorded, waiting, retried, failed).",
    ),
    (
        "troved_projection_events_total",
        "counter",
        "Events of $all processed by the projector since the process started (the replay at start included).",
    ),
    (
        "troved_projection_anomalies_total",
        "counter",
        "Events the projector skipped: undecodable, or after a revision gap in their stream (rebuild and verify the read models).",
    ),
    (
        "troved_unreadable_events",
        "gauge",
        "Events of the log that do not decode, found since the process started, those before a read-model snapshot's position included (run `troved audit verify`).",
    ),
    (
        "troved_http_connections_closed_total",
        "counter",
        "Client connections the server closed or refused itself, by reason (header_timeout, body_timeout, idle_timeout, evicted, refused, dropped, shutdown).",
    ),
    (
        "troved_http_connections_open",
        "gauge",
        "Client connections open now (at most the connection limit).",
    ),
    (
        "troved_keystone_calls_total",
        "counter",
        "Calls to Keystone (--auth keystone), by kind (authenticate: troved's service token; validate: a user's token) and outcome (ok, valid, invalid, service_token_rejected, credentials_refused, forbidden, unreachable, error).",
    ),
    (
        "troved_token_cache_lookups_total",
        "counter",
        "Token validations answered by the cache or by a validation already in flight (hit), or by a call to Keystone (miss), with --auth keystone.",
    ),
    (
        "troved_projection_position",
        "gauge",
        "Last position of $all that every read model has applied.",
    ),
    (
        "troved_store_head_position",
        "gauge",
        "Position of the last event in the event store.",
    ),
    (
        "troved_projection_lag_events",
        "gauge",
        "Events appended but not yet applied to the read models (counted: exact, on EventStoreDB up to 1000).",
    ),
    (
        "troved_command_cached_streams",
        "gauge",
        "Instance streams kept folded by the command path (mostly instances with a command or a workflow step in flight; at most 4096).",
    ),
    (
        "troved_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by method, matched route template and status class.",
    ),
];

/// One parsed sample: name, labels (each name once), value.
type Parsed = (String, BTreeMap<String, String>, f64);

/// Parses a scrape with `nom-openmetrics`' Prometheus text-format grammar (the whole text
/// must parse), and returns the descriptors (`(name, "help" | "type", text)`, in order) and
/// the samples. That parser groups "descriptors, then samples", so the descriptors of a
/// family without samples end up in the next group; they are flattened here, which is
/// also what makes a family without samples fine anywhere but last (the latency
/// histogram, which the requests before the scrape have filled).
fn parse_exposition(text: &str) -> (Vec<(String, &'static str, String)>, Vec<Parsed>) {
    use nom_openmetrics::MetricDescriptor;
    let (rest, families) = nom_openmetrics::parser::prometheus(text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e:?}\n{text}"));
    assert!(rest.is_empty(), "left unparsed: {rest:?}");
    let mut descriptors = Vec::new();
    let mut samples = Vec::new();
    for family in families {
        for d in family.descriptors {
            match d {
                MetricDescriptor::Help { metric, help } => {
                    descriptors.push((metric.to_string(), "help", help))
                }
                MetricDescriptor::Type { metric, r#type } => descriptors.push((
                    metric.to_string(),
                    "type",
                    r#type.to_string().to_lowercase(),
                )),
                MetricDescriptor::Unit { metric, .. } => panic!("unexpected UNIT for {metric}"),
            }
        }
        for sample in family.samples {
            let mut labels = BTreeMap::new();
            for label in sample.labels() {
                let again = labels.insert(label.name.to_string(), label.value.clone());
                assert!(again.is_none(), "label {} twice in {sample:?}", label.name);
            }
            samples.push((sample.name().to_string(), labels, sample.number()));
        }
    }
    (descriptors, samples)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the sample `name` whose labels are exactly `pairs`.
fn sample(samples: &[Parsed], name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    let want = labels(pairs);
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_every_family_label_and_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let id = create_refuse_and_miss(&s, "parsed").await;

    let resp = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("body");
    let (descriptors, samples) = parse_exposition(&text);

    // Each family declared once, with its type and help text, and nothing else declared.
    let declared: Vec<(String, &str, String)> = DECLARED
        .iter()
        .flat_map(|(name, kind, help)| {
            [
                (name.to_string(), "help", help.to_string()),
                (name.to_string(), "type", kind.to_string()),
            ]
        })
        .collect();
    assert_eq!(descriptors, declared);

    // Every sample belongs to a declared family and carries that family's labels.
    let histogram = "troved_http_request_duration_seconds";
    for (name, l, value) in &samples {
        let keys: Vec<&str> = l.keys().map(String::as_str).collect();
        let expected: &[&str] = match name.as_str() {
            "troved_events_appended_total" => &["category"],
            "troved_commands_total" if l.get("outcome").map(String::as_str) == Some("refused") => {
                &["command", "fault", "outcome"]
            }
            "troved_commands_total" => &["command", "outcome"],
            "troved_saga_steps_total" => &["outcome", "step"],
            "troved_projection_anomalies_total" => &["kind"],
            "troved_http_connections_closed_total" => &["reason"],
            "troved_keystone_calls_total" => &["kind", "outcome"],
            "troved_token_cache_lookups_total" => &["result"],
            "troved_projection_events_total"
            | "troved_unreadable_events"
            | "troved_projection_position"
            | "troved_store_head_position"
            | "troved_projection_lag_events"
            | "troved_command_cached_streams"
            | "troved_http_connections_open" => &[],
            n if n == format!("{histogram}_bucket") => &["le", "method", "route", "status"],
            n if n == format!("{histogram}_sum") || n == format!("{histogram}_count") => {
                &["method", "route", "status"]
            }
            other => panic!("sample of no declared family: {other}"),
        };
        assert_eq!(keys, expected, "labels of {name} {l:?}");
        assert!(value.is_finite() && *value >= 0.0, "{name} {l:?} = {value}");
        assert!(
            !l.values().any(|v| v.contains(&id)),
            "an instance id leaked into a label"
        );
    }

    // What a user would query.
    assert_eq!(
        sample(
            &samples,
            "troved_commands_total",
            &[("command", "CreateInstance"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "troved_commands_total",
            &[
                ("command", "AttachConfiguration"),
                ("outcome", "refused"),
                ("fault", "itemNotFound")
            ]
        ),
        Some(1.0)
    );
    let appended = sample(
        &samples,
        "troved_events_appended_total",
        &[("category", "instance")],
    );
    assert!(appended >= Some(4.0), "{appended:?}");
    let steps = sample(
        &samples,
        "troved_saga_steps_total",
        &[("step", "create_server"), ("outcome", "recorded")],
    );
    assert!(steps >= Some(1.0), "{steps:?}");
    let gauge = |name| sample(&samples, name, &[]).unwrap_or_else(|| panic!("{name}"));
    let (position, head) = (
        gauge("troved_projection_position"),
        gauge("troved_store_head_position"),
    );
    assert!(position >= 4.0 && head >= position, "{position} {head}");
    assert_eq!(gauge("troved_projection_lag_events"), head - position);
    assert!(gauge("troved_projection_events_total") >= position);

    // The create's latency: every bucket bound, cumulative counts ending with the count.
    let series = [
        ("method", "POST"),
        ("route", "/v1.0/{project_id}/instances"),
        ("status", "2xx"),
    ];
    let buckets: Vec<(String, f64)> = samples
        .iter()
        .filter(|(n, l, _)| {
            *n == format!("{histogram}_bucket")
                && series
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, l, v)| (l["le"].clone(), *v))
        .collect();
    let bounds: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
    assert_eq!(
        bounds,
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "2.5", "5", "10", "+Inf"
        ]
    );
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    let count = sample(&samples, &format!("{histogram}_count"), &series);
    assert_eq!(count, Some(1.0));
    assert_eq!(buckets.last().map(|(_, v)| *v), count);
    let sum = sample(&samples, &format!("{histogram}_sum"), &series);
    assert!(sum > Some(0.0), "{sum:?}");
    let unmatched = sample(
        &samples,
        &format!("{histogram}_count"),
        &[("method", "GET"), ("route", "unmatched"), ("status", "4xx")],
    );
    assert_eq!(unmatched, Some(1.0));
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
