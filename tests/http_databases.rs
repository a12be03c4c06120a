//! Databases and root of an instance, black-box against the real binary on the
//! simulated cloud (issue #15, ADR 0010): listing and paging, upstream's refusals and
//! error bodies, nothing half-applied, and the history naming who did what.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;
use serde_json::{json, Value};

async fn server(dir: &Path) -> TestServer {
    TestServer::start(dir, &["--sim-latency-ms", "0"]).await
}

fn names(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn create_dbs(s: &TestServer, id: &str, dbs: &[&str]) -> (u16, Value) {
    let body = json!({"databases": dbs.iter().map(|d| json!({"name": d})).collect::<Vec<_>>()});
    s.post("alice", "p1", &format!("/instances/{id}/databases"), &body)
        .await
}

fn fault(body: &Value, key: &str) -> String {
    body[key]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn databases_are_created_listed_paged_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = s.create_active("alice", "p1", "dbs").await;
    let (st, body) = create_dbs(&s, &id, &["cc", "aa", "bb"]).await;
    assert_eq!(st, 202, "{body}");
    let path = format!("/instances/{id}/databases");
    let (st, body) = s.get("alice", "p1", &path).await;
    assert_eq!(st, 200);
    assert_eq!(names(&body, "databases"), ["aa", "bb", "cc"]);
    assert!(body.get("links").is_none(), "{body}");

    let (_, page1) = s.get("alice", "p1", &format!("{path}?limit=2")).await;
    assert_eq!(names(&page1, "databases"), ["aa", "bb"]);
    let next = page1["links"][0]["href"].as_str().unwrap();
    assert!(next.contains("marker=bb"), "{next}");
    let (_, page2) = s
        .get("alice", "p1", &format!("{path}?limit=2&marker=bb"))
        .await;
    assert_eq!(names(&page2, "databases"), ["cc"]);
    assert!(page2.get("links").is_none());

    let (st, _) = s.delete("alice", "p1", &format!("{path}/bb")).await;
    assert_eq!(st, 202);
    let (_, body) = s.get("alice", "p1", &path).await;
    assert_eq!(names(&body, "databases"), ["aa", "cc"]);
}

#[tokio::test]
async fn refused_database_batches_change_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = s.create_active("alice", "p1", "refusals").await;
    assert_eq!(create_dbs(&s, &id, &["shop"]).await.0, 202);

    let (st, body) = create_dbs(&s, &id, &["fresh", "mysql"]).await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        fault(&body, "badRequest"),
        "Database name \"mysql\" is on the reserved list: ['mysql', 'information_schema', 'performance_schema', 'sys']."
    );
    let (st, body) = create_dbs(&s, &id, &["fresh", "bad;name"]).await;
    assert_eq!(st, 400);
    assert_eq!(
        fault(&body, "badRequest"),
        "'bad;name' is not a valid schema name."
    );
    let (st, body) = create_dbs(&s, &id, &["fresh", "shop"]).await;
    assert_eq!(st, 400);
    assert_eq!(
        fault(&body, "badRequest"),
        "A database with the name \"shop\" already exists."
    );
    let (_, body) = s
        .get("alice", "p1", &format!("/instances/{id}/databases"))
        .await;
    assert_eq!(names(&body, "databases"), ["shop"], "nothing half-applied");

    let (st, body) = s
        .delete("alice", "p1", &format!("/instances/{id}/databases/nope"))
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        fault(&body, "itemNotFound"),
        "Database nope cannot be found on the instance."
    );
    // Another project's instance does not exist for the caller.
    let (st, body) = s
        .get("mallory", "p2", &format!("/instances/{id}/databases"))
        .await;
    assert_eq!(st, 404, "{body}");
    let (st, _) = s
        .post(
            "mallory",
            "p2",
            &format!("/instances/{id}/databases"),
            &json!({"databases": [{"name": "x1"}]}),
        )
        .await;
    assert_eq!(st, 404);
    let (st, body) = s
        .post(
            "alice",
            "p1",
            &format!("/instances/{id}/databases"),
            &json!({"databases": "x"}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
}

/// Upstream's schemas ask for at least one item: an empty batch is a 400 and records
/// nothing (no empty event in the history).
#[tokio::test]
async fn empty_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = s.create_active("alice", "p1", "empty").await;
    assert_eq!(create_dbs(&s, &id, &["shop"]).await.0, 202);
    let users = format!("/instances/{id}/users");
    let body = json!({"users": [{"name": "app", "password": "Pw-12345"}]});
    assert_eq!(s.post("alice", "p1", &users, &body).await.0, 202);
    let cases = [
        (
            "POST",
            format!("/instances/{id}/databases"),
            json!({"databases": []}),
            "databases [] is too short",
        ),
        (
            "POST",
            users.clone(),
            json!({"users": []}),
            "users [] is too short",
        ),
        (
            "PUT",
            users.clone(),
            json!({"users": []}),
            "users [] is too short",
        ),
        (
            "PUT",
            format!("{users}/app/databases"),
            json!({"databases": []}),
            "databases [] is too short",
        ),
    ];
    for (method, path, body, message) in cases {
        let (st, b) = if method == "POST" {
            s.post("alice", "p1", &path, &body).await
        } else {
            s.put("alice", "p1", &path, &body).await
        };
        assert_eq!(st, 400, "{method} {path}: {b}");
        assert_eq!(
            fault(&b, "badRequest"),
            format!("Validation error: {message}")
        );
    }
}

