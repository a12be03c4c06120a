//! Crash safety of `troved serve --provider local` (issue #13): troved killed with
//! `kill -9` while real database servers are being built, or while they run.
//!
//! What must hold: database servers outlive troved and are re-adopted (same pids) by the
//! next troved; an interrupted build ends ACTIVE or ERROR, never stuck; there is never a
//! second server on one data directory; and once the instances are deleted nothing is
//! left: no process, mount, loop device, image, directory or port reservation.
//!
//! The checks look from outside: `/proc` (every process whose command line names a path
//! under the test's local root), `/proc/self/mountinfo`, `losetup -a`, the files, and
//! `troved local list`. Each test has its own data directory and `--local-ports` range
//! (32100-32299; `tests/local_provider.rs` uses 31000-31299). A `Drop` guard kills every
//! process under the root by pid and unmounts and detaches what is left, even when an
//! assertion failed.

mod common;

use common::local::installation;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{loops_under, mounts_under, processes_under, servers_by_data_dir, Guard};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

/// A troved with the local provider on a fresh data directory, and its guard.
struct Fixture {
    // Dropped in this order: troved first, then what it left, then the files.
    server: TestServer,
    guard: Guard,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(ports: &str) -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The database user must traverse to the data directory (a tempdir is 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        // Canonical: the processes' command lines and the mount table have no symlinks.
        let data_dir = dir.path().canonicalize().unwrap().join("data");
        let guard = Guard {
            root: data_dir.join("local"),
        };
        let args = [
            "--provider",
            "local",
            "--local-ports",
            ports,
            "--quota-instances",
            "-1",
            "--quota-volumes",
            "-1",
        ];
        let server = TestServer::start(&data_dir, &args).await;
        Fixture {
            server,
            guard,
            _dir: dir,
        }
    }

    fn root(&self) -> &Path {
        &self.guard.root
    }

    fn list(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_troved"))
            .args(["local", "list", "--data-dir"])
            .arg(&self.server.data_dir)
            .output()
            .expect("run troved local list");
        assert!(
            out.status.success(),
            "troved local list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("local list prints JSON")
    }

    /// The listed servers by instance id: (pid, port, data_dir).
    fn listed(&self) -> HashMap<String, (Option<u64>, u16, String)> {
        let list = self.list();
        list["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let id = s["instance_id"].as_str().unwrap_or_default().to_string();
                let port = s["port"].as_u64().unwrap_or_default() as u16;
                let dir = s["data_dir"].as_str().unwrap_or_default().to_string();
                (id, (s["pid"].as_u64(), port, dir))
            })
            .collect()
    }
}

fn create_body(name: &str, install: &Installation) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }})
}

