//! Databases, users and root (issue #15, ADR 0010): upstream's refusals and messages,
//! the changes queued for the guest, and a refused change taken back out of the lists.

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    DatabaseSpec, DomainError, FaultInfo, GuestUser, GuestUserRequest, InstanceCommand,
    InstanceEvent, UserAttributes, UserSpec,
};

fn db(name: &str) -> DatabaseSpec {
    DatabaseSpec {
        name: name.into(),
        character_set: None,
        collate: None,
    }
}

fn create_dbs(names: &[&str]) -> InstanceCommand {
    InstanceCommand::CreateDatabases {
        databases: names.iter().map(|n| db(n)).collect(),
    }
}

fn dbs_created(names: &[&str]) -> InstanceEvent {
    InstanceEvent::DatabasesCreated {
        databases: names.iter().map(|n| db(n)).collect(),
        at: now(),
    }
}

fn user_req(name: &str, host: &str, dbs: &[&str]) -> GuestUserRequest {
    GuestUserRequest {
        name: name.into(),
        host: host.into(),
        password: sealed("pw"),
        databases: dbs.iter().map(|d| d.to_string()).collect(),
    }
}

fn users_created(name: &str, host: &str, dbs: &[&str]) -> InstanceEvent {
    InstanceEvent::UsersCreated {
        users: vec![UserSpec {
            name: name.into(),
            host: host.into(),
            password: sealed("pw"),
            databases: dbs.iter().map(|d| d.to_string()).collect(),
        }],
        at: now(),
    }
}

fn bad(message: &str) -> DomainError {
    DomainError::InvalidGuestInput(message.into())
}

#[test]
fn databases_created_on_a_ready_instance_are_listed_and_queued() {
    let state = given(&ready())
        .when(create_dbs(&["shop", "blog"]))
        .then(&[dbs_created(&["shop", "blog"])]);
    let names: Vec<&str> = state.databases.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["shop", "blog"]);
    assert_eq!(state.guest_changes.len(), 1);
    assert_eq!(state.guest_changes[0].seq, 1);
}

