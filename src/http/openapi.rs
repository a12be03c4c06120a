//! The OpenAPI 3.1 document of the API, served at `GET /openapi.json`.
//!
//! It is generated from the code: every route is registered with utoipa-axum's
//! `routes!` (see [`super::api`]), which adds the handler's `#[utoipa::path]`
//! annotation to the document and the handler to the router in one step, so a route
//! cannot be served without being documented. Request bodies are described by the
//! types that parse them ([`super::request_body`]). Handlers build their answers with
//! `serde_json`, so the shapes of the responses are described here by
//! documentation-only types ([`responses`]; path and query parameters in [`params`]); schemathesis (`tests/schemathesis/run.sh`)
//! checks the server's answers against them.
//!
//! Rules for the response schemas: a key is `required` only when the server always
//! emits it, a type is nullable wherever the server can emit `null`, and no schema
//! forbids extra keys (views grow). Request schemas are upstream's JSON schemas
//! (`trove/common/apischema.py`); where a rule does not fit JSON Schema (one change
//! per update, the SDK's `flavor` alias), the request schema is looser than the
//! server, never stricter.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Type};
use utoipa::OpenApi;

pub use params::*;
pub use responses::*;

/// The fixed parts of the document; paths and schemas come from the registrations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "troved: OpenStack Trove v1.0 API",
        description = "An event-sourced control plane speaking the OpenStack Trove v1.0 \
                       Instances API. Errors have Trove's shape \
                       `{\"<faultName>\": {\"code\": N, \"message\": \"...\"}}`; unknown \
                       routes and methods answer 404 `itemNotFound`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, Fault)),
    tags(
        (name = "versions", description = "Version discovery (no token needed)"),
        (name = "instances", description = "Database instances"),
        (name = "mgmt", description = "Admin views of instances"),
        (name = "flavors", description = "The catalog's flavors"),
        (name = "datastores", description = "The catalog's datastores and versions"),
        (name = "backups", description = "Backups (read only)"),
        (name = "configurations", description = "Configuration groups and parameters"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Name of the security scheme for `X-Auth-Token`.
pub const TOKEN_SCHEME: &str = "token";

/// Error statuses every operation below `/v1.0/{project_id}` can answer: a path or
/// query that does not parse (400), identity (401 with static tokens, 403 for another
/// project), unknown ids (404), and internal errors (500).
const COMMON_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Bad request (a parameter that does not parse, or a refused value).",
    ),
    (
        "401",
        "No or unknown token (static tokens), or an admin-only operation.",
    ),
    (
        "403",
        "The URL's project is not the caller's, or the policy forbids it.",
    ),
    (
        "404",
        "Not found (missing, deleted, another project's, or no such route).",
    ),
    ("500", "Internal error."),
];

/// More statuses of the operations with a request body or a command behind them.
const WRITE_ERRORS: &[(&str, &str)] = &[
    ("409", "Concurrent change; retry."),
    (
        "413",
        "Request body too large, volume too large, or quota exceeded.",
    ),
    ("415", "Content-Type other than application/json."),
    (
        "422",
        "The instance is in a state that does not allow this.",
    ),
    (
        "503",
        "The event store is unavailable; retry after `Retry-After`.",
    ),
];

