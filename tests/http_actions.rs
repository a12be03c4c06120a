//! Instance actions over HTTP on the simulated cloud (issue #15): `restart`, `resize`
//! (flavor and volume) and the admin's `reset_status` — the statuses a client sees
//! during each, the refusals with Trove's error bodies, the quota they charge, and the
//! operator's way out of a build stuck in a provider call that never answers.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};

fn message(body: &Value) -> String {
    body.as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The fault name of a Trove error body (`{"badRequest": {...}}`) with its code.
fn fault(body: &Value) -> (String, i64) {
    let (name, inner) = body
        .as_object()
        .and_then(|o| o.iter().next())
        .unwrap_or_else(|| panic!("not a Trove error body: {body}"));
    (name.clone(), inner["code"].as_i64().unwrap_or_default())
}

async fn act(s: &TestServer, user: &str, id: &str, body: Value) -> (u16, Value) {
    s.post(user, "p1", &format!("/instances/{id}/action"), &body)
        .await
}

/// `(instances, ram, volumes)` in use by project `p1` (admin's quota view).
async fn usage(s: &TestServer) -> (i64, i64, i64) {
    let (status, body) = s.get("admin", "p1", "/mgmt/quotas/p1").await;
    assert_eq!(status, 200, "{body}");
    let of = |r: &str| {
        body["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["resource"] == r)
            .map(|q| q["in_use"].as_i64().unwrap())
            .unwrap()
    };
    (of("instances"), of("ram"), of("volumes"))
}

/// The simulated cloud's inventory (live servers and volumes).
fn cloud(dir: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["sim", "list", "--data-dir"])
        .arg(dir)
        .output()
        .expect("troved sim list");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("JSON inventory")
}

fn held_by(inventory: &Value, kind: &str, id: &str) -> Vec<Value> {
    inventory[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instance_id"] == json!(id))
        .cloned()
        .collect()
}

#[tokio::test]
async fn restart_shows_reboot_then_active() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db").await;
    let (status, body) = act(&s, "u", &id, json!({"restart": {}})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, Value::Null, "202 with an empty body");
    // Read-your-writes: the next read shows the restart.
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "REBOOT", "{shown}");
    s.wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    // A second restart is accepted once the first is done.
    let (status, _) = act(&s, "u", &id, json!({"restart": {}})).await;
    assert_eq!(status, 202);
    // ... and refused while it runs.
    let (status, body) = act(&s, "u", &id, json!({"restart": {}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(fault(&body), ("unprocessableEntity".into(), 422));
    assert!(
        message(&body).contains("task status was REBOOTING"),
        "{body}"
    );
}

#[tokio::test]
async fn reset_active_instance_acts_again_once_its_guest_reports() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db").await;
    let (status, body) = act(&s, "admin", &id, json!({"reset_status": {}})).await;
    assert_eq!(status, 202, "{body}");
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(
        (
            &shown["instance"]["status"],
            &shown["instance"]["operating_status"]
        ),
        (&json!("ACTIVE"), &json!("ERROR")),
        "service UNKNOWN after the reset: {shown}"
    );
    // The guest is asked again (upstream: its next heartbeat): HEALTHY, actions allowed.
    s.wait_for("u", "p1", &id, |i| i["operating_status"] == "HEALTHY")
        .await;
    let (status, body) = act(&s, "u", &id, json!({"restart": {}})).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn resize_flavor_shows_resize_then_runs_on_the_new_flavor_and_charges_its_ram() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db").await;
    assert_eq!(usage(&s).await, (1, 2048, 1));
    let (status, body) = act(&s, "u", &id, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(status, 202, "{body}");
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "RESIZE", "{shown}");
    assert_eq!(
        usage(&s).await,
        (1, 4096, 1),
        "the larger flavor is charged"
    );
    let done = s
        .wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(done["flavor"]["id"], "3", "{done}");
    assert_eq!(usage(&s).await, (1, 4096, 1));
    let server = held_by(&cloud(dir.path()), "servers", &id);
    assert_eq!(server[0]["flavor_id"], "3", "{server:?}");
}

#[tokio::test]
async fn resize_volume_shows_resize_then_has_the_new_size_and_charges_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db").await;
    let (status, body) = act(&s, "u", &id, json!({"resize": {"volume": {"size": 3}}})).await;
    assert_eq!(status, 202, "{body}");
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "RESIZE", "{shown}");
    let done = s
        .wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(done["volume"]["size"], 3, "{done}");
    assert_eq!(usage(&s).await, (1, 2048, 3));
    let volume = held_by(&cloud(dir.path()), "volumes", &id);
    assert_eq!(volume[0]["size"], 3, "{volume:?}");
}

