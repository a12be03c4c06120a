//! `UpdateConfiguration`: PUT replaces the values (and may rename), PATCH merges them.

use serde_json::json;

use super::support::*;
use crate::configuration::ConfigurationError as E;
use crate::fault::Fault;

#[test]
fn put_replaces_name_description_and_all_values() {
    let state = given(&[created_with(|c| {
        c.values = values(json!({"connect_timeout": 200, "wait_timeout": 60}))
    })])
    .when(put(
        Some("new_name"),
        Some("New description"),
        Some(json!({"connect_timeout": 18})),
    ))
    .then(&[updated(
        "new_name",
        Some("New description"),
        json!({"connect_timeout": 18}),
    )]);
    assert_eq!(state.updated, now());
    assert_eq!(state.created, earlier(), "created stays");
}

#[test]
fn put_without_name_or_description_keeps_them() {
    given(&[created_with(|c| c.description = Some("d".into()))])
        .when(put(None, None, Some(json!({"wait_timeout": 60}))))
        .then(&[updated("group1", Some("d"), json!({"wait_timeout": 60}))]);
}

#[test]
fn put_without_values_leaves_none() {
    // Upstream removes every item before saving the given ones.
    given(&[created()])
        .when(put(Some("renamed"), None, None))
        .then(&[updated("renamed", None, json!({}))]);
}

#[test]
fn patch_merges_values_and_overrides_existing_keys() {
    given(&[created_with(|c| {
        c.values = values(json!({"connect_timeout": 200, "wait_timeout": 60}))
    })])
    .when(patch(
        json!({"connect_timeout": 17, "max_connections": 500}),
    ))
    .then(&[updated(
        "group1",
        None,
        json!({"connect_timeout": 17, "wait_timeout": 60, "max_connections": 500}),
    )]);
}

#[test]
fn patch_with_a_restart_key_makes_the_group_need_a_restart() {
    let state = given(&[created()])
        .when(patch(json!({"character_set_server": "utf8mb4"})))
        .then(&[updated(
            "group1",
            None,
            json!({"connect_timeout": 200, "character_set_server": "utf8mb4"}),
        )]);
    assert!(state.restart_required());
}

#[test]
fn update_validates_values_like_create() {
    given(&[created()])
        .when(put(None, None, Some(json!({"connect_timeout": 0}))))
        .then_err(E::BelowMinimum {
            key: "connect_timeout".into(),
            min: 2,
        });
    given(&[created()])
        .when(patch(json!({"bogus": 1})))
        .then_err(E::UnknownParameter {
            key: "bogus".into(),
            datastore: "mysql".into(),
            version: "8.0".into(),
        });
    given(&[created()])
        .when(patch(json!({"wait_timeout": "60"})))
        .then_err(E::WrongType {
            key: "wait_timeout".into(),
            kind: "integer",
        });
}

#[test]
fn update_validates_against_the_group_own_datastore() {
    given(&[created_with(|c| {
        c.datastore = version_ref(V_PG_13);
        c.values = values(json!({}));
    })])
    .when(patch(json!({"connect_timeout": 30})))
    .then_err(E::UnknownParameter {
        key: "connect_timeout".into(),
        datastore: "postgresql".into(),
        version: "13".into(),
    });
}

#[test]
fn update_of_a_missing_deleted_or_foreign_group_is_not_found() {
    let err = given(&[])
        .when(patch(json!({"connect_timeout": 30})))
        .then_err(E::NotFound(GROUP));
    assert_eq!(
        err.to_string(),
        format!("Configuration group with ID {GROUP} could not be found.")
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
    given(&[created(), deleted()])
        .when(put(Some("x"), None, None))
        .then_err(E::NotFound(GROUP));
    given(&[created()])
        .caller(other_project())
        .when(patch(json!({"connect_timeout": 30})))
        .then_err(E::NotFound(GROUP));
}

#[test]
fn admin_may_update_any_project_group() {
    given(&[created()])
        .caller(admin())
        .when(patch(json!({"connect_timeout": 30})))
        .then(&[updated("group1", None, json!({"connect_timeout": 30}))]);
}

#[test]
fn update_of_a_group_in_use_is_allowed() {
    given(&[created()])
        .attached_to(2)
        .when(patch(json!({"connect_timeout": 30})))
        .then(&[updated("group1", None, json!({"connect_timeout": 30}))]);
}
