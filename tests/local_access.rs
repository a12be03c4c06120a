//! Who may reach a local instance's databases (issue #13): per-user grants, public or
//! private binding, `allowed_cidrs`, and the superuser password kept sealed.
//!
//! Black box: the real troved with `--provider local`, real PostgreSQL and MariaDB
//! servers, and their real clients. Every test has its own data directory and ports
//! (31400-31599) and a `Drop` guard (`common::local::Guard`) that kills, unmounts and
//! detaches what it leaves. A datastore whose binaries are absent is skipped with a
//! `SKIPPED:` line.

mod common;

use common::local::installation;

use std::process::Command;
use std::time::{Duration, Instant};

use common::local::LocalTroved;

use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

type Fixture = LocalTroved;

impl LocalTroved {
    /// Creates an instance from `body` (`{"instance": ...}`) and waits until it is ACTIVE.
    async fn create_active(&self, body: &Value) -> Value {
        let (status, created) = self.server.post("u", "p1", "/instances", body).await;
        assert_eq!(status, 200, "{created}");
        let id = created["instance"]["id"].as_str().unwrap().to_string();
        self.wait_status(&id, "ACTIVE").await
    }

    /// Polls show until the instance has `status` (ERROR fails at once, unless asked).
    async fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, body) = self
                .server
                .get("u", "p1", &format!("/instances/{id}"))
                .await;
            assert_eq!(status, 200, "{body}");
            let inst = body["instance"].clone();
            match inst["status"].as_str() {
                Some(s) if s == want => return inst,
                Some("ERROR") => panic!("the instance failed: {inst}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "not {want} in time: {inst}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The port of a shown instance (beside its private address).
fn port_of(inst: &Value) -> u16 {
    common::local::endpoint(inst, "private").1
}

/// Runs `select 1` as `user` on `db` at `host:port` through the datastore's own client
/// over TCP; Ok(stdout) or Err(stderr).
fn login(
    install: &Installation,
    (host, port): (&str, u16),
    (user, password): (&str, &str),
    db: &str,
) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://{user}:{password}@{host}:{port}/{db}?connect_timeout=5"
            ))
            .args(["-X", "-w", "-A", "-t", "-c", "select 1"])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", host, "-P", &port])
            .args(["--connect-timeout=5", "-u", user, "-D", db])
            .args(["-N", "-e", "select 1"])
            .env("MYSQL_PWD", password)
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The create body of an instance of `install`'s datastore.
fn instance(install: &Installation, name: &str, extra: Value) -> Value {
    let mut inst = json!({
        "name": name,
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
    });
    if let (Some(o), Value::Object(e)) = (inst.as_object_mut(), extra) {
        o.extend(e);
    }
    json!({ "instance": inst })
}

// ---- per-user grants ----------------------------------------------------------------

/// Two users with a database each: each logs in to its own and is refused on the
/// other's (and on the server's own databases).
async fn users_get_only_their_databases(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &[]).await;
    let body = instance(
        &install,
        "grants",
        json!({
            "databases": [{"name": "sales"}, {"name": "stock"}],
            "users": [
                {"name": "ann", "password": "ann-pw-1", "databases": [{"name": "sales"}]},
                {"name": "bob", "password": "bob-pw-1", "databases": [{"name": "stock"}]},
            ],
        }),
    );
    let inst = f.create_active(&body).await;
    let at = ("127.0.0.1", port_of(&inst));
    let ann = ("ann", "ann-pw-1");
    let bob = ("bob", "bob-pw-1");
    assert_eq!(login(&install, at, ann, "sales").as_deref(), Ok("1"));
    assert_eq!(login(&install, at, bob, "stock").as_deref(), Ok("1"));
    let refused = login(&install, at, ann, "stock");
    assert!(refused.is_err(), "ann reached bob's database: {refused:?}");
    let refused = login(&install, at, bob, "sales");
    assert!(refused.is_err(), "bob reached ann's database: {refused:?}");
    let system = match datastore {
        Datastore::Postgresql => "postgres",
        _ => "mysql",
    };
    let refused = login(&install, at, ann, system);
    assert!(refused.is_err(), "ann reached {system}: {refused:?}");
}

#[tokio::test]
async fn postgresql_users_get_only_their_databases() {
    users_get_only_their_databases(Datastore::Postgresql, "31400-31419").await;
}

#[tokio::test]
async fn mariadb_users_get_only_their_databases() {
    users_get_only_their_databases(Datastore::Mariadb, "31420-31439").await;
}

// ---- public or private, allowed_cidrs -------------------------------------------------

