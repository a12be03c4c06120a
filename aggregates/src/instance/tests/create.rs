//! `CreateInstance` (spec `instances-api.md` §8; order of checks §8.3).

use uuid::Uuid;

use super::support::*;
use crate::catalog::QuotaUsage;
use crate::fault::Fault;
use crate::instance::{
    ComputeStatus, DatabaseSpec, DatastoreRequest, DomainError, FlavorRef, Nic, ServiceStatus,
    UserRequest, UserSpec, VolumeRequest, VolumeSpec,
};

fn ds(
    datastore_type: Option<&str>,
    version: Option<&str>,
    number: Option<&str>,
) -> DatastoreRequest {
    DatastoreRequest {
        datastore_type: datastore_type.map(Into::into),
        version: version.map(Into::into),
        version_number: number.map(Into::into),
    }
}

fn db(name: &str) -> DatabaseSpec {
    DatabaseSpec {
        name: name.into(),
        character_set: None,
        collate: None,
    }
}

fn user(name: &str, host: Option<&str>, databases: &[&str]) -> UserRequest {
    UserRequest {
        name: name.into(),
        host: host.map(Into::into),
        password: sealed("secret"),
        databases: databases.iter().map(|d| d.to_string()).collect(),
    }
}

fn nic(network: Option<&str>, subnet: Option<&str>, ip: Option<&str>) -> Nic {
    Nic {
        network_id: network.map(Into::into),
        subnet_id: subnet.map(Into::into),
        ip_address: ip.map(Into::into),
    }
}

fn volume(size: u64, volume_type: Option<&str>) -> Option<VolumeRequest> {
    Some(VolumeRequest {
        size,
        volume_type: volume_type.map(Into::into),
    })
}

// ---- success ---------------------------------------------------------------------------

#[test]
fn new_instance_create_records_instance_created() {
    given(&[]).when(create(|_| {})).then(&[created_now(|_| {})]);
}

#[test]
fn create_keeps_request_details_verbatim() {
    let access = serde_json::json!({"is_public": true, "allowed_cidrs": ["10.0.0.0/8"], "x": 1});
    let module = Uuid::from_u128(0x3001);
    given(&[])
        .when(create(|c| {
            c.name = "orders".into();
            c.availability_zone = Some("nova".into());
            c.region_name = Some("RegionOne".into());
            c.modules = vec![module];
            c.locality = Some("anti-affinity".into());
            c.access = Some(access.clone());
            c.nics = vec![nic(Some("net-1"), None, None)];
            c.replica_count = Some(1); // 1 without replica_of is accepted and ignored
        }))
        .then(&[created_now(|e| {
            e.name = "orders".into();
            e.availability_zone = Some("nova".into());
            e.modules = vec![module];
            e.locality = Some("anti-affinity".into());
            e.access = Some(access.clone());
            e.nics = vec![nic(Some("net-1"), None, None)];
        })]);
}

#[test]
fn create_by_admin_belongs_to_the_admins_project() {
    given(&[])
        .caller(admin())
        .when(create(|_| {}))
        .then(&[created_now(|e| {
            e.project_id = "proj-admin".into();
            e.user_id = "cloud-admin".into();
        })]);
}

#[test]
fn create_evolves_to_building_with_service_new() {
    let state = given(&[]).when(create(|_| {})).then(&[created_now(|_| {})]);
    assert_eq!(state.id, Some(INSTANCE));
    assert_eq!(state.task, crate::instance::Task::Building);
    assert_eq!(state.service, ServiceStatus::New);
    assert_eq!(state.compute, None);
    assert_eq!(state.command_status(), "BUILD");
    assert_eq!(state.version, 1);
}

#[test]
fn existing_instance_create_is_a_conflict() {
    let err = given(&[created()])
        .when(create(|_| {}))
        .then_err(DomainError::InstanceAlreadyExists(INSTANCE));
    assert_eq!(err.fault(), Fault::Conflict);
}

#[test]
fn deleted_instance_create_with_same_id_is_a_conflict() {
    given(&[ready(), deleted()].concat())
        .when(create(|_| {}))
        .then_err(DomainError::InstanceAlreadyExists(INSTANCE));
}

#[test]
fn root_on_create_datastore_keeps_the_generated_password() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).root_on_create = true)
        .when(create(|c| c.root_password = Some(sealed("root"))))
        .then(&[created_now(|e| e.root_password = Some(sealed("root")))]);
}

#[test]
fn datastore_without_root_on_create_drops_the_password() {
    given(&[])
        .when(create(|c| c.root_password = Some(sealed("root"))))
        .then(&[created_now(|_| {})]);
}

#[test]
fn restore_create_gets_no_root_password() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).root_on_create = true)
        .when(create(|c| {
            c.root_password = Some(sealed("root"));
            c.restore_backup_id = Some(BK_OK);
        }))
        .then(&[created_now(|e| e.restore_backup_id = Some(BK_OK))]);
}

// ---- region ----------------------------------------------------------------------------

#[test]
fn other_region_create_is_refused() {
    let err = given(&[])
        .when(create(|c| c.region_name = Some("RegionTwo".into())))
        .then_err(DomainError::RegionNotServed {
            requested: "RegionTwo".into(),
            served: "RegionOne".into(),
        });
    assert_eq!(err.fault(), Fault::BadRequest);
}

// ---- datastore resolution (supporting-resources.md §2.3) -------------------------------

#[test]
fn datastore_and_version_by_name_resolve() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mysql"), Some("5.7"), None))
        }))
        .then(&[created_now(|e| e.datastore = version_ref(V_MYSQL_57))]);
}

