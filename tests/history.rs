//! The auditors' view against the real binary: a scripted instance life (create,
//! rename twice, attach and detach a configuration group, upgrade, delete), then
//! `troved history` (table, JSON, `--as-of`) and the HTTP extension
//! (`/instances/{id}/history[/state]`) must tell exactly that story.
//!
//! The simulated cloud runs with zero latency, where every lifecycle step is decided
//! at its first poll (src/sim/mod.rs), so the saga runner's events are deterministic too and
//! the whole sequence is asserted, not only the user's rows. Each user step starts in
//! a new second, so an as-of time taken from the table (to the second) falls between
//! two steps.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{create_body, send, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "hist-secret-4711";
const SAGA: &str = "troved-saga@service";
const USER: &str = "alice@p1";

fn troved_history(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troved"))
        .arg("history")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "error")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run troved history")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "troved history failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// A request as alice of p1; returns its status and `x-openstack-request-id`.
async fn alice(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut rb = s.req(method, "alice", "p1", path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("request sent");
    let rid = resp
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert!((200..300).contains(&status), "{path}: {status} {text}");
    (status, rid)
}

/// Every entry of the instance's history over HTTP, following the `next` links.
async fn http_history(
    s: &TestServer,
    user: &str,
    project: &str,
    id: &str,
    limit: usize,
) -> Vec<Value> {
    let mut url = s.url(project, &format!("/instances/{id}/history?limit={limit}"));
    let mut all = Vec::new();
    loop {
        let (status, body) = send(
            s.http
                .get(&url)
                .header("X-Auth-Token", format!("{user}:{project}")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let page = body["history"].as_array().expect("history").clone();
        assert!(page.len() <= limit);
        all.extend(page);
        match body["links"][0]["href"].as_str() {
            Some(next) => {
                // Links say https (as upstream); the test server speaks http.
                let path = next.split_once("/v1.0/").expect("a /v1.0 link").1;
                url = format!("{}/v1.0/{path}", s.base);
            }
            None => return all,
        }
    }
}

fn types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until the instance's history holds exactly `want` (the saga runner has finished
/// what the last step started, and nothing else happened).
async fn settle(s: &TestServer, id: &str, want: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = http_history(s, "alice", "p1", id, 500).await;
        let got = types(&entries);
        if got == want {
            return entries;
        }
        assert!(
            Instant::now() < deadline && got.len() <= want.len(),
            "history {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sleeps into the next whole second, so the next event is shown with a later time
/// than every earlier one.
async fn next_second() {
    let ms = chrono::Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 20)).await;
}

/// The table's rows as columns, cut at the header's column starts.
fn table_rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let names = [
        "POSITION",
        "TIME",
        "EVENT",
        "ACTOR",
        "REQUEST ID",
        "SUMMARY",
    ];
    let starts: Vec<usize> = names
        .iter()
        .map(|n| header.find(n).unwrap_or_else(|| panic!("{n} in {header}")))
        .collect();
    assert_eq!(starts[0], 0);
    lines
        .map(|line| {
            (0..names.len())
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len());
                    line[starts[i]..end.min(line.len())].trim().to_string()
                })
                .collect()
        })
        .collect()
}

const BUILD: &[&str] = &[
    "InstanceCreated",
    "VolumeCreated",
    "ServerCreated",
    "ComputeStatusChanged",
    "AddressesAssigned",
    "GuestPrepared",
    "GuestStatusReported",
    "VolumeUsageReported",
    "GuestConfigurationApplied",
    "ProvisioningCompleted",
];

