//! Lost state files (issue #12, defect 2), against the real `troved` binary: a vault
//! (`secrets.db`) or a provider state (`cloud.db`) that is missing while the log holds
//! instances that need it refuses to start, naming the file and the way out; a secret
//! that cannot be unsealed fails the build with a fault instead of an empty password;
//! instances whose server or volume is gone are recorded as lost (ERROR with a fault, no
//! address or volume usage claimed), at start and on demand, and can still be deleted,
//! releasing their quota once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};

/// A create body with a user whose password must be unsealed for the guest.
fn create_with_user(name: &str) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": "mysql", "version": "8.0"},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}]
    }})
}

/// Runs `troved serve` on `data_dir` expecting it to refuse to start: its exit status
/// must be a failure within 20 s; returns what it wrote to stderr.
fn refused_start(data_dir: &Path, extra: &[&str]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(common::sim_unless_named(extra))
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn troved");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait for troved") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr piped")
                .read_to_string(&mut err)
                .expect("stderr read");
            assert!(!status.success(), "troved exited 0: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("troved started instead of refusing (still running after 20 s)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Moves `name` (and its SQLite side files) out of `dir` into `to`.
fn move_away(dir: &Path, name: &str, to: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let from = dir.join(format!("{name}{suffix}"));
        if from.exists() {
            std::fs::rename(&from, to.join(format!("{name}{suffix}"))).expect("move away");
        }
    }
}

/// Moves them back.
fn move_back(dir: &Path, name: &str, from: &Path) {
    move_away(from, name, dir);
}