/// Asks for `access` (PUT) and waits until it is applied (status ACTIVE, access shown).
async fn update_access(f: &Fixture, id: &str, access: Value) -> Value {
    let body = json!({"instance": {"access": access.clone()}});
    let (status, answer) = f
        .server
        .put("u", "p1", &format!("/instances/{id}"), &body)
        .await;
    assert_eq!(status, 202, "{answer}");
    let cidrs = access.get("allowed_cidrs").cloned().unwrap_or(json!([]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inst = f.wait_status(id, "ACTIVE").await;
        let shown = &inst["access"];
        if shown["is_public"] == access["is_public"] && shown["allowed_cidrs"] == cidrs {
            return inst;
        }
        assert!(Instant::now() < deadline, "access not applied: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a TCP connection to `ip:port` is accepted (a listener is bound there).
fn listens(ip: &str, port: u16) -> bool {
    let addr = std::net::SocketAddr::new(ip.parse().unwrap(), port);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The public `address:port` a shown instance gives, if any.
fn public_address(inst: &Value) -> Option<String> {
    let a = inst["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "public")?;
    Some(format!(
        "{}:{}",
        a["address"].as_str()?,
        a["port"].as_u64()?
    ))
}

/// A private instance listens on 127.0.0.1 only, a public one on the public bind address
/// (127.0.0.2 here) only; an access update moves it from one to the other.
async fn binds_follow_access(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &["--local-public-bind", "127.0.0.2"]).await;
    let users = json!({
        "databases": [{"name": "app"}],
        "users": [{"name": "app", "password": "app-pw-1", "databases": [{"name": "app"}]}],
    });
    let app = ("app", "app-pw-1");
    let private = f
        .create_active(&instance(&install, "private", users.clone()))
        .await;
    let mut public_body = users.clone();
    public_body["access"] = json!({"is_public": true});
    let public = f
        .create_active(&instance(&install, "public", public_body))
        .await;

    let p = port_of(&private);
    assert_eq!(
        login(&install, ("127.0.0.1", p), app, "app").as_deref(),
        Ok("1")
    );
    assert!(
        !listens("127.0.0.2", p),
        "a private instance listens on the public address"
    );
    assert_eq!(public_address(&private), None);

    let q = port_of(&public);
    assert_eq!(public_address(&public), Some(format!("127.0.0.2:{q}")));
    assert_eq!(
        login(&install, ("127.0.0.2", q), app, "app").as_deref(),
        Ok("1")
    );
    assert!(
        !listens("127.0.0.1", q),
        "a public instance binds the public address only"
    );

    // Made private: back on 127.0.0.1, gone from the public address.
    let id = public["id"].as_str().unwrap();
    let now = update_access(&f, id, json!({"is_public": false})).await;
    assert_eq!(public_address(&now), None);
    assert!(
        !listens("127.0.0.2", q),
        "still on the public address after going private"
    );
    assert_eq!(
        login(&install, ("127.0.0.1", q), app, "app").as_deref(),
        Ok("1")
    );
}

#[tokio::test]
async fn postgresql_binds_follow_access() {
    binds_follow_access(Datastore::Postgresql, "31440-31459").await;
}

#[tokio::test]
async fn mariadb_binds_follow_access() {
    binds_follow_access(Datastore::Mariadb, "31460-31479").await;
}

/// A TCP relay on 127.0.0.1 to `to`, whose connections come from `source`: how a test
/// reaches the server from another address with the datastore's own client (which
/// cannot choose its source address). Returns the relay's port.
async fn relay_from(source: std::net::Ipv4Addr, to: std::net::SocketAddr) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((source, 0).into()).unwrap();
                if let Ok(mut server) = socket.connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// `allowed_cidrs` ["127.0.0.2/32"] on a server public on 127.0.0.3: a login from source
/// 127.0.0.2 (through a relay) works, one from 127.0.0.1 is refused by the server; an
/// access update swaps them; no CIDRs lets both in.
async fn cidrs_decide_who_logs_in(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &["--local-public-bind", "127.0.0.3"]).await;
    let body = instance(
        &install,
        "cidrs",
        json!({
            "databases": [{"name": "app"}],
            "users": [{"name": "app", "password": "app-pw-1", "databases": [{"name": "app"}]}],
            "access": {"is_public": true, "allowed_cidrs": ["127.0.0.2/32"]},
        }),
    );
    let inst = f.create_active(&body).await;
    let id = inst["id"].as_str().unwrap().to_string();
    let port = port_of(&inst);
    let target = std::net::SocketAddr::new("127.0.0.3".parse().unwrap(), port);
    let via_2 = (
        "127.0.0.1",
        relay_from("127.0.0.2".parse().unwrap(), target).await,
    );
    let from_1 = ("127.0.0.3", port);
    let app = ("app", "app-pw-1");
    let check = |allowed_2: bool, allowed_1: bool| {
        let a = login(&install, via_2, app, "app");
        assert_eq!(a.is_ok(), allowed_2, "from 127.0.0.2: {a:?}");
        let b = login(&install, from_1, app, "app");
        assert_eq!(b.is_ok(), allowed_1, "from 127.0.0.1: {b:?}");
    };
    check(true, false);
    update_access(
        &f,
        &id,
        json!({"is_public": true, "allowed_cidrs": ["127.0.0.1/32"]}),
    )
    .await;
    check(false, true);
    update_access(&f, &id, json!({"is_public": true})).await;
    check(true, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_allowed_cidrs_decide_who_logs_in() {
    cidrs_decide_who_logs_in(Datastore::Postgresql, "31480-31499").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_allowed_cidrs_decide_who_logs_in() {
    cidrs_decide_who_logs_in(Datastore::Mariadb, "31500-31519").await;
}

// ---- the superuser password ------------------------------------------------------------

/// The local provider's `state.json` of `f`, as text.
fn state_text(f: &Fixture) -> String {
    std::fs::read_to_string(f.data_dir().join("local/state.json")).unwrap()
}

/// The superuser password sealed in `state.json` for `id`, unsealed with troved's vault.
fn unseal_admin_password(f: &Fixture, id: &str) -> String {
    let state: Value = serde_json::from_str(&state_text(f)).unwrap();
    let server = state["servers"]
        .as_object()
        .and_then(|s| s.values().find(|s| s["instance_id"] == id))
        .unwrap_or_else(|| panic!("no server of {id} in {state}"))
        .clone();
    assert!(server.get("admin_password").is_none(), "{server}");
    let sealed: aggregates::instance::SealedSecret =
        serde_json::from_value(server["sealed_admin_password"].clone())
            .unwrap_or_else(|e| panic!("no sealed password in {server}: {e}"));
    let vault = troved::secrets::Vault::open(&f.data_dir().join("secrets.db")).unwrap();
    let instance = id.parse().unwrap();
    vault
        .unseal(instance, &sealed)
        .unwrap()
        .expect("the vault opens it")
}

/// After a create, `state.json` holds the superuser password sealed, never in plaintext,
/// and the vault opens it to the server's real password. A state written by an older
/// troved (plaintext) is sealed when troved starts on it, and the instance keeps working.
async fn superuser_password_is_sealed(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let mut f = Fixture::start(ports, &[]).await;
    let body = instance(
        &install,
        "sealed",
        json!({
            "databases": [{"name": "app"}],
            "users": [{"name": "app", "password": "app-pw-1", "databases": [{"name": "app"}]}],
        }),
    );
    let inst = f.create_active(&body).await;
    let id = inst["id"].as_str().unwrap().to_string();
    let at = ("127.0.0.1", port_of(&inst));
    let (admin, admin_db) = match datastore {
        Datastore::Postgresql => ("postgres", "postgres"),
        _ => ("root", "mysql"),
    };
    assert!(f.server.terminate(Duration::from_secs(20)).is_some());
    let pw = unseal_admin_password(&f, &id);
    assert!(!state_text(&f).contains(&pw), "the password in plaintext");
    assert_eq!(
        login(&install, at, (admin, &pw), admin_db).as_deref(),
        Ok("1")
    );

    // An older troved's state: the password in plaintext, nothing sealed.
    let mut old: Value = serde_json::from_str(&state_text(&f)).unwrap();
    for s in old["servers"].as_object_mut().unwrap().values_mut() {
        s["admin_password"] = json!(pw);
        s.as_object_mut().unwrap().remove("sealed_admin_password");
    }
    let path = f.data_dir().join("local/state.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    f.server.restart().await;
    assert!(
        !state_text(&f).contains(&pw),
        "still in plaintext after a start"
    );
    assert_eq!(unseal_admin_password(&f, &id), pw);
    f.wait_status(&id, "ACTIVE").await;
    assert_eq!(
        login(&install, at, ("app", "app-pw-1"), "app").as_deref(),
        Ok("1")
    );
    assert_eq!(
        login(&install, at, (admin, &pw), admin_db).as_deref(),
        Ok("1")
    );
}

#[tokio::test]
async fn postgresql_superuser_password_is_sealed() {
    superuser_password_is_sealed(Datastore::Postgresql, "31520-31539").await;
}

#[tokio::test]
async fn mariadb_superuser_password_is_sealed() {
    superuser_password_is_sealed(Datastore::Mariadb, "31540-31559").await;
}

/// One name at two hosts (`app@'%'` and `app@'127.0.0.2'`) with `allowed_cidrs`
/// ["127.0.0.1/32"]: the CIDR account `app@'%'` needs is kept while the second account is
/// restricted (it was dropped, so `app` could log in from nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_one_name_at_two_hosts_keeps_its_cidr_account() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = Fixture::start("31560-31569", &[]).await;
    let body = instance(
        &install,
        "two-hosts",
        json!({
            "databases": [{"name": "app"}],
            "users": [
                {"name": "app", "password": "app-pw-1", "databases": [{"name": "app"}]},
                {"name": "app", "host": "127.0.0.2", "password": "app-pw-2",
                 "databases": [{"name": "app"}]},
            ],
            "access": {"allowed_cidrs": ["127.0.0.1/32"]},
        }),
    );
    let inst = f.create_active(&body).await;
    let port = port_of(&inst);
    let from_1 = login(&install, ("127.0.0.1", port), ("app", "app-pw-1"), "app");
    assert_eq!(from_1.as_deref(), Ok("1"), "from 127.0.0.1");
}