/// The whole document: what the registrations produced plus what applies to every
/// operation (error responses, the request id header, the token scheme, links).
pub fn document(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        TOKEN_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Auth-Token",
            "noauth: `user:project` (user `admin` is admin; no token = a member of the \
             URL's project). Static tokens: a token from the token file.",
        ))),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let scoped = path.starts_with("/v1.0/{project_id}");
        for (method, op) in operations(item) {
            let write = !matches!(method, HttpMethod::Get);
            complete_operation(op, scoped, write);
        }
    }
    doc
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn complete_operation(op: &mut Operation, scoped: bool, write: bool) {
    if scoped {
        let mut errors: Vec<(&str, &str)> = COMMON_ERRORS.to_vec();
        if write {
            errors.extend_from_slice(WRITE_ERRORS);
        }
        for (status, description) in errors {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::T(error_response(description)));
        }
        // The token is optional in noauth mode (the caller is then a member of the
        // URL's project), hence the empty alternative.
        op.security = Some(vec![
            SecurityRequirement::new(TOKEN_SCHEME, Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
    let request_id = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^req-")),
        )
        .description(Some("The request's id, also in the server's log."))
        .build();
    for resp in op.responses.responses.values_mut() {
        if let RefOr::T(r) = resp {
            r.headers
                .entry("x-openstack-request-id".to_string())
                .or_insert_with(|| request_id.clone());
        }
    }
}

/// OpenAPI links from the creates to the operations on the created resource, so a
/// stateful test run can follow them. Added to the rendered JSON: utoipa 5 spells the
/// link's `operationId` as `operation_id`.
fn add_links(doc: &mut Value) {
    let targets: &[(&str, &str, &[&str])] = &[
        (
            "/v1.0/{project_id}/instances",
            "/instance/id",
            &[
                "showInstance",
                "updateInstance",
                "patchInstance",
                "deleteInstance",
                "showInstanceConfiguration",
                "listInstanceBackups",
            ],
        ),
        (
            "/v1.0/{project_id}/configurations",
            "/configuration/id",
            &[
                "showConfiguration",
                "updateConfiguration",
                "patchConfiguration",
                "deleteConfiguration",
                "listConfigurationInstances",
            ],
        ),
    ];
    for (path, pointer, ops) in targets {
        let Some(ok) = doc
            .pointer_mut(&format!(
                "/paths/{}/post/responses/200",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let links: serde_json::Map<String, Value> = ops
            .iter()
            .map(|op| {
                let link = json!({
                    "operationId": op,
                    "parameters": {
                        "project_id": "$request.path.project_id",
                        "id": format!("$response.body#{pointer}"),
                    },
                });
                (op.to_string(), link)
            })
            .collect();
        ok.insert("links".into(), Value::Object(links));
    }
}

/// The served document as JSON.
pub fn document_json() -> Value {
    let doc = document(super::api().into_openapi());
    let mut value = serde_json::to_value(&doc).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the OpenAPI document");
        json!({})
    });
    add_links(&mut value);
    value
}

/// The served document, rendered once.
fn rendered() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| document_json().to_string())
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], rendered())
}

pub mod params;
pub mod responses;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Routes registered past `routes!` would be served without being documented: the
    /// HTTP layer registers routes only through utoipa-axum's `routes!`.
    #[test]
    fn every_route_is_registered_with_its_documentation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("src/http") {
            let path = entry.expect("dir entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for method in ["route", "route_service", "nest", "nest_service"] {
                // Spelled apart so that this file does not match itself.
                let forbidden = format!(".{method}(");
                assert!(
                    !text.contains(&forbidden),
                    "{} registers a route with `{forbidden}`: use `routes!` and a \
                     #[utoipa::path] annotation so it is documented",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked > 5);
    }

    #[test]
    fn document_has_unique_operation_ids_and_links_to_real_operations() {
        let doc = document_json();
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("path item").values() {
                if let Some(id) = op["operationId"].as_str() {
                    assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
                }
            }
        }
        let mut links = 0;
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("path item").values() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for resp in responses.values() {
                    for link in resp["links"].as_object().into_iter().flatten() {
                        let target = link.1["operationId"].as_str().expect("operationId");
                        assert!(ids.contains(target), "link to unknown {target}");
                        links += 1;
                    }
                }
            }
        }
        assert!(links >= 10, "links: {links}");
    }

    #[test]
    fn scoped_operations_carry_the_token_scheme_and_error_responses() {
        let doc = document_json();
        let op = &doc["paths"]["/v1.0/{project_id}/instances"]["post"];
        assert_eq!(op["security"], json!([{TOKEN_SCHEME: []}, {}]));
        for status in ["400", "401", "403", "404", "413", "415", "422", "500"] {
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}"
            );
        }
        assert!(doc["paths"]["/"]["get"].get("security").is_none());
    }
}
