//! Replay harness for `troved` (the performance issue, targets "projection rebuild
//! >= 1,000,000 events/s" and "start to serving < 3 s with 1,000,000 events"):
//!
//! 1. writes a realistic log of `--events` events (default 1,000,000) into
//!    `<dir>/events.db` through the embedded store's own append path: instance
//!    lifecycles as the saga records them (create, volume, server, compute status,
//!    addresses, prepare, guest status, usage, guest configuration, completed), renames,
//!    heartbeats, deletions, and a few configuration groups, from 64 concurrent writers
//!    (so streams interleave in `$all` as under load);
//! 2. runs `troved projections rebuild` on it `--runs` times (events/s);
//! 3. starts `troved serve` on it `--runs` times, replaying the log (`--no-snapshot`),
//!    and measures the time from spawn to the first 200 from `GET /v1.0` and the RSS
//!    then; stops it with SIGTERM (which writes a read-model snapshot);
//! 4. the same with that snapshot;
//! 5. in this process, replays the log into the read models with the projector's own
//!    decode and apply and counts the heap they hold (a counting allocator: the bytes
//!    glibc's malloc takes for each live allocation, header and rounding included), per
//!    instance: the "RSS per instance in read models" target, without the rest of the
//!    process (store caches, the allocator's free memory, thread stacks).
//!
//! Run: `cargo bench --bench replay -- [--events N] [--dir DIR] [--runs R]
//! [--troved PATH]`. With
//! `--dir`, an existing log there is reused (generation takes ~1 min for 1M events) and
//! the directory is kept; otherwise a temporary one is used and removed.
// Built as a plain `cargo test`-harness target too (no `[[bench]] harness = false`
// entry): then `main` is unused.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::instance::{
    Address, Caller, ComputeStatus, DatabaseSpec, DatastoreRef, FlavorRef, InstanceCreated,
    InstanceEvent, Nic, ServiceStatus, VolumeSpec,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

mod common;
use common::sh;
use troved::runtime::codec::{self, CommandMeta};
use troved::runtime::projector::{self, ReadModels};
use troved::store::sqlite::SqliteStore;
use troved::store::{EventStore, ExpectedRevision, NewEvent, Position};
use uuid::Uuid;

/// The bytes glibc's malloc takes for live allocations: a chunk is the request plus an
/// 8-byte header, rounded up to 16, at least 32 (x86_64).
struct Counting;

static HEAP: AtomicU64 = AtomicU64::new(0);

fn chunk(size: usize) -> u64 {
    ((size + 8).div_ceil(16) * 16).max(32) as u64
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is
// only arithmetic on the sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(chunk(new_size), Ordering::Relaxed);
        HEAP.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Replays the log at `dir` into fresh read models in this process; returns the heap
/// they hold and the instances in them.
fn models_heap(dir: &Path) -> (u64, usize) {
    let log = troved::cli::log::ReadOnlyLog::open(&dir.join("events.db")).expect("log");
    let head = log.head().expect("head");
    let before = HEAP.load(Ordering::Relaxed);
    let models = ReadModels::default();
    let mut pos = Position::START;
    let mut page = Vec::new();
    while pos < head {
        log.read_page(pos, head, projector::REPLAY_PAGE, &mut page)
            .expect("read");
        let Some(last) = page.last() else { break };
        pos = last.position;
        let decoded: Vec<_> = page.iter().map(projector::decode).collect();
        projector::apply_page(&models, &decoded);
    }
    drop(page);
    drop(log);
    let held = HEAP.load(Ordering::Relaxed).saturating_sub(before);
    (held, models.instances.len())
}

struct Opts {
    events: u64,
    dir: Option<PathBuf>,
    runs: usize,
    write_docs: bool,
}

/// The `troved` binary measured: `--troved PATH` (e.g. an older build, for a before/after
/// comparison), by default the one this bench was built with.
fn troved() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let mut it = std::env::args().skip_while(|a| a != "--troved").skip(1);
        it.next().map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_troved")),
            PathBuf::from,
        )
    })
    .clone()
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench replay -- [--events N (1000000)] [--dir DIR] [--runs R (3)] \
         [--troved PATH] [--write-docs]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        events: 1_000_000,
        dir: None,
        runs: 3,
        write_docs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--write-docs" => o.write_docs = true,
            "--events" => {
                o.events = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--dir" => o.dir = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--troved" => {
                it.next().unwrap_or_else(|| usage());
            }
            _ => usage(),
        }
    }
    o
}

