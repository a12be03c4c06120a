//! The byte renderer (`bytes.rs`) against the value renderer: for generated instances,
//! requests and model states, the bytes must equal `serde_json::to_vec` of the value
//! views, which is what the HTTP layer answered before the byte renderer existed.

use aggregates::instance::{
    Address, ComputeStatus, DatastoreRef, Fault, FaultInfo, Instance, InstanceEvent, ServiceStatus,
    Task, VolumeSpec,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::bytes::{
    escape_into, write_instance, write_list_items, write_show, write_view, ItemKind, LinkPrefixes,
    Related, StoredAccess,
};
use super::{basic_view, detail_view, show_view, timestamp, Lookup, ModelLookup, ViewCtx};
use crate::testkit::{creation, ctx, sample_addresses, ts, Script};
use crate::InstanceModels;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }

    /// Text with the characters JSON escapes at every position and width.
    fn text(&mut self) -> String {
        const FIXED: &[&str] = &[
            "",
            "test",
            "load-12345",
            "with \"quotes\"",
            "back\\slash",
            "ctrl \u{1}\u{1f}\t\n\r\u{8}\u{c}\u{7f}",
            "ünïcødé 日本語 🙂",
            "/slashes/are/not/escaped",
            "0123456789abcdef\"",
        ];
        if self.chance(2) {
            return self.pick(FIXED).to_string();
        }
        const ALPHABET: &[char] = &[
            'a', 'b', 'Z', '0', '9', '-', '_', '.', ' ', '/', '"', '\\', '\u{0}', '\u{1f}',
            '\u{20}', '\u{7f}', '\u{80}', 'é', '語', '🙂', '\n', '\t',
        ];
        let len = self.below(40);
        (0..len)
            .map(|_| {
                if self.chance(6) {
                    self.pick(ALPHABET)
                } else {
                    'x'
                }
            })
            .collect()
    }

    fn maybe_text(&mut self) -> Option<String> {
        (!self.chance(3)).then(|| self.text())
    }

    fn maybe_port(&mut self) -> Option<u16> {
        (!self.chance(2)).then(|| self.below(65536) as u16)
    }

    fn time(&mut self) -> DateTime<Utc> {
        let base = ts("2024-02-29T23:59:59");
        match self.below(12) {
            0 => NaiveDate::from_ymd_opt(-44, 3, 15)
                .and_then(|d| d.and_hms_opt(12, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or(base),
            1 => NaiveDate::from_ymd_opt(12_345, 1, 2)
                .and_then(|d| d.and_hms_opt(3, 4, 5))
                .map(|t| t.and_utc())
                .unwrap_or(base),
            // A leap second: chrono shows `:60`.
            2 => NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
                .map(|t| t.and_utc())
                .unwrap_or(base),
            3 => NaiveDate::from_ymd_opt(0, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or(base),
            4 => NaiveDate::from_ymd_opt(9999, 12, 31)
                .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 999))
                .map(|t| t.and_utc())
                .unwrap_or(base),
            _ => {
                base + Duration::milliseconds((self.next() % 10_000_000_000) as i64 - 5_000_000_000)
            }
        }
    }

    fn float(&mut self) -> f64 {
        self.pick(&[
            0.0,
            -1.0,
            0.001,
            0.004,
            0.005,
            0.015,
            1.0 / 3.0,
            2.0 / 3.0,
            1e-10,
            0.1 + 0.2,
            5.0,
            10.0,
            123_456.789,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
        ]) * if self.chance(4) {
            (self.below(1000) as f64) / 7.0
        } else {
            1.0
        }
    }
}

const TASKS: &[Task] = &[
    Task::None,
    Task::Deleting,
    Task::Rebooting,
    Task::Resizing,
    Task::Building,
    Task::Migrating,
    Task::RestartRequired,
    Task::Promoting,
    Task::Ejecting,
    Task::Logging,
    Task::Detaching,
    Task::Updating,
    Task::BuildingErrorDns,
    Task::BuildingErrorServer,
    Task::BuildingErrorVolume,
    Task::BuildingErrorSecGroup,
    Task::BuildingErrorReplica,
    Task::PromotionError,
    Task::EjectionError,
    Task::GrowingError,
    Task::ShrinkingError,
    Task::Upgrading,
    Task::UpgradingError,
    Task::BuildingErrorTimeoutGa,
    Task::BuildingErrorPort,
    Task::UpdatingErrorAccess,
];

const COMPUTE: &[ComputeStatus] = &[
    ComputeStatus::Build,
    ComputeStatus::Active,
    ComputeStatus::Error,
    ComputeStatus::Reboot,
    ComputeStatus::HardReboot,
    ComputeStatus::Resize,
    ComputeStatus::VerifyResize,
    ComputeStatus::Migrating,
    ComputeStatus::Shutoff,
];

