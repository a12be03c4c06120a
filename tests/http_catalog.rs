//! Black-box tests of the catalog endpoints (flavors, datastores), the backup read
//! endpoints and an instance's default configuration, against the real `troved`
//! binary: shapes against upstream's samples, admin vs non-admin, every error of the
//! spec, and the `--catalog` file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{samples_dir, TestServer};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// Helpers

/// An upstream sample, or `None` when this checkout has no `shared/` beside it.
fn sample(name: &str) -> Option<Value> {
    let path = samples_dir()?.join(name);
    let text = std::fs::read_to_string(&path).ok()?;
    Some(serde_json::from_str(&text).expect("samples are JSON"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `sample` is in `actual` with the same JSON type, recursively (array
/// items are compared with the sample's first item). A `null` in the sample is a
/// nullable field and accepts any type. Keys in `skip` (known stale sample keys) are
/// ignored at any depth.
fn assert_shape(sample: &Value, actual: &Value, path: &str, skip: &[&str]) {
    match (sample, actual) {
        (Value::Null, _) => {}
        (Value::Object(s), Value::Object(a)) => {
            for (k, sv) in s {
                if skip.contains(&k.as_str()) {
                    continue;
                }
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_shape(sv, av, &format!("{path}.{k}"), skip);
            }
        }
        (Value::Array(s), Value::Array(a)) => {
            if let Some(first) = s.first() {
                for (i, av) in a.iter().enumerate() {
                    assert_shape(first, av, &format!("{path}[{i}]"), skip);
                }
            }
        }
        (s, a) => assert_eq!(
            type_name(s),
            type_name(a),
            "{path}: sample {s} vs actual {a}"
        ),
    }
}

/// The two links of a resource, as seen from `base` by project `project`.
fn links(base: &str, project: &str, collection: &str, id: &str) -> Value {
    json!([
        {"href": format!("{base}/v1.0/{project}/{collection}/{id}"), "rel": "self"},
        {"href": format!("{base}/{collection}/{id}"), "rel": "bookmark"}
    ])
}

fn https_base(s: &TestServer) -> String {
    format!("https://127.0.0.1:{}", s.port)
}

fn error_of(body: &Value, fault: &str, code: u16, message: &str) {
    assert_eq!(
        body,
        &json!({ fault: {"code": code, "message": message} }),
        "unexpected error body"
    );
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|v| v["name"].as_str().expect("a name").to_string())
        .collect()
}

/// Creates an instance with a JSON body and returns its id.
async fn create(s: &TestServer, user: &str, project: &str, body: Value) -> String {
    let (status, created) = s.post(user, project, "/instances", &body).await;
    assert_eq!(status, 200, "create failed: {created}");
    created["instance"]["id"].as_str().unwrap().to_string()
}

fn write_catalog(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `troved serve` expecting it to exit by itself; returns (exit code, stderr).
fn serve_expecting_exit(data_dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(common::sim_unless_named(extra))
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn troved");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("troved kept running with an invalid catalog");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

const CUSTOM_CATALOG: &str = r#"
default_datastore = "mysql"

[[flavors]]
id = "custom"
name = "custom.small"
ram = 512
vcpus = 1
disk = 25
ephemeral = 1

[[flavors]]
id = 42
name = "answer"
ram = 4096
vcpus = 2
disk = 40

[[datastores]]
name = "mysql"
# Two versions are named 8.0: the default must be given by id.
default_version = "bbbbbbbb-2222-3333-4444-555555555555"

[[datastores.versions]]
name = "8.0"
version = "8.0.36"
id = "bbbbbbbb-2222-3333-4444-555555555555"
allowed_flavors = [42]

[[datastores.versions]]
name = "8.0"
version = "8.0.40"

[[datastores.versions]]
name = "5.7"
version = "5.7.29"
active = false

[[datastores]]
name = "redis"
id = "11111111-2222-3333-4444-555555555555"

[[datastores.versions]]
name = "7"
id = "aaaaaaaa-2222-3333-4444-555555555555"
image = "img-1"
"#;

// ---------------------------------------------------------------------------------
// Flavors

#[tokio::test]
async fn flavors_have_upstream_shape_and_integer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let base = https_base(&s);

    let (status, list) = s.get("alice", "p1", "/flavors").await;
    assert_eq!(status, 200, "{list}");
    let flavors = list["flavors"].as_array().unwrap();
    assert_eq!(
        names(&list["flavors"]),
        [
            "m1.tiny",
            "m1.small",
            "m1.medium",
            "m1.large",
            "m1.xlarge",
            "ds1G"
        ]
    );
    assert_eq!(
        flavors[1],
        json!({
            "id": 2, "str_id": "2", "name": "m1.small", "ram": 2048, "vcpus": 1,
            "disk": 20, "ephemeral": 0, "local_storage": 0,
            "links": links(&base, "p1", "flavors", "2"),
        })
    );
    if let Some(sample) = sample("historical-flavors/db-flavors-response.json") {
        assert_shape(&sample, &list, "flavors", &[]);
    }

    let (status, show) = s.get("alice", "p1", "/flavors/6").await;
    assert_eq!(status, 200, "{show}");
    assert_eq!(show["flavor"], flavors[5]);
    if let Some(sample) = sample("historical-flavors/db-flavors-by-id-response.json") {
        assert_shape(&sample, &show, "flavor", &[]);
    }

    for missing in ["m1.tiny", "7", "06"] {
        let (status, body) = s.get("alice", "p1", &format!("/flavors/{missing}")).await;
        assert_eq!(status, 404);
        error_of(
            &body,
            "itemNotFound",
            404,
            &format!("Resource {missing} cannot be found."),
        );
    }
}

#[tokio::test]
async fn create_accepts_the_integer_flavor_id_from_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "600000"]).await;
    let (_, list) = s.get("alice", "p1", "/flavors").await;
    let small = list["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "m1.small")
        .unwrap()
        .clone();
    assert!(small["id"].is_u64());
    // Exactly what the CLI sends: the flavor's `id` as a JSON integer.
    let (status, created) = s
        .post(
            "alice",
            "p1",
            "/instances",
            &json!({"instance": {
                "name": "int-flavor", "flavorRef": small["id"], "volume": {"size": 1},
                "datastore": {"type": "mysql", "version": "5.7"},
                "access": {"is_public": false}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance"]["flavor"]["id"], "2");
}

// ---------------------------------------------------------------------------------
// Datastores

#[tokio::test]
async fn datastore_list_hides_inactive_versions_from_non_admins() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let base = https_base(&s);

    let (status, user) = s.get("alice", "p1", "/datastores").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        names(&user["datastores"]),
        ["mysql", "mariadb", "postgresql"]
    );
    for ds in user["datastores"].as_array().unwrap() {
        let versions = ds["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2, "only active versions: {ds}");
        // The CLI crashes when default_version is none of the listed versions.
        assert!(versions.iter().any(|v| v["id"] == ds["default_version"]));
        for v in versions {
            assert!(v.get("active").is_none() && v.get("datastore").is_none());
            let id = v["id"].as_str().unwrap();
            assert_eq!(v["links"], links(&base, "p1", "datastores/versions", id));
        }
        let id = ds["id"].as_str().unwrap();
        assert_eq!(ds["links"], links(&base, "p1", "datastores", id));
    }
    assert_eq!(
        names(&user["datastores"][0]["versions"]),
        ["5.7", "8.0"],
        "mysql 5.6 is inactive"
    );
    if let Some(sample) = sample("datastore-list-response.json") {
        assert_shape(&sample, &user, "datastores", &[]);
    }

    let (status, admin) = s.get("admin", "p1", "/datastores").await;
    assert_eq!(status, 200);
    let mysql = &admin["datastores"][0];
    assert_eq!(names(&mysql["versions"]), ["5.7", "8.0", "5.6"]);
    let inactive = &mysql["versions"][2];
    assert_eq!(inactive["active"], false);
    assert_eq!(inactive["version"], "5.6.51");
    assert_eq!(inactive["image_tags"], json!(["trove"]));
    assert_eq!(inactive["image"], Value::Null);
    assert_eq!(inactive["packages"], "");
    assert_eq!(
        inactive["registry_ext"],
        "trove.guestagent.datastore.mysql.manager.Manager"
    );
    assert_eq!(
        inactive["repl_strategy"],
        "trove.guestagent.strategies.replication.mysql_gtid.MysqlGTIDReplication"
    );
}

#[tokio::test]
async fn datastore_show_and_version_endpoints_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let base = https_base(&s);

    let (status, by_name) = s.get("alice", "p1", "/datastores/postgresql").await;
    assert_eq!(status, 200, "{by_name}");
    let ds_id = by_name["datastore"]["id"].as_str().unwrap().to_string();
    let (status, by_id) = s.get("alice", "p1", &format!("/datastores/{ds_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_name, by_id);
    assert_eq!(names(&by_name["datastore"]["versions"]), ["13", "16"]);
    if let Some(sample) = sample("datastore-show-response.json") {
        assert_shape(&sample, &by_name, "datastore", &[]);
    }
    // Show embeds active versions only, for admins too; admins get their fields.
    let (_, admin_show) = s.get("admin", "p1", "/datastores/postgresql").await;
    assert_eq!(names(&admin_show["datastore"]["versions"]), ["13", "16"]);
    assert_eq!(admin_show["datastore"]["versions"][0]["active"], true);

    // Version list: active only for users, all for admins, each with `datastore`.
    let (status, versions) = s
        .get("alice", "p1", "/datastores/postgresql/versions")
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&versions["versions"]), ["13", "16"]);
    assert_eq!(versions["versions"][0]["datastore"], json!(ds_id));
    assert_eq!(versions["versions"][0]["version"], "13.15");
    if let Some(sample) = sample("datastore-version-list-response.json") {
        assert_shape(&sample, &versions, "versions", &[]);
    }
    let (_, all) = s
        .get("admin", "p1", &format!("/datastores/{ds_id}/versions"))
        .await;
    assert_eq!(names(&all["versions"]), ["13", "16", "12"]);

    // Version show by name and by id; inactive versions are shown to anyone.
    let (status, v12) = s
        .get("alice", "p1", "/datastores/postgresql/versions/12")
        .await;
    assert_eq!(status, 200, "{v12}");
    let v12_id = v12["version"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        v12["version"],
        json!({
            "id": v12_id, "name": "12", "version": "12.19", "datastore": ds_id,
            "links": links(&base, "p1", "datastores/versions", &v12_id),
        })
    );
    let (_, again) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/{ds_id}/versions/{v12_id}"),
        )
        .await;
    assert_eq!(again, v12);
    let (status, admin_v) = s
        .get("admin", "p1", &format!("/datastores/versions/{v12_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(admin_v["version"]["datastore"], json!(ds_id));
    if let Some(sample) = sample("datastore-version-show-response.json") {
        assert_shape(&sample, &admin_v, "version", &[]);
    }
    let (_, user_v) = s
        .get("alice", "p1", &format!("/datastores/versions/{v12_id}"))
        .await;
    assert_eq!(user_v, v12);
}

#[tokio::test]
async fn datastore_errors_have_upstream_statuses_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let (_, mysql) = s.get("alice", "p1", "/datastores/mysql").await;
    let mysql_version = mysql["datastore"]["versions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = "8d1d7c3c-0000-4000-8000-000000000000";

    let cases: Vec<(String, u16, &str, String)> = vec![
        (
            "/datastores/oracle".into(),
            404,
            "itemNotFound",
            "Datastore 'oracle' cannot be found.".into(),
        ),
        (
            format!("/datastores/{unknown}/versions"),
            404,
            "itemNotFound",
            format!("Datastore '{unknown}' cannot be found."),
        ),
        (
            "/datastores/oracle/versions/1".into(),
            404,
            "itemNotFound",
            "Datastore 'oracle' cannot be found.".into(),
        ),
        (
            "/datastores/postgresql/versions/9.6".into(),
            400,
            "badRequest",
            "Datastore version '9.6' cannot be found.".into(),
        ),
        (
            // A version UUID of another datastore.
            format!("/datastores/postgresql/versions/{mysql_version}"),
            404,
            "itemNotFound",
            "DBDatastoreVersion Not Found".into(),
        ),
        (
            format!("/datastores/versions/{unknown}"),
            400,
            "badRequest",
            format!("Datastore version '{unknown}' cannot be found."),
        ),
        (
            "/datastores/versions/8.0".into(),
            400,
            "badRequest",
            "Datastore version '8.0' cannot be found.".into(),
        ),
        (
            "/datastores/mysql/versions/5.6/flavors".into(),
            400,
            "badRequest",
            "Datastore version '5.6' is not active.".into(),
        ),
        (
            "/datastores/oracle/versions/5.6/flavors".into(),
            404,
            "itemNotFound",
            "Datastore 'oracle' cannot be found.".into(),
        ),
    ];
    for (path, code, fault, message) in cases {
        for user in ["alice", "admin"] {
            let (status, body) = s.get(user, "p1", &path).await;
            assert_eq!(status, code, "{user} {path}: {body}");
            error_of(&body, fault, code, &message);
        }
    }
}

#[tokio::test]
async fn version_flavors_are_every_flavor_when_none_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let (_, all) = s.get("alice", "p1", "/flavors").await;
    let (status, bound) = s
        .get("alice", "p1", "/datastores/mysql/versions/8.0/flavors")
        .await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(bound, all);
    let (_, ds) = s.get("alice", "p1", "/datastores/mariadb").await;
    let (ds_id, v_id) = (
        ds["datastore"]["id"].as_str().unwrap(),
        ds["datastore"]["default_version"].as_str().unwrap(),
    );
    let (status, by_ids) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/{ds_id}/versions/{v_id}/flavors"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_ids, all);
}

// ---------------------------------------------------------------------------------
// The catalog file

#[tokio::test]
async fn custom_catalog_file_is_served_and_used_by_creates() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = write_catalog(dir.path(), CUSTOM_CATALOG);
    let data = dir.path().join("data");
    let s = TestServer::start(
        &data,
        &[
            "--catalog",
            catalog.to_str().unwrap(),
            "--sim-latency-ms",
            "0",
            "--public-url",
            "https://db.example.com:8779/",
        ],
    )
    .await;
    let base = "https://db.example.com:8779";

    let (status, list) = s.get("alice", "p1", "/flavors").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["flavors"][0],
        json!({
            "id": null, "str_id": "custom", "name": "custom.small", "ram": 512,
            "vcpus": 1, "disk": 25, "ephemeral": 1, "local_storage": 1,
            "links": links(base, "p1", "flavors", "custom"),
        })
    );
    assert_eq!(list["flavors"][1]["id"], 42);
    let (status, _) = s.get("alice", "p1", "/flavors/custom").await;
    assert_eq!(status, 200);
    let (status, _) = s.get("alice", "p1", "/flavors/1").await;
    assert_eq!(status, 404, "built-in flavors are gone");

    // Explicit ids are used as written; a datastore without default has no key.
    let (_, redis) = s.get("alice", "p1", "/datastores/redis").await;
    assert_eq!(
        redis["datastore"]["id"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert!(redis["datastore"].get("default_version").is_none());
    let (_, redis_v) = s
        .get(
            "admin",
            "p1",
            "/datastores/versions/aaaaaaaa-2222-3333-4444-555555555555",
        )
        .await;
    assert_eq!(redis_v["version"]["image"], "img-1");
    assert_eq!(redis_v["version"]["version"], "7");
    assert_eq!(redis_v["version"]["repl_strategy"], Value::Null);
    assert_eq!(redis_v["version"]["image_tags"], json!([]));

    // Two versions named 8.0: ambiguous by name, distinct by id.
    let (status, body) = s.get("alice", "p1", "/datastores/mysql/versions/8.0").await;
    assert_eq!(status, 400);
    error_of(
        &body,
        "badRequest",
        400,
        "Multiple datastore versions found for '8.0', use an UUID or specify both the name and version number to be more specific.",
    );
    let (_, versions) = s.get("alice", "p1", "/datastores/mysql/versions").await;
    let bound_id = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "8.0.36")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, bound) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/mysql/versions/{bound_id}/flavors"),
        )
        .await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(names(&bound["flavors"]), ["answer"]);

    // No datastore named: the default datastore and its default version (8.0.36),
    // which only accepts flavor 42.
    let (status, body) = s
        .post(
            "alice",
            "p1",
            "/instances",
            &json!({"instance": {"name": "d", "flavorRef": "custom", "volume": {"size": 1}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["badRequest"]["message"],
        format!("Flavor custom is not supported for datastore version {bound_id}")
    );
    let id = create(
        &s,
        "alice",
        "p1",
        json!({"instance": {"name": "d", "flavorRef": 42, "volume": {"size": 1}}}),
    )
    .await;
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["datastore"]["version_number"], "8.0.36");
    assert_eq!(
        shown["instance"]["links"],
        links(base, "p1", "instances", &id),
        "--public-url is honoured"
    );

    // The custom flavor works in a create (by its string id); the default datastore
    // applies when none is named.
    let id = create(
        &s,
        "alice",
        "p1",
        json!({"instance": {"name": "custom", "flavorRef": "custom",
            "volume": {"size": 1}, "datastore": {"type": "redis", "version": "7"}}}),
    )
    .await;
    let shown = s
        .wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(shown["flavor"]["id"], "custom");
    let (status, body) = s
        .get("alice", "p1", &format!("/instances/{id}/configuration"))
        .await;
    assert_eq!(status, 400, "{body}");
    error_of(
        &body,
        "badRequest",
        400,
        "No configuration parser found for datastore redis.",
    );
}

#[tokio::test]
async fn invalid_catalog_file_stops_startup_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            CUSTOM_CATALOG.replace(
                "default_version = \"bbbbbbbb-2222-3333-4444-555555555555\"",
                "default_version = \"8.0\"",
            ),
            "datastore 'mysql': default_version '8.0' names several versions; use the version's id",
        ),
        (
            CUSTOM_CATALOG.replace("id = 42", "id = \"custom\""),
            "flavor id 'custom' is defined twice",
        ),
        (
            "[[flavors]]\nid = 1\nname = \"x\"\n".to_string(),
            "missing field `ram`",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let sub = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let path = write_catalog(&sub, text);
        let (code, stderr) =
            serve_expecting_exit(&sub.join("data"), &["--catalog", path.to_str().unwrap()]);
        assert_ne!(code, Some(0), "{stderr}");
        assert!(code.is_some(), "killed by a signal: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    }
    let missing = dir.path().join("nope.toml");
    let (code, stderr) = serve_expecting_exit(
        &dir.path().join("data"),
        &["--catalog", missing.to_str().unwrap()],
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains("cannot read catalog file"), "{stderr}");
}

// ---------------------------------------------------------------------------------
// Backups

#[tokio::test]
async fn backup_endpoints_return_empty_lists_and_enforce_policy() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;

    for path in [
        "/backups",
        "/backups?datastore=mysql",
        "/backups?instance_id=8d1d7c3c-0000-4000-8000-000000000000&limit=5&marker=0",
        "/backups?all_projects=false",
        "/backups?project_id=",
    ] {
        let (status, body) = s.get("alice", "p1", path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body, json!({"backups": []}), "{path}");
    }
    for path in ["/backups?all_projects=True", "/backups?project_id=p2"] {
        let (status, body) = s.get("admin", "p1", path).await;
        assert_eq!((status, body), (200, json!({"backups": []})), "{path}");
        let (status, body) = s.get("alice", "p1", path).await;
        assert_eq!(status, 403, "{path}");
        error_of(
            &body,
            "forbidden",
            403,
            "Policy doesn't allow backup:index:all_projects to be performed.",
        );
    }
    let (status, body) = s.get("alice", "p1", "/backups?datastore=oracle").await;
    assert_eq!(status, 404);
    error_of(
        &body,
        "itemNotFound",
        404,
        "Datastore 'oracle' cannot be found.",
    );
    for bad in ["limit=0", "limit=x", "marker=-2"] {
        let (status, body) = s.get("alice", "p1", &format!("/backups?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["badRequest"]["message"].is_string());
    }
    for id in ["8d1d7c3c-0000-4000-8000-000000000000", "nightly"] {
        for user in ["alice", "admin"] {
            let (status, body) = s.get(user, "p1", &format!("/backups/{id}")).await;
            assert_eq!(status, 404);
            error_of(
                &body,
                "itemNotFound",
                404,
                &format!("Resource {id} cannot be found."),
            );
        }
    }
}

#[tokio::test]
async fn instance_backups_and_configuration_need_a_compute_server() {
    let dir = tempfile::tempdir().unwrap();
    // A slow simulated cloud: the instance stays in BUILD without a server.
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "600000"]).await;
    let id = s.create("alice", "p1", "building").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for sub in ["backups", "configuration"] {
        let path = format!("/instances/{id}/{sub}");
        for (user, project) in [("alice", "p1"), ("admin", "p2")] {
            let (status, body) = s.get(user, project, &path).await;
            assert_eq!(status, 422, "{user} {path}: {body}");
            error_of(
                &body,
                "unprocessableEntity",
                422,
                &format!("Instance {id} is not ready."),
            );
        }
        // Another project's instance, an unknown id and a name are all 404.
        let unknown = "8d1d7c3c-0000-4000-8000-000000000000";
        for (project, target) in [("p2", id.as_str()), ("p1", unknown), ("p1", "building")] {
            let (status, body) = s
                .get("bob", project, &format!("/instances/{target}/{sub}"))
                .await;
            assert_eq!(status, 404, "{project} {target} {sub}: {body}");
            error_of(
                &body,
                "itemNotFound",
                404,
                &format!("Resource {target} cannot be found."),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Default configuration

#[tokio::test]
async fn active_mysql_instance_has_the_default_configuration_of_its_flavor() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    // flavor 2 = m1.small, 2048 MB; mysql 8.0 (8.0.36).
    let id = s.create_active("alice", "p1", "configured").await;

    let path = format!("/instances/{id}/configuration");
    let (status, body) = s.get("alice", "p1", &path).await;
    assert_eq!(status, 200, "{body}");
    let c = body["instance"]["configuration"]
        .as_object()
        .unwrap()
        .clone();
    let expected = json!({
        "port": 3306, "basedir": "/usr", "datadir": "/var/lib/mysql/data",
        "secure-file-priv": "NULL", "tmpdir": "/var/tmp",
        "pid-file": "/var/run/mysqld/mysqld.pid", "socket": "/var/run/mysqld/mysqld.sock",
        "default_authentication_plugin": "mysql_native_password",
        "skip-external-locking": 1, "key_buffer_size": "200M",
        "max_allowed_packet": "4096K", "thread_stack": "192K", "thread_cache_size": 16,
        "myisam-recover-options": "BACKUP,FORCE",
        "innodb_data_file_path": "ibdata1:10M:autoextend",
        "innodb_buffer_pool_size": "600M", "innodb_file_per_table": 1,
        "innodb_log_files_in_group": 2, "innodb_log_file_size": "50M",
        "innodb_log_buffer_size": "25M", "connect_timeout": 15, "wait_timeout": 120,
        "join_buffer_size": "1M", "read_buffer_size": "512K",
        "read_rnd_buffer_size": "512K", "sort_buffer_size": "1M",
        "tmp_table_size": "64M", "max_heap_table_size": "64M",
        "table_open_cache": 1024, "table_definition_cache": 1024,
        "open_files_limit": 2048, "max_user_connections": 400, "max_connections": 400,
        "default_storage_engine": "innodb", "local-infile": 0,
        "server_id": c["server_id"], "performance_schema": "ON",
    });
    assert_eq!(Value::Object(c.clone()), expected);
    let server_id = c["server_id"].as_u64().expect("server_id is an integer");
    assert!(server_id < 1 << 31);
    // Stable across calls (and restarts: it derives from the instance id).
    let (_, again) = s.get("alice", "p1", &path).await;
    assert_eq!(again, body);
    // The sample predates MySQL 8: its query cache keys and `user` are not rendered.
    if let Some(sample) = sample("instance-configuration-list-response.json") {
        assert_shape(
            &sample,
            &body,
            "configuration",
            &[
                "query_cache_limit",
                "query_cache_size",
                "query_cache_type",
                "user",
            ],
        );
    }
    // Admins of another project see it too; other projects do not.
    let (status, admin) = s.get("admin", "p9", &path).await;
    assert_eq!((status, &admin), (200, &body));
    let (status, _) = s.get("bob", "p2", &path).await;
    assert_eq!(status, 404);

    // The instance's backups: none yet, the upstream list shape.
    let (status, backups) = s
        .get("alice", "p1", &format!("/instances/{id}/backups"))
        .await;
    assert_eq!((status, backups), (200, json!({"backups": []})));
    let (status, _) = s
        .get("alice", "p1", &format!("/instances/{id}/backups?limit=0"))
        .await;
    assert_eq!(status, 400);

    // Once deleted, the instance is gone for both endpoints.
    let (status, _) = s.delete("alice", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202);
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    for sub in ["configuration", "backups"] {
        let (status, _) = s
            .get("alice", "p1", &format!("/instances/{id}/{sub}"))
            .await;
        assert_eq!(status, 404, "{sub}");
    }
}

#[tokio::test]
async fn postgresql_instance_configuration_uses_the_postgresql_template() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    // flavor 3 = m1.medium, 4096 MB; postgresql default version 16 (16.3).
    let id = create(
        &s,
        "alice",
        "p1",
        json!({"instance": {"name": "pg", "flavorRef": 3, "volume": {"size": 1},
            "datastore": {"type": "postgresql"}}}),
    )
    .await;
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let (status, body) = s
        .get("alice", "p1", &format!("/instances/{id}/configuration"))
        .await;
    assert_eq!(status, 200, "{body}");
    let c = &body["instance"]["configuration"];
    assert_eq!(c["shared_buffers"], "1024MB");
    assert_eq!(c["effective_cache_size"], "3584MB");
    assert_eq!(c["max_connections"], 100);
    assert_eq!(c["listen_addresses"], "'*'");
    assert_eq!(
        c["wal_keep_size"],
        json!([80, "wal_keep_segments x wal_keep_size"])
    );
    assert!(c.get("server_id").is_none());
    assert_eq!(c.as_object().unwrap().len(), 24);
}
