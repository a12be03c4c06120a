//! `troved serve --provider local` end to end (issue #13): the real binary provisions
//! real PostgreSQL and MariaDB servers, and a real client connects to them.
//!
//! Each test runs its own troved on its own data directory and its own port range, and
//! cleans up what it caused: it deletes its instances, and a `Drop` guard kills
//! every database server under its local root and unmounts its volumes, even when an
//! assertion failed. A datastore whose binaries are absent is skipped with a `SKIPPED:` line.

mod common;

use common::local::{alive, installation, local_list};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::Guard;
use common::local::LocalTroved;
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

type Fixture = LocalTroved;

/// The saga polls every 50 ms.
const FAST: &[&str] = &["--sim-latency-ms", "50"];

fn create_body(name: &str, datastore: &str, version: &str) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": version},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }})
}

/// The private address and port of a shown instance.
fn private_address(inst: &Value) -> (String, u16) {
    common::local::endpoint(inst, "private")
}

/// Runs `select 1` through the datastore's client over TCP; Ok(stdout) or Err(stderr).
fn connect(
    install: &Installation,
    host: &str,
    port: u16,
    password: &str,
) -> Result<String, String> {
    query(install, host, port, password, "select 1")
}

/// Runs `sql` as `app` on `orders` over TCP; Ok(stdout) or Err(stderr).
fn query(
    install: &Installation,
    host: &str,
    port: u16,
    password: &str,
    sql: &str,
) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!("postgresql://app:{password}@{host}:{port}/orders"))
            .args(["-X", "-w", "-A", "-t", "-c", sql])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", host, "-P", &port])
            .args([
                "-u",
                "app",
                &format!("-p{password}"),
                "orders",
                "-N",
                "-e",
                sql,
            ])
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls show until the instance is ACTIVE (a real server start takes seconds; the
/// first one of a version also makes its template).
async fn wait_active(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let inst = body["instance"].clone();
        match inst["status"].as_str() {
            Some("ACTIVE") => return inst,
            Some("ERROR") => panic!("the build failed: {inst}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_gone(s: &TestServer, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = s.get("u", "p1", &format!("/instances/{id}")).await;
        if status == 404 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instance {id} not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Create with a database and a user → ACTIVE → the user connects to the database with
/// its password (and not with another) → delete → process and files gone.
async fn create_connect_delete(datastore: Datastore, version: &str, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, FAST).await;
    let s = &f.server;
    let body = create_body("orders-db", datastore.manager(), version);
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let inst = wait_active(s, &id).await;
    let (host, port) = private_address(&inst);
    assert_eq!(host, "127.0.0.1");
    // `ip` holds addresses only (clients parse them as IPs); the port is beside them.
    assert_eq!(inst["ip"], json!(["127.0.0.1"]), "{inst}");
    assert_eq!(
        connect(&install, &host, port, "s3cret-pw").as_deref(),
        Ok("1")
    );
    assert!(connect(&install, &host, port, "wrong-pw").is_err());

    let list = local_list(&f.data_dir());
    let servers = list["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{list}");
    assert_eq!(servers[0]["instance_id"], json!(id));
    assert_eq!(servers[0]["status"], "running");
    assert_eq!(servers[0]["port"], json!(port));
    let pid = servers[0]["pid"].as_u64().unwrap() as u32;
    let path = PathBuf::from(servers[0]["path"].as_str().unwrap());
    let volume = PathBuf::from(list["volumes"][0]["path"].as_str().unwrap());
    assert!(alive(pid) && path.is_dir() && volume.is_dir());

    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    wait_gone(s, &id).await;
    assert!(
        !alive(pid),
        "the server process {pid} outlived its instance"
    );
    assert!(!path.exists() && !volume.exists(), "files left behind");
    let list = local_list(&f.data_dir());
    assert_eq!(list, json!({"servers": [], "volumes": []}));
}

#[tokio::test]
async fn postgresql_instance_is_reachable_as_its_user_and_gone_after_delete() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    create_connect_delete(Datastore::Postgresql, &install.series, "31000-31049").await;
}

#[tokio::test]
async fn mariadb_instance_is_reachable_as_its_user_and_gone_after_delete() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    create_connect_delete(Datastore::Mariadb, &install.series, "31050-31099").await;
}

#[tokio::test]
async fn versions_without_binaries_are_inactive_and_refused() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31100-31149", FAST).await;
    let s = &f.server;
    let (status, body) = s.get("u", "p1", "/datastores/postgresql").await;
    assert_eq!(status, 200, "{body}");
    let versions = body["datastore"]["versions"].as_array().unwrap().clone();
    assert!(
        versions.iter().any(|v| v["name"] == json!(install.series)),
        "the installed series is listed: {body}"
    );
    // PostgreSQL 12 is in the catalog; its binaries are not installed here.
    if Path::new("/usr/lib/postgresql/12/bin/postgres").exists() {
        println!("SKIPPED: PostgreSQL 12 is installed");
        return;
    }
    let (status, body) = s
        .post(
            "u",
            "p1",
            "/instances",
            &create_body("old", "postgresql", "12"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["badRequest"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not active"), "{message}");
    let list = local_list(&f.data_dir());
    assert_eq!(list, json!({"servers": [], "volumes": []}));
}

/// Attaching a configuration group to a running instance changes the value the server
/// reports (a parameter the server applies without a restart).
async fn attach_changes_the_value(
    datastore: Datastore,
    ports: &str,
    (key, value): (&str, i64),
    show: &str,
    expect: &str,
) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, FAST).await;
    let s = &f.server;
    let version = install.series.clone();
    let body = create_body("configured", datastore.manager(), &version);
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let (host, port) = private_address(&wait_active(s, &id).await);
    let before = query(&install, &host, port, "s3cret-pw", show).unwrap();
    assert_ne!(before, expect, "the value is already {expect}");

    let group = json!({"configuration": {
        "name": "tuned", "values": {key: value},
        "datastore": {"type": datastore.manager(), "version": version},
    }});
    let (status, group) = s.post("u", "p1", "/configurations", &group).await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().unwrap();
    let attach = json!({"instance": {"configuration": gid}});
    let (status, body) = s.put("u", "p1", &format!("/instances/{id}"), &attach).await;
    assert_eq!(status, 202, "{body}");
    wait_value(&install, (&host, port), show, expect).await;
    // Detaching gives the server its own value back.
    let detach = json!({"instance": {"configuration": null}});
    let (status, body) = s.put("u", "p1", &format!("/instances/{id}"), &detach).await;
    assert_eq!(status, 202, "{body}");
    wait_value(&install, (&host, port), show, &before).await;
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    wait_gone(s, &id).await;
}

/// Polls `show` until the server answers `expect` (60 s).
async fn wait_value(install: &Installation, (host, port): (&str, u16), show: &str, expect: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = query(install, host, port, "s3cret-pw", show).unwrap();
        if now == expect {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{show} still {now}, not {expect}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgresql_configuration_attach_reaches_the_server() {
    let pair = ("work_mem", 8192);
    attach_changes_the_value(
        Datastore::Postgresql,
        "31150-31199",
        pair,
        "SHOW work_mem",
        "8MB",
    )
    .await;
}

#[tokio::test]
async fn mariadb_configuration_attach_reaches_the_server() {
    let pair = ("max_connections", 77);
    let show = "SELECT @@global.max_connections";
    attach_changes_the_value(Datastore::Mariadb, "31200-31249", pair, show, "77").await;
}

/// A lost `state.json` is reported as a lost `cloud.db` is: start-up refuses, naming
/// the file; restored, troved starts and the instance is still there and deletable.
#[tokio::test]
async fn a_lost_local_state_refuses_to_start_until_restored() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let mut f = Fixture::start("31250-31299", FAST).await;
    let body = create_body("kept", "postgresql", &install.series);
    let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    wait_active(&f.server, &id).await;
    f.server.kill();

    let state = f.data_dir().join("local/state.json");
    let aside = f.dir.path().join("state.json.aside");
    std::fs::rename(&state, &aside).unwrap();
    let err = refused_start(&f.data_dir());
    std::fs::rename(&aside, &state).unwrap();
    assert!(
        err.contains(&state.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains("--accept-lost-cloud-state"),
        "says the way out: {err}"
    );

    f.server.restart().await;
    let inst = wait_active(&f.server, &id).await;
    let (host, port) = private_address(&inst);
    assert_eq!(
        connect(&install, &host, port, "s3cret-pw").as_deref(),
        Ok("1")
    );
    let (status, body) = f
        .server
        .delete("u", "p1", &format!("/instances/{id}"))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_gone(&f.server, &id).await;
}

/// Runs `troved serve --provider local` on `data_dir`, expecting a refusal within 20 s;
/// its stderr.
fn refused_start(data_dir: &Path) -> String {
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--provider",
            "local",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "error")
        .output()
        .expect("run troved");
    assert!(!out.status.success(), "troved started without its state");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Without `--provider` (nor `TROVED_PROVIDER`), troved takes the local provider where a
/// PostgreSQL or MariaDB server is installed, and its log says so and why: the README's
/// `cargo run -- serve` gives real databases.
#[tokio::test]
async fn the_default_provider_is_local_where_a_server_is_installed() {
    if installation(Datastore::Postgresql).await.is_none()
        && installation(Datastore::Mariadb).await.is_none()
    {
        println!("SKIPPED: neither PostgreSQL nor MariaDB is installed");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data_dir = dir.path().canonicalize().unwrap().join("data");
    let _guard = Guard {
        root: data_dir.join("local"),
    };
    let out = Command::new("timeout")
        .args(["-s", "INT", "5"])
        .arg(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--local-ports",
            "31300-31309",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("TROVED_PROVIDER")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .expect("run troved");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("provider: local") && log.contains("mode=\"auto\""),
        "no local-provider choice in the log:\n{log}"
    );
    assert!(
        log.contains("found=") && log.contains("in /"),
        "the log names what it found:\n{log}"
    );
    assert_eq!(local_list(&data_dir), json!({"servers": [], "volumes": []}));
}