#[test]
fn reserved_database_name_is_refused_with_upstreams_message() {
    let err = given(&ready())
        .when(create_dbs(&["ok_db", "mysql"]))
        .then_err(bad("Database name \"mysql\" is on the reserved list: ['mysql', 'information_schema', 'performance_schema', 'sys']."));
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn postgresql_reserves_postgres_not_mysql() {
    let pg = ready_from(created_with(|c| c.datastore = version_ref(V_PG_13)));
    given(&pg).when(create_dbs(&["postgres"])).then_err(bad(
        "Database name \"postgres\" is on the reserved list: ['os_admin', 'postgres'].",
    ));
    given(&pg)
        .when(create_dbs(&["mysql"]))
        .then(&[dbs_created(&["mysql"])]);
}

#[test]
fn database_names_with_bad_characters_or_too_long_are_refused() {
    given(&ready())
        .when(create_dbs(&["a;b"]))
        .then_err(bad("'a;b' is not a valid schema name."));
    let long = "d".repeat(65);
    given(&ready())
        .when(create_dbs(&[&long]))
        .then_err(bad(&format!(
            "Schema name '{long}' is too long. Max length = 64."
        )));
}

#[test]
fn a_character_set_that_is_no_name_is_refused() {
    let cmd = InstanceCommand::CreateDatabases {
        databases: vec![DatabaseSpec {
            name: "shop".into(),
            character_set: Some("utf8; DROP".into()),
            collate: None,
        }],
    };
    given(&ready())
        .when(cmd)
        .then_err(bad("'utf8; DROP' not a valid character set."));
}

#[test]
fn existing_database_is_refused_and_nothing_of_the_batch_is_recorded() {
    let err = given(&ready_then(&[dbs_created(&["shop"])]))
        .when(create_dbs(&["new_one", "shop"]))
        .then_err(DomainError::DatabaseAlreadyExists("shop".into()));
    assert_eq!(
        err.to_string(),
        "A database with the name \"shop\" already exists."
    );
}

#[test]
fn guest_admin_on_another_projects_instance_is_not_found() {
    given(&ready())
        .caller(other_project())
        .when(create_dbs(&["shop"]))
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn guest_admin_on_a_building_instance_is_unprocessable() {
    let err = given(&[created(), volume_created(), server_created()])
        .when(create_dbs(&["shop"]))
        .then_err(DomainError::GuestNotRunning {
            id: INSTANCE,
            status: "BUILD".into(),
        });
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn guest_admin_on_redis_is_not_supported() {
    let redis = ready_from(created_with(|c| c.datastore = version_ref(V_REDIS_7)));
    given(&redis)
        .when(InstanceCommand::DisableRoot)
        .then_err(DomainError::GuestOperationNotSupported("redis".into()));
}

#[test]
fn unknown_database_delete_is_not_found() {
    let err = given(&ready())
        .when(InstanceCommand::DeleteDatabase {
            name: "nope".into(),
        })
        .then_err(DomainError::DatabaseNotFound("nope".into()));
    assert_eq!(
        err.to_string(),
        "Database nope cannot be found on the instance."
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn database_of_the_create_can_be_dropped_and_its_access_leaves_the_users() {
    let events = ready_from(created_with(|c| {
        c.databases = vec![db("shop")];
        c.users = vec![UserSpec {
            name: "app".into(),
            host: "%".into(),
            password: sealed("pw"),
            databases: vec!["shop".into()],
        }];
    }));
    let state = given(&events)
        .when(InstanceCommand::DeleteDatabase {
            name: "shop".into(),
        })
        .then(&[InstanceEvent::DatabaseDeleted {
            name: "shop".into(),
            at: now(),
        }]);
    assert!(state.databases.is_empty());
    assert!(state.users[0].databases.is_empty());
}

#[test]
fn users_need_existing_databases_and_unique_free_names() {
    let base = ready_then(&[dbs_created(&["shop"])]);
    given(&base)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("app", "%", &["nope"])],
        })
        .then_err(DomainError::DatabaseNotFound("nope".into()));
    given(&base)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("root", "%", &[])],
        })
        .then_err(bad(
            "User name \"root\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*'].",
        ));
    given(&base)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("app", "%", &[]), user_req("app", "%", &[])],
        })
        .then_err(DomainError::DuplicateUsers);
    let with_app = [base.clone(), vec![users_created("app", "%", &["shop"])]].concat();
    given(&with_app)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("app", "%", &[])],
        })
        .then_err(DomainError::UserAlreadyExists("app".into()));
    // Same name, another host: another user.
    given(&with_app)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("app", "10.0.0.1", &[])],
        })
        .then(&[users_created("app", "10.0.0.1", &[])]);
}

#[test]
fn grant_and_revoke_change_the_users_databases() {
    let base = ready_then(&[dbs_created(&["a", "b"]), users_created("app", "%", &["a"])]);
    let state = given(&base)
        .when(InstanceCommand::GrantUserAccess {
            name: "app".into(),
            host: "%".into(),
            databases: vec!["b".into()],
        })
        .then(&[InstanceEvent::UserAccessGranted {
            name: "app".into(),
            host: "%".into(),
            databases: vec!["b".into()],
            at: now(),
        }]);
    assert_eq!(state.users[0].databases, ["a", "b"]);
    given(&base)
        .when(InstanceCommand::RevokeUserAccess {
            name: "app".into(),
            host: "%".into(),
            database: "b".into(),
        })
        .then_err(DomainError::DatabaseNotFound("b".into()));
    given(&base)
        .when(InstanceCommand::RevokeUserAccess {
            name: "ghost".into(),
            host: "%".into(),
            database: "a".into(),
        })
        .then_err(DomainError::UserNotFound("ghost".into()));
}

