//! Policy enforcement (issue #16): every route of the API has upstream Trove's rule name
//! ([`ROUTES`]), checked once, here, by a route layer ([`enforce`]) that identifies the
//! caller, checks the rule against the target `{"tenant": <project of the URL>}` and
//! leaves the caller in the request's extensions for the [`Identity`] extractor. Order
//! as a client sees it: 401 (no identity) before 403 (the URL's project is not the
//! caller's, or the policy refuses) before anything about the body (400) or the
//! resource (404). The action route's rule depends on its body: the layer identifies,
//! and `actions` checks [`action_rule`] once the body has been parsed.
//!
//! Routes troved has and upstream has no rule for are [`Rule::NotControlled`]: the
//! `mgmt` ones stay admin-only by the admin role (401 otherwise, as upstream), history
//! checks ownership in its handler, and the service routes (versions, health, metrics,
//! the OpenAPI document) need no identity.

use aggregates::instance::{Caller, CreateInstance, InstanceCommand};
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt as _;

use super::auth::Identity;
use super::error::ApiError;
use super::request::ListScope;
use super::request_body::action::InstanceAction;
use super::AppState;
use crate::policy::Target;

/// What a route is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Upstream's rule of this name.
    Named(&'static str),
    /// `GET /backups`: `backup:index`, or `backup:index:all_projects` with a
    /// `project_id` or a true `all_projects` (upstream's `BackupController.index`).
    BackupIndex,
    /// `POST .../action`: the rule of the action in the body ([`action_rule`]).
    Action,
    /// No upstream rule: the handler's own checks (see the module's documentation).
    NotControlled,
}

use Rule::{Action, BackupIndex, Named, NotControlled};

const P: &str = "/v1.0/{project_id}";

/// Every route of [`super::api`]: method, path below `/v1.0/{project_id}` (or absolute,
/// starting with `!`), and its rule. A test checks that no route is missing.
pub const ROUTES: &[(&str, &str, Rule)] = &[
    ("GET", "/instances", Named("instance:index")),
    ("POST", "/instances", Named("instance:create")),
    ("GET", "/instances/detail", Named("instance:detail")),
    ("GET", "/instances/{id}", Named("instance:show")),
    ("PUT", "/instances/{id}", Named("instance:update")),
    ("PATCH", "/instances/{id}", Named("instance:edit")),
    ("DELETE", "/instances/{id}", Named("instance:delete")),
    ("POST", "/instances/{id}/action", Action),
    (
        "GET",
        "/instances/{id}/configuration",
        Named("instance:configuration"),
    ),
    ("GET", "/instances/{id}/backups", Named("instance:backups")),
    (
        "GET",
        "/instances/{id}/databases",
        Named("instance:extension:database:index"),
    ),
    (
        "POST",
        "/instances/{id}/databases",
        Named("instance:extension:database:create"),
    ),
    (
        "DELETE",
        "/instances/{id}/databases/{name}",
        Named("instance:extension:database:delete"),
    ),
    (
        "GET",
        "/instances/{id}/users",
        Named("instance:extension:user:index"),
    ),
    (
        "POST",
        "/instances/{id}/users",
        Named("instance:extension:user:create"),
    ),
    (
        "PUT",
        "/instances/{id}/users",
        Named("instance:extension:user:update_all"),
    ),
    (
        "GET",
        "/instances/{id}/users/{user}",
        Named("instance:extension:user:show"),
    ),
    (
        "PUT",
        "/instances/{id}/users/{user}",
        Named("instance:extension:user:update"),
    ),
    (
        "DELETE",
        "/instances/{id}/users/{user}",
        Named("instance:extension:user:delete"),
    ),
    (
        "GET",
        "/instances/{id}/users/{user}/databases",
        Named("instance:extension:user_access:index"),
    ),
    (
        "PUT",
        "/instances/{id}/users/{user}/databases",
        Named("instance:extension:user_access:update"),
    ),
    (
        "DELETE",
        "/instances/{id}/users/{user}/databases/{name}",
        Named("instance:extension:user_access:delete"),
    ),
    (
        "GET",
        "/instances/{id}/root",
        Named("instance:extension:root:index"),
    ),
    (
        "POST",
        "/instances/{id}/root",
        Named("instance:extension:root:create"),
    ),
    (
        "DELETE",
        "/instances/{id}/root",
        Named("instance:extension:root:delete"),
    ),
    ("GET", "/backups", BackupIndex),
    ("POST", "/backups", Named("backup:create")),
    ("GET", "/backups/{id}", Named("backup:show")),
    ("DELETE", "/backups/{id}", Named("backup:delete")),
    ("GET", "/configurations", Named("configuration:index")),
    ("POST", "/configurations", Named("configuration:create")),
    ("GET", "/configurations/{id}", Named("configuration:show")),
    ("PUT", "/configurations/{id}", Named("configuration:update")),
    ("PATCH", "/configurations/{id}", Named("configuration:edit")),
    (
        "DELETE",
        "/configurations/{id}",
        Named("configuration:delete"),
    ),
    (
        "GET",
        "/configurations/{id}/instances",
        Named("configuration:instances"),
    ),
    (
        "GET",
        "/datastores/{ds}/versions/{version}/parameters",
        Named("configuration-parameter:index"),
    ),
    (
        "GET",
        "/datastores/{ds}/versions/{version}/parameters/{name}",
        Named("configuration-parameter:show"),
    ),
    (
        "GET",
        "/datastores/versions/{version}/parameters",
        Named("configuration-parameter:index_by_version"),
    ),
    (
        "GET",
        "/datastores/versions/{version}/parameters/{name}",
        Named("configuration-parameter:show_by_version"),
    ),
    ("GET", "/datastores", Named("datastore:index")),
    ("GET", "/datastores/{ds}", Named("datastore:show")),
    (
        "GET",
        "/datastores/{ds}/versions",
        Named("datastore:version_index"),
    ),
    (
        "GET",
        "/datastores/{ds}/versions/{version}",
        Named("datastore:version_show"),
    ),
    (
        "GET",
        "/datastores/versions/{version}",
        Named("datastore:version_show_by_uuid"),
    ),
    (
        "GET",
        "/datastores/{ds}/versions/{version}/flavors",
        Named("datastore:list_associated_flavors"),
    ),
    ("GET", "/flavors", Named("flavor:index")),
    ("GET", "/flavors/{id}", Named("flavor:show")),
    ("GET", "/limits", Named("limits:index")),
    // troved's own, no upstream rule.
    ("GET", "/instances/{id}/history", NotControlled),
    ("GET", "/instances/{id}/history/state", NotControlled),
    ("GET", "/mgmt/instances", NotControlled),
    ("GET", "/mgmt/instances/{id}", NotControlled),
    ("GET", "/mgmt/quotas/{user_project}", NotControlled),
    ("PUT", "/mgmt/quotas/{user_project}", NotControlled),
    ("POST", "/mgmt/reconcile", NotControlled),
    ("GET", "/mgmt/projections", NotControlled),
    ("GET", "/mgmt/projections/rebuild", NotControlled),
    ("POST", "/mgmt/projections/rebuild", NotControlled),
    ("GET", "!/", NotControlled),
    ("GET", "!/v1.0", NotControlled),
    ("GET", "!/v1.0/", NotControlled),
    ("GET", "!/openapi.json", NotControlled),
    ("GET", "!/healthz", NotControlled),
    ("GET", "!/readyz", NotControlled),
    ("GET", "!/metrics", NotControlled),
];