#[test]
fn datastore_and_version_by_id_resolve() {
    let req = ds(Some(&DS_PG.to_string()), Some(&V_PG_12.to_string()), None);
    given(&[])
        .when(create(|c| c.datastore = Some(req)))
        .then(&[created_now(|e| e.datastore = version_ref(V_PG_12))]);
}

#[test]
fn datastore_without_version_uses_its_default_version() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("postgresql"), None, None))
        }))
        .then(&[created_now(|e| e.datastore = version_ref(V_PG_13))]);
}

#[test]
fn no_datastore_uses_the_default_datastore_and_version() {
    given(&[])
        .when(create(|c| c.datastore = None))
        .then(&[created_now(|_| {})]);
}

#[test]
fn version_without_type_is_looked_up_in_the_default_datastore() {
    given(&[])
        .when(create(|c| c.datastore = Some(ds(None, Some("5.7"), None))))
        .then(&[created_now(|e| e.datastore = version_ref(V_MYSQL_57))]);
}

#[test]
fn version_number_disambiguates_a_shared_version_name() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mariadb"), Some("10.4"), Some("10.4.2")))
        }))
        .then(&[created_now(|e| e.datastore = version_ref(V_MARIADB_B))]);
}

#[test]
fn version_uuid_ignores_version_number() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(
                Some("mysql"),
                Some(&V_MYSQL_57.to_string()),
                Some("9.9"),
            ))
        }))
        .then(&[created_now(|e| e.datastore = version_ref(V_MYSQL_57))]);
}

#[test]
fn unknown_datastore_create_is_not_found() {
    let err = given(&[])
        .when(create(|c| c.datastore = Some(ds(Some("foo"), None, None))))
        .then_err(DomainError::DatastoreNotFound("foo".into()));
    assert_eq!(err.to_string(), "Datastore 'foo' cannot be found.");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn unknown_version_name_create_is_a_bad_request() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mysql"), Some("x"), None))
        }))
        .then_err(DomainError::DatastoreVersionNotFound("x".into()));
    assert_eq!(err.to_string(), "Datastore version 'x' cannot be found.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn unknown_version_number_create_names_the_number() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mariadb"), Some("10.4"), Some("10.4.9")))
        }))
        .then_err(DomainError::DatastoreVersionNotFound("10.4.9".into()));
    assert_eq!(
        err.to_string(),
        "Datastore version '10.4.9' cannot be found."
    );
}

#[test]
fn inactive_version_create_is_refused() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mysql"), Some("5.6"), None))
        }))
        .then_err(DomainError::DatastoreVersionInactive("5.6".into()));
    assert_eq!(err.to_string(), "Datastore version '5.6' is not active.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn inactive_version_by_id_create_is_refused_by_name() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mysql"), Some(&V_MYSQL_56.to_string()), None))
        }))
        .then_err(DomainError::DatastoreVersionInactive("5.6".into()));
}