#[test]
fn user_rename_to_an_existing_user_is_refused() {
    let base = ready_then(&[users_created("a", "%", &[]), users_created("b", "%", &[])]);
    given(&base)
        .when(InstanceCommand::UpdateUserAttributes {
            name: "a".into(),
            host: "%".into(),
            update: UserAttributes {
                name: Some("b".into()),
                ..UserAttributes::default()
            },
        })
        .then_err(DomainError::UserAlreadyExists("b".into()));
    let state = given(&base)
        .when(InstanceCommand::UpdateUserAttributes {
            name: "a".into(),
            host: "%".into(),
            update: UserAttributes {
                name: Some("c".into()),
                password: Some(sealed("new")),
                ..UserAttributes::default()
            },
        })
        .then(&[InstanceEvent::UserAttributesUpdated {
            name: "a".into(),
            host: "%".into(),
            new_name: Some("c".into()),
            new_host: None,
            password: Some(sealed("new")),
            at: now(),
        }]);
    assert!(state.users.iter().any(|u| u.name == "c"));
}

#[test]
fn root_disable_needs_root_enabled_first() {
    let err = given(&ready())
        .when(InstanceCommand::DisableRoot)
        .then_err(DomainError::RootNeverEnabled);
    assert_eq!(err.fault(), Fault::ItemNotFound);
    let enabled = InstanceEvent::RootEnabled {
        password: sealed("r"),
        user_id: "alice".into(),
        at: now(),
    };
    let state = given(&ready_then(&[enabled]))
        .when(InstanceCommand::DisableRoot)
        .then(&[InstanceEvent::RootDisabled { at: now() }]);
    assert!(!state.root_enabled);
    assert_eq!(
        state.root_enabled_history.as_deref(),
        Some(&(now(), "alice".to_string())),
        "upstream's root history outlives the disable"
    );
}

#[test]
fn a_refused_change_is_taken_back_and_later_ones_stay() {
    let base = ready_then(&[dbs_created(&["a"]), dbs_created(&["b"])]);
    let fault = FaultInfo {
        message: "no space".into(),
        details: "disk full".into(),
    };
    let state = given(&base)
        .when(InstanceCommand::RecordGuestChangeFailed {
            seq: 1,
            fault: fault.clone(),
        })
        .then(&[InstanceEvent::GuestChangeFailed {
            seq: 1,
            fault,
            at: now(),
        }]);
    let names: Vec<&str> = state.databases.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    assert_eq!(state.guest_changes.len(), 1);
    assert!(state.fault.is_some());
}

#[test]
fn applied_reports_are_idempotent() {
    let base = ready_then(&[
        dbs_created(&["a"]),
        InstanceEvent::GuestChangeApplied { seq: 1, at: now() },
    ]);
    given(&base)
        .when(InstanceCommand::RecordGuestChangeApplied { seq: 1 })
        .then_nothing();
    // One character is not a MySQL database name (upstream's pattern needs two).
    let state = given(&base)
        .when(create_dbs(&["bb"]))
        .then(&[dbs_created(&["bb"])]);
    assert_eq!(state.guest_changes[0].seq, 2);
    assert_eq!(
        state.users,
        Vec::<GuestUser>::new(),
        "no users were created"
    );
}

