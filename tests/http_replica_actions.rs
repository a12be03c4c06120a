//! `POST /instances/{id}/action` with `promote_to_replica_source` and
//! `eject_replica_source` (issue #15) against the simulated cloud: the statuses a client
//! sees, the topology of show and list afterwards, what the cloud's guests follow, and
//! the refusals in Trove's error bodies.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_body, send, Serve, TestServer};
use serde_json::{json, Value};

/// The simulated cloud's inventory (live servers with their guests).
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

/// What the guest of instance `id` replicates from, per the cloud.
fn guest_source(inv: &Value, id: &str) -> Value {
    inv["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instance_id"] == json!(id))
        .map(|s| s["guest"]["replica_of"].clone())
        .unwrap_or(Value::Null)
}

async fn replica(s: &TestServer, of: &str, name: &str) -> String {
    let (status, body) = s
        .post(
            "alice",
            "p1",
            "/instances",
            &json!({"instance": {"name": name, "replica_of": of}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    id
}

async fn action(s: &TestServer, project: &str, id: &str, body: Value) -> (u16, Value) {
    s.post("alice", project, &format!("/instances/{id}/action"), &body)
        .await
}

fn promote() -> Value {
    json!({"promote_to_replica_source": {}})
}

fn eject() -> Value {
    json!({"eject_replica_source": {}})
}

/// The ids of `replicas` in a view.
fn replica_ids(view: &Value) -> BTreeSet<String> {
    view["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn promote_shows_promote_on_the_whole_set_then_the_new_topology() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "150"]).await;
    let p = s.create_active("alice", "p1", "src").await;
    let r1 = replica(&s, &p, "r1").await;
    let r2 = replica(&s, &p, "r2").await;

    let (status, body) = action(&s, "p1", &r1, promote()).await;
    assert_eq!((status, &body), (202, &Value::Null));
    // Every member shows PROMOTE at once (upstream sets the task on the whole set).
    for id in [&p, &r1, &r2] {
        let (_, shown) = s.get("alice", "p1", &format!("/instances/{id}")).await;
        assert_eq!(shown["instance"]["status"], "PROMOTE", "{id}: {shown}");
    }
    // A second switch of the same set meanwhile is refused: the members are busy.
    let (status, body) = action(&s, "p1", &r2, promote()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["unprocessableEntity"]["code"], 422, "{body}");

    let new_source = s
        .wait_for("alice", "p1", &r1, |i| {
            i["status"] == "ACTIVE" && i.get("replica_of").is_none()
        })
        .await;
    assert_eq!(
        replica_ids(&new_source),
        BTreeSet::from([p.clone(), r2.clone()]),
        "{new_source}"
    );
    for id in [&p, &r2] {
        let shown = s
            .wait_for("alice", "p1", id, |i| i["status"] == "ACTIVE")
            .await;
        assert_eq!(shown["replica_of"]["id"], json!(r1), "{id}: {shown}");
        assert!(shown.get("replicas").is_none(), "{shown}");
    }
    // The list shows the same topology.
    let (_, list) = s.get("alice", "p1", "/instances").await;
    for item in list["instances"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        if id == r1 {
            assert!(item.get("replica_of").is_none(), "{item}");
        } else {
            assert_eq!(item["replica_of"]["id"], json!(r1), "{item}");
        }
    }
    // The cloud's guests follow the new source.
    let inv = cloud(dir.path());
    assert_eq!(guest_source(&inv, &r1), Value::Null, "{inv}");
    assert_eq!(guest_source(&inv, &p), json!(r1), "{inv}");
    assert_eq!(guest_source(&inv, &r2), json!(r1), "{inv}");

    // The old source can be promoted back: the set switches again.
    let (status, _) = action(&s, "p1", &p, promote()).await;
    assert_eq!(status, 202);
    s.wait_for("alice", "p1", &p, |i| {
        i["status"] == "ACTIVE" && i.get("replica_of").is_none()
    })
    .await;
    let back = s
        .wait_for("alice", "p1", &r1, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(back["replica_of"]["id"], json!(p), "{back}");
}

#[tokio::test]
async fn refusals_have_trove_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "5"]).await;
    let p = s.create_active("alice", "p1", "src").await;
    let r = replica(&s, &p, "r").await;
    let bad = |status: u16, body: &Value, key: &str, message: &str| {
        assert_eq!(status, body[key]["code"], "{body}");
        assert_eq!(body[key]["message"], message, "{body}");
    };

    let (status, body) = action(&s, "p1", &p, promote()).await;
    assert_eq!(status, 400);
    bad(
        status,
        &body,
        "badRequest",
        &format!("Instance {p} is not a replica."),
    );

    let (status, body) = action(&s, "p1", &r, eject()).await;
    assert_eq!(status, 400);
    bad(
        status,
        &body,
        "badRequest",
        &format!("Instance {r} is not a replica source."),
    );

    let (status, body) = action(&s, "p1", &p, eject()).await;
    assert_eq!(status, 400);
    bad(
        status,
        &body,
        "badRequest",
        &format!("Replica Source {p} cannot be ejected as it has a current heartbeat"),
    );

    // Another project's instance does not exist for the caller.
    for b in [promote(), eject()] {
        let (status, body) = action(&s, "p2", &r, b).await;
        assert_eq!(status, 404);
        bad(
            status,
            &body,
            "itemNotFound",
            &format!("Resource {r} cannot be found."),
        );
    }
    let (status, body) = action(&s, "p1", "not-a-uuid", promote()).await;
    assert_eq!(
        (status, body["itemNotFound"]["code"].clone()),
        (404, json!(404))
    );

    // Bodies: an unknown action, two actions, none.
    let (status, body) = action(&s, "p1", &r, json!({"explode": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["badRequest"]["code"], 400, "{body}");
    let both = json!({"promote_to_replica_source": {}, "eject_replica_source": {}});
    let (status, body) = action(&s, "p1", &r, both).await;
    assert_eq!(status, 400, "{body}");
    bad(
        status,
        &body,
        "badRequest",
        "Only one action can be performed at a time, one of: restart, resize, \
         reset_status, promote_to_replica_source, eject_replica_source.",
    );
    let (status, body) = action(&s, "p1", &r, json!({})).await;
    assert_eq!(status, 400, "{body}");
    bad(status, &body, "badRequest", "Invalid request body.");

    // Nothing changed.
    let shown = s
        .wait_for("alice", "p1", &r, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(shown["replica_of"]["id"], json!(p));
}

#[tokio::test]
async fn a_failed_promote_leaves_every_member_in_error_with_the_topology_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "5",
            "--sim-fault",
            "promote:name=doomed-*:permanent",
        ],
    )
    .await;
    let p = s.create_active("alice", "p1", "src").await;
    let r = replica(&s, &p, "doomed-r").await;
    let (status, _) = action(&s, "p1", &r, promote()).await;
    assert_eq!(status, 202);
    for id in [&p, &r] {
        let failed = s
            .wait_for("alice", "p1", id, |i| i["status"] == "ERROR")
            .await;
        let message = failed["fault"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("Failed to promote instance {r} to replica source")),
            "{failed}"
        );
    }
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{r}")).await;
    assert_eq!(shown["instance"]["replica_of"]["id"], json!(p), "{shown}");
    let inv = cloud(dir.path());
    assert_eq!(guest_source(&inv, &r), json!(p), "{inv}");
}

/// Polls `/instances/{id}` on `s` until `pred` holds.
async fn wait_serve(s: &Serve, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = send(s.req(reqwest::Method::GET, &format!("/instances/{id}"))).await;
        if status == 200 && pred(&body["instance"]) {
            return body["instance"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "never reached; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create_on(s: &Serve, body: Value) -> String {
    let (status, created) = send(s.req(reqwest::Method::POST, "/instances").json(&body)).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    wait_serve(s, &id, |i| i["status"] == "ACTIVE").await;
    id
}

#[tokio::test]
async fn a_promote_cut_short_by_a_crash_finishes_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The switch never answers: troved is killed while it waits.
    let hang = ["--sim-latency-ms", "5", "--sim-fault", "promote:hang"];
    let s = Serve::start(dir.path(), &hang).await;
    let p = create_on(&s, create_body("src")).await;
    let r = create_on(&s, json!({"instance": {"name": "r", "replica_of": p}})).await;
    let path = format!("/instances/{r}/action");
    let (status, _) = send(s.req(reqwest::Method::POST, &path).json(&promote())).await;
    assert_eq!(status, 202);
    wait_serve(&s, &p, |i| i["status"] == "PROMOTE").await;
    drop(s); // SIGKILL

    let s = Serve::start(dir.path(), &["--sim-latency-ms", "5"]).await;
    let new_source = wait_serve(&s, &r, |i| {
        i["status"] == "ACTIVE" && i.get("replica_of").is_none()
    })
    .await;
    assert_eq!(replica_ids(&new_source), BTreeSet::from([p.clone()]));
    let old = wait_serve(&s, &p, |i| i["status"] == "ACTIVE").await;
    assert_eq!(old["replica_of"]["id"], json!(r), "{old}");
    let inv = cloud(dir.path());
    assert_eq!(guest_source(&inv, &p), json!(r), "{inv}");
}

#[tokio::test]
async fn a_switching_member_is_not_deleted_and_is_reset_after_its_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    // The switch never answers: the set stays PROMOTE.
    let s = TestServer::start(
        dir.path(),
        &["--sim-latency-ms", "5", "--sim-fault", "promote:hang"],
    )
    .await;
    let p = s.create_active("alice", "p1", "src").await;
    let r = replica(&s, &p, "r").await;
    let (status, _) = action(&s, "p1", &r, promote()).await;
    assert_eq!(status, 202);
    s.wait_for("alice", "p1", &p, |i| i["status"] == "PROMOTE")
        .await;

    // A member is not deleted while its set switches.
    for id in [&p, &r] {
        let (status, body) = s.delete("alice", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(
            body["unprocessableEntity"]["message"],
            format!(
                "Instance {id} is not currently available for an action to be performed \
                 (task status was PROMOTING)."
            ),
            "{body}"
        );
    }
    // The old source's reset is refused while the promoted replica runs the switch.
    let reset = json!({"reset_status": {}});
    let (status, body) = s
        .post("admin", "p1", &format!("/instances/{p}/action"), &reset)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["unprocessableEntity"]["message"],
        format!(
            "Instance {p} is switching its replica set with instance {r}: reset the status \
             of {r} first."
        ),
        "{body}"
    );
    // The coordinator first, then the member: both idle again, the topology as before.
    for id in [&r, &p] {
        let (status, body) = s
            .post("admin", "p1", &format!("/instances/{id}/action"), &reset)
            .await;
        assert_eq!(status, 202, "{id}: {body}");
    }
    let shown = s
        .wait_for("alice", "p1", &r, |i| i["status"] != "PROMOTE")
        .await;
    assert_eq!(shown["replica_of"]["id"], json!(p), "{shown}");
    s.wait_for("alice", "p1", &p, |i| i["status"] != "PROMOTE")
        .await;
    // Then the replica may go.
    let (status, body) = s.delete("alice", "p1", &format!("/instances/{r}")).await;
    assert_eq!(status, 202, "{body}");
}