#[test]
fn shared_version_name_create_is_ambiguous() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mariadb"), Some("10.4"), None))
        }))
        .then_err(DomainError::DatastoreVersionAmbiguous("10.4".into()));
    assert_eq!(
        err.to_string(),
        "Multiple datastore versions found for '10.4', use an UUID or specify both the name \
         and version number to be more specific."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn version_uuid_of_another_datastore_create_is_not_found() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mysql"), Some(&V_PG_13.to_string()), None))
        }))
        .then_err(DomainError::DatastoreVersionIdNotFound);
    assert_eq!(err.to_string(), "DBDatastoreVersion Not Found");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn no_default_datastore_create_without_datastore_is_refused() {
    let err = given(&[])
        .catalog(|c| c.default_datastore = None)
        .when(create(|c| c.datastore = None))
        .then_err(DomainError::NoDefaultDatastore);
    assert_eq!(
        err.to_string(),
        "Please specify datastore. No default datastore is defined."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn missing_default_datastore_create_is_refused() {
    let err = given(&[])
        .catalog(|c| c.default_datastore = Some("oracle".into()))
        .when(create(|c| c.datastore = None))
        .then_err(DomainError::DefaultDatastoreNotFound("oracle".into()));
    assert_eq!(
        err.to_string(),
        "Please specify datastore. Default datastore 'oracle' cannot be found."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn datastore_without_default_version_create_without_version_is_refused() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("mariadb"), None, None))
        }))
        .then_err(DomainError::DefaultVersionNotFound("mariadb".into()));
    assert_eq!(
        err.to_string(),
        "Default version for datastore 'mariadb' not found."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

// ---- databases and users (§8.3 step 6) --------------------------------------------------

#[test]
fn users_and_databases_are_recorded_with_default_host() {
    given(&[])
        .when(create(|c| {
            c.databases = vec![db("orders"), db("stock")];
            c.users = vec![
                user("app", None, &["orders"]),
                user("app", Some("10.%"), &["orders", "stock"]),
            ];
        }))
        .then(&[created_now(|e| {
            e.databases = vec![db("orders"), db("stock")];
            e.users = vec![
                UserSpec {
                    name: "app".into(),
                    host: "%".into(),
                    password: sealed("secret"),
                    databases: vec!["orders".into()],
                },
                UserSpec {
                    name: "app".into(),
                    host: "10.%".into(),
                    password: sealed("secret"),
                    databases: vec!["orders".into(), "stock".into()],
                },
            ];
        })]);
}

#[test]
fn reserved_database_create_is_refused() {
    for name in ["mysql", "information_schema", "performance_schema", "sys"] {
        let err = given(&[])
            .when(create(|c| c.databases = vec![db("ok"), db(name)]))
            .then_err(DomainError::ReservedDatabase(name.into()));
        assert_eq!(err.fault(), Fault::BadRequest);
    }
    let err = DomainError::ReservedDatabase("mysql".into());
    assert_eq!(
        err.to_string(),
        "Database name \"mysql\" is on the reserved list: ['mysql', 'information_schema', \
         'performance_schema', 'sys']."
    );
}

#[test]
fn duplicate_databases_create_is_refused() {
    let err = given(&[])
        .when(create(|c| c.databases = vec![db("a"), db("b"), db("a")]))
        .then_err(DomainError::DuplicateDatabases);
    assert_eq!(
        err.to_string(),
        "Two or more databases share the same name in the initial databases list. Please \
         correct the names or remove the duplicate entries."
    );
}

#[test]
fn reserved_user_create_is_refused() {
    for name in ["os_admin", "root"] {
        given(&[])
            .when(create(|c| c.users = vec![user(name, None, &[])]))
            .then_err(DomainError::ReservedUser(name.into()));
    }
    assert_eq!(
        DomainError::ReservedUser("root".into()).to_string(),
        "User name \"root\" is on the reserved list: ['os_admin', 'root']."
    );
}

#[test]
fn server_and_troved_accounts_in_a_create_are_refused() {
    for name in [
        "troved-db",
        "mariadb.sys",
        "mysql.session",
        "troved_repl_3307",
    ] {
        given(&[])
            .when(create(|c| {
                c.users = vec![user(name, Some("localhost"), &[])];
            }))
            .then_err(DomainError::InvalidGuestInput(format!(
                "User name \"{name}\" is on the reserved list: ['os_admin', 'root', 'troved-db', 'mariadb.sys', 'PUBLIC', 'mysql.*', 'troved_repl_*']."
            )));
    }
}

#[test]
fn duplicate_user_and_host_create_is_refused() {
    // No host = `%`, so these two collide.
    let err = given(&[])
        .when(create(|c| {
            c.users = vec![user("app", None, &[]), user("app", Some("%"), &[])]
        }))
        .then_err(DomainError::DuplicateUsers);
    assert_eq!(
        err.to_string(),
        "Two or more users share the same name and host in the initial users list. Please \
         correct the names or remove the duplicate entries."
    );
}

#[test]
fn user_database_not_listed_create_is_refused() {
    let err = given(&[])
        .when(create(|c| {
            c.databases = vec![db("orders")];
            c.users = vec![user("app", None, &["orders", "stock"])];
        }))
        .then_err(DomainError::UserDatabaseNotListed {
            user: "app".into(),
            database: "stock".into(),
        });
    assert_eq!(
        err.to_string(),
        "The request indicates that user app should have access to database stock, but \
         database stock is not included in the initial databases list."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn reserved_database_wins_over_reserved_user() {
    given(&[])
        .when(create(|c| {
            c.databases = vec![db("sys")];
            c.users = vec![user("root", None, &[])];
        }))
        .then_err(DomainError::ReservedDatabase("sys".into()));
}

// ---- nics (§8.3 step 8, §8.5) ------------------------------------------------------------

#[test]
fn nic_with_network_or_subnet_is_accepted() {
    for n in [
        nic(Some("net-1"), None, None),
        nic(None, Some("subnet-1"), None),
        nic(Some("net-1"), Some("subnet-1"), Some("10.0.0.5")),
    ] {
        given(&[])
            .when(create(|c| c.nics = vec![n.clone()]))
            .then(&[created_now(|e| e.nics = vec![n.clone()])]);
    }
}

#[test]
fn nic_without_network_or_subnet_is_refused() {
    let err = given(&[])
        .when(create(|c| c.nics = vec![nic(None, None, None)]))
        .then_err(DomainError::NicWithoutNetwork);
    assert_eq!(
        err.to_string(),
        "Instance network or subnet needs to be specified."
    );
}

#[test]
fn nic_with_ip_but_no_subnet_is_refused() {
    let err = given(&[])
        .when(create(|c| {
            c.nics = vec![nic(Some("net-1"), None, Some("10.0.0.5"))]
        }))
        .then_err(DomainError::NicIpWithoutSubnet);
    assert_eq!(err.to_string(), "Instance subnet needs to be specified.");
}

// ---- locality (§8.3 step 9) ------------------------------------------------------------

#[test]
fn every_known_locality_is_accepted() {
    for l in [
        "affinity",
        "soft-affinity",
        "anti-affinity",
        "soft-anti-affinity",
    ] {
        given(&[])
            .when(create(|c| c.locality = Some(l.into())))
            .then(&[created_now(|e| e.locality = Some(l.into()))]);
    }
}

#[test]
fn unknown_locality_is_refused() {
    let err = given(&[])
        .when(create(|c| c.locality = Some("nearby".into())))
        .then_err(DomainError::InvalidLocality("nearby".into()));
    assert_eq!(
        err.to_string(),
        "Invalid locality 'nearby'. Must be one of ['affinity', 'soft-affinity', \
         'anti-affinity', 'soft-anti-affinity']"
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

// ---- flavor (§8.3 step 10) -------------------------------------------------------------

#[test]
fn other_flavor_is_recorded_with_its_ram() {
    given(&[])
        .when(create(|c| c.flavor_ref = Some("8".into())))
        .then(&[created_now(|e| {
            e.flavor = FlavorRef {
                id: "8".into(),
                ram: 4096,
            }
        })]);
}

#[test]
fn flavor_not_allowed_for_version_is_refused() {
    let err = given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_flavors = Some(vec!["8".into()]))
        .when(create(|_| {}))
        .then_err(DomainError::FlavorNotSupported {
            flavor: "7".into(),
            version_id: V_MYSQL_80,
        });
    assert_eq!(
        err.to_string(),
        format!("Flavor 7 is not supported for datastore version {V_MYSQL_80}")
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn flavor_allowed_for_version_is_accepted() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_flavors = Some(vec!["7".into()]))
        .when(create(|_| {}))
        .then(&[created_now(|_| {})]);
}

#[test]
fn unknown_flavor_is_a_bad_request_not_a_404() {
    let err = given(&[])
        .when(create(|c| c.flavor_ref = Some("99".into())))
        .then_err(DomainError::FlavorNotFound("99".into()));
    assert_eq!(err.to_string(), "Resource 99 cannot be found.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn missing_flavor_ref_looks_up_the_literal_none() {
    given(&[])
        .when(create(|c| c.flavor_ref = None))
        .then_err(DomainError::FlavorNotFound("None".into()));
}

#[test]
fn restricted_flavor_wins_over_unknown_flavor() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_flavors = Some(vec!["8".into()]))
        .when(create(|c| c.flavor_ref = Some("99".into())))
        .then_err(DomainError::FlavorNotSupported {
            flavor: "99".into(),
            version_id: V_MYSQL_80,
        });
}

// ---- volume (§8.3 step 11) -------------------------------------------------------------

#[test]
fn missing_volume_on_volume_datastore_is_refused() {
    let err = given(&[])
        .when(create(|c| c.volume = None))
        .then_err(DomainError::VolumeSizeMissing);
    assert_eq!(err.to_string(), "Volume size was not specified.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn volume_at_the_maximum_is_accepted() {
    given(&[])
        .when(create(|c| c.volume = volume(10, None)))
        .then(&[created_now(|e| {
            e.volume = Some(VolumeSpec {
                size: 10,
                volume_type: None,
            })
        })]);
}

#[test]
fn volume_above_the_maximum_is_over_limit() {
    let err = given(&[])
        .when(create(|c| c.volume = volume(11, None)))
        .then_err(DomainError::VolumeTooLarge { max: 10, size: 11 });
    assert_eq!(
        err.to_string(),
        "Volume 'size' cannot exceed maximum of 10 GB, 11 cannot be accepted."
    );
    assert_eq!(err.fault(), Fault::OverLimit);
}

#[test]
fn restricted_volume_types_require_a_type() {
    let err = given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_volume_types = Some(vec!["ssd".into()]))
        .when(create(|_| {}))
        .then_err(DomainError::VolumeTypeRequired(V_MYSQL_80));
    assert_eq!(
        err.to_string(),
        format!(
            "Only specific volume types are allowed for a datastore version {V_MYSQL_80}. You \
             must specify a valid volume type."
        )
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn volume_type_not_allowed_is_refused() {
    let err = given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_volume_types = Some(vec!["ssd".into()]))
        .when(create(|c| c.volume = volume(5, Some("hdd"))))
        .then_err(DomainError::VolumeTypeInvalid {
            volume_type: "hdd".into(),
            version_id: V_MYSQL_80,
        });
    assert_eq!(
        err.to_string(),
        format!("The volume type hdd is not valid for datastore version {V_MYSQL_80}.")
    );
}

#[test]
fn allowed_volume_type_is_recorded() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_volume_types = Some(vec!["ssd".into()]))
        .when(create(|c| c.volume = volume(5, Some("ssd"))))
        .then(&[created_now(|e| {
            e.volume = Some(VolumeSpec {
                size: 5,
                volume_type: Some("ssd".into()),
            })
        })]);
}

#[test]
fn volume_on_datastore_without_volume_support_is_not_implemented() {
    let err = given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("redis"), None, None))
        }))
        .then_err(DomainError::VolumeNotSupported);
    assert_eq!(err.to_string(), "Volume support is not enabled.");
    assert_eq!(err.fault(), Fault::NotImplemented);
}

