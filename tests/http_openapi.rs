//! `GET /openapi.json` against the real `troved` binary: the document is a well-formed
//! OpenAPI 3 document, and every path it documents is served for every documented
//! method (the router's "no route" 404 never answers a documented operation).
//! Deeper conformance (generated requests, response schemas) is schemathesis's job:
//! `tests/schemathesis/run.sh`.

mod common;

use std::collections::BTreeSet;

use common::{send, TestServer};
use serde_json::{json, Value};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The message of the router's fallback: no route (or no method) matches.
const NO_ROUTE: &str = "The resource could not be found.";

async fn fetch_document(server: &TestServer) -> Value {
    // No token: the document is public.
    let resp = server
        .http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    resp.json().await.expect("the document is JSON")
}

/// Every `$ref` in `v`, recursively.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The `{name}` segments of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// Checks the structure an OpenAPI 3 document must have (the parts we rely on), and
/// returns `(path, method)` of every operation.
fn check_structure(doc: &Value) -> Vec<(String, String)> {
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3."), "openapi version {version}");
    assert!(doc["info"]["title"].is_string(), "info.title");
    assert!(doc["info"]["version"].is_string(), "info.version");
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    assert!(!paths.is_empty());

    // Every reference resolves inside the document.
    let mut all_refs = Vec::new();
    refs(doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in all_refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }

    // The token scheme.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "apiKey" && s["in"] == "header" && s["name"] == "X-Auth-Token"),
        "X-Auth-Token apiKey scheme: {schemes:?}"
    );

    let mut ops = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "path {path}");
        let item = item.as_object().expect("path item is an object");
        let declared = template_params(path);
        let mut any = false;
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            any = true;
            let what = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_string()), "duplicate {id}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{what}: no responses");
            for (status, resp) in responses {
                assert!(
                    status == "default"
                        || status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                    "{what}: status {status}"
                );
                assert!(
                    resp["description"].is_string(),
                    "{what} {status}: description"
                );
            }
            // The path parameters are exactly the template's.
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{what}: path parameters are required");
                    p["name"].as_str().expect("parameter name").to_string()
                })
                .collect();
            assert_eq!(in_path, declared, "{what}: path parameters");
            for p in &params {
                assert!(
                    ["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap_or("")),
                    "{what}: parameter {p}"
                );
                assert!(p["schema"].is_object(), "{what}: parameter schema {p}");
            }
            if ["post", "put", "patch"].contains(&method) {
                assert!(
                    op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{what}: request body schema"
                );
            }
            // Every successful JSON answer has a schema; every error the Trove body.
            for (status, resp) in responses {
                if let Some(content) = resp["content"].as_object() {
                    let schema = &content["application/json"]["schema"];
                    assert!(schema.is_object(), "{what} {status}: schema");
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            schema["$ref"], "#/components/schemas/ErrorBody",
                            "{what} {status}"
                        );
                    }
                }
            }
            ops.push((path.clone(), method.to_string()));
        }
        assert!(any, "{path}: no operation");
    }
    ops
}

/// A concrete URL path for a template: any value reaches the handler.
fn concrete(path: &str) -> String {
    path.replace("{project_id}", "p1")
        .replace("{id}", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
        .replace("{ds}", "mysql")
        .replace("{version}", "8.0")
        .replace("{name}", "max_connections")
}

#[tokio::test]
async fn openapi_document_describes_what_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let doc = fetch_document(&server).await;
    let ops = check_structure(&doc);

    // The routes the rest of the suite relies on are documented.
    for (path, method) in [
        ("/", "get"),
        ("/v1.0", "get"),
        ("/openapi.json", "get"),
        ("/v1.0/{project_id}/instances", "post"),
        ("/v1.0/{project_id}/instances/{id}", "patch"),
        ("/v1.0/{project_id}/mgmt/instances", "get"),
        ("/v1.0/{project_id}/configurations/{id}", "delete"),
        (
            "/v1.0/{project_id}/datastores/versions/{version}/parameters/{name}",
            "get",
        ),
    ] {
        assert!(
            ops.iter().any(|(p, m)| p == path && m == method),
            "{method} {path} not documented"
        );
    }

    // Every documented operation is served: whatever it answers, it is not the
    // fallback's "no route".
    for (path, method) in &ops {
        let url = format!("{}{}", server.base, concrete(path));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut rb = server
            .http
            .request(m, url)
            .header("X-Auth-Token", "admin:p1");
        if ["post", "put", "patch"].contains(&method.as_str()) {
            rb = rb.json(&json!({}));
        }
        let (status, body) = send(rb).await;
        let no_route = status == 404 && body["itemNotFound"]["message"] == NO_ROUTE;
        assert!(!no_route, "{} {path}: not served", method.to_uppercase());
        assert!(
            status < 500,
            "{} {path}: {status} {body}",
            method.to_uppercase()
        );
    }

    // And the fallback still answers for what is not documented.
    let (status, body) = send(
        server
            .http
            .get(format!("{}/v1.0/p1/nothing-here", server.base)),
    )
    .await;
    assert_eq!(
        (status, &body["itemNotFound"]["message"]),
        (404, &json!(NO_ROUTE))
    );
}
