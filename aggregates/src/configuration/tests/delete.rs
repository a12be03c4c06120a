//! `DeleteConfiguration`: soft-delete, refused while live instances use the group.

use super::support::*;
use crate::configuration::{ConfigurationCommand, ConfigurationError as E, ConfigurationEvent};
use crate::fault::Fault;

fn delete() -> ConfigurationCommand {
    ConfigurationCommand::DeleteConfiguration
}

#[test]
fn unused_group_delete_is_recorded() {
    let state = given(&[created()])
        .when(delete())
        .then(&[ConfigurationEvent::ConfigurationDeleted { at: now() }]);
    assert!(state.deleted);
    assert!(!state.is_live());
    assert_eq!(state.deleted_at, Some(now()));
}

#[test]
fn group_in_use_delete_is_a_bad_request() {
    let err = given(&[created()])
        .attached_to(1)
        .when(delete())
        .then_err(E::InUse);
    assert_eq!(
        err.to_string(),
        "A configuration group cannot be deleted if it is associated with one or more \
         non-terminated instances. Detach the configuration group from all non-terminated \
         instances and please try again."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn missing_deleted_or_foreign_group_delete_is_not_found() {
    given(&[]).when(delete()).then_err(E::NotFound(GROUP));
    given(&[created(), deleted()])
        .when(delete())
        .then_err(E::NotFound(GROUP));
    given(&[created()])
        .caller(other_project())
        .when(delete())
        .then_err(E::NotFound(GROUP));
}

#[test]
fn admin_may_delete_any_project_group_but_not_one_in_use() {
    given(&[created()])
        .caller(admin())
        .when(delete())
        .then(&[ConfigurationEvent::ConfigurationDeleted { at: now() }]);
    given(&[created()])
        .caller(admin())
        .attached_to(1)
        .when(delete())
        .then_err(E::InUse);
}

#[test]
fn deleted_group_cannot_be_updated() {
    given(&[created(), deleted()])
        .when(patch(serde_json::json!({"connect_timeout": 30})))
        .then_err(E::NotFound(GROUP));
}
