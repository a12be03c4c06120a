//! Black-box tests of the configuration group API (spec `supporting-resources.md` §3)
//! and its use by instances (`instances-api.md` §8.6, §11.4): the real `troved` binary
//! on a free port.

mod common;

use common::{create_body, samples_dir, TestServer};
use serde_json::{json, Value};

const IN_USE: &str = "A configuration group cannot be deleted if it is associated with one or more non-terminated instances. Detach the configuration group from all non-terminated instances and please try again.";

fn group_body(name: &str, version: &str, values: Value) -> Value {
    json!({"configuration": {
        "name": name,
        "values": values,
        "datastore": {"type": "mysql", "version": version}
    }})
}

/// Creates a group as `user` of `project`; returns its detail view.
async fn create_group(s: &TestServer, user: &str, project: &str, body: &Value) -> Value {
    let (status, resp) = s.post(user, project, "/configurations", body).await;
    assert_eq!(status, 200, "group create failed: {resp}");
    resp["configuration"].clone()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// Creates an instance (mysql 8.0 unless the body says otherwise) and waits for ACTIVE.
async fn active_instance(s: &TestServer, project: &str, body: Value) -> String {
    let (status, created) = s.post("alice", project, "/instances", &body).await;
    assert_eq!(status, 200, "instance create failed: {created}");
    let id = id_of(&created["instance"]);
    s.wait_for("alice", project, &id, |i| i["status"] == "ACTIVE")
        .await;
    id
}

async fn attach(s: &TestServer, project: &str, instance: &str, group: Value) -> (u16, Value) {
    s.put(
        "alice",
        project,
        &format!("/instances/{instance}"),
        &json!({"instance": {"configuration": group}}),
    )
    .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `sample` is in `actual` with the same JSON type, recursively (arrays:
/// their first items). `except` names keys the spec says we leave out on purpose.
fn assert_shape(sample: &Value, actual: &Value, path: &str, except: &[&str]) {
    assert_eq!(
        json_type(sample),
        json_type(actual),
        "{path}: sample {sample} vs ours {actual}"
    );
    match (sample, actual) {
        (Value::Object(s), Value::Object(a)) => {
            for (k, sv) in s {
                if except.contains(&k.as_str()) {
                    continue;
                }
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_shape(sv, av, &format!("{path}.{k}"), except);
            }
        }
        (Value::Array(s), Value::Array(a)) => {
            if let (Some(sv), Some(av)) = (s.first(), a.first()) {
                assert_shape(sv, av, &format!("{path}[0]"), except);
            }
        }
        _ => {}
    }
}

fn sample(name: &str) -> Option<Value> {
    let dir = samples_dir()?;
    let bytes = std::fs::read(dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

// ---- CRUD ------------------------------------------------------------------------------

#[tokio::test]
async fn create_show_list_update_and_delete_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;

    let created = create_group(
        &s,
        "alice",
        "p1",
        &group_body("group1", "8.0", json!({"connect_timeout": 200})),
    )
    .await;
    let id = id_of(&created);
    assert_eq!(
        keys(&created),
        [
            "created",
            "datastore_name",
            "datastore_version_id",
            "datastore_version_name",
            "datastore_version_number",
            "description",
            "id",
            "instance_count",
            "name",
            "updated",
            "values"
        ]
    );
    assert_eq!(created["name"], "group1");
    assert_eq!(created["description"], Value::Null);
    assert_eq!(created["values"], json!({"connect_timeout": 200}));
    assert_eq!(created["instance_count"], 0);
    assert_eq!(created["datastore_name"], "mysql");
    assert_eq!(created["datastore_version_name"], "8.0");
    assert_eq!(created["datastore_version_number"], "8.0.36");
    let created_at = created["created"].as_str().unwrap();
    assert_eq!(created_at.len(), 19, "no fraction, no zone: {created_at}");
    assert_eq!(created["updated"], created["created"]);

    let (status, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["configuration"], created);

    let (status, list) = s.get("alice", "p1", "/configurations").await;
    assert_eq!(status, 200);
    assert_eq!(list.get("links"), None, "no next page, no links key");
    let item = &list["configurations"][0];
    assert_eq!(
        keys(item),
        [
            "created",
            "datastore_name",
            "datastore_version_id",
            "datastore_version_name",
            "description",
            "id",
            "name",
            "updated"
        ]
    );
    assert_eq!(item["id"], json!(id));

    // PUT replaces everything it is given; PATCH merges values.
    let (status, body) = s
        .put(
            "alice",
            "p1",
            &format!("/configurations/{id}"),
            &json!({"configuration": {"values": {"connect_timeout": 18},
                    "name": "new_name", "description": "New description"}}),
        )
        .await;
    assert_eq!((status, body), (202, Value::Null));
    let (_, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(shown["configuration"]["name"], "new_name");
    assert_eq!(shown["configuration"]["description"], "New description");
    assert_eq!(
        shown["configuration"]["values"],
        json!({"connect_timeout": 18})
    );
    let (status, _) = s
        .patch(
            "alice",
            "p1",
            &format!("/configurations/{id}"),
            &json!({"configuration": {"values": {"wait_timeout": 60, "autocommit": 0}}}),
        )
        .await;
    assert_eq!(status, 202);
    let (_, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(
        shown["configuration"]["values"],
        json!({"connect_timeout": 18, "wait_timeout": 60, "autocommit": 0})
    );
    assert_eq!(shown["configuration"]["name"], "new_name");

    let (status, body) = s
        .delete("alice", "p1", &format!("/configurations/{id}"))
        .await;
    assert_eq!((status, body), (202, Value::Null));
    let (status, body) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"itemNotFound": {"code": 404,
               "message": format!("Configuration group with ID {id} could not be found.")}})
    );
    let (_, list) = s.get("alice", "p1", "/configurations").await;
    assert_eq!(list, json!({"configurations": []}));
    let (status, _) = s
        .delete("alice", "p1", &format!("/configurations/{id}"))
        .await;
    assert_eq!(status, 404, "a deleted group is gone");
}

#[tokio::test]
async fn responses_carry_every_key_of_the_upstream_samples() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let Some(create_req) = sample("config-group-create-request.json") else {
        eprintln!("shared/trove-api/samples not found beside the checkout; skipped");
        return;
    };
    // Upstream's request names its version `mysql-5.7`; ours is `5.7` (same number).
    let mut req = create_req.clone();
    req["configuration"]["datastore"]["version"] = json!("5.7");
    let (status, created) = s.post("alice", "p1", "/configurations", &req).await;
    assert_eq!(status, 200, "{created}");
    let want = sample("config-group-create-response.json").unwrap();
    assert_shape(&want, &created, "create", &[]);
    let id = id_of(&created["configuration"]);

    let (_, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    let want = sample("config-group-show-response.json").unwrap();
    assert_shape(&want, &shown, "show", &[]);

    // The spec (§3.2) says list items carry no `datastore_version_number`, although the
    // upstream sample shows one: the code emits it only in the detail.
    let (_, list) = s.get("alice", "p1", "/configurations").await;
    let want = sample("config-groups-list-response.json").unwrap();
    assert_shape(&want, &list, "list", &["datastore_version_number"]);
    assert_eq!(
        list["configurations"][0].get("datastore_version_number"),
        None
    );

    // Upstream's PUT and PATCH requests are accepted as they are.
    let put = sample("config-group-put-request.json").unwrap();
    let (status, _) = s
        .put("alice", "p1", &format!("/configurations/{id}"), &put)
        .await;
    assert_eq!(status, 202);
    let patch = sample("config-group-patch-request.json").unwrap();
    let (status, _) = s
        .patch("alice", "p1", &format!("/configurations/{id}"), &patch)
        .await;
    assert_eq!(status, 202);
    let (_, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(
        shown["configuration"]["values"],
        json!({"connect_timeout": 17})
    );
    assert_eq!(shown["configuration"]["name"], "new_name");

    let (_, params) = s
        .get("alice", "p1", "/datastores/mysql/versions/5.7/parameters")
        .await;
    let want = sample("datastore-version-parameter-list-response.json").unwrap();
    assert_shape(&want, &params, "parameters", &[]);
    let (_, param) = s
        .get(
            "alice",
            "p1",
            "/datastores/mysql/versions/5.7/parameters/wait_timeout",
        )
        .await;
    let want = sample("datastore-version-parameter-show-response.json").unwrap();
    assert_shape(&want, &param, "parameter", &[]);

    let inst = active_instance(&s, "p1", {
        let mut b = create_body("uses-group");
        b["instance"]["datastore"]["version"] = json!("5.7");
        b["instance"]["configuration"] = json!(id);
        b
    })
    .await;
    let (_, using) = s
        .get("alice", "p1", &format!("/configurations/{id}/instances"))
        .await;
    let want = sample("config-group-list-instances-response.json").unwrap();
    assert_shape(&want, &using, "instances", &[]);
    assert_eq!(using["instances"][0]["id"], json!(inst));
}

#[tokio::test]
async fn values_are_validated_against_the_parameter_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let cases = [
        (
            json!({"no_such_key": 1}),
            "The configuration parameter no_such_key is not supported for this datastore: mysql 8.0.",
        ),
        (
            json!({"connect_timeout": "200"}),
            "The value provided for the configuration parameter connect_timeout is not of type integer.",
        ),
        (
            json!({"performance_schema": 1}),
            "The value provided for the configuration parameter performance_schema is not of type boolean.",
        ),
        (
            json!({"connect_timeout": 1}),
            "The value for the configuration parameter connect_timeout is less than the minimum allowed: 2",
        ),
        (
            json!({"max_connections": 100001}),
            "The value for the configuration parameter max_connections is greater than the maximum allowed: 100000",
        ),
    ];
    for (values, message) in cases {
        let (status, body) = s
            .post(
                "alice",
                "p1",
                "/configurations",
                &group_body("g", "8.0", values.clone()),
            )
            .await;
        assert_eq!(status, 422, "{values}: {body}");
        assert_eq!(
            body,
            json!({"unprocessableEntity": {"code": 422, "message": message}})
        );
    }
    // Types of the catalogue are returned as declared.
    let typed = create_group(
        &s,
        "alice",
        "p1",
        &group_body(
            "typed",
            "8.0",
            json!({"sql_mode": "ANSI", "performance_schema": true, "long_query_time": 2.5,
                   "max_connections": 300}),
        ),
    )
    .await;
    assert_eq!(
        typed["values"],
        json!({"sql_mode": "ANSI", "performance_schema": true, "long_query_time": 2.5,
               "max_connections": 300})
    );
    // PATCH and PUT validate too, and leave the group unchanged when refused.
    let id = id_of(&typed);
    let (status, _) = s
        .patch(
            "alice",
            "p1",
            &format!("/configurations/{id}"),
            &json!({"configuration": {"values": {"wait_timeout": 0}}}),
        )
        .await;
    assert_eq!(status, 422);
    let (_, shown) = s.get("alice", "p1", &format!("/configurations/{id}")).await;
    assert_eq!(shown["configuration"]["values"], typed["values"]);
    // Postgres has its own catalogue.
    let (status, body) = s
        .post(
            "alice",
            "p1",
            "/configurations",
            &json!({"configuration": {"name": "pg", "values": {"connect_timeout": 5},
                    "datastore": {"type": "postgresql", "version": "16"}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn malformed_bodies_and_unknown_datastores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let bad = |message: &str| json!({"badRequest": {"code": 400, "message": message}});
    let cases = [
        (
            json!({}),
            400,
            bad("Validation error: 'configuration' is a required property"),
        ),
        (
            json!({"configuration": {"values": {}}}),
            400,
            bad("Validation error: configuration 'name' is a required property"),
        ),
        (
            json!({"configuration": {"name": "g"}}),
            400,
            bad("Validation error: configuration 'values' is a required property"),
        ),
        (
            json!({"configuration": {"name": "g", "values": [1]}}),
            400,
            bad("Validation error: configuration['values'] [1] is not of type 'object'"),
        ),
        (
            json!({"configuration": {"name": "", "values": {}}}),
            400,
            bad("Validation error: configuration['name'] \"\" is too short"),
        ),
        (
            json!({"configuration": {"name": "g", "values": {}, "datastore": {"type": "foo"}}}),
            404,
            json!({"itemNotFound": {"code": 404, "message": "Datastore 'foo' cannot be found."}}),
        ),
        (
            json!({"configuration": {"name": "g", "values": {},
                   "datastore": {"type": "mysql", "version": "9.9"}}}),
            400,
            bad("Datastore version '9.9' cannot be found."),
        ),
        (
            json!({"configuration": {"name": "g", "values": {},
                   "datastore": {"type": "mysql", "version": "5.6"}}}),
            400,
            bad("Datastore version '5.6' is not active."),
        ),
        (
            // The built-in catalog defines no default datastore.
            json!({"configuration": {"name": "g", "values": {}}}),
            400,
            bad("Please specify datastore. No default datastore is defined."),
        ),
    ];
    for (body, status, expected) in cases {
        let (got, resp) = s.post("alice", "p1", "/configurations", &body).await;
        assert_eq!((got, &resp), (status, &expected), "for {body}");
    }
    let (status, resp) = common::send(
        s.req(reqwest::Method::POST, "alice", "p1", "/configurations")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400, "{resp}");
    // The datastore's default version is used when none is named.
    let g = create_group(
        &s,
        "alice",
        "p1",
        &json!({"configuration": {"name": "d", "values": {}, "datastore": {"type": "mysql"}}}),
    )
    .await;
    assert_eq!(g["datastore_version_name"], "8.0");
    // Unknown ids: non-UUIDs and unknown UUIDs are the same 404.
    for path in [
        "/configurations/nope",
        "/configurations/00000000-0000-0000-0000-000000000000",
    ] {
        let (status, _) = s.get("alice", "p1", path).await;
        assert_eq!(status, 404, "{path}");
        let (status, _) = s
            .patch(
                "alice",
                "p1",
                path,
                &json!({"configuration": {"values": {}}}),
            )
            .await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn lists_page_by_id_with_a_next_link_only_when_more_exist() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let mut ids = Vec::new();
    for n in 0..22 {
        let g = create_group(
            &s,
            "alice",
            "p1",
            &group_body(&format!("g{n}"), "8.0", json!({})),
        )
        .await;
        ids.push(id_of(&g));
    }
    ids.sort();
    let (_, first) = s.get("alice", "p1", "/configurations").await;
    let page: Vec<&str> = first["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        page,
        ids[..20].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let next = first["links"][0]["href"].as_str().unwrap();
    assert_eq!(first["links"][0]["rel"], "next");
    assert!(next.starts_with("https://"), "{next}");
    assert!(
        next.ends_with(&format!("/v1.0/p1/configurations?marker={}", ids[19])),
        "{next}"
    );
    let (_, second) = s
        .get(
            "alice",
            "p1",
            &format!("/configurations?marker={}", ids[19]),
        )
        .await;
    assert_eq!(second["configurations"].as_array().unwrap().len(), 2);
    assert_eq!(second.get("links"), None);
    let (_, small) = s.get("alice", "p1", "/configurations?limit=5").await;
    assert_eq!(small["configurations"].as_array().unwrap().len(), 5);
    let href = small["links"][0]["href"].as_str().unwrap();
    assert!(href.contains("limit=5&marker="), "{href}");
    let (_, capped) = s.get("alice", "p1", "/configurations?limit=100").await;
    assert_eq!(capped["configurations"].as_array().unwrap().len(), 20);
    let (status, _) = s.get("alice", "p1", "/configurations?limit=0").await;
    assert_eq!(status, 400);
}

// ---- tenants ---------------------------------------------------------------------------

#[tokio::test]
async fn another_projects_group_is_not_found_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let theirs = create_group(&s, "bob", "p2", &group_body("theirs", "8.0", json!({}))).await;
    let gid = id_of(&theirs);
    let not_found = json!({"itemNotFound": {"code": 404,
        "message": format!("Configuration group with ID {gid} could not be found.")}});
    let path = format!("/configurations/{gid}");
    assert_eq!(s.get("alice", "p1", &path).await, (404, not_found.clone()));
    assert_eq!(
        s.get("alice", "p1", &format!("{path}/instances")).await,
        (404, not_found.clone())
    );
    let edit = json!({"configuration": {"values": {"connect_timeout": 30}}});
    assert_eq!(
        s.put("alice", "p1", &path, &edit).await,
        (404, not_found.clone())
    );
    assert_eq!(
        s.patch("alice", "p1", &path, &edit).await,
        (404, not_found.clone())
    );
    assert_eq!(
        s.delete("alice", "p1", &path).await,
        (404, not_found.clone())
    );
    let (_, list) = s.get("alice", "p1", "/configurations").await;
    assert_eq!(list, json!({"configurations": []}));

    // Attaching it, or creating an instance with it, is refused as upstream words it.
    let inst = active_instance(&s, "p1", create_body("mine")).await;
    let (status, body) = attach(&s, "p1", &inst, json!(gid)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Configuration group id: {gid} could not be found.")
    );
    let mut create = create_body("with-theirs");
    create["instance"]["configuration"] = json!(gid);
    let (status, body) = s.post("alice", "p1", "/instances", &create).await;
    assert_eq!((status, &body), (404, &not_found));

    // The owner still has it untouched; an admin sees every project's groups.
    let (status, shown) = s.get("bob", "p2", &path).await;
    assert_eq!(status, 200);
    assert_eq!(shown["configuration"]["values"], json!({}));
    let (status, _) = s.get("admin", "p1", &path).await;
    assert_eq!(status, 200);
    let (_, all) = s.get("admin", "p1", "/configurations").await;
    assert_eq!(all["configurations"][0]["id"], json!(gid));
}

// ---- instances -------------------------------------------------------------------------

#[tokio::test]
async fn attach_detach_and_delete_through_instances() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let live = create_group(
        &s,
        "alice",
        "p1",
        &group_body("live", "8.0", json!({"connect_timeout": 30})),
    )
    .await;
    let live_id = id_of(&live);
    let restart = create_group(
        &s,
        "alice",
        "p1",
        &group_body(
            "restart",
            "8.0",
            json!({"innodb_buffer_pool_size": 134217728}),
        ),
    )
    .await;
    let restart_id = id_of(&restart);
    let old = create_group(&s, "alice", "p1", &group_body("old", "5.7", json!({}))).await;
    let old_id = id_of(&old);

    let a = active_instance(&s, "p1", create_body("a")).await;
    let (status, body) = attach(&s, "p1", &a, json!(live_id)).await;
    assert_eq!((status, body), (202, Value::Null));
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{a}")).await;
    let cfg = &shown["instance"]["configuration"];
    assert_eq!(cfg["id"], json!(live_id));
    assert_eq!(cfg["name"], "live");
    assert_eq!(cfg["links"][0]["rel"], "self");
    assert!(cfg["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v1.0/p1/configurations/{live_id}")));
    assert_eq!(shown["instance"]["status"], "ACTIVE", "no restart needed");

    let (_, group) = s
        .get("alice", "p1", &format!("/configurations/{live_id}"))
        .await;
    assert_eq!(group["configuration"]["instance_count"], 1);
    let (_, using) = s
        .get(
            "alice",
            "p1",
            &format!("/configurations/{live_id}/instances"),
        )
        .await;
    assert_eq!(using, json!({"instances": [{"id": a, "name": "a"}]}));

    let (status, body) = attach(&s, "p1", &a, json!(restart_id)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["badRequest"]["message"],
        format!("Instance {a} already has a Configuration Group attached: {live_id}.")
    );
    let (status, body) = s
        .delete("alice", "p1", &format!("/configurations/{live_id}"))
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"badRequest": {"code": 400, "message": IN_USE}}))
    );

    let (status, _) = attach(&s, "p1", &a, Value::Null).await;
    assert_eq!(status, 202);
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{a}")).await;
    assert_eq!(shown["instance"].get("configuration"), None);
    assert_eq!(shown["instance"]["status"], "ACTIVE");
    let (_, using) = s
        .get(
            "alice",
            "p1",
            &format!("/configurations/{live_id}/instances"),
        )
        .await;
    assert_eq!(using, json!({"instances": []}));

    // A group of another datastore version does not fit.
    let (status, body) = attach(&s, "p1", &a, json!(old_id)).await;
    assert_eq!(status, 400);
    let old_version = old["datastore_version_id"].as_str().unwrap();
    let a_version = live["datastore_version_id"].as_str().unwrap();
    assert_eq!(
        body["badRequest"]["message"],
        format!("Datastore Version on Configuration {old_version} does not match the Datastore Version on the instance {a_version}.")
    );

    // A group with a restart-required key leaves the instance RESTART_REQUIRED.
    let (status, _) = attach(&s, "p1", &a, json!(restart_id)).await;
    assert_eq!(status, 202);
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{a}")).await;
    assert_eq!(shown["instance"]["status"], "RESTART_REQUIRED");
    assert_eq!(shown["instance"]["configuration"]["name"], "restart");

    // Create with a group: shown at once; the group counts it.
    let mut body = create_body("b");
    body["instance"]["configuration"] = json!(live_id);
    let (status, created) = s.post("alice", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance"]["configuration"]["id"], json!(live_id));
    assert_eq!(created["instance"]["configuration"]["name"], "live");
    let b = id_of(&created["instance"]);
    let (_, using) = s
        .get(
            "alice",
            "p1",
            &format!("/configurations/{live_id}/instances"),
        )
        .await;
    assert_eq!(using, json!({"instances": [{"id": b, "name": "b"}]}));
    let mut mismatch = create_body("c");
    mismatch["instance"]["configuration"] = json!(old_id);
    let (status, _) = s.post("alice", "p1", "/instances", &mismatch).await;
    assert_eq!(
        status, 400,
        "stricter than upstream: the version must match"
    );
    // A reference is taken by its last path segment, as flavorRef is; one with an empty
    // last segment names no group (as upstream's `get_id_from_href`), like null or "".
    let mut by_href = create_body("d");
    by_href["instance"]["configuration"] =
        json!(format!("{}/v1.0/p1/configurations/{live_id}", s.base));
    let (status, created) = s.post("alice", "p1", "/instances", &by_href).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance"]["configuration"]["id"], json!(live_id));
    let d = id_of(&created["instance"]);
    for empty in ["/", "", "//"] {
        let mut none = create_body("e");
        none["instance"]["configuration"] = json!(empty);
        let (status, created) = s.post("alice", "p1", "/instances", &none).await;
        assert_eq!(status, 200, "{empty}: {created}");
        let e = id_of(&created["instance"]);
        let (_, shown) = s.get("alice", "p1", &format!("/instances/{e}")).await;
        assert_eq!(shown["instance"].get("configuration"), None, "{empty}");
        s.wait_for("alice", "p1", &e, |i| i["status"] == "ACTIVE")
            .await;
        assert_eq!(
            s.delete("alice", "p1", &format!("/instances/{e}")).await.0,
            202
        );
    }
    s.wait_for("alice", "p1", &d, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(
        s.delete("alice", "p1", &format!("/instances/{d}")).await.0,
        202
    );

    // Deleting the instance releases the group, which can then be deleted.
    s.wait_for("alice", "p1", &b, |i| i["status"] == "ACTIVE")
        .await;
    let (status, _) = s.delete("alice", "p1", &format!("/instances/{b}")).await;
    assert_eq!(status, 202);
    let (_, group) = s
        .get("alice", "p1", &format!("/configurations/{live_id}"))
        .await;
    assert_eq!(group["configuration"]["instance_count"], 0);
    let (status, _) = s
        .delete("alice", "p1", &format!("/configurations/{live_id}"))
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn groups_and_their_usage_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let g = create_group(
        &s,
        "alice",
        "p1",
        &group_body("kept", "8.0", json!({"wait_timeout": 90})),
    )
    .await;
    let gid = id_of(&g);
    let a = active_instance(&s, "p1", create_body("a")).await;
    let (status, _) = attach(&s, "p1", &a, json!(gid)).await;
    assert_eq!(status, 202);
    let (_, before) = s
        .get("alice", "p1", &format!("/configurations/{gid}"))
        .await;

    s.kill_and_restart().await;
    let (status, after) = s
        .get("alice", "p1", &format!("/configurations/{gid}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(before, after);
    assert_eq!(after["configuration"]["instance_count"], 1);
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{a}")).await;
    assert_eq!(shown["instance"]["configuration"]["name"], "kept");
    let (status, _) = s
        .delete("alice", "p1", &format!("/configurations/{gid}"))
        .await;
    assert_eq!(status, 400, "still in use after the rebuild");
}

// ---- parameters ------------------------------------------------------------------------

#[tokio::test]
async fn parameter_catalogue_is_listed_per_datastore_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let (status, list) = s
        .get("alice", "p1", "/datastores/mysql/versions/8.0/parameters")
        .await;
    assert_eq!(status, 200, "{list}");
    let params = list["configuration-parameters"].as_array().unwrap();
    let version_id = params[0]["datastore_version_id"]
        .as_str()
        .unwrap()
        .to_string();
    let find = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
    assert_eq!(
        find("max_connections"),
        Some(
            json!({"name": "max_connections", "datastore_version_id": version_id,
                    "restart_required": false, "type": "integer", "min": 1, "max": 100000})
        )
    );
    assert_eq!(
        find("innodb_buffer_pool_size").map(|p| p["restart_required"].clone()),
        Some(json!(true))
    );
    assert_eq!(
        find("character_set_server").map(|p| keys(&p)),
        Some(vec![
            "datastore_version_id".to_string(),
            "name".into(),
            "restart_required".into(),
            "type".into()
        ])
    );

    // By datastore id and version id, and by version id alone.
    let (_, ds) = s.get("alice", "p1", "/datastores/mysql").await;
    let ds_id = ds["datastore"]["id"]
        .as_str()
        .unwrap_or("mysql")
        .to_string();
    let (status, by_ids) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/{ds_id}/versions/{version_id}/parameters"),
        )
        .await;
    assert_eq!((status, &by_ids), (200, &list));
    let (status, by_version) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/versions/{version_id}/parameters"),
        )
        .await;
    assert_eq!((status, &by_version), (200, &list));

    let (status, one) = s
        .get(
            "alice",
            "p1",
            &format!("/datastores/versions/{version_id}/parameters/wait_timeout"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "wait_timeout");
    let (status, one) = s
        .get(
            "alice",
            "p1",
            "/datastores/postgresql/versions/16/parameters/work_mem",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["type"], "integer");

    let (status, body) = s
        .get(
            "alice",
            "p1",
            "/datastores/mysql/versions/8.0/parameters/nope",
        )
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"itemNotFound": {"code": 404, "message": "Resource nope cannot be found."}})
        )
    );
    let (status, _) = s
        .get("alice", "p1", "/datastores/foo/versions/8.0/parameters")
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get("alice", "p1", "/datastores/mysql/versions/9.9/parameters")
        .await;
    assert_eq!(status, 400);
    let (status, body) = s
        .get(
            "alice",
            "p1",
            "/datastores/versions/00000000-0000-0000-0000-000000000000/parameters",
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn changing_an_attached_group_reaches_its_instances() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let group = create_group(
        &s,
        "alice",
        "p1",
        &group_body("live", "8.0", json!({"max_connections": 100})),
    )
    .await;
    let gid = id_of(&group);
    let inst = active_instance(&s, "p1", create_body("cfg-rev")).await;
    let (status, body) = attach(&s, "p1", &inst, json!(gid)).await;
    assert_eq!(status, 202, "{body}");
    let shown = s
        .wait_for("alice", "p1", &inst, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(
        shown["configuration"]["id"],
        json!(gid),
        "a live-only group needs no restart"
    );

    // A change of a key applied live: the instance stays ACTIVE.
    let (status, body) = s
        .patch(
            "alice",
            "p1",
            &format!("/configurations/{gid}"),
            &json!({"configuration": {"values": {"max_connections": 300}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, shown) = s.get("alice", "p1", &format!("/instances/{inst}")).await;
    assert_eq!(shown["instance"]["status"], "ACTIVE");

    // A change of a key that needs a restart: the instance reports RESTART_REQUIRED.
    let (status, body) = s
        .patch(
            "alice",
            "p1",
            &format!("/configurations/{gid}"),
            &json!({"configuration": {"values": {"innodb_buffer_pool_size": 134217728}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.wait_for("alice", "p1", &inst, |i| i["status"] == "RESTART_REQUIRED")
        .await;
}
