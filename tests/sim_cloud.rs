//! The simulated cloud on its own (no server): idempotency across reopen, capacity,
//! deterministic fault injection, status progressions, listings and concurrency.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use troved::saga::ports::{
    ComputeProvider, GuestAgent, IdempotencyKey, PrepareRequest, PrepareUser, ProviderError,
    ServerSpec, VolumeProvider, VolumeSpec,
};
use troved::sim::{self, FaultSpec, SimCloud, SimConfig, SimError, ZoneCapacity};
use uuid::Uuid;

fn open(dir: &Path, config: SimConfig) -> SimCloud {
    SimCloud::open_in(dir, config).expect("open the simulated cloud")
}

fn with_faults(seed: u64, faults: &[&str]) -> SimConfig {
    SimConfig {
        seed,
        faults: faults
            .iter()
            .map(|f| FaultSpec::parse(f).expect("fault spec"))
            .collect(),
        ..SimConfig::instant()
    }
}

fn key(instance: Uuid, step: &str) -> IdempotencyKey {
    IdempotencyKey::new(instance, step)
}

fn volume_spec(instance: Uuid, name: &str, size: u64) -> VolumeSpec {
    VolumeSpec {
        instance_id: instance,
        size,
        volume_type: None,
        availability_zone: None,
        instance_name: name.into(),
    }
}

fn server_spec(instance: Uuid, name: &str, vcpus: u32, ram: u32) -> ServerSpec {
    ServerSpec {
        instance_id: instance,
        instance_name: name.into(),
        flavor_id: "2".into(),
        vcpus,
        ram,
        availability_zone: None,
        network_id: None,
        public: false,
        volume_id: None,
    }
}

fn prepare_request(instance: Uuid, name: &str, server_id: &str) -> PrepareRequest {
    PrepareRequest {
        instance_id: instance,
        instance_name: name.into(),
        server_id: server_id.into(),
        datastore_manager: "mysql".into(),
        datastore_version: "5.7".into(),
        databases: vec!["shop".into()],
        users: vec![PrepareUser {
            name: "alice".into(),
            host: "%".into(),
            password: "s3cret-Passw0rd".into(),
            databases: vec!["shop".into()],
        }],
        configuration: Some(serde_json::json!({"max_connections": 100})),
        replica_of: None,
        allowed_cidrs: vec![],
        restore: None,
    }
}

fn is_permanent(e: &ProviderError, needle: &str) -> bool {
    matches!(e, ProviderError::Permanent(m) if m.contains(needle))
}

#[tokio::test]
async fn create_with_the_same_key_returns_the_same_resources_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    let (volume, server) = {
        let cloud = open(dir.path(), SimConfig::instant());
        let volume = cloud
            .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 10))
            .await
            .unwrap();
        let server = cloud
            .create_server(&key(id, "server"), &server_spec(id, "db1", 2, 4096))
            .await
            .unwrap();
        (volume, server)
    };
    let cloud = open(dir.path(), SimConfig::instant());
    let again = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 10))
        .await
        .unwrap();
    assert_eq!(again.id, volume.id);
    let again = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 2, 4096))
        .await
        .unwrap();
    assert_eq!(again.id, server.id);
    assert_eq!(again.addresses, server.addresses);
    let inventory = cloud.list().await.unwrap();
    assert_eq!(inventory.servers.len(), 1);
    assert_eq!(inventory.volumes.len(), 1);
}

#[tokio::test]
async fn create_with_the_key_of_a_deleted_resource_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 1))
        .await
        .unwrap();
    cloud.delete_volume(&volume.id).await.unwrap();
    let err = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 1))
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "has been deleted"), "{err:?}");
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 512))
        .await
        .unwrap();
    cloud.delete_server(&server.id).await.unwrap();
    let err = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 512))
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "never recreated"), "{err:?}");
    assert_eq!(cloud.list().await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_key_used_for_a_volume_cannot_create_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let k = key(id, "volume");
    cloud
        .create_volume(&k, &volume_spec(id, "db1", 1))
        .await
        .unwrap();
    let err = cloud
        .create_server(&k, &server_spec(id, "db1", 1, 512))
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "already used for a volume"), "{err:?}");
}

