//! The provisioning saga's workflows through the HTTP API against the simulated cloud,
//! with fault injection: the final status and fault, the recorded events, and what the
//! cloud holds (`troved sim list`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_body, TestServer};
use serde_json::{json, Value};
use troved::runtime::codec;
use troved::store::sqlite::SqliteStore;
use troved::store::EventStore;

/// The simulated cloud's inventory (live servers and volumes).
fn cloud(dir: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["sim", "list", "--data-dir"])
        .arg(dir)
        .output()
        .expect("troved sim list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON inventory")
}

fn of_instance<'a>(inventory: &'a Value, kind: &str, id: &str) -> Vec<&'a Value> {
    inventory[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instance_id"] == json!(id))
        .collect()
}

/// Waits until the cloud holds nothing of instance `id`.
async fn wait_released(dir: &std::path::Path, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let inv = cloud(dir);
        if of_instance(&inv, "servers", id).is_empty()
            && of_instance(&inv, "volumes", id).is_empty()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "resources of {id} not released: {inv}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events(dir: &std::path::Path, id: &str) -> Vec<&'static str> {
    let store = SqliteStore::open(&dir.join("events.db")).unwrap();
    let records = store.read_stream(&format!("instance-{id}")).await.unwrap();
    store.shutdown().await;
    records
        .iter()
        .map(|r| codec::decode(r).unwrap().0.event_type())
        .collect()
}

fn with_user(name: &str) -> Value {
    let mut b = create_body(name);
    b["instance"]["databases"] = json!([{"name": "app"}]);
    b["instance"]["users"] =
        json!([{"name": "appuser", "password": "guest-secret-77", "databases": [{"name": "app"}]}]);
    b
}

#[tokio::test]
async fn create_goes_active_with_addresses_usage_and_exactly_one_server_and_volume() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "20"]).await;
    let (status, created) = s.post("alice", "p1", "/instances", &with_user("web")).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance"]["status"], "BUILD");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let shown = s
        .wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(shown["operating_status"], "HEALTHY");
    assert!(
        shown["ip"].as_array().is_some_and(|a| !a.is_empty()),
        "{shown}"
    );
    assert!(shown["addresses"][0]["network"].is_string(), "{shown}");
    assert!(
        shown["volume"]["used"].as_f64().is_some_and(|u| u > 0.0),
        "{shown}"
    );
    assert!(shown["volume"]["used_percent"].is_number(), "{shown}");

    let (_, mgmt) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
    let inv = cloud(dir.path());
    let servers = of_instance(&inv, "servers", &id);
    let volumes = of_instance(&inv, "volumes", &id);
    assert_eq!((servers.len(), volumes.len()), (1, 1), "{inv}");
    assert_eq!(mgmt["instance"]["server"]["id"], servers[0]["id"]);
    assert_eq!(mgmt["instance"]["volume"]["id"], volumes[0]["id"]);
    assert_eq!(mgmt["instance"]["server_id"], servers[0]["id"]);
    assert_eq!(servers[0]["status"], "ACTIVE");
    assert_eq!(volumes[0]["attached_to"], servers[0]["id"]);
    // The guest got the user (its password only in memory, never in the cloud's file).
    assert_eq!(servers[0]["guest"]["users"], json!(["appuser"]), "{inv}");
    s.kill();
    let bytes = std::fs::read(dir.path().join("cloud.db")).unwrap();
    assert!(!bytes.windows(15).any(|w| w == b"guest-secret-77"));
    let log = events(dir.path(), &id).await;
    for e in [
        "InstanceCreated",
        "VolumeCreated",
        "ServerCreated",
        "GuestPrepared",
        "VolumeUsageReported",
        "ProvisioningCompleted",
    ] {
        assert!(log.contains(&e), "{e} missing from {log:?}");
    }
}

#[tokio::test]
async fn a_create_failing_at_any_step_ends_in_error_with_a_fault_and_releases_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("create_volume", "Failed to create volume for instance"),
        ("create_server", "Failed to create server for instance"),
        ("server_status", "Server not active, status: ERROR"),
        ("prepare", "Failed to prepare the guest of instance"),
        (
            "guest_status",
            "Service not active, status: failed to spawn",
        ),
    ];
    let mut args = vec!["--sim-latency-ms".to_string(), "10".to_string()];
    for (step, _) in &cases {
        args.push("--sim-fault".into());
        args.push(format!("{step}:name=fail-{step}-*:permanent"));
    }
    // A server made but whose answer is always lost: never recorded, still released.
    args.push("--sim-fault".into());
    args.push("create_server:name=fail-lost-*:lost:times=50".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = TestServer::start(dir.path(), &args).await;
    let cases = cases
        .into_iter()
        .chain([("lost", "Failed to create server for instance")]);
    for (step, message) in cases {
        let id = s.create("alice", "p1", &format!("fail-{step}-1")).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let failed = s
            .wait_for("alice", "p1", &id, |i| i["status"] == "ERROR")
            .await;
        let fault = failed["fault"]["message"].as_str().unwrap_or_default();
        assert!(fault.starts_with(message), "{step}: fault {fault:?}");
        assert!(failed["fault"]["created"].is_string());
        assert_eq!(
            failed["fault"]["details"],
            Value::Null,
            "details are for admins"
        );
        let (_, admin) = s.get("admin", "p1", &format!("/instances/{id}")).await;
        assert!(admin["instance"]["fault"]["details"].is_string(), "{admin}");
        wait_released(dir.path(), &id).await;
        // Deleting the failed instance works and leaves nothing.
        assert_eq!(
            s.delete("alice", "p1", &format!("/instances/{id}")).await.0,
            202
        );
        s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    }
    let inv = cloud(dir.path());
    assert_eq!(
        (
            inv["servers"].as_array().unwrap().len(),
            inv["volumes"].as_array().unwrap().len()
        ),
        (0, 0),
        "{inv}"
    );
}

