//! `CreateConfiguration` (spec `supporting-resources.md` §2.3, §3): datastore version
//! resolution and validation of values against the parameter catalogue.

use serde_json::json;

use super::support::*;
use crate::configuration::ConfigurationError as E;
use crate::fault::Fault;
use crate::instance::DatastoreRequest;

fn ds(t: Option<&str>, v: Option<&str>, n: Option<&str>) -> DatastoreRequest {
    DatastoreRequest {
        datastore_type: t.map(str::to_string),
        version: v.map(str::to_string),
        version_number: n.map(str::to_string),
    }
}

#[test]
fn create_records_the_group_with_its_datastore_version() {
    let state = given(&[]).when(create(|_| {})).then(&[created_now(|_| {})]);
    assert!(state.is_live());
    assert_eq!(state.id, Some(GROUP));
    assert_eq!(state.project_id, OWNER_PROJECT);
    assert_eq!(state.datastore.version_id, V_MYSQL_80);
    assert_eq!(state.created, now());
    assert_eq!(state.updated, now());
    assert!(!state.restart_required(), "connect_timeout applies live");
}

#[test]
fn create_keeps_the_description() {
    given(&[])
        .when(create(|c| c.description = Some("tuned".into())))
        .then(&[created_now(|c| c.description = Some("tuned".into()))]);
}

#[test]
fn create_by_version_id_resolves_within_the_datastore() {
    given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mysql"), Some(&V_MYSQL_57.to_string()), None)
        }))
        .then(&[created_now(|c| c.datastore = version_ref(V_MYSQL_57))]);
}

#[test]
fn create_by_datastore_id_works_like_its_name() {
    given(&[])
        .when(create(|c| {
            c.datastore = ds(Some(&DS_PG.to_string()), Some("13"), None);
            c.values = values(json!({"work_mem": 4096}));
        }))
        .then(&[created_now(|c| {
            c.datastore = version_ref(V_PG_13);
            c.values = values(json!({"work_mem": 4096}));
        })]);
}

#[test]
fn create_with_name_and_number_picks_the_one_version() {
    given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mariadb"), Some("10.4"), Some("10.4.2"))
        }))
        .then(&[created_now(|c| c.datastore = version_ref(V_MARIADB_B))]);
}

#[test]
fn create_without_datastore_uses_the_default_datastore_and_its_default_version() {
    given(&[])
        .when(create(|c| c.datastore = ds(None, None, None)))
        .then(&[created_now(|_| {})]);
}

#[test]
fn create_without_default_datastore_is_a_bad_request() {
    let err = given(&[])
        .catalog(|c| c.default_datastore = None)
        .when(create(|c| c.datastore = ds(None, Some("8.0"), None)))
        .then_err(E::NoDefaultDatastore);
    assert_eq!(
        err.to_string(),
        "Please specify datastore. No default datastore is defined."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn create_with_a_missing_default_datastore_is_a_bad_request() {
    given(&[])
        .catalog(|c| c.default_datastore = Some("oracle".into()))
        .when(create(|c| c.datastore = ds(None, None, None)))
        .then_err(E::DefaultDatastoreNotFound("oracle".into()));
}

#[test]
fn create_with_an_unknown_datastore_is_not_found() {
    let err = given(&[])
        .when(create(|c| c.datastore = ds(Some("foo"), Some("1"), None)))
        .then_err(E::DatastoreNotFound("foo".into()));
    assert_eq!(err.to_string(), "Datastore 'foo' cannot be found.");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn create_with_a_version_id_of_another_datastore_is_not_found() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mysql"), Some(&V_PG_13.to_string()), None)
        }))
        .then_err(E::DatastoreVersionIdNotFound);
    assert_eq!(err.to_string(), "DBDatastoreVersion Not Found");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn create_with_an_unknown_version_name_is_a_bad_request() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mysql"), Some("9.9"), None)
        }))
        .then_err(E::DatastoreVersionNotFound("9.9".into()));
    assert_eq!(err.to_string(), "Datastore version '9.9' cannot be found.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn create_with_an_unknown_version_number_names_the_number() {
    given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mariadb"), Some("10.4"), Some("10.4.9"))
        }))
        .then_err(E::DatastoreVersionNotFound("10.4.9".into()));
}