/// The rule of `method` on the route template `path` (axum's [`MatchedPath`]). HEAD is
/// GET's: axum answers a HEAD with the GET handler (without the body).
pub fn route_rule(method: &Method, path: &str) -> Option<Rule> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES.iter().find_map(|(m, p, rule)| {
        let full_match = match p.strip_prefix('!') {
            Some(abs) => abs == path,
            None => path.strip_prefix(P) == Some(p),
        };
        (full_match && method.as_str() == *m).then_some(*rule)
    })
}

/// The rule of a parsed action body (upstream `InstanceController.action`); `body` is
/// its JSON: a `reset_status` whose object has a `force_delete` key needs
/// `instance:force_delete` instead, as upstream's `_action_reset_status`.
pub fn action_rule(action: &InstanceAction, body: &[u8]) -> &'static str {
    let force_delete = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|b| b["reset_status"].get("force_delete").is_some())
    };
    match action {
        InstanceAction::Command(InstanceCommand::ResetStatus) if force_delete() => {
            "instance:force_delete"
        }
        InstanceAction::Command(InstanceCommand::RestartInstance) => "instance:restart",
        InstanceAction::Command(InstanceCommand::ResizeFlavor { .. }) => "instance:resize_flavor",
        InstanceAction::Command(InstanceCommand::ResizeVolume { .. }) => "instance:resize_volume",
        InstanceAction::Command(InstanceCommand::ResetStatus) => "instance:reset_status",
        InstanceAction::PromoteToReplicaSource => "instance:promote_to_replica_source",
        InstanceAction::EjectReplicaSource => "instance:eject_replica_source",
        // Not an action body decodes to; refused rather than unchecked.
        InstanceAction::Command(_) => "!",
    }
}

/// Upstream's `PolicyNotAuthorized`: 403 `Policy doesn't allow <rule> to be performed.`
pub fn check(state: &AppState, rule: &str, caller: &Caller, project: &str) -> Result<(), ApiError> {
    let target = Target {
        project_id: project,
    };
    if state.policy.enforce(rule, caller, target) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Policy doesn't allow {rule} to be performed."
        )))
    }
}

/// Upstream `InstanceController.create`: a create that attaches a configuration group,
/// modules, users or databases also needs the rule of doing that on its own
/// (`instance:update`, `instance:module_apply`, `instance:extension:user:create`,
/// `instance:extension:database:create`), checked in that order after the body parsed.
pub fn check_create_extras(
    state: &AppState,
    caller: &Caller,
    cmd: &CreateInstance,
) -> Result<(), ApiError> {
    let extras = [
        (cmd.configuration.is_some(), "instance:update"),
        (!cmd.modules.is_empty(), "instance:module_apply"),
        (!cmd.users.is_empty(), "instance:extension:user:create"),
        (
            !cmd.databases.is_empty(),
            "instance:extension:database:create",
        ),
    ];
    for (wanted, rule) in extras {
        if wanted {
            check(state, rule, caller, &caller.project_id)?;
        }
    }
    Ok(())
}