fn small_zone() -> SimConfig {
    SimConfig {
        zones: BTreeMap::from([(
            "nova".to_string(),
            ZoneCapacity {
                vcpus: 4,
                ram_mb: 8192,
                volume_gb: 15,
            },
        )]),
        ..SimConfig::instant()
    }
}

#[tokio::test]
async fn exhausted_compute_capacity_fails_permanently_and_deleting_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), small_zone());
    let mut servers = Vec::new();
    for i in 0..2 {
        let id = Uuid::new_v4();
        let s = cloud
            .create_server(
                &key(id, "server"),
                &server_spec(id, &format!("db{i}"), 2, 4096),
            )
            .await
            .unwrap();
        servers.push(s);
    }
    let id = Uuid::new_v4();
    let err = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db3", 2, 4096))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Permanent(
            "Insufficient capacity in availability zone 'nova' for 2 vCPU / 4096 MB RAM \
             (free: 0 vCPU / 0 MB RAM)."
                .into()
        )
    );
    let zones = cloud.zones().await.unwrap();
    assert_eq!(zones[0].used.vcpus, 4);
    cloud.delete_server(&servers[0].id).await.unwrap();
    cloud
        .create_server(&key(id, "server"), &server_spec(id, "db3", 2, 4096))
        .await
        .expect("capacity was released by the delete");
}

/// The usage a capacity check reads is kept incrementally (one row per zone) and
/// recomputed at open: after creates, deletes and a reopen it still equals the sums over
/// the live resources, and the checks still refuse and admit exactly as before.
#[tokio::test]
async fn zone_usage_survives_deletes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    {
        let cloud = open(dir.path(), small_zone());
        for i in 0..2 {
            let id = Uuid::new_v4();
            servers.push(
                cloud
                    .create_server(
                        &key(id, "server"),
                        &server_spec(id, &format!("s{i}"), 1, 1024),
                    )
                    .await
                    .unwrap(),
            );
        }
        let v = Uuid::new_v4();
        cloud
            .create_volume(&key(v, "volume"), &volume_spec(v, "v", 10))
            .await
            .unwrap();
        cloud.delete_server(&servers[0].id).await.unwrap();
        let zones = cloud.zones().await.unwrap();
        assert_eq!(
            (
                zones[0].used.vcpus,
                zones[0].used.ram_mb,
                zones[0].used.volume_gb
            ),
            (1, 1024, 10)
        );
    }
    let cloud = open(dir.path(), small_zone());
    let zones = cloud.zones().await.unwrap();
    assert_eq!(
        (
            zones[0].used.vcpus,
            zones[0].used.ram_mb,
            zones[0].used.volume_gb
        ),
        (1, 1024, 10)
    );
    // 3 vCPU left: a 3-vCPU server fits, then nothing more does.
    let id = Uuid::new_v4();
    cloud
        .create_server(&key(id, "server"), &server_spec(id, "big", 3, 1024))
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let err = cloud
        .create_server(&key(id, "server"), &server_spec(id, "more", 1, 1024))
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "free: 0 vCPU"), "{err:?}");
    let v = Uuid::new_v4();
    let err = cloud
        .create_volume(&key(v, "volume"), &volume_spec(v, "w", 6))
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "free: 5 GB"), "{err:?}");
}

#[tokio::test]
async fn exhausted_volume_capacity_fails_permanently_and_deleting_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), small_zone());
    let a = Uuid::new_v4();
    let first = cloud
        .create_volume(&key(a, "volume"), &volume_spec(a, "a", 10))
        .await
        .unwrap();
    let b = Uuid::new_v4();
    let err = cloud
        .create_volume(&key(b, "volume"), &volume_spec(b, "b", 10))
        .await
        .unwrap_err();
    assert!(
        is_permanent(
            &err,
            "Insufficient capacity in availability zone 'nova' for a 10 GB volume (free: 5 GB"
        ),
        "{err:?}"
    );
    cloud.delete_volume(&first.id).await.unwrap();
    cloud
        .create_volume(&key(b, "volume"), &volume_spec(b, "b", 10))
        .await
        .expect("capacity was released by the delete");
}