#[test]
fn no_volume_on_datastore_without_volume_support_is_accepted() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("redis"), None, None));
            c.volume = None;
        }))
        .then(&[created_now(|e| {
            e.datastore = version_ref(V_REDIS_7);
            e.volume = None;
        })]);
}

// ---- restore from backup (§8.3 step 12) ------------------------------------------------

#[test]
fn completed_or_restored_backup_restore_is_accepted() {
    for b in [BK_OK, BK_RESTORED] {
        given(&[])
            .when(create(|c| c.restore_backup_id = Some(b)))
            .then(&[created_now(|e| e.restore_backup_id = Some(b))]);
    }
}

#[test]
fn unknown_backup_restore_is_not_found() {
    let missing = Uuid::from_u128(0xbfff);
    let err = given(&[])
        .when(create(|c| c.restore_backup_id = Some(missing)))
        .then_err(DomainError::ResourceNotFound(missing.to_string()));
    assert_eq!(
        err.to_string(),
        format!("Resource {missing} cannot be found.")
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn other_projects_backup_restore_is_not_found() {
    given(&[])
        .when(create(|c| c.restore_backup_id = Some(BK_OTHER_PROJECT)))
        .then_err(DomainError::ResourceNotFound(BK_OTHER_PROJECT.to_string()));
}

#[test]
fn admin_may_restore_another_projects_backup() {
    given(&[])
        .caller(admin())
        .when(create(|c| c.restore_backup_id = Some(BK_OTHER_PROJECT)))
        .then(&[created_now(|e| {
            e.restore_backup_id = Some(BK_OTHER_PROJECT);
            e.project_id = "proj-admin".into();
            e.user_id = "cloud-admin".into();
        })]);
}

#[test]
fn running_backup_restore_is_a_conflict() {
    let err = given(&[])
        .when(create(|c| c.restore_backup_id = Some(BK_RUNNING)))
        .then_err(DomainError::BackupNotCompleted {
            id: BK_RUNNING,
            state: "SAVING".into(),
        });
    assert_eq!(
        err.to_string(),
        format!(
            "Unable to create instance because backup {BK_RUNNING} is not completed. Actual \
             state: SAVING."
        )
    );
    assert_eq!(err.fault(), Fault::Conflict);
}

#[test]
fn backup_larger_than_volume_restore_is_forbidden() {
    let err = given(&[])
        .when(create(|c| c.restore_backup_id = Some(BK_BIG)))
        .then_err(DomainError::BackupTooLarge {
            backup: 6.5,
            available: 5,
        });
    assert_eq!(
        err.to_string(),
        "Backup is too large for given flavor or volume. Backup size: 6.5 GBs. Available \
         size: 5 GBs."
    );
    assert_eq!(err.fault(), Fault::Forbidden);
}

#[test]
fn backup_fitting_a_larger_volume_restore_is_accepted() {
    given(&[])
        .when(create(|c| {
            c.restore_backup_id = Some(BK_BIG);
            c.volume = volume(7, None);
        }))
        .then(&[created_now(|e| {
            e.restore_backup_id = Some(BK_BIG);
            e.volume = Some(VolumeSpec {
                size: 7,
                volume_type: None,
            });
        })]);
}

#[test]
fn backup_on_datastore_without_volumes_is_measured_against_flavor_disk() {
    // Spec §8.3 step 12: "target volume size (or flavor disk/ephemeral)"; flavor 7 has a
    // 20 GB disk.
    let redis = |c: &mut crate::instance::CreateInstance| {
        c.datastore = Some(ds(Some("redis"), None, None));
        c.volume = None;
        c.restore_backup_id = Some(BK_REDIS);
    };
    given(&[]).when(create(redis)).then(&[created_now(|e| {
        e.datastore = version_ref(V_REDIS_7);
        e.volume = None;
        e.restore_backup_id = Some(BK_REDIS);
    })]);
    given(&[])
        .catalog(|c| c.backup_mut(BK_REDIS).size = Some(20.5))
        .when(create(redis))
        .then_err(DomainError::BackupTooLarge {
            backup: 20.5,
            available: 20,
        });
}

#[test]
fn backup_of_another_datastore_restore_is_refused() {
    let err = given(&[])
        .when(create(|c| c.restore_backup_id = Some(BK_PG)))
        .then_err(DomainError::BackupDatastoreMismatch {
            backup: "postgresql".into(),
            target: "mysql".into(),
        });
    assert_eq!(
        err.to_string(),
        "The datastore from which the backup was taken, postgresql, does not match the \
         destination datastore of mysql."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn backup_of_another_version_is_refused_and_of_the_same_accepted() {
    // The default create is mysql 8.0; the backup was taken from 5.7.
    let err = given(&[])
        .catalog(|c| c.backup_mut(BK_OK).datastore_version = Some((V_MYSQL_57, "5.7".into())))
        .when(create(|c| c.restore_backup_id = Some(BK_OK)))
        .then_err(DomainError::BackupVersionMismatch {
            backup: "5.7".into(),
            target: "8.0".into(),
        });
    assert_eq!(err.fault(), Fault::BadRequest);
    given(&[])
        .catalog(|c| c.backup_mut(BK_OK).datastore_version = Some((V_MYSQL_80, "8.0".into())))
        .when(create(|c| c.restore_backup_id = Some(BK_OK)))
        .events();
}

#[test]
fn backup_not_completed_wins_over_too_large_and_mismatch() {
    given(&[])
        .catalog(|c| {
            let b = c.backup_mut(BK_RUNNING);
            b.size = Some(50.0);
            b.datastore_name = Some("postgresql".into());
        })
        .when(create(|c| c.restore_backup_id = Some(BK_RUNNING)))
        .then_err(DomainError::BackupNotCompleted {
            id: BK_RUNNING,
            state: "SAVING".into(),
        });
}

#[test]
fn backup_too_large_wins_over_datastore_mismatch() {
    given(&[])
        .catalog(|c| c.backup_mut(BK_PG).size = Some(50.0))
        .when(create(|c| c.restore_backup_id = Some(BK_PG)))
        .then_err(DomainError::BackupTooLarge {
            backup: 50.0,
            available: 5,
        });
}

// ---- quota (§8.3 step 14, §8.8) --------------------------------------------------------

fn quota(instances: (i64, i64), ram: (i64, i64), volumes: (i64, i64)) -> QuotaUsage {
    QuotaUsage {
        instances: instances.0,
        instances_limit: instances.1,
        ram: ram.0,
        ram_limit: ram.1,
        volumes: volumes.0,
        volumes_limit: volumes.1,
    }
}

#[test]
fn quota_filled_exactly_to_the_limit_is_accepted() {
    given(&[])
        .catalog(|c| c.quota = quota((9, 10), (2048, 4096), (35, 40)))
        .when(create(|_| {}))
        .then(&[created_now(|_| {})]);
}

#[test]
fn instances_quota_exceeded_is_over_limit() {
    let err = given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (0, 40)))
        .when(create(|_| {}))
        .then_err(DomainError::QuotaExceeded(vec!["instances".into()]));
    assert_eq!(
        err.to_string(),
        "Quota exceeded for resources: ['instances']."
    );
    assert_eq!(err.fault(), Fault::OverLimit);
}

#[test]
fn several_quotas_exceeded_are_listed_sorted() {
    let err = given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (38, 40)))
        .when(create(|_| {}))
        .then_err(DomainError::QuotaExceeded(vec![
            "instances".into(),
            "volumes".into(),
        ]));
    assert_eq!(
        err.to_string(),
        "Quota exceeded for resources: ['instances', 'volumes']."
    );
}