#[tokio::test]
async fn failed_restart_and_resizes_roll_back_to_active_with_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-fault",
            "restart:name=flaky*:permanent",
            "--sim-fault",
            "resize:name=flaky*:permanent",
        ],
    )
    .await;
    let id = s.create_active("u", "p1", "flaky").await;
    let before = usage(&s).await;
    for body in [
        json!({"restart": {}}),
        json!({"resize": {"flavorRef": "3"}}),
        json!({"resize": {"volume": {"size": 4}}}),
    ] {
        let (status, answer) = act(&s, "u", &id, body.clone()).await;
        assert_eq!(status, 202, "{body}: {answer}");
        let inst = s
            .wait_for("u", "p1", &id, |i| {
                i["status"] == "ACTIVE" && i["operating_status"] == "HEALTHY"
            })
            .await;
        assert_eq!(inst["flavor"]["id"], "2", "{body}: {inst}");
        assert_eq!(inst["volume"]["size"], 1, "{body}: {inst}");
        let (_, admin) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
        let fault = admin["instance"]["fault"]["message"].as_str().unwrap_or("");
        assert!(fault.starts_with("Failed to "), "{body}: {admin}");
        assert_eq!(usage(&s).await, before, "{body}: the charge is the old one");
    }
}

/// Polls the admin view until the instance's fault message contains `text`.
async fn wait_for_fault(s: &TestServer, id: &str, text: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, shown) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
        let inst = &shown["instance"];
        if inst["fault"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(text))
        {
            return inst.clone();
        }
        assert!(Instant::now() < deadline, "no fault {text:?}: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn restart_or_resize_whose_database_never_gets_healthy_fails_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &[]).await;
    let restarted = s.create_active("u", "p1", "db-restart").await;
    let resized = s.create_active("u", "p1", "db-resize").await;
    let before = usage(&s).await;
    s.terminate(Duration::from_secs(10));
    // From now on the guests stay in whatever status they reach (a restart never ends).
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-fault",
            "guest_status:name=db-*:hang",
            "--action-timeout-secs",
            "2",
        ],
    )
    .await;
    let asked = Instant::now();
    let (status, body) = act(&s, "u", &restarted, json!({"restart": {}})).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = act(&s, "u", &resized, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(status, 202, "{body}");

    let inst = wait_for_fault(&s, &restarted, "to restart").await;
    assert!(asked.elapsed() >= Duration::from_secs(2), "{inst}");
    assert_eq!(
        inst["task_description"], "No tasks for the instance.",
        "{inst}"
    );
    let inst = wait_for_fault(&s, &resized, "to resize").await;
    assert_eq!(
        inst["task_description"], "No tasks for the instance.",
        "{inst}"
    );
    assert_eq!(inst["flavor"]["id"], "2", "rolled back: {inst}");
    assert_eq!(usage(&s).await, before, "the charge is the old one");
}