const SERVICE: &[ServiceStatus] = &[
    ServiceStatus::Running,
    ServiceStatus::Blocked,
    ServiceStatus::Paused,
    ServiceStatus::Shutdown,
    ServiceStatus::Deleted,
    ServiceStatus::Crashed,
    ServiceStatus::Failed,
    ServiceStatus::Building,
    ServiceStatus::Promoting,
    ServiceStatus::Ejecting,
    ServiceStatus::Logging,
    ServiceStatus::Unknown,
    ServiceStatus::New,
    ServiceStatus::FailedTimeoutGuestagent,
    ServiceStatus::InstanceReady,
    ServiceStatus::RestartRequired,
    ServiceStatus::Healthy,
    ServiceStatus::Upgrading,
    ServiceStatus::Restarting,
];

/// Stored `access` values: none, empty, the usual objects, non-objects, and objects
/// with numbers that parse as floats (the text path re-serializes those).
fn access_values() -> Vec<Option<Value>> {
    vec![
        None,
        Some(json!({})),
        Some(json!({"is_public": false})),
        Some(json!({"is_public": true, "allowed_cidrs": ["10.0.0.0/8", "1.2.3.4/32"]})),
        Some(json!([])),
        Some(json!("text")),
        Some(json!(3)),
        Some(json!({"n": 12_345_678_901_234_567_890u64, "m": -5, "s": "1.5e3 \"x\""})),
        Some(json!({"f": 0.1, "g": 1e300, "h": [1, 2.5e-7, -0.0], "i": 0.300_000_000_000_000_04})),
        // `serde_json`'s default float parsing reads these one unit in the last place
        // off, so the re-serialized text differs from the stored one.
        Some(json!({"is_public": true, "x": 8.248_338_285_090_229e55})),
        Some(json!({"y": [-8.557_762_434_438_69e181, 1.008_639_816_124_825_7e149]})),
        Some(json!({"e": "e.E", "nested": {"deep": [true, null, "\u{1}"]}})),
    ]
}

fn address(r: &mut Rng) -> Address {
    Address {
        address: r.pick(&["10.0.0.1", "172.24.5.114", "fe80::1"]).to_string(),
        kind: r.pick(&["private", "public", "other"]).to_string(),
        network: r.maybe_text(),
        port: r.maybe_port(),
    }
}

fn instance(r: &mut Rng) -> Instance {
    Instance {
        id: if r.chance(20) { None } else { Some(r.uuid()) },
        project_id: r.text(),
        user_id: r.text(),
        name: r.text(),
        flavor: aggregates::instance::FlavorRef {
            id: r.text(),
            ram: 2048,
        },
        volume: (!r.chance(4)).then(|| VolumeSpec {
            size: r.pick(&[0, 1, 10, u64::MAX]),
            volume_type: None,
        }),
        volume_id: r.maybe_text(),
        server_id: r.maybe_text(),
        volume_usage: (!r.chance(3)).then(|| (r.float(), r.float())),
        datastore: (!r.chance(5)).then(|| DatastoreRef {
            datastore_id: Uuid::nil(),
            datastore_name: r.text(),
            version_id: Uuid::nil(),
            version_name: r.text(),
            version_number: r.text(),
            manager: "mysql".into(),
        }),
        task: r.pick(TASKS),
        compute: (!r.chance(4)).then(|| r.pick(COMPUTE)),
        service: r.pick(SERVICE),
        service_updated: r.time(),
        created: r.time(),
        updated: r.time(),
        fault: r.chance(3).then(|| Fault {
            message: r.text(),
            details: r.text(),
            created: r.time(),
        }),
        configuration_id: r.chance(3).then(|| r.uuid()),
        replica_of: r.chance(3).then(|| r.uuid()),
        access: r.pick(&access_values()),
        region: r.text(),
        locality: r.maybe_text(),
        availability_zone: r.maybe_text(),
        addresses: (0..r.pick(&[0, 0, 1, 2, 3])).map(|_| address(r)).collect(),
        deleted: r.chance(8),
        ..Instance::default()
    }
}

fn request(r: &mut Rng) -> ViewCtx {
    ViewCtx {
        base_url: r
            .pick(&[
                "https://127.0.0.1:8779",
                "https://db.example.com/",
                "https://we\"ird\\host",
                "https://x//",
                "",
            ])
            .to_string(),
        api_version: "1.0".into(),
        caller_project: r.text(),
        caller_is_admin: r.chance(2),
        now: r.time(),
        heartbeat_expiry: r
            .chance(2)
            .then(|| Duration::seconds(r.pick(&[0, 60, 3600]))),
        heartbeats: Default::default(),
        running_backups: Default::default(),
    }
}