#[test]
fn all_three_quotas_exceeded_are_listed_sorted() {
    given(&[])
        .catalog(|c| c.quota = quota((10, 10), (4000, 4096), (40, 40)))
        .when(create(|_| {}))
        .then_err(DomainError::QuotaExceeded(vec![
            "instances".into(),
            "ram".into(),
            "volumes".into(),
        ]));
}

#[test]
fn unlimited_quotas_never_fail() {
    given(&[])
        .catalog(|c| c.quota = quota((1000, -1), (1 << 40, -1), (1 << 30, -1)))
        .when(create(|_| {}))
        .then(&[created_now(|_| {})]);
}

#[test]
fn datastore_without_volumes_charges_no_volume_quota() {
    given(&[])
        .catalog(|c| c.quota = quota((0, 10), (0, -1), (40, 40)))
        .when(create(|c| {
            c.datastore = Some(ds(Some("redis"), None, None));
            c.volume = None;
        }))
        .then(&[created_now(|e| {
            e.datastore = version_ref(V_REDIS_7);
            e.volume = None;
        })]);
}

// ---- configuration at create (§8.3 step 15, §8.6) --------------------------------------

#[test]
fn matching_configuration_group_is_recorded() {
    given(&[])
        .when(create(|c| c.configuration = Some(CFG_MYSQL80.to_string())))
        .then(&[created_now(|e| e.configuration_id = Some(CFG_MYSQL80))]);
}