#[tokio::test]
async fn an_unknown_availability_zone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let mut spec = volume_spec(id, "db1", 1);
    spec.availability_zone = Some("mars".into());
    let err = cloud
        .create_volume(&key(id, "volume"), &spec)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Permanent("Availability zone 'mars' is not available.".into())
    );
    let mut spec = server_spec(id, "db1", 1, 512);
    spec.availability_zone = Some("nova".into());
    let server = cloud
        .create_server(&key(id, "server"), &spec)
        .await
        .unwrap();
    assert_eq!(server.availability_zone, "nova");
}

#[tokio::test]
async fn opening_with_a_default_zone_that_is_not_configured_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        default_zone: "az1".into(),
        ..SimConfig::instant()
    };
    let err = SimCloud::open_in(dir.path(), config)
        .err()
        .expect("a config error");
    assert!(matches!(err, SimError::Config(_)), "{err}");
}

#[tokio::test]
async fn a_name_pattern_fault_fails_only_matching_instances() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(1, &["create_volume:name=fail-vol-*:permanent"]),
    );
    let bad = Uuid::new_v4();
    for _ in 0..3 {
        let err = cloud
            .create_volume(&key(bad, "volume"), &volume_spec(bad, "fail-vol-1", 1))
            .await
            .unwrap_err();
        assert!(
            is_permanent(&err, "Injected fault: create_volume"),
            "{err:?}"
        );
    }
    let good = Uuid::new_v4();
    cloud
        .create_volume(&key(good, "volume"), &volume_spec(good, "ok-vol-1", 1))
        .await
        .unwrap();
    assert_eq!(cloud.list().await.unwrap().volumes.len(), 1);
}

/// Which of 40 instances' first create_server attempt fails under `seed`.
async fn failing_instances(seed: u64) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), with_faults(seed, &["create_server:rate=0.3"]));
    let mut failed = Vec::new();
    for i in 0..40u128 {
        let id = Uuid::from_u128(i + 1);
        let result = cloud
            .create_server(&key(id, "server"), &server_spec(id, "db", 1, 256))
            .await;
        if let Err(e) = result {
            assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
            failed.push(i as usize);
        }
    }
    failed
}

#[tokio::test]
async fn a_rate_fault_fails_the_same_calls_for_the_same_seed() {
    let first = failing_instances(7).await;
    assert_eq!(first, failing_instances(7).await);
    assert_ne!(first, failing_instances(8).await);
    assert!(
        (3..25).contains(&first.len()),
        "{} of 40 failed",
        first.len()
    );
}

#[tokio::test]
async fn transient_faults_clear_after_a_few_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(3, &["create_server:name=flaky-*:times=3"]),
    );
    let id = Uuid::new_v4();
    let spec = server_spec(id, "flaky-1", 1, 256);
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(cloud.create_server(&key(id, "server"), &spec).await.is_ok());
    }
    assert_eq!(outcomes, [false, false, false, true, true]);
    // A high rate with the default `times` still clears by the third attempt.
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), with_faults(3, &["delete_server:rate=0.9"]));
    let server = cloud
        .create_server(&key(id, "server"), &spec)
        .await
        .unwrap();
    let mut attempts = 0;
    while cloud.delete_server(&server.id).await.is_err() {
        attempts += 1;
        assert!(attempts <= 2, "still failing after {attempts} attempts");
    }
    assert!(cloud.list().await.unwrap().servers.is_empty());
}