#[tokio::test]
async fn an_instance_that_is_not_running_refuses_databases() {
    let dir = tempfile::tempdir().unwrap();
    // A guest that never answers: the instance stays in BUILD.
    let s = TestServer::start(
        dir.path(),
        &["--sim-latency-ms", "0", "--sim-fault", "guest_status:hang"],
    )
    .await;
    let id = s.create("alice", "p1", "stuck").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = create_dbs(&s, &id, &["shop"]).await;
    assert_eq!(st, 422, "{body}");
    assert!(
        fault(&body, "unprocessableEntity").starts_with(&format!("Instance {id} is not ready")),
        "{body}"
    );
    let (st, _) = s.get("alice", "p1", &format!("/instances/{id}/root")).await;
    assert_eq!(st, 422);
}

#[tokio::test]
async fn a_guest_that_refuses_a_change_gets_it_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "0",
            "--sim-fault",
            "guest_change:permanent:name=refuser",
        ],
    )
    .await;
    let id = s.create_active("alice", "p1", "refuser").await;
    let (st, body) = create_dbs(&s, &id, &["shop"]).await;
    assert_eq!(st, 422, "{body}");
    let (_, body) = s
        .get("alice", "p1", &format!("/instances/{id}/databases"))
        .await;
    assert_eq!(names(&body, "databases"), Vec::<String>::new());
    let (_, inst) = s.get("alice", "p1", &format!("/instances/{id}")).await;
    assert!(inst["instance"]["fault"].is_object(), "{inst}");
}

#[tokio::test]
async fn root_is_enabled_shown_and_disabled_with_a_sealed_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(dir.path()).await;
    let id = s.create_active("alice", "p1", "rooted").await;
    let path = format!("/instances/{id}/root");
    let (st, body) = s.get("alice", "p1", &path).await;
    assert_eq!((st, &body), (200, &json!({"rootEnabled": false})));
    let (st, body) = s.delete("alice", "p1", &path).await;
    assert_eq!(st, 404);
    assert_eq!(
        fault(&body, "itemNotFound"),
        "Root user has never been enabled on the instance."
    );
    let (st, body) = s.post("alice", "p1", &path, &json!(null)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["user"]["name"], "root");
    let password = body["user"]["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 36);
    let (_, body) = s.get("alice", "p1", &path).await;
    assert_eq!(body, json!({"rootEnabled": true}));
    // A password of the caller's choosing.
    let (st, body) = s
        .post("alice", "p1", &path, &json!({"password": "MyRootPw-123"}))
        .await;
    assert_eq!(
        (st, body["user"]["password"].as_str()),
        (200, Some("MyRootPw-123"))
    );
    let (st, _) = s.delete("alice", "p1", &path).await;
    assert_eq!(st, 204);
    // The admin show keeps upstream's root history after the disable.
    let (_, mgmt) = s.get("admin", "p1", &format!("/mgmt/instances/{id}")).await;
    assert_eq!(mgmt["instance"]["root_enabled_by"], "alice", "{mgmt}");
    assert!(mgmt["instance"]["root_enabled"].is_string(), "{mgmt}");
    let (_, body) = s.get("alice", "p1", &path).await;
    assert_eq!(body, json!({"rootEnabled": false}));
    assert_eq!(create_dbs(&s, &id, &["audited"]).await.0, 202);
    assert_eq!(
        s.delete("alice", "p1", &format!("/instances/{id}/databases/audited"))
            .await
            .0,
        202
    );

    s.terminate(std::time::Duration::from_secs(10));
    assert_secret_absent(dir.path(), &password);
    assert_secret_absent(dir.path(), "MyRootPw-123");
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["history", &id, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    for what in [
        "root enabled",
        "root disabled",
        "databases created: audited",
        "database audited dropped",
    ] {
        let line = table
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in\n{table}"));
        assert!(line.contains("alice@p1"), "{line}");
    }
    assert!(!table.contains(&password));
}

/// No file of the data directory (the log, its WAL, the cloud's state) holds `secret`.
pub fn assert_secret_absent(dir: &Path, secret: &str) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{} holds the plaintext password", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
