//! The real server with `--event-store` pointing at the in-process EventStoreDB test
//! double (`tests/esdb_double`): a full instance life through the HTTP API, a restart
//! that rebuilds the read models from EventStoreDB, 503 + `Retry-After` while the
//! database is away (and recovery after it), 404 for a deleted stream.

mod common;

use std::time::{Duration, Instant};

use common::{send, TestServer};
use esdb_double::EsdbDouble;
use serde_json::{json, Value};
use troved::runtime::codec;
use troved::store::esdb::EsdbStore;
use troved::store::EventStore;

async fn start(double: &EsdbDouble, dir: &std::path::Path) -> TestServer {
    TestServer::start(
        dir,
        &["--event-store", &double.url(), "--sim-latency-ms", "10"],
    )
    .await
}

/// Creates an instance as alice of p1 and waits until it is ACTIVE; its id.
async fn active(s: &TestServer, name: &str) -> String {
    s.create_active("alice", "p1", name).await
}

/// The event types of an instance's stream, as EventStoreDB holds them.
async fn stream_types(double: &EsdbDouble, id: &str) -> Vec<&'static str> {
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let events = store.read_stream(&format!("instance-{id}")).await.unwrap();
    events
        .iter()
        .map(|e| {
            codec::decode(e)
                .unwrap_or_else(|err| panic!("{} does not decode: {err}", e.event_type))
                .0
                .event_type()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_life_on_eventstoredb() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(&double, dir.path()).await;

    // Create, ACTIVE, rename, configuration attach/detach, upgrade.
    let id = active(&s, "main").await;
    let path = format!("/instances/{id}");
    let (status, body) = s
        .patch(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"name": "renamed"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        s.get("alice", "p1", &path).await.1["instance"]["name"],
        "renamed"
    );

    let (status, group) = s
        .post(
            "alice",
            "p1",
            "/configurations",
            &json!({"configuration": {"name": "g", "values": {"max_connections": 150}, "datastore": {"type": "mysql", "version": "8.0"}}}),
        )
        .await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"configuration": gid}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let shown = s.get("alice", "p1", &path).await.1;
    assert_eq!(shown["instance"]["configuration"]["id"], json!(gid));
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"configuration": null}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let (status, body) = s
        .patch(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"datastore_version": "5.7"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let upgraded = s
        .wait_for("alice", "p1", &id, |i| {
            i["status"] == "ACTIVE" && i["datastore"]["version"] == "5.7"
        })
        .await;
    assert_eq!(upgraded["name"], "renamed");

    // A second instance, to be deleted later.
    let other = active(&s, "other").await;

    // A restart rebuilds the read models from EventStoreDB alone: same views.
    let (_, list_before) = s.get("alice", "p1", "/instances/detail").await;
    let (_, show_before) = s.get("alice", "p1", &path).await;
    s.kill_and_restart().await;
    assert_eq!(
        s.get("alice", "p1", "/instances/detail").await.1,
        list_before
    );
    assert_eq!(s.get("alice", "p1", &path).await.1, show_before);
    let (status, history) = s
        .get("alice", "p1", &format!("{path}/history?limit=100"))
        .await;
    assert_eq!(status, 200, "{history}");
    // Paging one entry at a time by position skips nothing, multi-event appends included.
    let all: Vec<Value> = history["history"].as_array().unwrap().clone();
    assert!(all.len() > 3, "{history}");
    let mut paged = Vec::new();
    let mut url = format!("{path}/history?limit=1");
    loop {
        let (status, page) = s.get("alice", "p1", &url).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["history"].as_array().unwrap().iter().cloned());
        let Some(next) = page["links"][0]["href"].as_str() else {
            break;
        };
        let marker = next.rsplit_once("marker=").unwrap().1;
        url = format!("{path}/history?limit=1&marker={marker}");
    }
    assert_eq!(paged, all);

    // Delete: the instance goes, its stream tells the whole story.
    assert_eq!(s.delete("alice", "p1", &path).await.0, 202);
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    let types = stream_types(&double, &id).await;
    assert_eq!(types.first(), Some(&"InstanceCreated"), "{types:?}");
    assert_eq!(types.last(), Some(&"InstanceDeleted"), "{types:?}");
    for t in ["InstanceRenamed", "InstanceDeletionRequested"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    // The auditor's command reads EventStoreDB too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_troved"))
        .args([
            "history",
            &id,
            "--format",
            "json",
            "--event-store",
            &double.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timeline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = timeline.as_array().unwrap();
    assert_eq!(entries.len(), types.len());
    assert!(
        entries.iter().any(|e| e.to_string().contains("renamed")),
        "{timeline}"
    );

    // So do the operator's: a replay into fresh read models, checked against an
    // independent fold of every stream.
    let projections = |what: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_troved"))
            .args(["projections", what, "--event-store", &double.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "projections {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let rebuilt = projections("rebuild");
    assert!(
        rebuilt.contains("rebuilt every read model from esdb://")
            && rebuilt.contains("instances       2 (1 listed in 1 project(s), 1 deleted)"),
        "{rebuilt}"
    );
    let verified = projections("verify");
    assert!(
        verified.starts_with("read models match an independent fold of the log in esdb://")
            && verified.contains("instances       2 (1 live) in 1 project(s)"),
        "{verified}"
    );

    let (_, list) = s.get("alice", "p1", "/instances").await;
    let ids: Vec<&Value> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, [&json!(other)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventstoredb_away_is_503_with_retry_after_and_nothing_half_applied() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&double, dir.path()).await;
    let id = active(&s, "steady").await;
    let path = format!("/instances/{id}");
    let events_before = double.user_event_count();

    double.stop().await;
    // Commands: 503 in Trove's shape with Retry-After, quickly.
    let started = Instant::now();
    let resp = s
        .req(reqwest::Method::PATCH, "alice", "p1", &path)
        .json(&json!({"instance": {"name": "while-away"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["serviceUnavailable"]["code"], 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let (status, body) = s
        .post("alice", "p1", "/instances", &common::create_body("refused"))
        .await;
    assert_eq!(status, 503, "{body}");
    // Reads keep being served from the read models.
    let (status, shown) = s.get("alice", "p1", &path).await;
    assert_eq!(status, 200);
    assert_eq!(shown["instance"]["name"], "steady");

    double.restart().await;
    // Back: the same rename goes through; nothing of the refused calls was recorded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = send(
            s.req(reqwest::Method::PATCH, "alice", "p1", &path)
                .json(&json!({"instance": {"name": "after"}})),
        )
        .await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "still unavailable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.get("alice", "p1", &path).await.1["instance"]["name"],
        "after"
    );
    assert_eq!(double.user_event_count(), events_before + 1);
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_404() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&double, dir.path()).await;
    let id = active(&s, "tombstoned").await;
    let path = format!("/instances/{id}");
    double.tombstone(&format!("instance-{id}"));
    let (status, body) = s
        .patch("alice", "p1", &path, &json!({"instance": {"name": "x"}}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["itemNotFound"]["code"], 404, "{body}");
    let (status, body) = s.get("alice", "p1", &format!("{path}/history")).await;
    assert_eq!(status, 404, "{body}");
}

/// EventStoreDB timed out an append that landed all the same ("Operation timed out",
/// `Aborted`): the create is sent again and answers once, 200, one instance. When the
/// original is not replicated yet, the retries are dropped and it cannot be read either
/// (the server's `IdempotentNotReady`): the outcome is unknown, 503 ("may still land"),
/// and once replicated that create shows up, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_append_timed_out_after_landing_answers_once() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&double, dir.path()).await;
    double.time_out_after_write(1);
    let (status, body) = s
        .post("alice", "p1", "/instances", &common::create_body("slow"))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;

    double.time_out_after_write(1);
    double.drop_early_retries(100);
    let (status, body) = s
        .post("alice", "p1", "/instances", &common::create_body("slower"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(double.is_replicating());
    let names = |list: &Value| -> Vec<String> {
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(names(&list), ["slow"], "{list}");

    double.replicate();
    double.drop_early_retries(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = s.get("alice", "p1", "/instances").await;
        let names = names(&list);
        if names.iter().any(|n| n == "slower") {
            assert_eq!(names.iter().filter(|n| *n == "slow").count(), 1, "{list}");
            assert_eq!(names.iter().filter(|n| *n == "slower").count(), 1, "{list}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the create that may still land never showed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A change over EventStoreDB's append size limit is a 400 in Trove's shape, not a 500;
/// `/mgmt/projections` with the store away is a 503 like every other store failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_limits_and_outages_are_not_500() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&double, dir.path()).await;
    double.max_append_size(Some(64));
    let (status, body) = s
        .post("alice", "p1", "/instances", &common::create_body("huge"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["badRequest"]["code"], 400, "{body}");
    double.max_append_size(None);
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 0, "{list}");

    let (status, body) = s.get("admin", "p1", "/mgmt/projections").await;
    assert_eq!(status, 200, "{body}");
    double.stop().await;
    let resp = s
        .req(reqwest::Method::GET, "admin", "p1", "/mgmt/projections")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}

/// Access to `$all` withdrawn while troved runs: the projector stops at once with an error
/// that says so (no resubscribing for ever), and troved exits for its supervisor, as when
/// any background task dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_all_stops_troved_with_a_clear_error() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("troved.log");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut s = common::Serve::start_logged(&data, log, &["--event-store", &double.url()]).await;
    double.deny_all(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.alive() {
        assert!(Instant::now() < deadline, "troved keeps resubscribing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = s.log();
    assert!(log.contains("denied the subscription to $all"), "{log}");
}