/// Related facts a view looks up, made up per instance.
struct FixedLookup {
    replicas: Vec<Uuid>,
    configuration_name: Option<String>,
    locality: Option<String>,
}

impl Lookup for FixedLookup {
    fn configuration_name(&self, _id: Uuid) -> Option<String> {
        self.configuration_name.clone()
    }

    fn live_replicas(&self, _primary: Uuid) -> Vec<Uuid> {
        self.replicas.clone()
    }

    fn locality(&self, _id: Uuid) -> Option<String> {
        self.locality.clone()
    }
}

fn value_bytes(kind: ItemKind, inst: &Instance, c: &ViewCtx, lookup: &dyn Lookup) -> String {
    let v = match kind {
        ItemKind::Basic => basic_view(inst, c, lookup),
        ItemKind::Detail => detail_view(inst, c, lookup),
        ItemKind::Show => show_view(inst, c, lookup),
    };
    serde_json::to_string(&v).unwrap_or_default()
}

#[test]
fn byte_views_equal_the_serialized_value_views() {
    let mut r = Rng(0x5eed_1234_5678_9abc);
    for n in 0..4000 {
        let inst = instance(&mut r);
        let c = request(&mut r);
        let lookup = FixedLookup {
            replicas: (0..r.pick(&[0, 0, 1, 3])).map(|_| r.uuid()).collect(),
            configuration_name: r.maybe_text(),
            locality: r.maybe_text(),
        };
        for kind in [ItemKind::Basic, ItemKind::Detail, ItemKind::Show] {
            let mut ours = Vec::new();
            write_view(&mut ours, &inst, &c, &lookup, kind);
            let ours = String::from_utf8(ours).unwrap_or_else(|e| panic!("#{n}: {e}"));
            let expected = value_bytes(kind, &inst, &c, &lookup);
            assert_eq!(ours, expected, "#{n} {kind:?}\n{inst:#?}\n{c:#?}");
            // As the records keep it: `access` as compact text, re-read on each view.
            let text = inst.access.as_ref().map(|v| v.to_string());
            let stored = Instance {
                access: text.as_deref().and_then(|t| serde_json::from_str(t).ok()),
                ..inst.clone()
            };
            let expected = value_bytes(kind, &stored, &c, &lookup);
            let related = Related {
                replicas: inst.id.map(|_| lookup.replicas.clone()).unwrap_or_default(),
                configuration_name: lookup.configuration_name.clone(),
                primary_locality: lookup.locality.clone(),
            };
            let mut ours = Vec::new();
            let access = StoredAccess::Text(text.as_deref());
            let links = LinkPrefixes::new(&c);
            write_instance(&mut ours, &inst, access, &c, &links, &related, kind);
            let ours = String::from_utf8(ours).unwrap_or_else(|e| panic!("#{n}: {e}"));
            assert_eq!(ours, expected, "#{n} {kind:?} (stored access)\n{inst:#?}");
        }
    }
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let specials: Vec<char> = (0u8..0x80)
        .map(char::from)
        .chain(['\u{80}', 'é', '\u{2028}', '語', '🙂'])
        .collect();
    for len in 0..20 {
        for pos in 0..=len {
            for &ch in &specials {
                let s: String = (0..len)
                    .map(|i| if i == pos { ch } else { 'a' })
                    .chain((pos == len).then_some(ch))
                    .collect();
                let mut ours = Vec::new();
                escape_into(&mut ours, &s);
                let expected = serde_json::to_string(&s).unwrap_or_default();
                assert_eq!(
                    format!("\"{}\"", String::from_utf8_lossy(&ours)),
                    expected,
                    "{s:?}"
                );
            }
        }
    }
}

#[test]
fn timestamps_equal_the_chrono_format() {
    let mut r = Rng(7);
    for _ in 0..2000 {
        let at = r.time();
        let inst = Instance {
            id: Some(Uuid::nil()),
            created: at,
            ..Instance::default()
        };
        let c = ctx("p", false, at);
        let lookup = FixedLookup {
            replicas: vec![],
            configuration_name: None,
            locality: None,
        };
        let mut ours = Vec::new();
        write_view(&mut ours, &inst, &c, &lookup, ItemKind::Detail);
        let v: Value = serde_json::from_slice(&ours).unwrap_or_default();
        assert_eq!(v["created"], json!(timestamp(&at)), "{at:?}");
    }
}

// ---- through the read models -------------------------------------------------------------

const PROJECTS: [&str; 3] = ["p1", "p2", "p\"3"];