/// The route layer: identify, check the route's rule, hand the caller on. A route and
/// method [`ROUTES`] does not list is refused (403), never let through: a unit test keeps
/// the table complete, this keeps a gap closed.
pub async fn enforce(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    let rule = route.and_then(|r| route_rule(req.method(), r));
    let rule = match rule {
        None => {
            let route = route.unwrap_or("(unmatched)");
            tracing::error!(method = %req.method(), route, "no policy rule for this route: refused");
            return ApiError::Forbidden(format!(
                "Policy doesn't allow {} {route} to be performed.",
                req.method()
            ))
            .into_response();
        }
        Some(NotControlled) => return next.run(req).await,
        Some(Named(name)) => Some(name),
        Some(BackupIndex) => Some(backup_index_rule(req.uri().query())),
        Some(Action) => None,
    };
    let project = match req.extract_parts::<RawPathParams>().await {
        Ok(params) => params
            .iter()
            .find(|(k, _)| *k == "project_id")
            .map(|(_, v)| v.to_string()),
        Err(_) => None,
    };
    let Some(project) = project else {
        return ApiError::no_route().into_response();
    };
    let caller = match state.auth.identify(req.headers(), &project).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let Some(name) = rule {
        if let Err(e) = check(&state, name, &caller, &project) {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(Identity(caller));
    next.run(req).await
}

/// The rule of `GET /backups` with this query, read as its handler reads it
/// ([`ListScope`]: a repeated key counts by its last value).
fn backup_index_rule(query: Option<&str>) -> &'static str {
    // axum's `Query` parses with serde_urlencoded too; a query it cannot parse is the
    // handler's 400.
    let pairs: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    if ListScope::of(&pairs).needs_all_projects() {
        "backup:index:all_projects"
    } else {
        "backup:index"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given every route registered in `api()`, then each has a rule (or is explicitly
    /// not policy-controlled), and each named rule exists in the defaults.
    #[test]
    fn every_route_has_a_rule() {
        let (_, doc) = super::super::api().split_for_parts();
        let policy = crate::policy::Policy::defaults();
        let mut seen = 0;
        for (path, item) in doc.paths.paths.iter() {
            let ops = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
            ];
            for (m, _) in ops.iter().filter(|(_, present)| *present) {
                let method = Method::from_bytes(m.as_bytes()).unwrap();
                let rule = route_rule(&method, path);
                assert!(rule.is_some(), "{m} {path} has no policy rule in ROUTES");
                if method == Method::GET {
                    // axum answers HEAD with the GET handler.
                    assert_eq!(route_rule(&Method::HEAD, path), rule, "HEAD {path}");
                }
                if let Some(Named(name)) = rule {
                    assert!(policy.has_rule(name), "{m} {path}: unknown rule {name}");
                }
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            ROUTES.len(),
            "ROUTES lists a route api() does not have"
        );
    }

    #[test]
    fn action_and_backup_rules_exist() {
        let policy = crate::policy::Policy::defaults();
        for rule in [
            "instance:restart",
            "instance:resize_flavor",
            "instance:resize_volume",
            "instance:reset_status",
            "instance:promote_to_replica_source",
            "instance:eject_replica_source",
            "backup:index:all_projects",
            "backup:index",
        ] {
            assert!(policy.has_rule(rule), "{rule}");
        }
        assert_eq!(
            backup_index_rule(Some("all_projects=True")),
            "backup:index:all_projects"
        );
        assert_eq!(
            backup_index_rule(Some("project_id=p2")),
            "backup:index:all_projects"
        );
        assert_eq!(
            backup_index_rule(Some("project_id=&all_projects=0")),
            "backup:index"
        );
        assert_eq!(backup_index_rule(None), "backup:index");
        assert_eq!(
            backup_index_rule(Some("all_projects=0&all_projects=1")),
            "backup:index:all_projects"
        );
        assert_eq!(
            backup_index_rule(Some("project_id=&project_id=p2")),
            "backup:index:all_projects"
        );
        assert_eq!(
            backup_index_rule(Some("all_projects=1&all_projects=0")),
            "backup:index"
        );
        let reset = InstanceAction::Command(InstanceCommand::ResetStatus);
        assert_eq!(
            action_rule(&reset, br#"{"reset_status": {}}"#),
            "instance:reset_status"
        );
        let forced = br#"{"reset_status": {"force_delete": true}}"#;
        assert_eq!(action_rule(&reset, forced), "instance:force_delete");
        let restart = InstanceAction::Command(InstanceCommand::RestartInstance);
        assert_eq!(
            action_rule(&restart, br#"{"restart": {}}"#),
            "instance:restart"
        );
    }
}