#[test]
fn empty_configuration_means_none() {
    given(&[])
        .when(create(|c| c.configuration = Some(String::new())))
        .then(&[created_now(|_| {})]);
}

#[test]
fn unknown_configuration_group_create_is_not_found() {
    let missing = Uuid::from_u128(0xcfff).to_string();
    let err = given(&[])
        .when(create(|c| c.configuration = Some(missing.clone())))
        .then_err(DomainError::CreateConfigurationNotFound(missing.clone()));
    assert_eq!(
        err.to_string(),
        format!("Configuration group with ID {missing} could not be found.")
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn malformed_configuration_id_create_is_not_found() {
    given(&[])
        .when(create(|c| c.configuration = Some("not-a-uuid".into())))
        .then_err(DomainError::CreateConfigurationNotFound(
            "not-a-uuid".into(),
        ));
}

#[test]
fn other_projects_configuration_group_create_is_not_found() {
    given(&[])
        .when(create(|c| {
            c.configuration = Some(CFG_OTHER_PROJECT.to_string())
        }))
        .then_err(DomainError::CreateConfigurationNotFound(
            CFG_OTHER_PROJECT.to_string(),
        ));
}

#[test]
fn configuration_group_of_another_version_create_is_refused() {
    let err = given(&[])
        .when(create(|c| c.configuration = Some(CFG_PG13.to_string())))
        .then_err(DomainError::ConfigurationDatastoreMismatch {
            group: V_PG_13,
            instance: V_MYSQL_80,
        });
    assert_eq!(
        err.to_string(),
        format!(
            "Datastore Version on Configuration {V_PG_13} does not match the Datastore \
             Version on the instance {V_MYSQL_80}."
        )
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

// ---- replicas (§8.2, §8.7) -------------------------------------------------------------

#[test]
fn replica_create_copies_flavor_volume_and_datastore_from_the_primary() {
    given(&[])
        .when(create_replica(PRIMARY, |_| {}))
        .then(&[created_now(|e| {
            e.replica_of = Some(PRIMARY);
            e.flavor = FlavorRef {
                id: "8".into(),
                ram: 4096,
            };
            // The primary's volume as provisioning recorded it, type included.
            e.volume = Some(VolumeSpec {
                size: 3,
                volume_type: Some("ssd".into()),
            });
            e.datastore = version_ref(V_MYSQL_80);
        })]);
}

#[test]
fn replica_of_a_primary_on_an_inactive_version_is_accepted() {
    let events = given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).active = false)
        .when(create_replica(PRIMARY, |_| {}))
        .events();
    assert_eq!(events.len(), 1);
}

#[test]
fn replica_count_above_one_decides_one_create_per_command() {
    let events = given(&[])
        .when(create_replica(PRIMARY, |c| c.replica_count = Some(3)))
        .events();
    assert_eq!(events.len(), 1);
}

#[test]
fn replica_create_may_name_a_network_without_ip() {
    let n = nic(Some("net-1"), Some("subnet-1"), None);
    let events = given(&[])
        .when(create_replica(PRIMARY, |c| c.nics = vec![n.clone()]))
        .events();
    assert_eq!(events.len(), 1);
}

#[test]
fn empty_datastore_object_on_replica_is_not_a_datastore() {
    let events = given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.datastore = Some(DatastoreRequest::default())
        }))
        .events();
    assert_eq!(events.len(), 1);
}

#[test]
fn replica_with_flavor_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| c.flavor_ref = Some("7".into())))
        .then_err(DomainError::ReplicaWithFlavor);
    assert_eq!(
        err.to_string(),
        "Cannot specify flavor when creating replicas."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn replica_with_datastore_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.datastore = Some(ds(Some("mysql"), None, None))
        }))
        .then_err(DomainError::ReplicaWithDatastore);
    assert_eq!(
        err.to_string(),
        "Cannot specify datastore when creating replicas."
    );
}

#[test]
fn replica_with_volume_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| c.volume = volume(5, None)))
        .then_err(DomainError::ReplicaWithVolume);
    assert_eq!(
        err.to_string(),
        "Cannot specify volume when creating replicas."
    );
}

#[test]
fn replica_with_locality_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.locality = Some("affinity".into())
        }))
        .then_err(DomainError::ReplicaWithLocality);
    assert_eq!(
        err.to_string(),
        "Cannot specify locality when creating replicas."
    );
}