#[tokio::test]
async fn failed_resources_can_be_kept_for_inspection_until_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "10",
            "--keep-failed-resources",
            "--sim-fault",
            "prepare:name=keep-*:permanent",
        ],
    )
    .await;
    let id = s.create("alice", "p1", "keep-1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ERROR")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inv = cloud(dir.path());
    assert_eq!(of_instance(&inv, "servers", &id).len(), 1, "kept: {inv}");
    assert_eq!(of_instance(&inv, "volumes", &id).len(), 1, "kept: {inv}");
    assert_eq!(
        s.delete("alice", "p1", &format!("/instances/{id}")).await.0,
        202
    );
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    wait_released(dir.path(), &id).await;
}

#[tokio::test]
async fn transient_faults_are_retried_and_a_silent_guest_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "10",
            "--build-timeout-secs",
            "2",
            "--sim-fault",
            "create_server:name=flaky-*:times=3",
            "--sim-fault",
            "guest_status:name=silent-*:hang",
        ],
    )
    .await;
    let flaky = s.create("alice", "p1", "flaky-1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let silent = s.create("alice", "p1", "silent-1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("alice", "p1", &flaky, |i| i["status"] == "ACTIVE")
        .await;
    let failed = s
        .wait_for("alice", "p1", &silent, |i| i["status"] == "ERROR")
        .await;
    assert_eq!(failed["fault"]["message"], "Polling request timed out.");
    wait_released(dir.path(), &silent).await;
    assert_eq!(
        of_instance(&cloud(dir.path()), "servers", &flaky).len(),
        1,
        "no duplicate after retries"
    );
}

/// The saga's steps are decided on the instance's stream as the command path last left
/// it (a cache, not a read): each step's event still names the event it reacted to and
/// continues the workflow of the user request before it.
#[tokio::test]
async fn each_saga_event_continues_the_workflow_of_the_user_request_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "5"]).await;
    let id = s.create_active("alice", "p1", "flow").await;
    let path = format!("/instances/{id}");
    let upgrade = json!({"instance": {"datastore_version": "5.7"}});
    assert_eq!(s.patch("alice", "p1", &path, &upgrade).await.0, 202);
    s.wait_for("alice", "p1", &id, |i| {
        i["status"] == "ACTIVE" && i["datastore"]["version"] == "5.7"
    })
    .await;

    let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
    let records = store.read_stream(&format!("instance-{id}")).await.unwrap();
    store.shutdown().await;
    let mut workflows = Vec::new();
    let mut seen = Vec::new();
    for r in &records {
        let (event, meta) = codec::decode(r).unwrap();
        if meta.actor.user_id == "troved-saga" {
            let workflow = workflows.last().copied();
            assert_eq!(
                Some(meta.correlation_id),
                workflow,
                "{} at revision {} is not in the workflow of the request before it",
                event.event_type(),
                r.revision
            );
            assert!(
                seen.contains(&meta.causation_id),
                "{} at revision {} names no earlier event as its cause",
                event.event_type(),
                r.revision
            );
        } else {
            workflows.push(meta.correlation_id);
        }
        seen.push(r.id);
    }
    assert_eq!(workflows.len(), 2, "the create and the upgrade request");
    assert_ne!(workflows[0], workflows[1]);
    let after_upgrade = records
        .iter()
        .skip_while(|r| {
            codec::decode(r).unwrap().0.event_type() != "DatastoreVersionUpgradeRequested"
        })
        .skip(1)
        .count();
    assert!(
        after_upgrade >= 1,
        "the saga recorded the upgrade's outcome"
    );
}