#[tokio::test]
async fn a_lost_answer_still_creates_exactly_one_resource() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), with_faults(0, &["create_volume:lost:times=1"]));
    let id = Uuid::new_v4();
    let err = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Transient(m) if m.contains("lost")),
        "{err:?}"
    );
    let listed = cloud.list().await.unwrap().volumes;
    assert_eq!(listed.len(), 1, "the effect happened");
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 5))
        .await
        .unwrap();
    assert_eq!(volume.id, listed[0].id);
    assert_eq!(cloud.list().await.unwrap().volumes.len(), 1);
}

#[tokio::test]
async fn a_hanging_step_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(0, &["create_server:name=stuck-*:hang"]),
    );
    let id = Uuid::new_v4();
    let (k, spec) = (key(id, "server"), server_spec(id, "stuck-1", 1, 256));
    let call = cloud.create_server(&k, &spec);
    let outcome = tokio::time::timeout(Duration::from_millis(200), call).await;
    assert!(outcome.is_err(), "the call answered: {outcome:?}");
    assert!(cloud.list().await.unwrap().servers.is_empty());
}

#[tokio::test]
async fn servers_build_for_one_latency_period_then_become_active() {
    let dir = tempfile::tempdir().unwrap();
    let latency = Duration::from_millis(250);
    let cloud = open(
        dir.path(),
        SimConfig {
            latency,
            ..SimConfig::instant()
        },
    );
    let id = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    assert_eq!(server.status, "BUILD");
    assert_eq!(cloud.server(&server.id).await.unwrap().status, "BUILD");
    tokio::time::sleep(latency).await;
    assert_eq!(cloud.server(&server.id).await.unwrap().status, "ACTIVE");
}

#[tokio::test]
async fn with_zero_latency_a_server_is_active_at_the_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    assert_eq!(server.status, "BUILD");
    assert_eq!(cloud.server(&server.id).await.unwrap().status, "ACTIVE");
}

#[tokio::test]
async fn server_status_faults_report_error_or_stay_building() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(
            0,
            &[
                "server_status:name=broken-*:permanent",
                "server_status:name=slow-*:hang",
            ],
        ),
    );
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let broken = cloud
        .create_server(&key(a, "server"), &server_spec(a, "broken-1", 1, 256))
        .await
        .unwrap();
    let slow = cloud
        .create_server(&key(b, "server"), &server_spec(b, "slow-1", 1, 256))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(cloud.server(&broken.id).await.unwrap().status, "ERROR");
        assert_eq!(cloud.server(&slow.id).await.unwrap().status, "BUILD");
    }
}

#[tokio::test]
async fn addresses_are_private_on_the_network_and_public_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let mut spec = server_spec(id, "db1", 1, 256);
    spec.network_id = Some("net-1".into());
    spec.public = true;
    let server = cloud
        .create_server(&key(id, "server"), &spec)
        .await
        .unwrap();
    let kinds: Vec<(&str, Option<&str>)> = server
        .addresses
        .iter()
        .map(|a| (a.kind.as_str(), a.network.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("private", Some("net-1")),
            ("public", Some(sim::PUBLIC_NETWORK))
        ]
    );
    let private = cloud.set_public(&server.id, false).await.unwrap();
    assert_eq!(private.addresses.len(), 1);
    assert_eq!(private.addresses[0], server.addresses[0]);
    let public = cloud.set_public(&server.id, true).await.unwrap();
    assert_eq!(public.addresses.len(), 2);
    assert_eq!(cloud.set_public(&server.id, true).await.unwrap(), public);

    let other = Uuid::new_v4();
    let second = cloud
        .create_server(&key(other, "server"), &server_spec(other, "db2", 1, 256))
        .await
        .unwrap();
    assert_eq!(second.addresses.len(), 1);
    assert_eq!(
        second.addresses[0].network.as_deref(),
        Some(sim::DEFAULT_NETWORK)
    );
    assert_ne!(second.addresses[0].address, server.addresses[0].address);
}

