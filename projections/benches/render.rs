//! The hot read views rendered two ways over the same read models: `bytes` (the
//! hand-written JSON writer, `views::bytes`) and `typed` (`#[derive(Serialize)]` view
//! structs borrowing the record, `views::typed`). See docs/performance.md.
//!
//!     cargo bench -p projections --bench render                 # wall clock, alternating
//!     cargo bench -p projections --bench render -- --rounds 9 --iters 20000
//!     target/release/deps/render-<hash> --once typed detail 20000   # one variant, for
//!         # valgrind --tool=callgrind (subtract a `--once none list 0` run: the setup)
//!
//! The models hold `--instances` (1,000) provisioned instances in one project (two
//! addresses each, like the upstream samples; every 10th with a configuration group),
//! and the paths are what the HTTP handlers call: a first list page (20 items, basic or
//! detail) and a show.

use std::hint::black_box;
use std::time::Instant;

use aggregates::instance::{
    Address, ComputeStatus, DatastoreRef, FlavorRef, InstanceCreated, InstanceEvent, ServiceStatus,
    VolumeSpec,
};
use chrono::{DateTime, Utc};
use projections::views::{self, typed, ItemKind};
use projections::{Position, ProjectedEvent, ReadModels, ViewCtx};
use uuid::Uuid;

const PROJECT: &str = "benchp0001";

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
}

/// `n` provisioned instances in [`PROJECT`]; the ids, in creation order.
fn models(n: usize) -> (ReadModels, Vec<Uuid>) {
    let models = ReadModels::new();
    let mut commit = 0;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::from_u128(0x1000_0000 + i as u128);
        let t = at(i as i64);
        let created = InstanceCreated {
            instance_id: id,
            project_id: PROJECT.into(),
            user_id: "bench".into(),
            name: format!("load-{i:06}"),
            flavor: FlavorRef {
                id: "2".into(),
                ram: 2048,
            },
            volume: Some(VolumeSpec {
                size: 1,
                volume_type: None,
            }),
            datastore: DatastoreRef {
                datastore_id: Uuid::from_u128(0xd5),
                datastore_name: "mysql".into(),
                version_id: Uuid::from_u128(0x80),
                version_name: "8.0".into(),
                version_number: "8.0.29".into(),
                manager: "mysql".into(),
            },
            databases: vec![],
            users: vec![],
            nics: vec![],
            availability_zone: None,
            region: "RegionOne".into(),
            modules: vec![],
            restore_backup_id: None,
            replica_of: None,
            locality: None,
            configuration_id: (i % 10 == 0).then(|| Uuid::from_u128(0xc0f)),
            configuration_revision: 0,
            access: None,
            root_password: None,
            at: t,
        };
        let events = [
            InstanceEvent::InstanceCreated(Box::new(created)),
            InstanceEvent::VolumeCreated {
                volume_id: format!("vol-{id}"),
                size: 1,
                volume_type: None,
                at: t,
            },
            InstanceEvent::ServerCreated {
                server_id: format!("srv-{id}"),
                at: t,
            },
            InstanceEvent::ComputeStatusChanged {
                status: ComputeStatus::Active,
                at: t,
            },
            InstanceEvent::GuestStatusReported {
                status: ServiceStatus::Healthy,
                at: t,
            },
            InstanceEvent::AddressesAssigned {
                addresses: vec![
                    Address {
                        address: format!("10.1.{}.{}", i / 250, i % 250),
                        kind: "private".into(),
                        network: Some("3dc8f3c2-f335-11eb-878c-00224d6b7bc1".into()),
                    },
                    Address {
                        address: format!("172.24.{}.{}", i / 250, i % 250),
                        kind: "public".into(),
                        network: None,
                    },
                ],
                at: t,
            },
            InstanceEvent::ProvisioningCompleted { at: t },
        ];
        for (revision, event) in events.into_iter().enumerate() {
            commit += 1;
            models.apply(&ProjectedEvent {
                position: Position {
                    commit,
                    prepare: commit,
                },
                instance_id: id,
                revision: revision as u64,
                event,
            });
        }
        ids.push(id);
    }
    (models, ids)
}