/// Instances in three projects: replicas of a primary, configurations (one without a
/// name), access values stored as text (with floats), deleted and failed ones.
fn models() -> (InstanceModels, Vec<Uuid>) {
    use InstanceEvent::*;
    let m = InstanceModels::new();
    let mut s = Script::new();
    let mut r = Rng(99);
    let mut ids = Vec::new();
    let accesses = access_values();
    for n in 0..90u32 {
        let id = r.uuid();
        let project = PROJECTS[n as usize % 3];
        // Equal creation times on purpose: the output order is stable on ids.
        let mut c = creation(
            id,
            project,
            ts("2024-01-01T00:00:00") + Duration::seconds(i64::from(n % 7)),
        );
        c.name = r.text();
        // Every access value with every state below.
        c.access = accesses[(n as usize / 6) % accesses.len()].clone();
        c.locality = r.maybe_text();
        if n % 5 == 4 {
            c.replica_of = ids.get(n as usize - 3).copied();
        }
        if n % 4 == 1 {
            c.configuration_id = Some(Uuid::from_u128(u128::from(n % 3)));
        }
        s.create(&m, c);
        let at = ts("2024-01-01T00:01:00");
        match n % 6 {
            0 => s.provision(&m, id, at, sample_addresses()),
            1 => s.apply(
                &m,
                id,
                ProvisioningFailed {
                    task: Task::BuildingErrorPort,
                    fault: FaultInfo {
                        message: r.text(),
                        details: r.text(),
                    },
                    at,
                },
            ),
            2 => {
                s.provision(&m, id, at, sample_addresses());
                s.apply(&m, id, InstanceDeletionRequested { at });
                s.apply(&m, id, InstanceDeleted { at });
            }
            3 => {
                s.provision(&m, id, at, vec![]);
                s.apply(
                    &m,
                    id,
                    VolumeUsageReported {
                        used: 0.337,
                        total: 1.0,
                        at,
                    },
                );
            }
            _ => {}
        }
        ids.push(id);
    }
    (m, ids)
}

fn names(id: Uuid) -> Option<String> {
    (id != Uuid::from_u128(2)).then(|| format!("config \"{id}\""))
}

#[test]
fn list_pages_equal_the_serialized_value_pages() {
    let (m, ids) = models();
    let lookup = ModelLookup {
        models: &m,
        configuration_name: &names,
    };
    let mut markers: Vec<Option<String>> = vec![None, Some(String::new()), Some("zzz".into())];
    markers.extend(ids.iter().step_by(4).map(|id| Some(id.to_string())));
    markers.extend(
        ids.iter()
            .step_by(9)
            .map(|id| Some(id.to_string()[..9].to_string())),
    );
    for project in PROJECTS {
        for admin in [false, true] {
            let c = ctx(project, admin, ts("2024-01-01T00:02:00"));
            for marker in &markers {
                for limit in [1, 2, 7, 20, 21, 1000] {
                    let page = m.list_page(project, marker.as_deref(), limit);
                    for kind in [ItemKind::Basic, ItemKind::Detail] {
                        let items: Vec<Value> = page
                            .instances
                            .iter()
                            .map(|i| match kind {
                                ItemKind::Detail => detail_view(i, &c, &lookup),
                                _ => basic_view(i, &c, &lookup),
                            })
                            .collect();
                        let expected = serde_json::to_string(&items).unwrap_or_default();
                        let mut ours = b"[".to_vec();
                        let next = write_list_items(
                            &m,
                            project,
                            marker.as_deref(),
                            limit,
                            kind,
                            &c,
                            &names,
                            &mut ours,
                        );
                        ours.push(b']');
                        let ours = String::from_utf8_lossy(&ours);
                        let what = format!("{project} {marker:?} {limit} {kind:?} admin {admin}");
                        assert_eq!(ours, expected, "{what}");
                        assert_eq!(next, page.next_marker, "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn shows_equal_the_serialized_value_show_and_hide_the_same_instances() {
    let (m, mut ids) = models();
    ids.push(Uuid::from_u128(12345));
    let lookup = ModelLookup {
        models: &m,
        configuration_name: &names,
    };
    for id in ids {
        for project in PROJECTS {
            for admin in [false, true] {
                let c = ctx(project, admin, ts("2024-01-01T00:02:00"));
                let expected = m.instance_visible_to(id, project, admin).map(|i| {
                    serde_json::to_string(&show_view(&i, &c, &lookup)).unwrap_or_default()
                });
                let mut ours = Vec::new();
                let shown = write_show(&m, id, &c, &names, &mut ours);
                let ours = shown.then(|| String::from_utf8_lossy(&ours).into_owned());
                assert_eq!(ours, expected, "{id} {project} admin {admin}");
            }
        }
    }
}