#[tokio::test]
async fn guests_go_from_new_through_building_to_healthy_and_upgrading_back() {
    let dir = tempfile::tempdir().unwrap();
    let latency = Duration::from_millis(250);
    let cloud = open(
        dir.path(),
        SimConfig {
            latency,
            ..SimConfig::instant()
        },
    );
    let id = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "NEW");
    let req = prepare_request(id, "db1", &server.id);
    cloud.prepare(&key(id, "prepare"), &req).await.unwrap();
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "BUILDING");
    // The retry takes one latency period, after which the guest has settled.
    cloud
        .prepare(&key(id, "prepare"), &req)
        .await
        .expect("a retried prepare succeeds");
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "HEALTHY");
    cloud
        .upgrade(&key(id, "upgrade-1"), &server.id, "8.0")
        .await
        .unwrap();
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "UPGRADING");
    tokio::time::sleep(latency).await;
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "HEALTHY");
}

#[tokio::test]
async fn guest_status_faults_report_failed_or_never_become_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(
            0,
            &[
                "status:name=slow-*:hang",
                "guest_status:name=crash-*:permanent",
            ],
        ),
    );
    for (name, expected) in [
        ("slow-1", "BUILDING"),
        ("crash-1", "FAILED"),
        ("fine-1", "HEALTHY"),
    ] {
        let id = Uuid::new_v4();
        let server = cloud
            .create_server(&key(id, "server"), &server_spec(id, name, 1, 256))
            .await
            .unwrap();
        cloud
            .prepare(&key(id, "prepare"), &prepare_request(id, name, &server.id))
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                cloud.status(&server.id).await.unwrap().status,
                expected,
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn prepare_faults_by_name_are_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(
        dir.path(),
        with_faults(0, &["prepare:name=crash-*:permanent"]),
    );
    let id = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "crash-1", 1, 256))
        .await
        .unwrap();
    let err = cloud
        .prepare(
            &key(id, "prepare"),
            &prepare_request(id, "crash-1", &server.id),
        )
        .await
        .unwrap_err();
    assert!(
        is_permanent(&err, "prepare failed permanently for 'crash-1'"),
        "{err:?}"
    );
    assert_eq!(cloud.status(&server.id).await.unwrap().status, "NEW");
}

#[tokio::test]
async fn guest_operations_are_recorded_once_per_key_and_passwords_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let primary = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    let mut req = prepare_request(id, "db1", &server.id);
    req.replica_of = Some(primary);
    cloud.prepare(&key(id, "prepare"), &req).await.unwrap();
    let values = serde_json::json!({"max_connections": 200});
    for _ in 0..2 {
        cloud
            .apply_configuration(&key(id, "configuration-2"), &server.id, Some(&values))
            .await
            .unwrap();
        cloud
            .upgrade(&key(id, "upgrade-1"), &server.id, "8.0")
            .await
            .unwrap();
        cloud
            .detach_replica(&key(id, "detach"), &server.id)
            .await
            .unwrap();
    }
    let inventory = cloud.list().await.unwrap();
    let guest = inventory.servers[0]
        .guest
        .clone()
        .expect("a prepared guest");
    assert_eq!(guest.datastore_version, "8.0");
    assert_eq!(guest.users, ["alice"]);
    assert_eq!(guest.databases, ["shop"]);
    assert_eq!(guest.configuration, Some(values));
    assert_eq!(guest.replica_of, None);
    let kinds: Vec<&str> = guest.operations.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["configuration", "upgrade", "detach_replica"]);
    assert_eq!(
        guest.operations[1].detail,
        serde_json::json!({"from": "5.7", "to": "8.0"})
    );
    assert_eq!(
        guest.operations[2].detail,
        serde_json::json!({"replica_of": primary})
    );
    drop(cloud);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("s3cret-Passw0rd"),
            "a password reached the disk"
        );
    }
}