fn main() {
    let o = parse_opts();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = o.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("data dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let have = rt.block_on(count_events(&dir));
    if have < o.events {
        let started = Instant::now();
        let written = rt.block_on(generate(&dir, o.events - have));
        eprintln!(
            "generated {written} events in {:.1} s into {}",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    let total = rt.block_on(count_events(&dir));
    let size = std::fs::metadata(dir.join("events.db")).map_or(0, |m| m.len());
    println!(
        "log: {total} events, {:.0} MB ({})",
        size as f64 / 1e6,
        dir.display()
    );

    let wall = Instant::now();
    let mut rates = Vec::new();
    for _ in 0..o.runs {
        rates.push(rebuild_rate(&dir));
    }
    println!(
        "projections rebuild: median {} events/s (runs: {:?})",
        median_u64(&rates),
        rates
    );
    let mut rows = vec![format!(
        "| projection rebuild (`troved projections rebuild`) | {} events/s | runs: {} | >= 1,000,000 events/s |",
        thousands(median_u64(&rates)),
        rates.iter().map(|r| thousands(*r)).collect::<Vec<_>>().join(", ")
    )];

    for (what, no_snapshot) in [("replay (--no-snapshot)", true), ("from snapshot", false)] {
        let mut secs = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..o.runs {
            let (t, r) = start_to_serving(&dir, no_snapshot);
            secs.push(t);
            rss.push(r);
        }
        println!(
            "serve, {what}: start to first 200 median {:.2} s (runs: {}), RSS then median {:.0} MiB; snapshot files: {}",
            median_f64(&secs),
            secs.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", "),
            median_u64(&rss) as f64 / (1024.0 * 1024.0),
            list_snapshots(&dir)
        );
        rows.push(format!(
            "| start to serving (spawn to the first 200 of `GET /v1.0`), {what} | {:.2} s | runs: {}; RSS then {:.0} MiB | < 3 s |",
            median_f64(&secs),
            secs.iter().map(|s| format!("{s:.2} s")).collect::<Vec<_>>().join(", "),
            median_u64(&rss) as f64 / (1024.0 * 1024.0),
        ));
    }

    let (heap, instances) = models_heap(&dir);
    let per = heap as f64 / instances.max(1) as f64;
    println!(
        "read models in process: {:.1} MiB of heap for {instances} instances = {per:.0} B each",
        heap as f64 / (1024.0 * 1024.0)
    );
    rows.push(format!(
        "| heap held by the read models (replayed in process; malloc chunks counted) | {:.2} KiB per instance | {:.1} MiB for {} instances | <= 2 KiB per instance |",
        per / 1024.0,
        heap as f64 / (1024.0 * 1024.0),
        thousands(instances as u64)
    ));

    let mut commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    if !sh("git", &["status", "--porcelain"]).is_empty() {
        commit.push_str(" (with uncommitted changes)");
    }
    // The paths given are this machine's: the docs name them by role.
    let mut args: Vec<String> = Vec::new();
    let mut given = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = given.next() {
        let role = match a.as_str() {
            "--dir" => "DIR",
            "--troved" => "PATH",
            _ => {
                args.push(a);
                continue;
            }
        };
        args.push(a);
        if given.next().is_some() {
            args.push(role.to_string());
        }
    }
    let block = format!(
        "Machine: {} cores (nproc). Commit: `{commit}`. Date: {}.\n\
         Command: `cargo bench --bench replay -- {}` (whole run {:.0} s after generating the log).\n\
         Log: {} events ({:.0} MB): instance lifecycles as the saga records them, renames, \
         heartbeats, deletions and configuration groups, written through the embedded \
         store's append path by 64 concurrent writers. Medians of {} runs.\n\n\
         | what | median | runs | target (issue, 2 cores) |\n| --- | --- | --- | --- |\n{}\n",
        sh("nproc", &[]),
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        args.join(" "),
        wall.elapsed().as_secs_f64(),
        thousands(total),
        size as f64 / 1e6,
        o.runs,
        rows.join("\n")
    );
    println!("{block}");
    if o.write_docs {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/performance.md");
        let doc = std::fs::read_to_string(&path).expect("docs/performance.md");
        let (b, e) = ("<!-- replay:begin -->", "<!-- replay:end -->");
        let new = match (doc.find(b), doc.find(e)) {
            (Some(i), Some(j)) if i < j => format!("{}{b}\n{block}{}", &doc[..i], &doc[j..]),
            _ => format!("{doc}\n{b}\n{block}{e}\n"),
        };
        std::fs::write(&path, new).expect("write docs/performance.md");
        eprintln!("wrote {}", path.display());
    }
}

fn thousands(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn list_snapshots(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains("snapshot"))
                .map(|e| {
                    let len = e.metadata().map_or(0, |m| m.len());
                    format!(
                        "{} ({:.0} MB)",
                        e.file_name().to_string_lossy(),
                        len as f64 / 1e6
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn count_events(dir: &Path) -> u64 {
    let path = dir.join("events.db");
    if !path.exists() {
        return 0;
    }
    let store = SqliteStore::open(&path).expect("open store");
    let head = store.head().await.expect("head");
    store.shutdown().await;
    head.commit
}

/// `troved projections rebuild` on `dir`: its reported events/s.
fn rebuild_rate(dir: &Path) -> u64 {
    let out = Command::new(troved())
        .args(["projections", "rebuild", "--data-dir"])
        .arg(dir)
        .stderr(Stdio::null())
        .output()
        .expect("run troved projections rebuild");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rebuild failed: {text}");
    text.lines()
        .find(|l| l.trim_start().starts_with("elapsed"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text}"))
}

/// Spawns `troved serve` on `dir`, polls `GET /v1.0` until 200; returns the seconds from
/// spawn to that answer and the RSS then, and stops the server with SIGTERM.
fn start_to_serving(dir: &Path, no_snapshot: bool) -> (f64, u64) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let started = Instant::now();
    let mut cmd = Command::new(troved());
    cmd.arg("serve")
        .args(["--provider", "sim"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args(["--sim-latency-ms", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if no_snapshot && supports_no_snapshot() {
        cmd.arg("--no-snapshot");
    }
    let mut child = cmd.spawn().expect("spawn troved");
    let deadline = started + Duration::from_secs(120);
    let elapsed = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("troved exited: {status}");
        }
        if get_ok(port) {
            break started.elapsed().as_secs_f64();
        }
        assert!(Instant::now() < deadline, "troved did not start in 120 s");
        std::thread::sleep(Duration::from_millis(2));
    };
    let rss = rss(child.id());
    // SIGTERM: a clean shutdown (which writes the read-model snapshot).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    (elapsed, rss)
}

/// Whether this build has `troved serve --no-snapshot` (builds before snapshots always
/// replay).
fn supports_no_snapshot() -> bool {
    Command::new(troved())
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--no-snapshot"))
}

/// One `GET /v1.0` over a plain socket: true on a 200.
fn get_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v1.0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got >= 12 && &buf[9..12] == b"200"
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

// ---- generation -----------------------------------------------------------------------------

const WRITERS: u64 = 64;
const PROJECTS: u64 = 1000;
const GROUPS: u64 = 100;

fn user(project: &str) -> Caller {
    Caller {
        user_id: "alice".into(),
        project_id: project.into(),
        roles: vec!["member".into()],
    }
}

fn saga() -> Caller {
    Caller {
        user_id: "troved-saga".into(),
        project_id: "service".into(),
        roles: vec!["admin".into()],
    }
}

fn datastore() -> DatastoreRef {
    DatastoreRef {
        datastore_id: Uuid::from_u128(0x0b4f8c52_3f1e_4d2a_8e6b_9a1c7d5e3f20),
        datastore_name: "mysql".into(),
        version_id: Uuid::from_u128(0x3c9e1a7b_5d2f_4b8e_a6c4_1f0d9e8b7a63),
        version_name: "8.0".into(),
        version_number: "8.0.36".into(),
        manager: "mysql".into(),
    }
}

fn group_id(g: u64) -> Uuid {
    Uuid::from_u128(0xc0ffee00_0000_4000_8000_000000000000 | u128::from(g))
}

/// Appends `events` as one append of `stream` and returns how many it wrote.
async fn append(
    store: &SqliteStore,
    stream: &str,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) -> u64 {
    let n = events.len() as u64;
    store
        .append(stream, expected, events)
        .await
        .unwrap_or_else(|e| panic!("append to {stream}: {e}"));
    n
}

fn encode_all(events: &[InstanceEvent], caller: &Caller, request: &str) -> Vec<NewEvent> {
    let meta = CommandMeta::for_request(caller, request);
    events
        .iter()
        .enumerate()
        .map(|(n, e)| codec::encode(e, &meta, n))
        .collect()
}

/// Writes about `target` events (whole lifecycles) and returns how many it wrote.
async fn generate(dir: &Path, target: u64) -> u64 {
    let store = SqliteStore::open(&dir.join("events.db")).expect("open store");
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    // Configuration groups first (a few instances use them).
    let mut written = 0;
    for g in 0..GROUPS {
        let id = group_id(g);
        let project = format!("project-{}", g % PROJECTS);
        let body = json!({
            "configuration_id": id,
            "project_id": project,
            "user_id": "alice",
            "name": format!("tuning-{g}"),
            "description": "connection and slow-log settings",
            "datastore": datastore(),
            "values": {"max_connections": 200, "long_query_time": 2.5},
            "at": base,
        });
        let meta = CommandMeta::for_request(&user(&project), "req-bench");
        let e = codec::encode_parts("ConfigurationCreated", 1, &body, base, &meta);
        written += append(
            &store,
            &format!("configuration-{id}"),
            ExpectedRevision::NoStream,
            vec![e],
        )
        .await;
    }
    let counter = Arc::new(AtomicU64::new(written));
    let next_instance = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, counter, next_instance) =
            (store.clone(), counter.clone(), next_instance.clone());
        tasks.push(tokio::spawn(async move {
            while counter.load(Ordering::Relaxed) < target {
                let i = next_instance.fetch_add(1, Ordering::Relaxed);
                let n = lifecycle(&store, i, base).await;
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    store.shutdown().await;
    counter.load(Ordering::Relaxed)
}

/// One instance's history, appended as the command path and the saga would (one append
/// per command or step group). Returns the number of events.
async fn lifecycle(store: &SqliteStore, i: u64, base: DateTime<Utc>) -> u64 {
    let id = Uuid::new_v4();
    let stream = format!("instance-{id}");
    let project = format!("project-{}", i % PROJECTS);
    let at = |s: i64| base + chrono::Duration::seconds(i as i64 * 10 + s);
    // 5% use a configuration group (of their project's groups when there is one).
    let group = (i % 20 == 7).then(|| group_id(i % GROUPS));
    let created = InstanceEvent::InstanceCreated(Box::new(InstanceCreated {
        instance_id: id,
        project_id: project.clone(),
        user_id: "alice".into(),
        name: format!("db-{i}"),
        flavor: FlavorRef {
            id: "7".into(),
            ram: 2048,
        },
        volume: Some(VolumeSpec {
            size: 5,
            volume_type: None,
        }),
        datastore: datastore(),
        databases: vec![DatabaseSpec {
            name: "orders".into(),
            character_set: None,
            collate: None,
        }],
        users: vec![],
        nics: vec![Nic {
            network_id: Some("net-private".into()),
            subnet_id: None,
            ip_address: None,
        }],
        availability_zone: Some("nova".into()),
        region: "RegionOne".into(),
        modules: vec![],
        restore_backup_id: None,
        replica_of: None,
        locality: None,
        configuration_id: group,
        configuration_revision: u64::from(group.is_some()),
        access: Some(json!({"is_public": false})),
        root_password: None,
        at: at(0),
    }));
    let mut n = 0;
    let mut revision = 0u64;
    let mut put = |events: Vec<NewEvent>| {
        let expected = if revision == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Exact(revision - 1)
        };
        revision += events.len() as u64;
        (expected, events)
    };
    let (e, evs) = put(encode_all(&[created], &user(&project), "req-create"));
    n += append(store, &stream, e, evs).await;
    // Provisioning, as the saga's steps record it.
    let provisioning = [
        InstanceEvent::VolumeCreated {
            volume_id: format!("vol-{i}"),
            size: 5,
            volume_type: None,
            at: at(1),
        },
        InstanceEvent::ServerCreated {
            server_id: format!("srv-{i}"),
            at: at(2),
        },
        InstanceEvent::ComputeStatusChanged {
            status: ComputeStatus::Active,
            at: at(3),
        },
        InstanceEvent::AddressesAssigned {
            addresses: vec![Address {
                address: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                kind: "private".into(),
                network: Some("net-private".into()),
                port: None,
            }],
            at: at(3),
        },
        InstanceEvent::GuestPrepared { at: at(4) },
        InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: at(5),
        },
        InstanceEvent::VolumeUsageReported {
            used: 0.1,
            total: 5.0,
            at: at(5),
        },
        InstanceEvent::GuestConfigurationApplied {
            configuration_id: group,
            revision: u64::from(group.is_some()),
            in_force: false,
            at: at(6),
        },
        InstanceEvent::ProvisioningCompleted { at: at(6) },
    ];
    for chunk in provisioning.chunks(3) {
        let (e, evs) = put(encode_all(chunk, &saga(), "saga:build"));
        n += append(store, &stream, e, evs).await;
    }
    // Later life: a rename for a third, a heartbeat for half, a deletion for a tenth.
    if i.is_multiple_of(3) {
        let renamed = InstanceEvent::InstanceRenamed {
            name: format!("renamed-{i}"),
            at: at(7),
        };
        let (e, evs) = put(encode_all(&[renamed], &user(&project), "req-rename"));
        n += append(store, &stream, e, evs).await;
    }
    if i.is_multiple_of(2) {
        let beat = InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: at(8),
        };
        let (e, evs) = put(encode_all(&[beat], &saga(), "saga:guest_status"));
        n += append(store, &stream, e, evs).await;
    }
    if i % 10 == 3 {
        let (e, evs) = put(encode_all(
            &[InstanceEvent::InstanceDeletionRequested { at: at(9) }],
            &user(&project),
            "req-delete",
        ));
        n += append(store, &stream, e, evs).await;
        let teardown = [
            InstanceEvent::ServerDeleted {
                server_id: format!("srv-{i}"),
                at: at(9),
            },
            InstanceEvent::VolumeDeleted {
                volume_id: format!("vol-{i}"),
                at: at(9),
            },
            InstanceEvent::InstanceDeleted { at: at(9) },
        ];
        let (e, evs) = put(encode_all(&teardown, &saga(), "saga:teardown"));
        n += append(store, &stream, e, evs).await;
    }
    n
}