#[test]
fn accounts_of_the_server_and_of_troved_are_reserved() {
    let base = ready();
    for name in [
        "troved-db",
        "mariadb.sys",
        "PUBLIC",
        "mysql.session",
        "troved_repl_3307",
    ] {
        let err = given(&base)
            .when(InstanceCommand::CreateUsers {
                users: vec![user_req(name, "%", &[])],
            })
            .then_err(bad(&format!(
                "User name \"{name}\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*']."
            )));
        assert_eq!(err.fault(), Fault::BadRequest);
    }
    let pg = ready_from(created_with(|c| c.datastore = version_ref(V_PG_13)));
    given(&pg)
        .when(InstanceCommand::CreateUsers {
            users: vec![user_req("pg_monitor", "%", &[])],
        })
        .then_err(bad(
            "User name \"pg_monitor\" is on the reserved list: ['os_admin', 'postgres', 'troved-db', 'pg_*'].",
        ));
    // A rename onto a reserved account is refused as well.
    given(&ready_then(&[users_created("app", "%", &[])]))
        .when(InstanceCommand::UpdateUserAttributes {
            name: "app".into(),
            host: "%".into(),
            update: UserAttributes {
                name: Some("mariadb.sys".into()),
                ..UserAttributes::default()
            },
        })
        .then_err(bad(
            "User name \"mariadb.sys\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*'].",
        ));
}

#[test]
fn reserved_user_delete_is_refused_as_reserved_not_as_unknown() {
    let err = given(&ready())
        .when(InstanceCommand::DeleteUser {
            name: "root".into(),
            host: "%".into(),
        })
        .then_err(bad(
            "User name \"root\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*'].",
        ));
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn guest_changes_on_a_replica_are_refused() {
    let replica = ready_replica();
    for cmd in [
        create_dbs(&["shop"]),
        InstanceCommand::CreateUsers {
            users: vec![user_req("app", "%", &[])],
        },
        InstanceCommand::EnableRoot {
            password: sealed("r"),
        },
    ] {
        let err = given(&replica)
            .when(cmd)
            .then_err(DomainError::GuestChangeOnReplica(INSTANCE));
        assert_eq!(err.fault(), Fault::UnprocessableEntity);
    }
}

#[test]
fn a_refused_root_enable_takes_its_history_entry_back() {
    let state = given(&ready())
        .when(InstanceCommand::EnableRoot {
            password: sealed("r"),
        })
        .then(&[InstanceEvent::RootEnabled {
            password: sealed("r"),
            user_id: "alice".into(),
            at: now(),
        }]);
    assert!(state.root_enabled_history.is_some());
    let fault = FaultInfo {
        message: "refused".into(),
        details: "no".into(),
    };
    let events = ready_then(&[InstanceEvent::RootEnabled {
        password: sealed("r"),
        user_id: "alice".into(),
        at: now(),
    }]);
    let state = given(&events)
        .when(InstanceCommand::RecordGuestChangeFailed { seq: 1, fault })
        .then(&[InstanceEvent::GuestChangeFailed {
            seq: 1,
            fault: FaultInfo {
                message: "refused".into(),
                details: "no".into(),
            },
            at: now(),
        }]);
    assert!(!state.root_enabled);
    assert_eq!(state.root_enabled_history, None, "root was never enabled");
}

#[test]
fn changes_that_depend_on_a_refused_create_no_longer_apply() {
    use crate::instance::fold;
    use crate::instance::guestdb::still_applies;
    let grant = InstanceEvent::UserAccessGranted {
        name: "app".into(),
        host: "%".into(),
        databases: vec!["shop".into()],
        at: now(),
    };
    let queued = ready_then(&[
        dbs_created(&["shop"]),
        users_created("app", "%", &[]),
        grant,
        InstanceEvent::GuestChangeApplied { seq: 1, at: now() },
    ]);
    let state = fold(&queued);
    assert_eq!(still_applies(&state.guest_changes[1]), Ok(()));
    let refused = InstanceEvent::GuestChangeFailed {
        seq: 2,
        fault: FaultInfo {
            message: "exists".into(),
            details: String::new(),
        },
        at: now(),
    };
    let state = fold(&[queued, vec![refused]].concat());
    assert_eq!(state.guest_changes.len(), 1, "the grant is still queued");
    assert_eq!(
        still_applies(&state.guest_changes[0]),
        Err("User app@% is not on the instance (an earlier change was refused).".into())
    );
}