/// `select 1` as `app` on `orders` over TCP; Ok(stdout) or Err(stderr).
fn connect(install: &Installation, port: u16) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://app:s3cret-pw@127.0.0.1:{port}/orders"
            ))
            .args(["-X", "-w", "-A", "-t", "-c", "select 1"])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
            .args([&port, "-u", "app", "-ps3cret-pw", "orders", "-N", "-e"])
            .arg("select 1")
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls show until every instance is ACTIVE or ERROR (at most `within`); their shows.
async fn wait_settled(s: &TestServer, ids: &[String], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut shown = Vec::new();
        for id in ids {
            let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
            assert_eq!(status, 200, "{body}");
            shown.push(body["instance"].clone());
        }
        let pending: Vec<String> = shown
            .iter()
            .filter(|i| !matches!(i["status"].as_str(), Some("ACTIVE" | "ERROR")))
            .map(|i| format!("{} {}", i["id"], i["status"]))
            .collect();
        if pending.is_empty() {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "stuck after {within:?}: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delete_all(s: &TestServer, ids: &[String]) {
    for id in ids {
        let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 202, "delete {id}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in ids {
        loop {
            let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
            if status == 404 {
                break;
            }
            assert!(Instant::now() < deadline, "not deleted in time: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Nothing of any instance is left under the root.
fn assert_no_orphans(f: &Fixture) {
    let root = f.root();
    assert_eq!(f.list(), json!({"servers": [], "volumes": []}));
    let procs = processes_under(root);
    assert!(procs.is_empty(), "orphan processes: {procs:?}");
    let mounts = mounts_under(root);
    assert!(mounts.is_empty(), "orphan mounts: {mounts:?}");
    let loops = loops_under(root);
    assert!(loops.is_empty(), "orphan loop devices: {loops:?}");
    for sub in ["volumes", "servers"] {
        let left: Vec<String> = std::fs::read_dir(root.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left in {sub}/: {left:?}");
    }
}

/// Every ACTIVE instance has exactly one server process on its data directory, and no
/// data directory under the root has two; returns the instances' ports.
fn assert_one_server_each(f: &Fixture, shown: &[Value]) -> HashMap<String, u16> {
    let procs = servers_by_data_dir(f.root());
    let dups: Vec<_> = procs.iter().filter(|(_, p)| p.len() > 1).collect();
    assert!(
        dups.is_empty(),
        "two servers on one data directory: {dups:?}"
    );
    let listed = f.listed();
    // Every server process is one troved knows of (recorded with that pid).
    let known: Vec<u32> = listed
        .values()
        .filter_map(|l| l.0)
        .map(|p| p as u32)
        .collect();
    let unknown: Vec<_> = procs
        .iter()
        .filter(|(_, pids)| pids.iter().any(|p| !known.contains(p)))
        .collect();
    assert!(
        unknown.is_empty(),
        "servers troved does not know: {unknown:?}"
    );
    let mut ports = HashMap::new();
    for inst in shown.iter().filter(|i| i["status"] == "ACTIVE") {
        let id = inst["id"].as_str().unwrap();
        let (pid, port, dir) = listed
            .get(id)
            .unwrap_or_else(|| panic!("ACTIVE {id} not in local list"));
        let running = procs.get(dir).cloned().unwrap_or_default();
        assert_eq!(running.len(), 1, "servers on {dir}: {running:?}");
        assert_eq!(
            pid.map(|p| p as u32),
            Some(running[0]),
            "recorded pid of {id}"
        );
        ports.insert(id.to_string(), *port);
    }
    ports
}

/// A number of milliseconds in `lo..hi` that differs from run to run.
fn jitter_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    lo + nanos % (hi - lo)
}

/// Ten concurrent creates, troved killed with -9 while they build, restarted: every
/// instance ends ACTIVE or ERROR, each ACTIVE one is served by exactly one process and
/// connectable; after deleting them all, nothing is left.
#[tokio::test]
async fn kill_9_during_ten_concurrent_creates_leaves_no_stuck_build_and_no_orphan() {
    let Some(pg) = installation(Datastore::Postgresql).await else {
        return;
    };
    let maria = installation(Datastore::Mariadb).await;
    let mut f = Fixture::start("32100-32199").await;
    // One ACTIVE instance per datastore first: the per-version templates exist, so the
    // kill lands in the builds proper (copy, start, users), and these two must come
    // through the crash untouched.
    let mut ids = Vec::new();
    let mut kinds = HashMap::new();
    for install in std::iter::once(&pg).chain(maria.as_ref()) {
        let body = create_body("warm", install);
        let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
        assert_eq!(status, 200, "{created}");
        let id = created["instance"]["id"].as_str().unwrap().to_string();
        kinds.insert(id.clone(), install.clone());
        ids.push(id);
    }
    wait_settled(&f.server, &ids, Duration::from_secs(120)).await;
    // Two of the ten are MariaDB when it is installed.
    let installs: Vec<Installation> = (0..10)
        .map(|i| match (&maria, i % 5) {
            (Some(m), 4) => m.clone(),
            _ => pg.clone(),
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, install) in installs.iter().enumerate() {
        let req = f
            .server
            .req(reqwest::Method::POST, "u", "p1", "/instances")
            .json(&create_body(&format!("crash-{i}"), install));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.expect("POST");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }));
    }
    for (t, install) in tasks.into_iter().zip(&installs) {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let id = body["instance"]["id"].as_str().unwrap().to_string();
        kinds.insert(id.clone(), install.clone());
        ids.push(id);
    }
    // `LOCAL_CRASH_DELAY_MS` pins the delay (to replay a failure); else 200-1500 ms.
    let delay = std::env::var("LOCAL_CRASH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| jitter_ms(200, 1500));
    tokio::time::sleep(Duration::from_millis(delay)).await;
    f.server.kill();
    println!("troved killed {delay} ms after the creates");
    f.server.restart().await;

    let shown = wait_settled(&f.server, &ids, Duration::from_secs(240)).await;
    for inst in shown.iter().filter(|i| i["status"] == "ERROR") {
        println!("ERROR after the crash: {} {}", inst["id"], inst["fault"]);
    }
    let ports = assert_one_server_each(&f, &shown);
    for (id, port) in &ports {
        assert_eq!(connect(&kinds[id], *port).as_deref(), Ok("1"), "{id}");
    }
    delete_all(&f.server, &ids).await;
    assert_no_orphans(&f);
}

/// Servers outlive a troved killed with -9 (still connectable while it is down), and the
/// restarted troved re-adopts them: same pids, still ACTIVE, no second server.
#[tokio::test]
async fn servers_outlive_kill_9_and_are_readopted_with_the_same_pids() {
    let Some(pg) = installation(Datastore::Postgresql).await else {
        return;
    };
    let mut installs = vec![pg];
    installs.extend(installation(Datastore::Mariadb).await);
    let mut f = Fixture::start("32200-32299").await;
    let mut ids = Vec::new();
    for (i, install) in installs.iter().enumerate() {
        let body = create_body(&format!("kept-{i}"), install);
        let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
        assert_eq!(status, 200, "{created}");
        ids.push(created["instance"]["id"].as_str().unwrap().to_string());
    }
    let shown = wait_settled(&f.server, &ids, Duration::from_secs(120)).await;
    assert!(shown.iter().all(|i| i["status"] == "ACTIVE"), "{shown:?}");
    let before = f.listed();
    assert_one_server_each(&f, &shown);

    f.server.kill();
    for (id, install) in ids.iter().zip(&installs) {
        let (pid, port, _) = &before[id];
        let pid = pid.expect("a running server has a pid") as u32;
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "{pid} died");
        assert_eq!(connect(install, *port).as_deref(), Ok("1"), "troved down");
    }

    f.server.restart().await;
    let shown = wait_settled(&f.server, &ids, Duration::from_secs(60)).await;
    assert!(shown.iter().all(|i| i["status"] == "ACTIVE"), "{shown:?}");
    // A few heartbeats' time for a wrong restart or a second server to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_one_server_each(&f, &shown);
    assert_eq!(
        f.listed(),
        before,
        "the servers were not re-adopted as they were"
    );
    for (id, install) in ids.iter().zip(&installs) {
        assert_eq!(connect(install, before[id].1).as_deref(), Ok("1"));
    }
    delete_all(&f.server, &ids).await;
    assert_no_orphans(&f);
}
