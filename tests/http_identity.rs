//! Identity modes and hostile input, against the real binary.

mod common;

use std::process::Command;

use common::{create_body, send, TestServer};
use serde_json::json;

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        r#"
[[token]]
token = "alice-secret"
user = "alice"
project = "p1"
roles = ["member"]

[[token]]
token = "bob-secret"
user = "bob"
project = "p2"
roles = ["member"]

[[token]]
token = "ops-secret"
user = "ops"
project = "ops-project"
roles = ["admin"]
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn static_tokens_authenticate_scope_and_authorize() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let auth = format!("tokens:{}", tokens.display());
    let s = TestServer::start(
        &dir.path().join("data"),
        &["--auth", &auth, "--sim-latency-ms", "0"],
    )
    .await;
    let with = |token: &str, project: &str, path: &str| {
        s.http
            .get(s.url(project, path))
            .header("X-Auth-Token", token.to_string())
    };

    // No token, an unknown token, and a noauth-style token are all 401 with a JSON body.
    for rb in [
        s.http.get(s.url("p1", "/instances")),
        with("wrong", "p1", "/instances"),
        with("alice:p1", "p1", "/instances"),
    ] {
        let (status, body) = send(rb).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["unauthorized"]["code"], 401);
    }
    // The version document needs no token (openstacksdk discovers without one).
    let (status, _) = send(s.http.get(format!("{}/v1.0", s.base))).await;
    assert_eq!(status, 200);

    // A valid token on another project's URL: 403.
    let (status, body) = send(with("alice-secret", "p2", "/instances")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["forbidden"]["message"],
        "User with tenant id p1 cannot access this resource."
    );

    // Alice creates; Bob cannot see it; the admin can, and the actor is alice.
    let (status, created) = send(
        s.http
            .post(s.url("p1", "/instances"))
            .header("X-Auth-Token", "alice-secret")
            .json(&create_body("tok")),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let (status, _) = send(with("bob-secret", "p2", &format!("/instances/{id}"))).await;
    assert_eq!(status, 404);
    let (status, body) = send(with("bob-secret", "p2", "/mgmt/instances")).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["unauthorized"]["message"],
        "User does not have admin privileges."
    );
    let (status, body) = send(with(
        "ops-secret",
        "ops-project",
        &format!("/mgmt/instances/{id}"),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["tenant_id"], "p1");
}

#[test]
fn noauth_on_a_non_loopback_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--provider",
            "sim",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve --auth noauth"),
        "{stderr}"
    );
}

#[tokio::test]
async fn hostile_bodies_paths_and_queries_get_trove_shaped_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--max-body-bytes", "4096"]).await;
    let post = |body: Vec<u8>| {
        s.http
            .post(s.url("p1", "/instances"))
            .header("X-Auth-Token", "alice:p1")
            .header("Content-Type", "application/json")
            .body(body)
    };
    // Over the body limit.
    let mut big = create_body("big");
    big["instance"]["padding"] = json!("x".repeat(10_000));
    let (status, body) = send(post(serde_json::to_vec(&big).unwrap())).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["overLimit"]["code"], 413);
    // Not UTF-8.
    let (status, body) = send(post(vec![b'{', 0xff, 0xfe, b'}'])).await;
    assert_eq!(status, 400);
    assert_eq!(body["badRequest"]["message"], "Malformed request body");
    // Deeply nested JSON is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    let (status, _) = send(post(deep.into_bytes())).await;
    assert!(status == 400 || status == 413, "{status}");
    // Wrong types everywhere.
    for bad in [
        json!({"instance": {"name": 5, "flavorRef": 1}}),
        json!({"instance": {"name": "n", "flavorRef": {"id": 1}}}),
        json!({"instance": {"name": "n", "flavorRef": 1, "volume": 3}}),
        json!({"instance": {"name": "n", "flavorRef": 1, "volume": {"size": 1}, "users": "u"}}),
        json!({"instance": {"name": "n", "flavorRef": 1, "volume": {"size": 1}, "nics": [{"port-id": "x"}]}}),
        json!({"instance": {"name": "n", "flavorRef": 1, "volume": {"size": 1}, "access": {"allowed_cidrs": ["::/0"]}}}),
        json!({"instance": {"name": "n", "flavorRef": 1, "volume": {"size": 1}, "replica_count": 0}}),
        json!({"instance": {"name": "", "flavorRef": 1}}),
        json!({"instance": {"name": "x".repeat(256), "flavorRef": 1}}),
    ] {
        let (status, body) = s.post("alice", "p1", "/instances", &bad).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(
            body["badRequest"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Validation error"),
            "{body}"
        );
    }
    // A query that does not parse and a path with odd bytes.
    let (status, body) = send(
        s.http
            .get(format!("{}/v1.0/p1/instances?limit=%ZZ&marker=%FF", s.base))
            .header("X-Auth-Token", "alice:p1"),
    )
    .await;
    assert!(status == 400 || status == 200, "{status} {body}");
    assert!(body.is_object());
    let (status, body) = send(
        s.http
            .get(format!("{}/v1.0/p1/instances/%FF%FE", s.base))
            .header("X-Auth-Token", "alice:p1"),
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    assert!(body.as_object().is_some_and(|o| o.len() == 1), "{body}");
    // Nothing of all that reached the log.
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(list, json!({"instances": []}));
}