fn ctx() -> ViewCtx {
    ViewCtx {
        base_url: "https://127.0.0.1:8779".into(),
        api_version: "1.0".into(),
        caller_project: PROJECT.into(),
        caller_is_admin: false,
        now: at(10_000_000),
        heartbeat_expiry: None,
    }
}

fn names(_: Uuid) -> Option<String> {
    Some("bench-group".into())
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    None,
    Bytes,
    Typed,
}

#[derive(Clone, Copy)]
enum Path {
    List,
    Detail,
    Show,
}

/// Renders `path` once with `variant` into `out` (cleared first).
fn render(
    models: &ReadModels,
    ids: &[Uuid],
    i: usize,
    variant: Variant,
    path: Path,
    c: &ViewCtx,
    out: &mut Vec<u8>,
) {
    out.clear();
    let kind = match path {
        Path::List => ItemKind::Basic,
        Path::Detail => ItemKind::Detail,
        Path::Show => ItemKind::Show,
    };
    match (variant, path) {
        (Variant::None, _) => {}
        (Variant::Bytes, Path::Show) => {
            views::write_show(models, ids[i % ids.len()], c, &names, out);
        }
        (Variant::Typed, Path::Show) => {
            typed::write_show(models, ids[i % ids.len()], c, &names, out);
        }
        (Variant::Bytes, _) => {
            views::write_list_items(models, PROJECT, None, 20, kind, c, &names, out);
        }
        (Variant::Typed, _) => {
            typed::write_list_items(models, PROJECT, None, 20, kind, c, &names, out);
        }
    }
    black_box(&out);
}

/// Nanoseconds per render over `iters` renders.
fn time(models: &ReadModels, ids: &[Uuid], variant: Variant, path: Path, iters: usize) -> f64 {
    let c = ctx();
    let mut out = Vec::with_capacity(64 * 1024);
    let started = Instant::now();
    for i in 0..iters {
        render(models, ids, i, variant, path, &c, &mut out);
    }
    started.elapsed().as_nanos() as f64 / iters as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let instances = arg(&args, "--instances", 1000);
    let (models, ids) = models(instances);
    let parse_path = |s: &str| match s {
        "list" => Path::List,
        "detail" => Path::Detail,
        _ => Path::Show,
    };
    if let Some(i) = args.iter().position(|a| a == "--once") {
        let variant = match args.get(i + 1).map(String::as_str) {
            Some("bytes") => Variant::Bytes,
            Some("typed") => Variant::Typed,
            _ => Variant::None,
        };
        let path = parse_path(args.get(i + 2).map_or("list", String::as_str));
        let iters = args.get(i + 3).and_then(|n| n.parse().ok()).unwrap_or(1000);
        let ns = time(&models, &ids, variant, path, iters);
        println!("{ns:.0} ns per render");
        return;
    }
    let rounds = arg(&args, "--rounds", 7);
    let iters = arg(&args, "--iters", 5000);
    // The two renderers give the same bytes (the crate's tests check it in depth).
    let c = ctx();
    for path in [Path::List, Path::Detail, Path::Show] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        render(&models, &ids, 0, Variant::Bytes, path, &c, &mut a);
        render(&models, &ids, 0, Variant::Typed, path, &c, &mut b);
        assert_eq!(a, b, "the renderers disagree");
    }
    println!(
        "{instances} instances; {rounds} rounds of {iters} renders per variant, alternating; medians"
    );
    println!("| path | bytes (hand writer) | typed (derive Serialize) | typed / bytes |");
    println!("| --- | --- | --- | --- |");
    for (name, path) in [
        ("list page (20, basic)", Path::List),
        ("detail page (20)", Path::Detail),
        ("show", Path::Show),
    ] {
        let (mut bytes, mut typed) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so that drift favours neither.
            if round % 2 == 0 {
                bytes.push(time(&models, &ids, Variant::Bytes, path, iters));
                typed.push(time(&models, &ids, Variant::Typed, path, iters));
            } else {
                typed.push(time(&models, &ids, Variant::Typed, path, iters));
                bytes.push(time(&models, &ids, Variant::Bytes, path, iters));
            }
        }
        let (b, t) = (median(bytes), median(typed));
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.2} |",
            b / 1000.0,
            t / 1000.0,
            t / b
        );
    }
}