fn addresses(instance: &Value) -> Vec<String> {
    instance["ip"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn show(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.get("alice", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["instance"].clone()
}

async fn create_id(server: &TestServer, body: &Value) -> String {
    let (status, created) = server.post("alice", "p1", "/instances", body).await;
    assert_eq!(status, 200, "create failed: {created}");
    created["instance"]["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

#[tokio::test]
async fn a_lost_vault_refuses_to_start_until_restored_or_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    let id = create_id(&server, &create_with_user("orders")).await;
    server
        .wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    server.kill();

    move_away(&data, "secrets.db", aside.path());
    let err = refused_start(&data, &["--sim-latency-ms", "0"]);
    let path = data.join("secrets.db");
    assert!(
        err.contains(&path.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains("--accept-lost-secrets"),
        "says the way out: {err}"
    );
    assert!(err.contains("1 instance"), "counts what needs it: {err}");
    assert!(!path.exists(), "the refusal created no new vault");

    // Restored from the backup: starts, nothing lost.
    move_back(&data, "secrets.db", aside.path());
    let mut server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    assert_eq!(show(&server, &id).await["status"], "ACTIVE");
    server.kill();

    // Lost for good, and the operator says so: it starts, records the loss, and the
    // next start needs no flag.
    move_away(&data, "secrets.db", aside.path());
    let mut server =
        TestServer::start(&data, &["--sim-latency-ms", "0", "--accept-lost-secrets"]).await;
    assert_eq!(show(&server, &id).await["status"], "ACTIVE");
    server.kill();
    let server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    assert_eq!(show(&server, &id).await["status"], "ACTIVE");
    let (status, history) = server
        .get("alice", "p1", &format!("/instances/{id}/history"))
        .await;
    assert_eq!(status, 200, "{history}");
    assert!(
        history.to_string().contains("InstanceSecretsLost"),
        "the loss is in the log: {history}"
    );
}

#[tokio::test]
async fn a_fresh_data_dir_starts_without_flags_and_an_empty_log_needs_no_vault() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    server.kill();
    // Nothing in the log needs either file: both may go.
    let aside = tempfile::tempdir().unwrap();
    move_away(&data, "secrets.db", aside.path());
    move_away(&data, "cloud.db", aside.path());
    let _server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
}

#[tokio::test]
async fn a_build_whose_secret_cannot_be_unsealed_ends_in_error_never_active() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The server create hangs: the build stays before "prepare" until the restart.
    let mut server = TestServer::start(
        &data,
        &["--sim-latency-ms", "0", "--sim-fault", "create_server:hang"],
    )
    .await;
    let id = create_id(&server, &create_with_user("pending")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(show(&server, &id).await["status"], "BUILD");
    server.kill();

    move_away(&data, "secrets.db", aside.path());
    let server = TestServer::start(
        &data,
        &[
            "--sim-latency-ms",
            "0",
            "--keep-failed-resources",
            "--accept-lost-secrets",
        ],
    )
    .await;
    let inst = server
        .wait_for("alice", "p1", &id, |i| {
            i["status"] == "ERROR" || i["status"] == "ACTIVE"
        })
        .await;
    assert_eq!(inst["status"], "ERROR", "{inst}");
    let message = inst["fault"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unseal") && message.contains("app"),
        "the fault names what could not be unsealed: {inst}"
    );
    // The guest was never prepared with an (empty) password: the failed build's server
    // is kept (`--keep-failed-resources`) and has no guest.
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["sim", "list", "--data-dir"])
        .arg(&data)
        .output()
        .expect("troved sim list");
    let inventory: Value = serde_json::from_slice(&out.stdout).expect("inventory JSON");
    let servers: Vec<&Value> = inventory["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instance_id"] == id.as_str())
        .collect();
    assert_eq!(servers.len(), 1, "{inventory}");
    assert!(
        servers[0]["guest"].is_null(),
        "no guest prepared: {inventory}"
    );
}

#[tokio::test]
async fn a_lost_cloud_state_refuses_to_start_then_lost_instances_show_error_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--sim-latency-ms", "0", "--quota-instances", "3"];
    let mut server = TestServer::start(&data, &flags).await;
    let a = server.create_active("alice", "p1", "a").await;
    let b = server.create_active("alice", "p1", "b").await;
    let a_ip = server
        .wait_for("alice", "p1", &a, |i| !addresses(i).is_empty())
        .await;
    assert!(!addresses(&a_ip).is_empty());
    server.kill();

    move_away(&data, "cloud.db", aside.path());
    let err = refused_start(&data, &flags);
    let path = data.join("cloud.db");
    assert!(
        err.contains(&path.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains("--accept-lost-cloud-state"),
        "says the way out: {err}"
    );
    assert!(!path.exists(), "the refusal created no new cloud state");

    let mut accepted = flags.to_vec();
    accepted.push("--accept-lost-cloud-state");
    let mut server = TestServer::start(&data, &accepted).await;
    for id in [&a, &b] {
        let inst = show(&server, id).await;
        assert_eq!(inst["status"], "ERROR", "{inst}");
        assert!(
            inst["fault"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no longer")),
            "a fault says what is gone: {inst}"
        );
        assert!(addresses(&inst).is_empty(), "no address claimed: {inst}");
        assert!(inst["volume"]["used"].is_null(), "no usage claimed: {inst}");
    }

    // A new instance: its address is claimed by it alone.
    let c = server.create_active("alice", "p1", "c").await;
    let c_inst = server
        .wait_for("alice", "p1", &c, |i| !addresses(i).is_empty())
        .await;
    let (_, list) = server.get("alice", "p1", "/instances").await;
    for other in list["instances"].as_array().unwrap() {
        if other["id"] != c.as_str() {
            for ip in addresses(other) {
                assert!(!addresses(&c_inst).contains(&ip), "{ip} claimed twice");
            }
        }
    }

    // Quota 3 is used by a, b, c; deleting a lost instance works and frees one slot,
    // once.
    let (status, body) = server
        .post("alice", "p1", "/instances", &common::create_body("d"))
        .await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = server
        .delete("alice", "p1", &format!("/instances/{a}"))
        .await;
    assert_eq!(status, 202, "{body}");
    server.wait_for("alice", "p1", &a, |i| i.is_null()).await;
    server.create_active("alice", "p1", "d").await;
    let (status, body) = server
        .post("alice", "p1", "/instances", &common::create_body("e"))
        .await;
    assert_eq!(status, 413, "quota released once: {body}");
    server.kill();

    // The loss is recorded: the next start needs no flag.
    let server = TestServer::start(&data, &flags).await;
    assert_eq!(show(&server, &b).await["status"], "ERROR");
}

/// Marks the simulated cloud's server of `instance` deleted behind troved's back, as
/// another administrator of a real cloud could (the simulator has no API for it: the
/// test writes its file, as an external cloud's state would change).
fn remove_server_behind_troveds_back(data: &Path, instance: &str) {
    let conn = rusqlite::Connection::open(data.join("cloud.db")).expect("open cloud.db");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    // As the cloud's own delete does: the server goes, its volumes are detached.
    let changed = conn
        .execute_batch(&format!(
            "BEGIN IMMEDIATE;
             UPDATE volumes SET attached_to = NULL WHERE attached_to IN
                 (SELECT id FROM servers WHERE instance_id = '{instance}' AND deleted_ms IS NULL);
             UPDATE servers SET deleted_ms = 1 WHERE instance_id = '{instance}' AND deleted_ms IS NULL;
             COMMIT;"
        ))
        .map(|()| conn.changes());
    assert_eq!(changed.expect("update cloud.db"), 1);
}

/// `troved sim check --data-dir DIR`: (exit status success, its JSON report).
fn sim_check(data: &Path) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["sim", "check", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "error")
        .output()
        .expect("troved sim check");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sim check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

#[tokio::test]
async fn the_on_demand_check_records_a_server_removed_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let server = TestServer::start(&data, &["--sim-latency-ms", "0"]).await;
    let kept = server.create_active("alice", "p1", "kept").await;
    let gone = server.create_active("alice", "p1", "gone").await;
    server
        .wait_for("alice", "p1", &gone, |i| !addresses(i).is_empty())
        .await;
    remove_server_behind_troveds_back(&data, &gone);

    // The read-only check beside the running server sees it, and records nothing.
    let (ok, report) = sim_check(&data);
    assert!(!ok, "{report}");
    assert_eq!(report["lost"][0]["instance_id"], gone.as_str(), "{report}");
    assert_eq!(show(&server, &gone).await["status"], "ACTIVE");

    // Only admins may run it.
    let (status, body) = server
        .post("alice", "p1", "/mgmt/reconcile", &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");

    let (status, report) = server
        .post("admin", "p1", "/mgmt/reconcile", &json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    let lost = report["reconciliation"]["lost"]
        .as_array()
        .expect("lost list");
    assert_eq!(lost.len(), 1, "{report}");
    assert_eq!(lost[0]["instance_id"], gone.as_str());
    assert!(lost[0]["server_id"].is_string(), "{report}");

    let inst = show(&server, &gone).await;
    assert_eq!(inst["status"], "ERROR", "{inst}");
    assert!(addresses(&inst).is_empty(), "{inst}");
    assert_eq!(show(&server, &kept).await["status"], "ACTIVE");

    let (ok, report) = sim_check(&data);
    assert!(
        ok,
        "recorded: no instance claims the server any more: {report}"
    );
    assert_eq!(report["lost"], json!([]));

    // Asked again: nothing new.
    let (status, report) = server
        .post("admin", "p1", "/mgmt/reconcile", &json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reconciliation"]["lost"], json!([]), "{report}");

    // And the lost instance can be deleted.
    let (status, body) = server
        .delete("alice", "p1", &format!("/instances/{gone}"))
        .await;
    assert_eq!(status, 202, "{body}");
    server.wait_for("alice", "p1", &gone, |i| i.is_null()).await;
}