#[tokio::test]
async fn a_scripted_instance_life_reads_back_exactly_from_the_cli_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;

    // The life.
    let mut body = create_body("orders");
    body["instance"]["databases"] = json!([{"name": "app"}]);
    body["instance"]["users"] =
        json!([{"name": "appuser", "password": SECRET, "databases": [{"name": "app"}]}]);
    let (status, created) = s.post("alice", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let path = format!("/instances/{id}");
    let mut want: Vec<&str> = BUILD.to_vec();
    let built = settle(&s, &id, &want).await;
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let create_rid = built[0]["request_id"].as_str().unwrap().to_string();
    assert!(create_rid.starts_with("req-"));

    let mut rids = vec![create_rid];
    for name in ["orders-2", "orders-3"] {
        next_second().await;
        let put = json!({"instance": {"name": name}});
        rids.push(alice(&s, Method::PUT, &path, Some(put)).await.1);
        want.push("InstanceRenamed");
        settle(&s, &id, &want).await;
    }

    let (status, group) = s
        .post(
            "alice",
            "p1",
            "/configurations",
            &json!({"configuration": {
                "name": "audit-group",
                "values": {"max_connections": 150},
                "datastore": {"type": "mysql", "version": "8.0"}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().unwrap().to_string();
    for (configuration, event) in [
        (json!(gid), "ConfigurationAttached"),
        (Value::Null, "ConfigurationDetached"),
    ] {
        next_second().await;
        let put = json!({"instance": {"configuration": configuration}});
        rids.push(alice(&s, Method::PUT, &path, Some(put)).await.1);
        want.extend([event, "GuestConfigurationApplied"]);
        settle(&s, &id, &want).await;
        s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
            .await;
    }

    next_second().await;
    let patch = json!({"instance": {"datastore_version": "5.7"}});
    rids.push(alice(&s, Method::PATCH, &path, Some(patch)).await.1);
    want.extend([
        "DatastoreVersionUpgradeRequested",
        "DatastoreVersionUpgraded",
    ]);
    settle(&s, &id, &want).await;
    s.wait_for("alice", "p1", &id, |i| {
        i["status"] == "ACTIVE" && i["datastore"]["version"] == "5.7"
    })
    .await;

    next_second().await;
    rids.push(alice(&s, Method::DELETE, &path, None).await.1);
    want.extend([
        "InstanceDeletionRequested",
        "ServerDeleted",
        "VolumeDeleted",
        "InstanceDeleted",
    ]);
    let entries = settle(&s, &id, &want).await;
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;

    // The table: every event, oldest first, with who, which request and what changed.
    let table = stdout_ok(&troved_history(dir.path(), &[&id]));
    let rows = table_rows(&table);
    let data = |n: usize, key: &str| entries[n]["data"][key].clone();
    let volume = data(1, "volume_id").as_str().unwrap().to_string();
    let server = data(2, "server_id").as_str().unwrap().to_string();
    let address = data(4, "addresses")[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let usage = format!(
        "volume usage {:.2} of {:.2} GB",
        data(7, "used").as_f64().unwrap(),
        data(7, "total").as_f64().unwrap()
    );
    let (r, g) = (&rids, &gid);
    let expected: Vec<(&str, &str, String, String)> = vec![
        (
            "InstanceCreated",
            USER,
            r[0].clone(),
            "created \"orders\": mysql 8.0, flavor 2, volume 1 GB, databases app, users appuser"
                .into(),
        ),
        (
            "VolumeCreated",
            SAGA,
            "saga:create_volume".into(),
            format!("volume {volume} created (1 GB)"),
        ),
        (
            "ServerCreated",
            SAGA,
            "saga:create_server".into(),
            format!("server {server} created"),
        ),
        (
            "ComputeStatusChanged",
            SAGA,
            "saga:server_status".into(),
            "compute status ACTIVE".into(),
        ),
        (
            "AddressesAssigned",
            SAGA,
            "saga:server_status".into(),
            format!("addresses assigned: {address} (private)"),
        ),
        (
            "GuestPrepared",
            SAGA,
            "saga:prepare".into(),
            "guest prepared".into(),
        ),
        (
            "GuestStatusReported",
            SAGA,
            "saga:guest_status".into(),
            "guest status HEALTHY".into(),
        ),
        (
            "VolumeUsageReported",
            SAGA,
            "saga:volume_usage".into(),
            usage,
        ),
        (
            "GuestConfigurationApplied",
            SAGA,
            "saga:apply_configuration".into(),
            "guest runs no configuration group".into(),
        ),
        (
            "ProvisioningCompleted",
            SAGA,
            "saga:complete_build".into(),
            "provisioning completed".into(),
        ),
        (
            "InstanceRenamed",
            USER,
            r[1].clone(),
            "renamed to \"orders-2\" (was \"orders\")".into(),
        ),
        (
            "InstanceRenamed",
            USER,
            r[2].clone(),
            "renamed to \"orders-3\" (was \"orders-2\")".into(),
        ),
        (
            "ConfigurationAttached",
            USER,
            r[3].clone(),
            format!("configuration {g} attached"),
        ),
        (
            "GuestConfigurationApplied",
            SAGA,
            "saga:apply_configuration".into(),
            format!("guest runs configuration {g} (revision 1)"),
        ),
        (
            "ConfigurationDetached",
            USER,
            r[4].clone(),
            format!("configuration {g} detached"),
        ),
        (
            "GuestConfigurationApplied",
            SAGA,
            "saga:apply_configuration".into(),
            "guest runs no configuration group".into(),
        ),
        (
            "DatastoreVersionUpgradeRequested",
            USER,
            r[5].clone(),
            "upgrade to mysql 5.7 requested (from 8.0)".into(),
        ),
        (
            "DatastoreVersionUpgraded",
            SAGA,
            "saga:upgrade".into(),
            "upgraded to mysql 5.7".into(),
        ),
        (
            "InstanceDeletionRequested",
            USER,
            r[6].clone(),
            "deletion requested".into(),
        ),
        (
            "ServerDeleted",
            SAGA,
            "saga:delete_server".into(),
            format!("server {server} deleted"),
        ),
        (
            "VolumeDeleted",
            SAGA,
            "saga:delete_volume".into(),
            format!("volume {volume} deleted"),
        ),
        (
            "InstanceDeleted",
            SAGA,
            "saga:finish_deletion".into(),
            "deleted (secret key shredded)".into(),
        ),
    ];
    let got: Vec<(&str, &str, String, String)> = rows
        .iter()
        .map(|c| (c[2].as_str(), c[3].as_str(), c[4].clone(), c[5].clone()))
        .collect();
    assert_eq!(got, expected, "\n{table}");
    let mut last = 0;
    for (row, entry) in rows.iter().zip(&entries) {
        let position: u64 = row[0].parse().expect("a position");
        assert!(position > last, "positions ascend: {table}");
        last = position;
        assert_eq!(row[1], entry["time"].as_str().unwrap());
        assert!(
            chrono::NaiveDateTime::parse_from_str(&row[1], "%Y-%m-%dT%H:%M:%SZ").is_ok(),
            "{}",
            row[1]
        );
    }
    // "Who renamed this instance and when": one command, the rows say it.
    let renames: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] == "InstanceRenamed").collect();
    assert!(renames.iter().all(|r| r[3] == USER));
    assert!(
        renames[0][1] < renames[1][1],
        "the renames are seconds apart"
    );

    // JSON: the same entries with their data, and no secret anywhere.
    let out = stdout_ok(&troved_history(dir.path(), &[&id, "--format", "json"]));
    for secret in [SECRET, "password", "ciphertext", "nonce", "key_id"] {
        assert!(!out.contains(secret), "{secret} in the JSON history");
    }
    let cli: Vec<Value> = serde_json::from_str(&out).expect("a JSON array");
    assert_eq!(types(&cli), want);
    assert_eq!(cli[0]["data"]["users"][0]["name"], "appuser");
    assert_eq!(cli[0]["actor"], USER);
    assert_eq!(cli[10]["data"]["name"], "orders-2");

    // HTTP: the same entries, paginated, owner or admin only.
    assert_eq!(http_history(&s, "alice", "p1", &id, 500).await, cli);
    assert_eq!(http_history(&s, "alice", "p1", &id, 5).await, cli);
    assert_eq!(http_history(&s, "admin", "ops", &id, 7).await, cli);
    let (status, page) = s
        .get("alice", "p1", &format!("/instances/{id}/history?limit=5"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["history"].as_array().unwrap().len(), 5);
    assert_eq!(page["links"][0]["rel"], "next");
    assert!(page["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "/v1.0/p1/instances/{id}/history?limit=5&marker={}",
            cli[4]["position"]
        )));
    let (status, tail) = s
        .get(
            "alice",
            "p1",
            &format!("/instances/{id}/history?marker={}", cli[20]["position"]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tail["history"], json!([cli[21]]));
    assert!(tail.get("links").is_none(), "{tail}");
    for bad in ["limit=0", "limit=x", "marker=-1"] {
        let (status, _) = s
            .get("alice", "p1", &format!("/instances/{id}/history?{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    for (user, project, path) in [
        ("bob", "p2", format!("/instances/{id}/history")),
        (
            "bob",
            "p2",
            format!("/instances/{id}/history/state?as_of=2100-01-01T00:00:00Z"),
        ),
        ("alice", "p1", "/instances/not-a-uuid/history".to_string()),
        (
            "alice",
            "p1",
            format!("/instances/{}/history", uuid::Uuid::new_v4()),
        ),
    ] {
        let (status, body) = s.get(user, project, &path).await;
        assert_eq!(status, 404, "{user} {path}: {body}");
    }

    // As of a time: the state then. Between the renames: the first new name.
    let time_of =
        |event: &str| -> String { rows.iter().find(|r| r[2] == event).unwrap()[1].clone() };
    let first_rename = renames[0][1].clone();
    let view = as_of(dir.path(), &id, &first_rename);
    assert_eq!(view["name"], "orders-2");
    assert_eq!(view["status"], "ACTIVE");
    assert_eq!(view["tenant_id"], "p1");
    assert!(view.get("configuration").is_none(), "{view}");
    // Between attach and detach: the group, by its name then.
    let attached = time_of("ConfigurationAttached");
    let view = as_of(dir.path(), &id, &attached);
    assert_eq!(view["name"], "orders-3");
    assert_eq!(view["configuration"]["id"], json!(gid));
    assert_eq!(view["configuration"]["name"], "audit-group");
    assert_eq!(view["datastore"]["version"], "8.0");
    // After the upgrade was requested: the new version.
    let view = as_of(
        dir.path(),
        &id,
        &time_of("DatastoreVersionUpgradeRequested"),
    );
    assert_eq!(view["datastore"]["version"], "5.7");
    assert!(view.get("configuration").is_none(), "{view}");
    // Over HTTP, the same views.
    for t in [&first_rename, &attached] {
        let (status, body) = s
            .get(
                "alice",
                "p1",
                &format!("/instances/{id}/history/state?as_of={t}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let cli_view = as_of(dir.path(), &id, t);
        assert_eq!(body["instance"]["name"], cli_view["name"]);
        assert_eq!(
            body["instance"]["configuration"]["name"],
            cli_view["configuration"]["name"]
        );
        assert_eq!(body["instance"]["status"], cli_view["status"]);
        assert!(body["instance"].get("tenant_id").is_none(), "not an admin");
    }
    // Before it existed: said so, non-zero exit / 404; a bad time: refused / 400.
    let out = troved_history(dir.path(), &[&id, "--as-of", "2000-01-01T00:00:00Z"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not exist yet at 2000-01-01T00:00:00Z"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = troved_history(dir.path(), &[&id, "--as-of", "yesterday"]);
    assert!(!out.status.success());
    let state = format!("/instances/{id}/history/state");
    let (status, _) = s
        .get(
            "alice",
            "p1",
            &format!("{state}?as_of=2000-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 404);
    for q in ["?as_of=yesterday", ""] {
        let (status, _) = s.get("alice", "p1", &format!("{state}{q}")).await;
        assert_eq!(status, 400, "{q}");
    }

    // After a crash the CLI still reads the log, and reading changes no byte of it.
    s.kill();
    let files = ["events.db", "events.db-wal"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap_or_default())
        .collect();
    assert_eq!(stdout_ok(&troved_history(dir.path(), &[&id])), table);
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap_or_default())
        .collect();
    assert!(before == after, "troved history changed the store files");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["history", &id, "--event-store", &url])
        .output()
        .unwrap();
    assert_eq!(stdout_ok(&out), table);
}

/// `troved history ID --as-of T`: the `instance` of the printed view.
fn as_of(dir: &Path, id: &str, t: &str) -> Value {
    let out = stdout_ok(&troved_history(dir, &[id, "--as-of", t]));
    let v: Value = serde_json::from_str(&out).expect("pretty JSON");
    v["instance"].clone()
}

#[tokio::test]
async fn an_unknown_instance_or_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = troved_history(dir.path(), &[&uuid::Uuid::new_v4().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event store"));
    assert!(!dir.path().join("events.db").exists(), "nothing created");
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let out = troved_history(dir.path(), &[&uuid::Uuid::new_v4().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instance"));
    let out = troved_history(dir.path(), &["orders"]);
    assert!(!out.status.success());
    drop(s);
}