#[test]
fn replica_count_without_replica_of_is_refused() {
    let err = given(&[])
        .when(create(|c| c.replica_count = Some(2)))
        .then_err(DomainError::ReplicaCountWithoutReplicaOf(2));
    assert_eq!(
        err.to_string(),
        "Replica count only valid when creating replicas. Cannot create 2 instances."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn unknown_primary_replica_create_is_not_found() {
    let err = given(&[])
        .when(create_replica(NOWHERE, |_| {}))
        .then_err(DomainError::ResourceNotFound(NOWHERE.to_string()));
    assert_eq!(
        err.to_string(),
        format!("Resource {NOWHERE} cannot be found.")
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn other_projects_primary_replica_create_is_not_found() {
    given(&[])
        .when(create_replica(PRIMARY_OTHER_PROJECT, |_| {}))
        .then_err(DomainError::ResourceNotFound(
            PRIMARY_OTHER_PROJECT.to_string(),
        ));
}

#[test]
fn admin_may_replicate_another_projects_primary() {
    let events = given(&[])
        .caller(admin())
        .when(create_replica(PRIMARY_OTHER_PROJECT, |_| {}))
        .events();
    assert_eq!(events.len(), 1);
}

#[test]
fn deleted_primary_replica_create_is_not_found() {
    given(&[])
        .when(create_replica(PRIMARY_DELETED, |_| {}))
        .then_err(DomainError::ResourceNotFound(PRIMARY_DELETED.to_string()));
}

#[test]
fn replica_of_a_replica_is_unauthorized() {
    let err = given(&[])
        .when(create_replica(PRIMARY_REPLICA, |_| {}))
        .then_err(DomainError::ReplicaOfReplica(PRIMARY_REPLICA));
    assert_eq!(
        err.to_string(),
        format!("Cannot create a replica of a replica {PRIMARY_REPLICA}")
    );
    assert_eq!(err.fault(), Fault::Unauthorized);
}

#[test]
fn replica_with_databases_or_users_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.databases = vec![db("orders")]
        }))
        .then_err(DomainError::ReplicaWithUsersOrDatabases);
    assert_eq!(
        err.to_string(),
        "Cannot create a replica with users or databases."
    );
    given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.users = vec![user("app", None, &[])]
        }))
        .then_err(DomainError::ReplicaWithUsersOrDatabases);
}

#[test]
fn replica_nic_with_ip_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.nics = vec![nic(Some("net-1"), Some("subnet-1"), Some("10.0.0.5"))]
        }))
        .then_err(DomainError::ReplicaNicWithIp);
    assert_eq!(
        err.to_string(),
        "Cannot specify IP address when creating replicas."
    );
}

#[test]
fn replica_of_datastore_without_replication_is_refused() {
    let err = given(&[])
        .when(create_replica(PRIMARY_REDIS, |_| {}))
        .then_err(DomainError::ReplicationNotSupported("redis".into()));
    assert_eq!(
        err.to_string(),
        "Replication is not supported for the 'redis' datastore."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn replica_of_a_busy_primary_is_unprocessable() {
    let err = given(&[])
        .when(create_replica(PRIMARY_UPGRADING, |_| {}))
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY_UPGRADING,
            kind: "task",
            value: "UPGRADING".into(),
        });
    assert_eq!(
        err.to_string(),
        format!(
            "Instance {PRIMARY_UPGRADING} is not currently available for an action to be \
             performed (task status was UPGRADING)."
        )
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn replica_of_a_primary_without_server_is_unprocessable() {
    // No compute server: the compute status reads SHUTDOWN (lifecycle §1).
    given(&[])
        .when(create_replica(PRIMARY_BUILDING, |_| {}))
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY_BUILDING,
            kind: "instance",
            value: "SHUTDOWN".into(),
        });
}

#[test]
fn replica_of_a_primary_whose_guest_cannot_act_is_unprocessable() {
    // Admin reset-status leaves service UNKNOWN: the message shows the derived status.
    given(&[])
        .catalog(|c| {
            let p = c
                .instances
                .iter_mut()
                .find(|i| i.id == Some(PRIMARY))
                .unwrap();
            p.service = ServiceStatus::Unknown;
        })
        .when(create_replica(PRIMARY, |_| {}))
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY,
            kind: "instance",
            value: "ACTIVE".into(),
        });
}

#[test]
fn replica_of_a_primary_whose_server_is_in_error_is_unprocessable() {
    given(&[])
        .catalog(|c| {
            let p = c
                .instances
                .iter_mut()
                .find(|i| i.id == Some(PRIMARY))
                .unwrap();
            p.compute = Some(ComputeStatus::Error);
        })
        .when(create_replica(PRIMARY, |_| {}))
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY,
            kind: "instance",
            value: "ERROR".into(),
        });
}

#[test]
fn replica_is_charged_to_the_quota() {
    given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (0, 40)))
        .when(create_replica(PRIMARY, |_| {}))
        .then_err(DomainError::QuotaExceeded(vec!["instances".into()]));
}

// ---- order of checks (§8.3: the first failure wins) ------------------------------------

#[test]
fn existing_stream_wins_over_every_other_check() {
    given(&[created()])
        .when(create(|c| c.replica_count = Some(3)))
        .then_err(DomainError::InstanceAlreadyExists(INSTANCE));
}

#[test]
fn replica_flavor_wins_over_missing_primary() {
    given(&[])
        .when(create_replica(NOWHERE, |c| c.flavor_ref = Some("7".into())))
        .then_err(DomainError::ReplicaWithFlavor);
}