#[tokio::test]
async fn guest_calls_on_unprepared_or_missing_servers_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    let err = cloud
        .upgrade(&key(id, "upgrade"), &server.id, "8.0")
        .await
        .unwrap_err();
    assert!(is_permanent(&err, "has not been prepared"), "{err:?}");
    let err = cloud.status("no-such-server").await.unwrap_err();
    assert_eq!(err, ProviderError::NotFound("server no-such-server".into()));
    let err = cloud
        .prepare(
            &key(id, "prepare"),
            &prepare_request(id, "db1", "no-such-server"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn deletes_are_idempotent_and_attached_volumes_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 2))
        .await
        .unwrap();
    assert_eq!(volume.status, "available");
    let mut spec = server_spec(id, "db1", 1, 256);
    spec.volume_id = Some(volume.id.clone());
    let server = cloud
        .create_server(&key(id, "server"), &spec)
        .await
        .unwrap();
    cloud
        .attach_volume(&volume.id, &server.id)
        .await
        .expect("attaching to the same server again succeeds");
    let listed = cloud.list().await.unwrap();
    assert_eq!(listed.volumes[0].status, "in-use");
    assert_eq!(
        listed.volumes[0].attached_to.as_deref(),
        Some(server.id.as_str())
    );
    let err = cloud.delete_volume(&volume.id).await.unwrap_err();
    assert!(is_permanent(&err, "is attached to server"), "{err:?}");

    cloud.delete_server(&server.id).await.unwrap();
    cloud.delete_server(&server.id).await.unwrap();
    cloud.delete_server("never-existed").await.unwrap();
    assert!(matches!(
        cloud.server(&server.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(cloud.list().await.unwrap().volumes[0].status, "available");
    cloud.delete_volume(&volume.id).await.unwrap();
    cloud.delete_volume(&volume.id).await.unwrap();
    cloud.delete_volume("never-existed").await.unwrap();
    assert!(matches!(
        cloud.volume_usage(&volume.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(cloud.list().await.unwrap(), Default::default());
}

#[tokio::test]
async fn attach_and_detach_move_a_volume_between_available_and_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 2))
        .await
        .unwrap();
    let a = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 256))
        .await
        .unwrap();
    let other = Uuid::new_v4();
    let b = cloud
        .create_server(&key(other, "server"), &server_spec(other, "db2", 1, 256))
        .await
        .unwrap();
    cloud.attach_volume(&volume.id, &a.id).await.unwrap();
    let err = cloud.attach_volume(&volume.id, &b.id).await.unwrap_err();
    assert!(is_permanent(&err, "already attached"), "{err:?}");
    cloud.detach_volume(&volume.id).await.unwrap();
    cloud.detach_volume(&volume.id).await.unwrap();
    cloud.attach_volume(&volume.id, &b.id).await.unwrap();
    let err = cloud.attach_volume("nope", &b.id).await.unwrap_err();
    assert_eq!(err, ProviderError::NotFound("volume nope".into()));
}

#[tokio::test]
async fn volume_usage_is_small_deterministic_and_below_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 5))
        .await
        .unwrap();
    let usage = cloud.volume_usage(&volume.id).await.unwrap();
    assert_eq!(usage, cloud.volume_usage(&volume.id).await.unwrap());
    assert_eq!(usage.total_gb, 5.0);
    assert!((0.1..0.2).contains(&usage.used_gb), "{usage:?}");
}

