//! Policy rules (issue #16), against the real binary with static tokens: upstream's
//! defaults, an operator's `--policy-file` overriding them, and policy files that stop
//! troved at start-up, naming the line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_body, send, TestServer};
use serde_json::{json, Value};

/// Members alice (p1), carol (p1, also `reader`) and an admin of p1.
fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        r#"
[[token]]
token = "alice-t"
user = "alice"
project = "p1"
roles = ["member"]

[[token]]
token = "carol-t"
user = "carol"
project = "p1"
roles = ["member", "Reader"]

[[token]]
token = "admin-t"
user = "ops"
project = "p1"
roles = ["admin"]
"#,
    )
    .unwrap();
    path
}

async fn start(dir: &Path, policy: Option<&str>) -> TestServer {
    let auth = format!("tokens:{}", token_file(dir).display());
    let mut args = vec![
        "--auth".to_string(),
        auth,
        "--sim-latency-ms".into(),
        "0".into(),
    ];
    if let Some(text) = policy {
        let path = dir.join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        args.extend(["--policy-file".to_string(), path.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(&dir.join("data"), &args).await
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    token: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s.http.request(method, s.url("p1", path));
    if let Some(t) = token {
        rb = rb.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

fn forbidden(rule: &str) -> Value {
    json!({"forbidden": {
        "message": format!("Policy doesn't allow {rule} to be performed."),
        "code": 403
    }})
}

/// Creates an instance as alice and waits until it is ACTIVE; its id.
async fn active_instance(s: &TestServer) -> String {
    let (status, body) = call(
        s,
        reqwest::Method::POST,
        Some("alice-t"),
        "/instances",
        Some(create_body("pol")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["instance"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(
            s,
            reqwest::Method::GET,
            Some("alice-t"),
            &format!("/instances/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["instance"]["status"] == "ACTIVE" {
            return id;
        }
        assert!(Instant::now() < deadline, "not ACTIVE: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_policy_file_makes_delete_admin_only_and_index_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        Some("# operators' policy\n\"instance:delete\": \"role:admin\"\n\"instance:index\": \"role:reader\"\n"),
    )
    .await;
    let id = active_instance(&s).await;
    let path = format!("/instances/{id}");

    // The member may not delete: Trove's 403 body, and the instance is still there.
    let (status, body) = call(&s, reqwest::Method::DELETE, Some("alice-t"), &path, None).await;
    assert_eq!((status, body), (403, forbidden("instance:delete")));
    let (status, body) = call(&s, reqwest::Method::GET, Some("alice-t"), &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["instance"]["status"], "ACTIVE");
    // 401 before 403; 403 before 404 (the policy is checked before the instance is looked up).
    let (status, _) = call(&s, reqwest::Method::DELETE, None, &path, None).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &s,
        reqwest::Method::DELETE,
        Some("alice-t"),
        "/instances/nope",
        None,
    )
    .await;
    assert_eq!((status, body), (403, forbidden("instance:delete")));

    // `instance:index` = `role:reader`: alice is refused, carol (role `Reader`) is not,
    // nor is the admin refused anything else; `instance:detail` keeps its default.
    let (status, body) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        "/instances",
        None,
    )
    .await;
    assert_eq!((status, body), (403, forbidden("instance:index")));
    let (status, body) = call(
        &s,
        reqwest::Method::GET,
        Some("carol-t"),
        "/instances",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instances"][0]["id"], id.as_str());
    let (status, _) = call(
        &s,
        reqwest::Method::GET,
        Some("admin-t"),
        "/instances",
        None,
    )
    .await;
    assert_eq!(status, 403, "role:reader alone, the admin lacks it");
    let (status, _) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        "/instances/detail",
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The admin of the same project deletes it.
    let (status, body) = call(&s, reqwest::Method::DELETE, Some("admin-t"), &path, None).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = call(&s, reqwest::Method::GET, Some("alice-t"), &path, None).await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn default_policy_keeps_reset_status_and_all_projects_for_admins() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let id = active_instance(&s).await;
    let action = format!("/instances/{id}/action");
    let reset = json!({"reset_status": {}});

    let (status, body) = call(
        &s,
        reqwest::Method::POST,
        Some("alice-t"),
        &action,
        Some(reset.clone()),
    )
    .await;
    assert_eq!((status, body), (403, forbidden("instance:reset_status")));
    // The rule of an action is known from its body: a bad body is a 400 first.
    let (status, body) = call(
        &s,
        reqwest::Method::POST,
        Some("alice-t"),
        &action,
        Some(json!({"reboot": {}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &s,
        reqwest::Method::POST,
        None,
        &action,
        Some(reset.clone()),
    )
    .await;
    assert_eq!(status, 401);
    // As upstream, a reset asking for `force_delete` is `instance:force_delete`'s call
    // (`admin_or_owner`): the owner may reset before a forced delete.
    let (status, body) = call(
        &s,
        reqwest::Method::POST,
        Some("alice-t"),
        &action,
        Some(json!({"reset_status": {"force_delete": true}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    // The reset is in the instance's history, by alice (the status it leaves, UNKNOWN,
    // lasts only until the simulated guest's next heartbeat: not a stable thing to read).
    let (status, body) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        &format!("/instances/{id}/history?limit=500"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resets: Vec<&Value> = body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|e| e["event_type"] == "InstanceStatusReset")
        .collect();
    assert_eq!(resets.len(), 1, "{body}");
    assert_eq!(resets[0]["actor"], "alice@p1", "{body}");
    let (status, body) = call(
        &s,
        reqwest::Method::POST,
        Some("admin-t"),
        &action,
        Some(reset),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        "/backups?all_projects=true",
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (403, forbidden("backup:index:all_projects"))
    );
    let (status, _) = call(&s, reqwest::Method::GET, Some("alice-t"), "/backups", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &s,
        reqwest::Method::GET,
        Some("admin-t"),
        "/backups?all_projects=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Flavors are open to every authenticated caller (`flavor:index` is "").
    let (status, _) = call(&s, reqwest::Method::GET, Some("alice-t"), "/flavors", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_policy_file_can_loosen_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        Some("{\"backup:index:all_projects\": \"rule:admin_or_owner\"}"),
    )
    .await;
    let (status, body) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        "/backups?all_projects=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `troved serve --policy-file F` (or `TROVED_POLICY_FILE=F`): its exit status and stderr.
fn serve_with_policy(dir: &Path, text: &str, by_env: bool) -> (bool, String, PathBuf) {
    let path = dir.join("bad-policy.yaml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troved"));
    cmd.args([
        "serve",
        "--provider",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.join("data"));
    if by_env {
        cmd.env("TROVED_POLICY_FILE", &path);
    } else {
        cmd.arg("--policy-file").arg(&path);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

#[test]
fn malformed_policy_files_stop_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "\"flavor:index\": \"\"\n\"instance:delete\": \"role:admin\"\n  bad: indent\n",
            "line 3",
            "not valid YAML",
        ),
        (
            "\"flavor:index\": \"\"\n\"instance:delete\": \"role:admin or\"\n",
            "line 2",
            "does not parse",
        ),
        (
            "\"instance:delet\": \"role:admin\"\n",
            "line 1",
            "unknown rule name `instance:delet`",
        ),
        (
            "# c\n\n\"instance:delete\": \"rule:admins\"\n",
            "line 3",
            "`rule:admins`, which is not defined",
        ),
        (
            "\"instance:delete\": \"rule:a\"\na: \"rule:b\"\nb: \"rule:a\"\n",
            "line 2",
            "cycle: a -> b -> a",
        ),
        ("\"instance:delete\": 1\n", "line 1", "not a string"),
    ];
    for (i, (text, line, needle)) in cases.iter().enumerate() {
        let (ok, stderr, path) = serve_with_policy(dir.path(), text, i % 2 == 1);
        assert!(!ok, "{text:?} started");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{text:?}: {stderr}"
        );
        assert!(stderr.contains(line), "{text:?} wants {line}: {stderr}");
        assert!(stderr.contains(needle), "{text:?} wants {needle}: {stderr}");
    }
}

#[tokio::test]
async fn a_create_also_needs_the_rules_of_what_it_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        Some("\"instance:extension:user:create\": \"role:admin\"\n"),
    )
    .await;
    let mut body = create_body("with-users");
    body["instance"]["users"] = json!([{"name": "app", "password": "s3cret-pw"}]);
    let (status, refused) = call(
        &s,
        reqwest::Method::POST,
        Some("alice-t"),
        "/instances",
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, refused),
        (403, forbidden("instance:extension:user:create"))
    );
    let (status, list) = call(
        &s,
        reqwest::Method::GET,
        Some("alice-t"),
        "/instances",
        None,
    )
    .await;
    assert_eq!(
        (status, list["instances"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, created) = call(
        &s,
        reqwest::Method::POST,
        Some("admin-t"),
        "/instances",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let (status, plain) = call(
        &s,
        reqwest::Method::POST,
        Some("alice-t"),
        "/instances",
        Some(create_body("plain")),
    )
    .await;
    assert_eq!(status, 200, "{plain}");
}

/// A repeated query parameter counts by its last value, as the handler (and webob)
/// reads it: the policy cannot be checked against one value and the filter use another.
#[tokio::test]
async fn a_repeated_query_key_cannot_widen_the_backup_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    for query in [
        "all_projects=0&all_projects=1",
        "project_id=&project_id=p2",
        "project_id=p1&all_projects=no&project_id=p2",
    ] {
        let (status, body) = call(
            &s,
            reqwest::Method::GET,
            Some("alice-t"),
            &format!("/backups?{query}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body),
            (403, forbidden("backup:index:all_projects")),
            "{query}"
        );
    }
    // The last value is false or empty: the caller's own backups, allowed.
    for query in ["all_projects=1&all_projects=0", "project_id=p2&project_id="] {
        let (status, body) = call(
            &s,
            reqwest::Method::GET,
            Some("alice-t"),
            &format!("/backups?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{query}: {body}");
    }
}

/// axum answers HEAD with the GET handler: HEAD is checked against GET's rule.
#[tokio::test]
async fn head_is_checked_against_the_rule_of_get() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Some("\"flavor:index\": \"role:admin\"\n")).await;
    for (token, want) in [("alice-t", 403), ("admin-t", 200)] {
        let resp = s
            .http
            .head(s.url("p1", "/flavors"))
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "HEAD /flavors as {token}");
    }
    let resp = s.http.head(s.url("p1", "/flavors")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "HEAD /flavors without a token");
}

/// `troved serve --policy-file F`, stopped if it is still up after a few seconds:
/// whether it stopped by itself, successfully or not (`None`: it kept serving) and its
/// stderr.
fn serve_briefly(dir: &Path, text: &str) -> (Option<bool>, String) {
    let path = dir.join("deep-policy.yaml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["serve", "--provider", "sim", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--policy-file")
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.success());
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Deeply nested rules used to overflow the stack: at start (30,000 `not`), or on the
/// first request (10,000). Now they are refused at start, naming the line.
#[test]
fn deeply_nested_rules_stop_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for n in [10_000, 30_000] {
        let text = format!(
            "\"flavor:index\": \"\"\n\"instance:delete\": \"{}@\"\n",
            "not ".repeat(n)
        );
        let (status, stderr) = serve_briefly(dir.path(), &text);
        assert_eq!(status, Some(false), "{n}: {stderr}");
        assert!(stderr.contains("line 2"), "{n}: {stderr}");
        assert!(stderr.contains("nest"), "{n}: {stderr}");
    }
}
