//! Users of an instance and their access to databases, black-box against the real
//! binary on the simulated cloud (issue #15, ADR 0010): create, list and page, show,
//! update, new passwords, grant, revoke, delete; upstream's refusals; passwords never
//! in plaintext in any file of the data directory nor in the history.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;
use serde_json::{json, Value};

const PW: &str = "Plain-Pw-31337";
const NEW_PW: &str = "Other-Pw-27182";

async fn server(dir: &Path) -> TestServer {
    TestServer::start(dir, &["--sim-latency-ms", "0"]).await
}

fn fault(body: &Value, key: &str) -> String {
    body[key]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn user_ids(body: &Value) -> Vec<String> {
    body["users"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|u| {
            format!(
                "{}@{}",
                u["name"].as_str().unwrap(),
                u["host"].as_str().unwrap()
            )
        })
        .collect()
}

/// An ACTIVE instance with databases `shop` and `blog`.
async fn instance_with_dbs(s: &TestServer, name: &str) -> String {
    let id = s.create_active("alice", "p1", name).await;
    let body = json!({"databases": [{"name": "shop"}, {"name": "blog"}]});
    let (st, b) = s
        .post("alice", "p1", &format!("/instances/{id}/databases"), &body)
        .await;
    assert_eq!(st, 202, "{b}");
    id
}

#[tokio::test]
async fn users_are_created_listed_shown_updated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(dir.path()).await;
    let id = instance_with_dbs(&s, "users").await;
    let path = format!("/instances/{id}/users");
    let body = json!({"users": [
        {"name": "app", "password": PW, "databases": [{"name": "shop"}]},
        {"name": "app", "password": PW, "host": "10.0.0.1"},
        {"name": "bi", "password": PW},
    ]});
    let (st, b) = s.post("alice", "p1", &path, &body).await;
    assert_eq!(st, 202, "{b}");

    let (st, list) = s.get("alice", "p1", &path).await;
    assert_eq!(st, 200);
    assert_eq!(user_ids(&list), ["app@%", "app@10.0.0.1", "bi@%"]);
    let (_, p1) = s.get("alice", "p1", &format!("{path}?limit=2")).await;
    assert_eq!(user_ids(&p1), ["app@%", "app@10.0.0.1"]);
    let next = p1["links"][0]["href"].as_str().unwrap();
    let marker = next.split("marker=").nth(1).unwrap();
    let (_, p2) = s
        .get("alice", "p1", &format!("{path}?limit=2&marker={marker}"))
        .await;
    assert_eq!(user_ids(&p2), ["bi@%"]);

    // `name@host` in the path, as the CLI quotes it (`.` as `%2e`).
    let (st, one) = s
        .get("alice", "p1", &format!("{path}/app%4010%2e0%2e0%2e1"))
        .await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["user"]["host"], "10.0.0.1");
    let (_, one) = s.get("alice", "p1", &format!("{path}/app")).await;
    assert_eq!(
        one,
        json!({"user": {"name": "app", "host": "%", "databases": [{"name": "shop"}]}})
    );

    let (st, b) = s
        .put(
            "alice",
            "p1",
            &format!("{path}/bi"),
            &json!({"user": {"name": "bi2", "password": NEW_PW}}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let (st, _) = s.get("alice", "p1", &format!("{path}/bi")).await;
    assert_eq!(st, 404);
    let (st, b) = s
        .put(
            "alice",
            "p1",
            &path,
            &json!({"users": [{"name": "bi2", "password": PW}]}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let (st, _) = s.delete("alice", "p1", &format!("{path}/bi2")).await;
    assert_eq!(st, 202);
    let (_, list) = s.get("alice", "p1", &path).await;
    assert_eq!(user_ids(&list), ["app@%", "app@10.0.0.1"]);

    s.terminate(std::time::Duration::from_secs(10));
    for secret in [PW, NEW_PW] {
        assert_secret_absent(dir.path(), secret);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["history", &id, "--format", "json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UsersCreated") && text.contains("UserDeleted"),
        "{text}"
    );
    assert!(!text.contains(PW) && !text.contains(NEW_PW));
}

#[tokio::test]
async fn access_is_granted_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = instance_with_dbs(&s, "access").await;
    let path = format!("/instances/{id}/users");
    let body = json!({"users": [{"name": "app", "password": PW, "databases": [{"name": "shop"}]}]});
    assert_eq!(s.post("alice", "p1", &path, &body).await.0, 202);
    let access = format!("{path}/app/databases");
    let (st, b) = s
        .put(
            "alice",
            "p1",
            &access,
            &json!({"databases": [{"name": "blog"}]}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let (_, dbs) = s.get("alice", "p1", &access).await;
    assert_eq!(
        dbs,
        json!({"databases": [{"name": "shop"}, {"name": "blog"}]})
    );
    let (st, _) = s.delete("alice", "p1", &format!("{access}/shop")).await;
    assert_eq!(st, 202);
    let (_, dbs) = s.get("alice", "p1", &access).await;
    assert_eq!(dbs, json!({"databases": [{"name": "blog"}]}));

    let (st, b) = s.delete("alice", "p1", &format!("{access}/shop")).await;
    assert_eq!(st, 404);
    assert_eq!(
        fault(&b, "itemNotFound"),
        "Database shop cannot be found on the instance."
    );
    let (st, b) = s
        .put(
            "alice",
            "p1",
            &access,
            &json!({"databases": [{"name": "nope"}]}),
        )
        .await;
    assert_eq!(st, 404, "{b}");
    let (st, b) = s
        .get("alice", "p1", &format!("{path}/ghost/databases"))
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        fault(&b, "itemNotFound"),
        "User ghost cannot be found on the instance."
    );
}

#[tokio::test]
async fn refused_user_batches_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = instance_with_dbs(&s, "refused").await;
    let path = format!("/instances/{id}/users");
    assert_eq!(
        s.post(
            "alice",
            "p1",
            &path,
            &json!({"users": [{"name": "app", "password": PW}]})
        )
        .await
        .0,
        202
    );
    let cases = [
        (
            json!({"name": "root", "password": PW}),
            400,
            "User name \"root\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*'].",
        ),
        (
            json!({"name": "app", "password": PW}),
            400,
            "A user with the name \"app\" already exists.",
        ),
        (
            json!({"name": "waytoolongusername", "password": PW}),
            400,
            "User name 'waytoolongusername' is too long. Max length = 16.",
        ),
        (
            json!({"name": "a;b", "password": PW}),
            400,
            "'a;b' is not a valid user name.",
        ),
        (
            json!({"name": "fresh2", "password": "semi;colon"}),
            400,
            "The password is not a valid password.",
        ),
        (
            json!({"name": "fresh2", "password": PW, "databases": [{"name": "nope"}]}),
            404,
            "Database nope cannot be found on the instance.",
        ),
    ];
    for (bad, status, message) in cases {
        let body = json!({"users": [{"name": "fresh", "password": PW}, bad]});
        let (st, b) = s.post("alice", "p1", &path, &body).await;
        assert_eq!(st, status, "{b}");
        let key = if status == 400 {
            "badRequest"
        } else {
            "itemNotFound"
        };
        assert_eq!(fault(&b, key), message);
    }
    let (_, list) = s.get("alice", "p1", &path).await;
    assert_eq!(user_ids(&list), ["app@%"], "nothing half-applied");
    let (st, b) = s
        .put("alice", "p1", &path, &json!({"users": [{"name": "app", "password": NEW_PW}, {"name": "ghost", "password": NEW_PW}]}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        fault(&b, "itemNotFound"),
        "User ghost cannot be found on the instance."
    );
    let (st, _) = s.delete("alice", "p1", &format!("{path}/ghost")).await;
    assert_eq!(st, 404);
    let (st, _) = s.get("mallory", "p2", &path).await;
    assert_eq!(st, 404);
    let (st, b) = s
        .put("alice", "p1", &format!("{path}/app"), &json!({"user": {}}))
        .await;
    assert_eq!(st, 400, "{b}");
}

/// A refused password is never written back: not when blank, too long or no string,
/// in any body that carries one (create, new passwords, update, root, instance create).
#[tokio::test]
async fn refused_passwords_are_not_echoed_in_the_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = instance_with_dbs(&s, "echo").await;
    let users = format!("/instances/{id}/users");
    let long = format!("Secret-{}", "x".repeat(300));
    for secret in ["   ", long.as_str()] {
        let pw = json!(secret);
        let cases = [
            (
                "POST",
                users.clone(),
                json!({"users": [{"name": "a", "password": pw}]}),
            ),
            (
                "PUT",
                users.clone(),
                json!({"users": [{"name": "a", "password": pw}]}),
            ),
            (
                "PUT",
                format!("{users}/a"),
                json!({"user": {"password": pw}}),
            ),
            (
                "POST",
                format!("/instances/{id}/root"),
                json!({"password": pw}),
            ),
            ("POST", "/instances".to_string(), {
                let mut b = common::create_body("echo2");
                b["instance"]["users"] = json!([{"name": "a", "password": pw}]);
                b
            }),
        ];
        for (method, path, body) in cases {
            let (st, b) = if method == "POST" {
                s.post("alice", "p1", &path, &body).await
            } else {
                s.put("alice", "p1", &path, &body).await
            };
            assert_eq!(st, 400, "{method} {path}: {b}");
            let text = fault(&b, "badRequest");
            assert!(text.contains("password"), "{method} {path}: {b}");
            let shown = if secret.trim().is_empty() {
                "\"   \""
            } else {
                "Secret-"
            };
            assert!(!text.contains(shown), "{method} {path} echoes it: {text}");
        }
    }
    let (st, b) = s
        .post(
            "alice",
            "p1",
            &users,
            &json!({"users": [{"name": "a", "password": 31337}]}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(!b.to_string().contains("31337"), "{b}");
}

/// Upstream checks the reserved list before it looks the user up: 400, not 404.
#[tokio::test]
async fn reserved_user_delete_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let id = instance_with_dbs(&s, "reserved").await;
    let (st, b) = s
        .delete("alice", "p1", &format!("/instances/{id}/users/root"))
        .await;
    assert_eq!(st, 400, "{b}");
    assert!(
        fault(&b, "badRequest").starts_with("User name \"root\" is on the reserved list"),
        "{b}"
    );
}

fn assert_secret_absent(dir: &Path, secret: &str) {
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