#[tokio::test]
async fn list_json_shows_live_servers_and_volumes_while_the_cloud_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = open(dir.path(), SimConfig::instant());
    let id = Uuid::new_v4();
    let volume = cloud
        .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 3))
        .await
        .unwrap();
    let server = cloud
        .create_server(&key(id, "server"), &server_spec(id, "db1", 2, 2048))
        .await
        .unwrap();
    let gone = Uuid::new_v4();
    let deleted = cloud
        .create_volume(&key(gone, "volume"), &volume_spec(gone, "gone", 1))
        .await
        .unwrap();
    cloud.delete_volume(&deleted.id).await.unwrap();

    let text = sim::list_json(dir.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let servers = json["servers"].as_array().unwrap();
    let volumes = json["volumes"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(volumes.len(), 1);
    assert_eq!(servers[0]["id"], server.id.as_str());
    assert_eq!(servers[0]["instance_id"], id.to_string());
    assert_eq!(servers[0]["status"], "ACTIVE");
    assert_eq!(servers[0]["vcpus"], 2);
    assert_eq!(servers[0]["ram"], 2048);
    assert_eq!(servers[0]["flavor_id"], "2");
    assert_eq!(servers[0]["availability_zone"], "nova");
    assert_eq!(servers[0]["guest"], serde_json::Value::Null);
    assert_eq!(volumes[0]["id"], volume.id.as_str());
    assert_eq!(volumes[0]["instance_id"], id.to_string());
    assert_eq!(volumes[0]["status"], "available");
    assert_eq!(volumes[0]["size"], 3);
    assert_eq!(
        serde_json::to_value(cloud.list().await.unwrap()).unwrap(),
        json
    );
}

#[tokio::test]
async fn list_json_of_a_directory_without_a_cloud_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = sim::list_json(dir.path()).unwrap_err();
    assert!(matches!(err, SimError::Missing(_)), "{err}");
    assert!(
        !sim::db_path(dir.path()).exists(),
        "listing must not create the file"
    );
}

#[tokio::test]
async fn concurrent_creates_with_distinct_keys_make_distinct_resources() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Arc::new(open(dir.path(), SimConfig::instant()));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let cloud = Arc::clone(&cloud);
        tasks.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            let name = format!("db{i}");
            let volume = cloud
                .create_volume(&key(id, "volume"), &volume_spec(id, &name, 1))
                .await
                .unwrap();
            let server = cloud
                .create_server(&key(id, "server"), &server_spec(id, &name, 1, 512))
                .await
                .unwrap();
            (volume.id, server.id, server.addresses[0].address.clone())
        }));
    }
    let mut ids = HashSet::new();
    let mut addresses = HashSet::new();
    for task in tasks {
        let (volume, server, address) = task.await.unwrap();
        assert!(ids.insert(volume));
        assert!(ids.insert(server));
        assert!(addresses.insert(address));
    }
    let inventory = cloud.list().await.unwrap();
    assert_eq!(inventory.servers.len(), 64);
    assert_eq!(inventory.volumes.len(), 64);
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_exactly_one_resource() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Arc::new(open(dir.path(), SimConfig::instant()));
    let id = Uuid::new_v4();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let cloud = Arc::clone(&cloud);
        tasks.push(tokio::spawn(async move {
            let server = cloud
                .create_server(&key(id, "server"), &server_spec(id, "db1", 1, 512))
                .await
                .unwrap();
            let volume = cloud
                .create_volume(&key(id, "volume"), &volume_spec(id, "db1", 1))
                .await
                .unwrap();
            (server.id, volume.id)
        }));
    }
    let mut answers = HashSet::new();
    for task in tasks {
        answers.insert(task.await.unwrap());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let inventory = cloud.list().await.unwrap();
    assert_eq!(inventory.servers.len(), 1);
    assert_eq!(inventory.volumes.len(), 1);
    assert_eq!(cloud.zones().await.unwrap()[0].used.vcpus, 1);
}

#[test]
fn zone_capacities_parse_with_defaults_for_omitted_values() {
    let (name, cap) = ZoneCapacity::parse_zone("az1:vcpus=4:ram_mb=8192").unwrap();
    assert_eq!(name, "az1");
    assert_eq!(
        cap,
        ZoneCapacity {
            vcpus: 4,
            ram_mb: 8192,
            volume_gb: ZoneCapacity::default().volume_gb
        }
    );
    assert!(ZoneCapacity::parse_zone("vcpus=4").is_err());
    assert!(ZoneCapacity::parse_zone("az1:cpus=4").is_err());
    assert!(ZoneCapacity::parse_zone("az1:vcpus=many").is_err());
}