#[tokio::test]
async fn upgrade_configuration_and_replica_workflows_reach_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "10",
            "--sim-fault",
            "upgrade:name=brittle*:permanent",
        ],
    )
    .await;
    let id = s.create_active("alice", "p1", "main").await;
    let path = format!("/instances/{id}");

    // Upgrade: UPGRADE, then ACTIVE on the new version; the guest ran the upgrade.
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
    assert_eq!(upgraded["operating_status"], "HEALTHY");

    // Configuration attach and detach are applied by the guest.
    let (status, group) = s
        .post("alice", "p1", "/configurations", &json!({"configuration": {"name": "g", "values": {"max_connections": 150}, "datastore": {"type": "mysql", "version": "5.7"}}}))
        .await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.put(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"configuration": gid}})
        )
        .await
        .0,
        202
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inv = cloud(dir.path());
        let server = of_instance(&inv, "servers", &id)[0].clone();
        let ops: Vec<String> = server["guest"]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        if ops.iter().any(|k| k.contains("upgrade"))
            && ops.iter().any(|k| k.contains("configuration"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "guest operations: {ops:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.put(
            "alice",
            "p1",
            &path,
            &json!({"instance": {"configuration": null}})
        )
        .await
        .0,
        202
    );
    // The detach reaches the guest too: it no longer runs the group's values.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inv = cloud(dir.path());
        let guest = of_instance(&inv, "servers", &id)[0]["guest"].clone();
        if guest["configuration"].is_null() {
            assert_eq!(guest["datastore_version"], "5.7", "upgraded guest: {guest}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "detach never reached the guest: {guest}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A replica is prepared against its primary, then detached on the guest.
    let (status, rep) = s
        .post(
            "alice",
            "p1",
            "/instances",
            &json!({"instance": {"name": "rep", "replica_of": id}}),
        )
        .await;
    assert_eq!(status, 200, "{rep}");
    let rid = rep["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("alice", "p1", &rid, |i| i["status"] == "ACTIVE")
        .await;
    let inv = cloud(dir.path());
    assert_eq!(
        of_instance(&inv, "servers", &rid)[0]["guest"]["replica_of"],
        json!(id),
        "{inv}"
    );
    assert_eq!(
        s.put(
            "alice",
            "p1",
            &format!("/instances/{rid}"),
            &json!({"instance": {"replica_of": null}})
        )
        .await
        .0,
        202
    );
    let detached = s
        .wait_for("alice", "p1", &rid, |i| {
            i["status"] == "ACTIVE" && i.get("replica_of").is_none()
        })
        .await;
    assert!(detached.get("replica_of").is_none());

    // A failing upgrade ends in ERROR with a fault (upstream records none).
    let brittle = s.create("alice", "p1", "brittle").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("alice", "p1", &brittle, |i| i["status"] == "ACTIVE")
        .await;
    let (status, _) = s
        .patch(
            "alice",
            "p1",
            &format!("/instances/{brittle}"),
            &json!({"instance": {"datastore_version": "5.7"}}),
        )
        .await;
    assert_eq!(status, 202);
    let failed = s
        .wait_for("alice", "p1", &brittle, |i| i["status"] == "ERROR")
        .await;
    assert!(
        failed["fault"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to upgrade instance"),
        "{failed}"
    );
    // A failed upgrade is not a failed build: the database keeps its server and data.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inv = cloud(dir.path());
    assert_eq!(of_instance(&inv, "servers", &brittle).len(), 1, "{inv}");
    assert_eq!(of_instance(&inv, "volumes", &brittle).len(), 1, "{inv}");
}

#[tokio::test]
async fn delete_removes_server_volume_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "10"]).await;
    let id = s.create_active("alice", "p1", "doomed").await;
    assert_eq!(
        s.delete("alice", "p1", &format!("/instances/{id}")).await.0,
        202
    );
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    wait_released(dir.path(), &id).await;
    s.kill();
    let log = events(dir.path(), &id).await;
    let tail: Vec<_> = log.iter().rev().take(4).rev().copied().collect();
    assert_eq!(
        tail,
        [
            "InstanceDeletionRequested",
            "ServerDeleted",
            "VolumeDeleted",
            "InstanceDeleted"
        ],
        "{log:?}"
    );
}

#[tokio::test]
async fn an_exhausted_zone_fails_the_build_with_a_clear_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &["--sim-latency-ms", "0", "--sim-zone", "nova:vcpus=1"],
    )
    .await;
    let first = s.create("alice", "p1", "fits").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("alice", "p1", &first, |i| i["status"] == "ACTIVE")
        .await;
    let second = s.create("alice", "p1", "too-many").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = s
        .wait_for("alice", "p1", &second, |i| i["status"] == "ERROR")
        .await;
    let fault = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(fault.contains("Insufficient capacity"), "{fault}");
    wait_released(dir.path(), &second).await;
}

/// The guest refusing an access update for good (here an injected permanent fault of
/// `restrict_access`, as the local provider refuses a CIDR it cannot parse) fails the
/// update with a fault instead of retrying it forever in UPDATING.
#[tokio::test]
async fn an_access_update_the_guest_refuses_fails_with_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "10",
            "--sim-fault",
            "restrict_access:name=walled-*:permanent",
        ],
    )
    .await;
    let id = s.create_active("alice", "p1", "walled-1").await;
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &format!("/instances/{id}"),
            &json!({"instance": {"access": {"allowed_cidrs": ["10.0.0.0/8"]}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let failed = s
        .wait_for("alice", "p1", &id, |i| i["status"] == "ERROR")
        .await;
    let message = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("Failed to update access of instance {id}")),
        "{failed}"
    );
    assert!(events(dir.path(), &id)
        .await
        .contains(&"AccessUpdateFailed"));
}
