//! Databases, users and root on real servers (issue #15, ADR 0010): what the API
//! changes, the server has, as its own clients see it. A user created through the API
//! logs in to a database created through the API; after a new password the old one
//! fails and the new one works; a revoked database is out of reach; a dropped database
//! is gone; root enable gives a working superuser login.
//!
//! Black box: the real troved with `--provider local`, real PostgreSQL and MariaDB, and
//! their clients. Ports 32100-32149; the `common::local::Guard` cleans up. A datastore
//! whose binaries are absent is skipped with a `SKIPPED:` line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{endpoint, installation, LocalTroved};
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

/// Runs `sql` as `user` on `db` at 127.0.0.1:`port` through the datastore's client over
/// TCP; Ok(stdout) or Err(stderr).
fn query(
    install: &Installation,
    port: u16,
    (user, password): (&str, &str),
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://{user}@127.0.0.1:{port}/{db}?connect_timeout=5"
            ))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .args(["--connect-timeout=5", "-u", user, "-D", db, "-N", "-e", sql])
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

/// Creates an instance of `install`'s datastore and waits until it is ACTIVE.
async fn active_instance(f: &LocalTroved, install: &Installation) -> (String, u16) {
    active_instance_with(f, install, json!({})).await
}

/// As [`active_instance`], with `extra` keys in the instance's body.
async fn active_instance_with(
    f: &LocalTroved,
    install: &Installation,
    extra: Value,
) -> (String, u16) {
    let mut body = json!({"instance": {
        "name": "guestdb",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
    }});
    if let (Some(b), Some(e)) = (body["instance"].as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, b) = f.server.get("u", "p1", &format!("/instances/{id}")).await;
        let inst = &b["instance"];
        if inst["status"] == "ACTIVE" {
            return (id, endpoint(inst, "private").1);
        }
        assert_ne!(inst["status"], "ERROR", "{inst}");
        assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn expect(
    f: &LocalTroved,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Value {
    let mut rb = f.server.req(method, "u", "p1", path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let (status, answer) = common::send(rb).await;
    assert_eq!(status, want, "{path}: {answer}");
    answer
}

async fn guest_admin_on_a_real_server(datastore: Datastore, ports: &str) {
    use reqwest::Method as M;
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = LocalTroved::start(ports, &[]).await;
    let (id, port) = active_instance(&f, &install).await;
    let base = format!("/instances/{id}");
    let dbs = json!({"databases": [{"name": "shop"}, {"name": "blog", "character_set": "latin1"}]});
    expect(&f, M::POST, &format!("{base}/databases"), Some(dbs), 202).await;
    let users = json!({"users": [{"name": "app", "password": "first-pw-1", "databases": [{"name": "shop"}]}]});
    expect(&f, M::POST, &format!("{base}/users"), Some(users), 202).await;

    // Right after the 202: the login works, on its database only.
    let first = ("app", "first-pw-1");
    assert_eq!(
        query(&install, port, first, "shop", "select 1").as_deref(),
        Ok("1")
    );
    assert!(query(&install, port, first, "blog", "select 1").is_err());

    // `user set --password`: the old password fails, the new one works.
    let put = json!({"user": {"password": "second-pw-2"}});
    expect(&f, M::PUT, &format!("{base}/users/app"), Some(put), 202).await;
    let second = ("app", "second-pw-2");
    assert!(
        query(&install, port, first, "shop", "select 1").is_err(),
        "old password still works"
    );
    assert_eq!(
        query(&install, port, second, "shop", "select 1").as_deref(),
        Ok("1")
    );

    // Grant blog, revoke shop.
    let grant = json!({"databases": [{"name": "blog"}]});
    expect(
        &f,
        M::PUT,
        &format!("{base}/users/app/databases"),
        Some(grant),
        202,
    )
    .await;
    assert_eq!(
        query(&install, port, second, "blog", "select 1").as_deref(),
        Ok("1")
    );
    expect(
        &f,
        M::DELETE,
        &format!("{base}/users/app/databases/shop"),
        None,
        202,
    )
    .await;
    assert!(
        query(&install, port, second, "shop", "select 1").is_err(),
        "revoked, still reachable"
    );

    // Root: a working superuser login with the password shown once.
    let root = expect(&f, M::POST, &format!("{base}/root"), None, 200).await;
    let (root_name, root_db) = match datastore {
        Datastore::Postgresql => ("postgres", "postgres"),
        _ => ("root", "mysql"),
    };
    assert_eq!(root["user"]["name"], root_name);
    let root_pw = root["user"]["password"].as_str().unwrap().to_string();
    let su = (root_name, root_pw.as_str());
    assert_eq!(
        query(&install, port, su, root_db, "select 1").as_deref(),
        Ok("1")
    );

    if datastore == Datastore::Mariadb {
        let cs = "select default_character_set_name from information_schema.schemata \
                  where schema_name = 'blog'";
        assert_eq!(
            query(&install, port, su, root_db, cs).as_deref(),
            Ok("latin1")
        );
    }

    // Dropping a database: gone from the server.
    expect(&f, M::DELETE, &format!("{base}/databases/shop"), None, 202).await;
    let listing = match datastore {
        Datastore::Postgresql => "select datname from pg_database order by 1",
        _ => "show databases",
    };
    let all = query(&install, port, su, root_db, listing).unwrap();
    assert!(!all.lines().any(|l| l == "shop"), "{all}");
    assert!(all.lines().any(|l| l == "blog"), "{all}");

    // Dropping the user: its login fails.
    expect(&f, M::DELETE, &format!("{base}/users/app"), None, 202).await;
    assert!(query(&install, port, second, "blog", "select 1").is_err());

    // Root disable: the password shown before no longer works.
    expect(&f, M::DELETE, &format!("{base}/root"), None, 204).await;
    assert!(query(&install, port, su, root_db, "select 1").is_err());
}

#[tokio::test]
async fn postgresql_databases_users_and_root_are_real() {
    guest_admin_on_a_real_server(Datastore::Postgresql, "32100-32119").await;
}

#[tokio::test]
async fn mariadb_databases_users_and_root_are_real() {
    guest_admin_on_a_real_server(Datastore::Mariadb, "32120-32139").await;
}

/// Waits until `sql` as `who` gives `want` (`None`: the login fails), at most 10 s: the
/// change is applied when the API answers, this only absorbs a slow client start.
fn eventually(
    install: &Installation,
    port: u16,
    who: (&str, &str),
    db: &str,
    sql: &str,
    want: Option<&str>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = query(install, port, who, db, sql);
        if got.as_deref().ok() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} as {}: want {want:?}, got {got:?}",
            sql,
            who.0
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// MariaDB with `allowed_cidrs`: each account has copies at the allowed networks
/// (`app@'127.0.0.0/255.0.0.0'`) with its password and grants. A new password, a
/// delete, a root enable after the rules, and a foreign account must not leave a way
/// in; a dropped database leaves no grants behind.
#[tokio::test]
async fn mariadb_account_changes_reach_the_allowed_networks() {
    use reqwest::Method as M;
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = LocalTroved::start("32250-32269", &[]).await;
    let access = json!({"access": {"allowed_cidrs": ["127.0.0.0/8"]}});
    let (id, port) = active_instance_with(&f, &install, access).await;
    let base = format!("/instances/{id}");
    let dbs = json!({"databases": [{"name": "shop"}, {"name": "old_db"}]});
    expect(&f, M::POST, &format!("{base}/databases"), Some(dbs), 202).await;
    let users = json!({"users": [{"name": "app", "password": "first-pw-1",
        "databases": [{"name": "shop"}, {"name": "old_db"}]}]});
    expect(&f, M::POST, &format!("{base}/users"), Some(users), 202).await;
    let (first, second) = (("app", "first-pw-1"), ("app", "second-pw-2"));
    eventually(&install, port, first, "shop", "select 1", Some("1"));

    // Root enabled after the access rules: locked at '%', a copy per allowed network.
    let root = expect(&f, M::POST, &format!("{base}/root"), None, 200).await;
    let root_pw = root["user"]["password"].as_str().unwrap().to_string();
    let su = ("root", root_pw.as_str());
    let locked = "select json_value(Priv, '$.account_locked') from mysql.global_priv \
                  where User = 'root' and Host = '%'";
    eventually(&install, port, su, "mysql", locked, Some("1"));

    // A new password: the old one no longer works from the allowed network either.
    let put = json!({"user": {"password": "second-pw-2"}});
    expect(&f, M::PUT, &format!("{base}/users/app"), Some(put), 202).await;
    assert!(
        query(&install, port, first, "shop", "select 1").is_err(),
        "the old password still works"
    );
    eventually(&install, port, second, "shop", "select 1", Some("1"));

    // A dropped database: no account keeps privileges on it.
    expect(
        &f,
        M::DELETE,
        &format!("{base}/databases/old_db"),
        None,
        202,
    )
    .await;
    let left = "select count(*) from mysql.db where Db in ('old_db', 'old\\_db')";
    assert_eq!(query(&install, port, su, "mysql", left).as_deref(), Ok("0"));

    // A deleted user: no login, no copy left.
    expect(&f, M::DELETE, &format!("{base}/users/app"), None, 202).await;
    assert!(
        query(&install, port, second, "shop", "select 1").is_err(),
        "a deleted user still logs in"
    );
    let copies = "select count(*) from mysql.global_priv where User = 'app'";
    assert_eq!(
        query(&install, port, su, "mysql", copies).as_deref(),
        Ok("0")
    );

    // An account troved did not create is not taken over by a user create.
    let foreign = "create user 'intruder'@'%' identified by 'own-pw-1'; \
                   create user 'intruder'@'127.0.0.0/255.0.0.0' identified by 'own-pw-1'";
    query(&install, port, su, "mysql", foreign).unwrap();
    let take = json!({"users": [{"name": "intruder", "password": "taken-pw-1"}]});
    expect(&f, M::POST, &format!("{base}/users"), Some(take), 422).await;
    let own = ("intruder", "own-pw-1");
    assert_eq!(
        query(&install, port, own, "information_schema", "select 1").as_deref(),
        Ok("1"),
        "the account's password was changed"
    );
}

/// PostgreSQL: deleting a user keeps the tables it created (they go to the
/// administrator); only its privileges go.
#[tokio::test]
async fn postgresql_user_delete_keeps_its_tables() {
    use reqwest::Method as M;
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = LocalTroved::start("32270-32289", &[]).await;
    let (id, port) = active_instance(&f, &install).await;
    let base = format!("/instances/{id}");
    let dbs = json!({"databases": [{"name": "shop"}]});
    expect(&f, M::POST, &format!("{base}/databases"), Some(dbs), 202).await;
    let users = json!({"users": [{"name": "app", "password": "first-pw-1",
        "databases": [{"name": "shop"}]}]});
    expect(&f, M::POST, &format!("{base}/users"), Some(users), 202).await;
    let app = ("app", "first-pw-1");
    query(
        &install,
        port,
        app,
        "shop",
        "create table orders (n int); insert into orders values (42)",
    )
    .unwrap();
    expect(&f, M::DELETE, &format!("{base}/users/app"), None, 202).await;
    assert!(query(&install, port, app, "shop", "select 1").is_err());
    let root = expect(&f, M::POST, &format!("{base}/root"), None, 200).await;
    let su = ("postgres", root["user"]["password"].as_str().unwrap());
    assert_eq!(
        query(&install, port, su, "shop", "select n from orders").as_deref(),
        Ok("42"),
        "the user's table went with the user"
    );
}
