//! Quotas and limits over HTTP (issue #15): an admin reads and changes a project's
//! limits (`/mgmt/quotas/{project}`), the next create is decided against them, the
//! change is an event with its actor that survives a restart, and `/limits` shows them.

mod common;

use common::TestServer;
use serde_json::{json, Value};

fn quota<'a>(body: &'a Value, resource: &str) -> &'a Value {
    body["quotas"]
        .as_array()
        .expect("a quotas list")
        .iter()
        .find(|q| q["resource"] == resource)
        .unwrap_or_else(|| panic!("no {resource} in {body}"))
}

fn message(body: &Value) -> String {
    body.as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// `admin` of project `ops` acting on project `p1`'s quotas.
async fn admin_put(s: &TestServer, quotas: Value) -> (u16, Value) {
    s.put(
        "admin",
        "ops",
        "/mgmt/quotas/p1",
        &json!({ "quotas": quotas }),
    )
    .await
}

#[tokio::test]
async fn an_admin_lowers_and_raises_the_instance_quota_and_creates_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--quota-instances", "5"]).await;
    s.create_active("u", "p1", "db1").await;

    let (status, body) = s.get("admin", "ops", "/mgmt/quotas/p1").await;
    assert_eq!(status, 200, "{body}");
    let resources: Vec<&str> = body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["resource"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["instances", "ram", "backups", "volumes"]);
    assert_eq!(
        quota(&body, "instances"),
        &json!({"resource": "instances", "in_use": 1, "reserved": 0, "limit": 5})
    );
    assert_eq!(quota(&body, "backups")["limit"], 50);

    // Lowered to the current usage: the next create is refused as upstream does.
    let (status, body) = admin_put(&s, json!({"instances": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"quotas": {"instances": 1}}));
    let (status, body) = s
        .post("u", "p1", "/instances", &common::create_body("db2"))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        message(&body),
        "Quota exceeded for resources: ['instances']."
    );
    // Another project keeps the default.
    s.create("u", "p2", "other").await;

    // Raised: accepted.
    let (status, _) = admin_put(&s, json!({"instances": 2, "ram": null})).await;
    assert_eq!(status, 200);
    s.create("u", "p1", "db2").await;
    let (status, _) = s
        .post("u", "p1", "/instances", &common::create_body("db3"))
        .await;
    assert_eq!(status, 413);

    // The project's own view and /limits show the override.
    let (status, body) = s.get("u", "p1", "/mgmt/quotas/p1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(quota(&body, "instances")["in_use"], 2);
    assert_eq!(quota(&body, "instances")["limit"], 2);
    let (status, body) = s.get("u", "p1", "/limits").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["limits"],
        json!([{"verb": "ABSOLUTE", "max_instances": 2, "max_ram": -1,
                "max_backups": 50, "max_volumes": 40}])
    );

    // The change survives a restart: it is read back from the log.
    s.restart().await;
    let (_, body) = s.get("admin", "ops", "/mgmt/quotas/p1").await;
    assert_eq!(quota(&body, "instances")["limit"], 2, "{body}");
    let (status, _) = s
        .post("u", "p1", "/instances", &common::create_body("db3"))
        .await;
    assert_eq!(status, 413);

    // Who changed which limit when: the events of the project's quota stream.
    let conn = rusqlite::Connection::open_with_flags(
        dir.path().join("events.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT event_type, data, metadata FROM events WHERE stream = 'quota-p1' ORDER BY position")
        .unwrap();
    let rows: Vec<(String, Value, Value)> = stmt
        .query_map([], |r| {
            let data: Vec<u8> = r.get(1)?;
            let meta: Vec<u8> = r.get(2)?;
            Ok((
                r.get(0)?,
                serde_json::from_slice(&data).unwrap(),
                serde_json::from_slice(&meta).unwrap(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (t, data, meta) in &rows {
        assert_eq!(t, "QuotaLimitsUpdated");
        assert_eq!(data["project_id"], "p1");
        assert_eq!(meta["actor"]["user_id"], "admin");
        assert_eq!(meta["actor"]["project_id"], "ops");
        assert!(data["at"].is_string());
    }
    assert_eq!(rows[0].1["limits"], json!({"instances": 1}));
    assert_eq!(rows[1].1["limits"], json!({"instances": 2}));
}

#[tokio::test]
async fn refusals_have_upstreams_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;

    // A member: reading another project's quota is 403, changing any is 401.
    let (status, body) = s.get("u", "p1", "/mgmt/quotas/p2").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(message(&body), "Operation not allowed for tenant p1.");
    let (status, body) = s
        .put(
            "u",
            "p1",
            "/mgmt/quotas/p1",
            &json!({"quotas": {"instances": 100}}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(message(&body), "User does not have admin privileges.");

    // Unknown resource: upstream's QuotaResourceUnknown (404); nothing half-applied.
    let (status, body) = admin_put(&s, json!({"instances": 3, "cpus": 2})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(message(&body), "Unknown quota resources cpus.");
    // Too small, not an integer, no `quotas`: 400 (upstream: 500 for the last two).
    let (status, body) = admin_put(&s, json!({"backups": -2})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        message(&body),
        "Quota limit '-2' for 'backups' is too small - must be at least '-1'."
    );
    let (status, body) = admin_put(&s, json!({"backups": "7"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.get("badRequest").is_some(), "{body}");
    let (status, body) = s
        .put("admin", "ops", "/mgmt/quotas/p1", &json!({"instances": 3}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(message(&body), "Invalid request body.");

    let (_, body) = s.get("admin", "ops", "/mgmt/quotas/p1").await;
    assert_eq!(quota(&body, "instances")["limit"], 10, "{body}");
    assert_eq!(quota(&body, "backups")["limit"], 50, "{body}");
}

#[tokio::test]
async fn the_backup_quota_override_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let (status, _) = admin_put(&s, json!({"backups": 0})).await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "u",
            "p1",
            "/backups",
            &json!({"backup": {"name": "b", "instance": id}}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("backups"), "{body}");
    let (_, body) = s.get("u", "p1", "/limits").await;
    assert_eq!(body["limits"][0]["max_backups"], 0, "{body}");

    let (status, _) = admin_put(&s, json!({"backups": -1})).await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "u",
            "p1",
            "/backups",
            &json!({"backup": {"name": "b", "instance": id}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}