#[tokio::test]
async fn resize_interrupted_by_a_crash_finishes_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Every provider call takes a second: the kill lands inside the resize.
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "1000"]).await;
    let id = s.create("u", "p1", "db").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let (status, body) = act(&s, "u", &id, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(status, 202, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill_and_restart().await;
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "RESIZE", "{shown}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
        let inst = &shown["instance"];
        if inst["status"] == "ACTIVE" && inst["flavor"]["id"] == "3" {
            break;
        }
        assert!(Instant::now() < deadline, "resize not resumed: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let servers = held_by(&cloud(dir.path()), "servers", &id);
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["flavor_id"], "3");
    assert_eq!(usage(&s).await, (1, 4096, 1));
}

#[tokio::test]
async fn bad_actions_are_refused_with_trove_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--quota-ram", "4000"]).await;
    let id = s.create_active("u", "p1", "db").await;
    let cases = [
        (
            json!({"resize": {"flavorRef": "2"}}),
            400,
            "badRequest",
            "The new flavor id must be different than the current flavor id of '2'.",
        ),
        (
            json!({"resize": {"volume": {"size": 1}}}),
            400,
            "badRequest",
            "The new volume 'size' must be larger than the current volume size of '1'.",
        ),
        (
            json!({"resize": {"flavorRef": "99"}}),
            400,
            "badRequest",
            "Resource 99 cannot be found.",
        ),
        (
            json!({"resize": {"flavorRef": "3"}}),
            413,
            "overLimit",
            "Quota exceeded for resources: ['ram'].",
        ),
        (
            json!({"reset_status": {}}),
            403,
            "forbidden",
            "Policy doesn't allow instance:reset_status to be performed.",
        ),
        (
            json!({"reboot": {}}),
            400,
            "badRequest",
            "Validation error: Additional properties are not allowed ('reboot' was unexpected)",
        ),
        (
            json!({"restart": {}, "resize": {"flavorRef": "3"}}),
            400,
            "badRequest",
            "Only one action can be performed at a time, one of: restart, resize, \
             reset_status, promote_to_replica_source, eject_replica_source.",
        ),
    ];
    for (body, code, name, text) in cases {
        let (status, answer) = act(&s, "u", &id, body.clone()).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert_eq!(
            fault(&answer),
            (name.to_string(), i64::from(code)),
            "{body}"
        );
        assert_eq!(message(&answer), text, "{body}");
    }
    // Nothing was half-applied.
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "ACTIVE");
    assert_eq!(shown["instance"]["flavor"]["id"], "2");
    assert_eq!(usage(&s).await, (1, 2048, 1));
    // Another project's instance does not exist for the caller (its own URL project).
    let (status, body) = s
        .post(
            "eve",
            "p2",
            &format!("/instances/{id}/action"),
            &json!({"restart": {}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(fault(&body).0, "itemNotFound");
}

#[tokio::test]
async fn building_and_errored_instances_refuse_actions() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-fault",
            "create_server:name=broken*:permanent",
            "--sim-fault",
            "prepare:name=slow*:hang",
        ],
    )
    .await;
    let slow = s.create("u", "p1", "slow").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = act(&s, "u", &slow, json!({"restart": {}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(fault(&body).0, "unprocessableEntity");
    let broken = s.create("u", "p1", "broken").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("u", "p1", &broken, |i| i["status"] == "ERROR")
        .await;
    let (status, body) = act(&s, "u", &broken, json!({"resize": {"volume": {"size": 2}}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        message(&body).contains("is not currently available"),
        "{body}"
    );
}

#[tokio::test]
async fn stuck_build_is_reset_and_deleted_and_its_quota_released_once() {
    let dir = tempfile::tempdir().unwrap();
    // The teardown's first server deletions fail (retried with a growing pause): the
    // instance stays DELETING long enough for an admin to try a reset.
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-fault",
            "prepare:name=stuck*:hang",
            "--sim-fault",
            "delete_server:name=stuck*:times=3",
        ],
    )
    .await;
    // Another instance of the project keeps its charge throughout.
    s.create_active("u", "p1", "keeper").await;
    let before = usage(&s).await;
    let id = s.create("u", "p1", "stuck").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The build hangs in `prepare`: the server exists, the guest never answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while held_by(&cloud(dir.path()), "servers", &id).is_empty() {
        assert!(Instant::now() < deadline, "no server created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        usage(&s).await,
        (before.0 + 1, before.1 + 2048, before.2 + 1)
    );
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "BUILD");
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 422, "DELETE in BUILD is refused: {body}");

    // The admin resets it (twice: the second is a no-op), then it can be deleted.
    for _ in 0..2 {
        let (status, body) = act(&s, "admin", &id, json!({"reset_status": {}})).await;
        assert_eq!(status, 202, "{body}");
    }
    let (_, shown) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
    assert_eq!(
        shown["instance"]["task_description"], "No tasks for the instance.",
        "{shown}"
    );
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(usage(&s).await, before, "released at the DELETE");
    // A reset during the teardown is refused (it would bring back a live instance whose
    // quota is released); a second DELETE does not release it again.
    let (status, body) = act(&s, "admin", &id, json!({"reset_status": {}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(fault(&body).0, "unprocessableEntity", "{body}");
    assert!(message(&body).contains("is being deleted"), "{body}");
    let (_, shown) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
    assert_eq!(
        shown["instance"]["task_description"], "Deleting the instance.",
        "{shown}"
    );
    let (status, _) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert!(status == 202 || status == 404, "{status}");
    assert_eq!(usage(&s).await, before);

    // The teardown finishes (it does not wait for the hung prepare either).
    s.wait_for("u", "p1", &id, |i| i.is_null()).await;
    // Auditors see who reset it (the history stays readable after the deletion).
    let (status, body) = s
        .get("u", "p1", &format!("/instances/{id}/history?limit=500"))
        .await;
    assert_eq!(status, 200, "{body}");
    let resets: Vec<&Value> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "InstanceStatusReset")
        .collect();
    // The repeated reset in BUILD was a no-op; the one during the teardown was refused.
    let summaries: Vec<&Value> = resets.iter().map(|e| &e["summary"]).collect();
    assert_eq!(
        summaries,
        vec!["status reset (task was BUILDING)"],
        "{body}"
    );
    assert!(resets.iter().all(|e| e["actor"] == "admin@p1"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inv = cloud(dir.path());
        if held_by(&inv, "servers", &id).is_empty() && held_by(&inv, "volumes", &id).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not released: {inv}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(usage(&s).await, before);
}