#[test]
fn replica_flavor_wins_over_replica_datastore_volume_and_locality() {
    given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.flavor_ref = Some("7".into());
            c.datastore = Some(ds(Some("mysql"), None, None));
            c.volume = volume(5, None);
            c.locality = Some("affinity".into());
        }))
        .then_err(DomainError::ReplicaWithFlavor);
    given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.datastore = Some(ds(Some("mysql"), None, None));
            c.volume = volume(5, None);
        }))
        .then_err(DomainError::ReplicaWithDatastore);
    given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.volume = volume(5, None);
            c.locality = Some("affinity".into());
        }))
        .then_err(DomainError::ReplicaWithVolume);
}

#[test]
fn missing_primary_wins_over_users() {
    given(&[])
        .when(create_replica(NOWHERE, |c| {
            c.users = vec![user("root", None, &[])]
        }))
        .then_err(DomainError::ResourceNotFound(NOWHERE.to_string()));
}

#[test]
fn replica_of_replica_wins_over_users_and_replication() {
    given(&[])
        .when(create_replica(PRIMARY_REPLICA, |c| {
            c.databases = vec![db("orders")]
        }))
        .then_err(DomainError::ReplicaOfReplica(PRIMARY_REPLICA));
}

#[test]
fn replication_support_wins_over_the_primary_gate() {
    given(&[])
        .catalog(|c| {
            let p = c
                .instances
                .iter_mut()
                .find(|i| i.id == Some(PRIMARY_REDIS))
                .unwrap();
            p.compute = Some(ComputeStatus::Error);
        })
        .when(create_replica(PRIMARY_REDIS, |_| {}))
        .then_err(DomainError::ReplicationNotSupported("redis".into()));
}

#[test]
fn replica_users_win_over_replica_nic_ip() {
    given(&[])
        .when(create_replica(PRIMARY, |c| {
            c.users = vec![user("app", None, &[])];
            c.nics = vec![nic(Some("n"), Some("s"), Some("10.0.0.5"))];
        }))
        .then_err(DomainError::ReplicaWithUsersOrDatabases);
}

#[test]
fn datastore_resolution_wins_over_databases() {
    given(&[])
        .when(create(|c| {
            c.datastore = Some(ds(Some("foo"), None, None));
            c.databases = vec![db("mysql")];
        }))
        .then_err(DomainError::DatastoreNotFound("foo".into()));
}

#[test]
fn databases_win_over_nics() {
    given(&[])
        .when(create(|c| {
            c.databases = vec![db("a"), db("a")];
            c.nics = vec![nic(None, None, None)];
        }))
        .then_err(DomainError::DuplicateDatabases);
}

#[test]
fn nics_win_over_locality() {
    given(&[])
        .when(create(|c| {
            c.nics = vec![nic(None, None, None)];
            c.locality = Some("nearby".into());
        }))
        .then_err(DomainError::NicWithoutNetwork);
}

#[test]
fn locality_wins_over_flavor() {
    given(&[])
        .when(create(|c| {
            c.locality = Some("nearby".into());
            c.flavor_ref = Some("99".into());
        }))
        .then_err(DomainError::InvalidLocality("nearby".into()));
}

#[test]
fn flavor_wins_over_volume() {
    given(&[])
        .when(create(|c| {
            c.flavor_ref = Some("99".into());
            c.volume = volume(50, None);
        }))
        .then_err(DomainError::FlavorNotFound("99".into()));
}

#[test]
fn volume_type_wins_over_volume_size() {
    given(&[])
        .catalog(|c| c.version_mut(V_MYSQL_80).allowed_volume_types = Some(vec!["ssd".into()]))
        .when(create(|c| c.volume = volume(50, Some("hdd"))))
        .then_err(DomainError::VolumeTypeInvalid {
            volume_type: "hdd".into(),
            version_id: V_MYSQL_80,
        });
}

#[test]
fn volume_wins_over_backup() {
    given(&[])
        .when(create(|c| {
            c.volume = volume(50, None);
            c.restore_backup_id = Some(NOWHERE);
        }))
        .then_err(DomainError::VolumeTooLarge { max: 10, size: 50 });
}

#[test]
fn backup_wins_over_quota() {
    given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (0, 40)))
        .when(create(|c| c.restore_backup_id = Some(BK_RUNNING)))
        .then_err(DomainError::BackupNotCompleted {
            id: BK_RUNNING,
            state: "SAVING".into(),
        });
}

#[test]
fn primary_gate_wins_over_quota() {
    given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (0, 40)))
        .when(create_replica(PRIMARY_UPGRADING, |_| {}))
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY_UPGRADING,
            kind: "task",
            value: "UPGRADING".into(),
        });
}

#[test]
fn quota_wins_over_configuration_group() {
    given(&[])
        .catalog(|c| c.quota = quota((10, 10), (0, -1), (0, 40)))
        .when(create(|c| c.configuration = Some("missing".into())))
        .then_err(DomainError::QuotaExceeded(vec!["instances".into()]));
}

#[test]
fn a_replica_batch_is_charged_as_a_whole_by_its_first_create() {
    // Two slots left: a batch of three replicas is refused up front...
    given(&[])
        .catalog(|c| c.quota = quota((8, 10), (0, -1), (0, -1)))
        .when(create_replica(PRIMARY, |c| c.replica_count = Some(3)))
        .then_err(DomainError::QuotaExceeded(vec!["instances".into()]));
    // ...and a batch of two fits.
    let events = given(&[])
        .catalog(|c| c.quota = quota((8, 10), (0, -1), (0, -1)))
        .when(create_replica(PRIMARY, |c| c.replica_count = Some(2)))
        .events();
    assert_eq!(events.len(), 1);
}