#[test]
fn create_with_an_ambiguous_version_name_is_a_bad_request() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mariadb"), Some("10.4"), None)
        }))
        .then_err(E::DatastoreVersionAmbiguous("10.4".into()));
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn create_without_version_and_no_default_version_is_a_bad_request() {
    let err = given(&[])
        .when(create(|c| c.datastore = ds(Some("mariadb"), None, None)))
        .then_err(E::DefaultVersionNotFound("mariadb".into()));
    assert_eq!(
        err.to_string(),
        "Default version for datastore 'mariadb' not found."
    );
}

#[test]
fn create_on_an_inactive_version_is_a_bad_request() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("mysql"), Some("5.6"), None)
        }))
        .then_err(E::DatastoreVersionInactive("5.6".into()));
    assert_eq!(err.to_string(), "Datastore version '5.6' is not active.");
}

#[test]
fn create_with_no_values_is_accepted_even_without_a_catalogue() {
    given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("redis"), None, None);
            c.values = values(json!({}));
        }))
        .then(&[created_now(|c| {
            c.datastore = version_ref(V_REDIS_7);
            c.values = values(json!({}));
        })]);
}

#[test]
fn create_with_values_for_a_datastore_without_catalogue_is_unprocessable() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = ds(Some("redis"), None, None);
            c.values = values(json!({"maxmemory": 1}));
        }))
        .then_err(E::NotSupported {
            datastore: "redis".into(),
            version: "7".into(),
        });
    assert_eq!(
        err.to_string(),
        "Configuration groups are not supported for this datastore: redis 7"
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn create_with_an_unknown_parameter_is_unprocessable() {
    let err = given(&[])
        .when(create(|c| c.values = values(json!({"no_such_key": 1}))))
        .then_err(E::UnknownParameter {
            key: "no_such_key".into(),
            datastore: "mysql".into(),
            version: "8.0".into(),
        });
    assert_eq!(
        err.to_string(),
        "The configuration parameter no_such_key is not supported for this datastore: mysql 8.0."
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn create_with_a_parameter_of_another_manager_is_unprocessable() {
    given(&[])
        .when(create(|c| c.values = values(json!({"work_mem": 4096}))))
        .then_err(E::UnknownParameter {
            key: "work_mem".into(),
            datastore: "mysql".into(),
            version: "8.0".into(),
        });
}

#[test]
fn create_with_a_value_of_the_wrong_type_is_unprocessable() {
    let cases = [
        (
            json!({"connect_timeout": "200"}),
            "connect_timeout",
            "integer",
        ),
        (
            json!({"connect_timeout": 20.5}),
            "connect_timeout",
            "integer",
        ),
        (
            json!({"connect_timeout": true}),
            "connect_timeout",
            "integer",
        ),
        (
            json!({"connect_timeout": null}),
            "connect_timeout",
            "integer",
        ),
        (json!({"sql_mode": 1}), "sql_mode", "string"),
        (
            json!({"sql_mode": ["STRICT_ALL_TABLES"]}),
            "sql_mode",
            "string",
        ),
        (
            json!({"performance_schema": 1}),
            "performance_schema",
            "boolean",
        ),
        (
            json!({"performance_schema": "true"}),
            "performance_schema",
            "boolean",
        ),
        (json!({"long_query_time": "2"}), "long_query_time", "float"),
    ];
    for (v, key, kind) in cases {
        let err = given(&[])
            .when(create(|c| c.values = values(v.clone())))
            .then_err(E::WrongType {
                key: key.into(),
                kind,
            });
        assert_eq!(
            err.to_string(),
            format!(
                "The value provided for the configuration parameter {key} is not of type {kind}."
            )
        );
        assert_eq!(err.fault(), Fault::UnprocessableEntity, "{v}");
    }
}

#[test]
fn create_accepts_every_type_of_the_catalogue() {
    let v = json!({
        "connect_timeout": 200,
        "sql_mode": "STRICT_ALL_TABLES",
        "performance_schema": false,
        "long_query_time": 2.5,
    });
    given(&[])
        .when(create(|c| c.values = values(v.clone())))
        .then(&[created_now(|c| c.values = values(v.clone()))]);
}

#[test]
fn create_accepts_an_integer_for_a_float_parameter() {
    given(&[])
        .when(create(|c| c.values = values(json!({"long_query_time": 2}))))
        .then(&[created_now(|c| {
            c.values = values(json!({"long_query_time": 2}))
        })]);
}

#[test]
fn create_below_the_minimum_is_unprocessable() {
    let err = given(&[])
        .when(create(|c| c.values = values(json!({"connect_timeout": 1}))))
        .then_err(E::BelowMinimum {
            key: "connect_timeout".into(),
            min: 2,
        });
    assert_eq!(
        err.to_string(),
        "The value for the configuration parameter connect_timeout is less than the minimum allowed: 2"
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn create_above_the_maximum_is_unprocessable() {
    let err = given(&[])
        .when(create(|c| {
            c.values = values(json!({"max_connections": 100_001}))
        }))
        .then_err(E::AboveMaximum {
            key: "max_connections".into(),
            max: 100_000,
        });
    assert_eq!(
        err.to_string(),
        "The value for the configuration parameter max_connections is greater than the maximum allowed: 100000"
    );
}

#[test]
fn create_checks_bounds_of_floats_and_huge_integers() {
    given(&[])
        .when(create(|c| {
            c.values = values(json!({"long_query_time": -0.5}))
        }))
        .then_err(E::BelowMinimum {
            key: "long_query_time".into(),
            min: 0,
        });
    given(&[])
        .when(create(|c| {
            c.values = values(json!({"max_connections": u64::MAX}))
        }))
        .then_err(E::AboveMaximum {
            key: "max_connections".into(),
            max: 100_000,
        });
}

#[test]
fn create_accepts_the_bounds_themselves() {
    let v = json!({"max_connections": 100_000, "autocommit": 0});
    given(&[])
        .when(create(|c| c.values = values(v.clone())))
        .then(&[created_now(|c| c.values = values(v.clone()))]);
}

#[test]
fn create_stores_keys_by_their_catalogue_name() {
    given(&[])
        .when(create(|c| {
            c.values = values(json!({"Connect_Timeout": 30}))
        }))
        .then(&[created_now(|c| {
            c.values = values(json!({"connect_timeout": 30}))
        })]);
}

#[test]
fn create_with_a_restart_key_makes_a_group_that_needs_a_restart() {
    let state = given(&[])
        .when(create(|c| {
            c.values =
                values(json!({"connect_timeout": 30, "innodb_buffer_pool_size": 134_217_728}))
        }))
        .then(&[created_now(|c| {
            c.values =
                values(json!({"connect_timeout": 30, "innodb_buffer_pool_size": 134_217_728}))
        })]);
    assert!(state.restart_required());
}

#[test]
fn create_of_an_existing_group_is_a_conflict() {
    let err = given(&[created()])
        .when(create(|_| {}))
        .then_err(E::AlreadyExists(GROUP));
    assert_eq!(err.fault(), Fault::Conflict);
}

#[test]
fn create_by_an_admin_belongs_to_the_admin_project() {
    given(&[])
        .caller(admin())
        .when(create(|_| {}))
        .then(&[created_now(|c| {
            c.project_id = "proj-admin".into();
            c.user_id = "cloud-admin".into();
        })]);
}
