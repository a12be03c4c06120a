//! Crash test of the provisioning saga against the real binary: a child `troved` under a
//! bounded concurrent load of creates and deletes is SIGKILLed at random moments several
//! times. After the last restart every instance must reach a final state (ACTIVE/HEALTHY,
//! ERROR, or deleted) within a bound, the simulated cloud (`cloud.db`, apart from the
//! event store) must hold exactly the resources of the live ACTIVE instances (no leak, no
//! duplicate), and every acknowledged command must be in the log.
//!
//! The schedule (round lengths, operation mix, names) comes from a seed printed at the
//! start; `CRASH_SEED=<n>` replays the same schedule (timing still varies).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::instance::InstanceEvent;
use common::{create_body, TestServer};
use serde_json::{json, Value};
use troved::runtime::codec;
use troved::store::sqlite::SqliteStore;
use troved::store::{EventStore, Position};

const USER: &str = "alice";
const PROJECT: &str = "p1";
/// Load rounds, each ended by a SIGKILL and a restart.
const ROUNDS: usize = 5;
/// Concurrent client tasks during a round.
const CLIENTS: usize = 8;
/// Creates accepted per round (cumulative budget: round `r` may reach `(r + 1) *` this),
/// which bounds the work the saga has to finish.
const CREATES_PER_ROUND: usize = 40;
/// After the last restart, how long every instance and the cloud may take to settle.
const SETTLE: Duration = Duration::from_secs(25);

/// splitmix64: a small deterministic PRNG, enough for a test schedule.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

fn seed() -> u64 {
    match std::env::var("CRASH_SEED") {
        Ok(s) => s.parse().expect("CRASH_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// What the clients learned about one instance.
#[derive(Clone, Debug, Default)]
struct Known {
    name: String,
    /// The create was answered 200 (else the instance was found by listing after a
    /// create whose answer was lost in a crash).
    create_acked: bool,
    /// A DELETE was answered 202.
    delete_acked: bool,
    /// The round in which it was created or found.
    round: usize,
}

/// State shared by the client tasks of all rounds.
#[derive(Default)]
struct Load {
    known: Mutex<BTreeMap<String, Known>>,
    /// `"<op> <status>"` (or `"<op> lost"` for no answer) → count.
    outcomes: Mutex<BTreeMap<String, usize>>,
    /// Answers no client should ever get (5xx, unexpected 4xx).
    unexpected: Mutex<Vec<String>>,
    creates: AtomicUsize,
}

impl Load {
    fn count(&self, key: String) {
        *self.outcomes.lock().unwrap().entry(key).or_default() += 1;
    }

    fn unexpected(&self, what: String) {
        self.unexpected.lock().unwrap().push(what);
    }
}

/// Sends without panicking: a request cut by the SIGKILL has no answer (`None`).
async fn try_send(rb: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let resp = rb.send().await.ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.ok()?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some((status, body))
}

fn create_request(rng: &mut Rng, round: usize, client: usize, n: usize) -> (String, Value) {
    let doomed = rng.unit() < 0.25;
    let name = format!(
        "{}-r{round}-c{client}-{n}",
        if doomed { "doomed" } else { "db" }
    );
    let mut body = create_body(&name);
    if rng.unit() < 0.5 {
        body["instance"]["databases"] = json!([{"name": "shop"}]);
        body["instance"]["users"] = json!([{
            "name": "app",
            "password": format!("pw-{}", rng.next_u64()),
            "databases": [{"name": "shop"}]
        }]);
    }
    (name, body)
}

/// One client of one round: creates and deletes until `stop`, recording every
/// acknowledged command.
async fn client(
    load: Arc<Load>,
    http: reqwest::Client,
    base: String,
    seed: u64,
    round: usize,
    client: usize,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ ((round as u64) << 32) ^ client as u64);
    let url = format!("{base}/v1.0/{PROJECT}/instances");
    let token = format!("{USER}:{PROJECT}");
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let op = rng.unit();
        let budget = (round + 1) * CREATES_PER_ROUND;
        if op < 0.3 {
            // A read: the list (what a dashboard polls while things change).
            let answer = try_send(http.get(&url).header("X-Auth-Token", &token)).await;
            match answer {
                Some((200, _)) => load.count("list 200".into()),
                Some((status, body)) => {
                    load.count(format!("list {status}"));
                    load.unexpected(format!("list: {status} {body}"));
                }
                None => load.count("list lost".into()),
            }
        } else if op < 0.75 && load.creates.load(Ordering::SeqCst) < budget {
            n += 1;
            let (name, body) = create_request(&mut rng, round, client, n);
            let answer = try_send(http.post(&url).header("X-Auth-Token", &token).json(&body)).await;
            match answer {
                Some((200, body)) => {
                    load.creates.fetch_add(1, Ordering::SeqCst);
                    let id = body["instance"]["id"].as_str().unwrap_or_default();
                    if id.is_empty() {
                        load.unexpected(format!("create {name}: 200 without an id: {body}"));
                    } else {
                        let mut known = load.known.lock().unwrap();
                        let k = known.entry(id.to_string()).or_default();
                        k.name = name;
                        k.create_acked = true;
                        k.round = round;
                    }
                    load.count("create 200".into());
                }
                Some((status, body)) => {
                    load.count(format!("create {status}"));
                    load.unexpected(format!("create {name}: {status} {body}"));
                }
                None => load.count("create lost".into()),
            }
        } else {
            // A delete of an instance that can be deleted now (ACTIVE or ERROR).
            let candidates: Vec<String> = load
                .known
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, k)| !k.delete_acked)
                .map(|(id, _)| id.clone())
                .collect();
            if candidates.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let id = &candidates[rng.range(0, candidates.len() as u64) as usize];
            let show = try_send(
                http.get(format!("{url}/{id}"))
                    .header("X-Auth-Token", &token),
            )
            .await;
            let Some((show_status, shown)) = show else {
                load.count("show lost".into());
                continue;
            };
            load.count(format!("show {show_status}"));
            if show_status != 200 {
                if show_status != 404 {
                    load.unexpected(format!("show {id}: {show_status} {shown}"));
                }
                continue;
            }
            let status = shown["instance"]["status"].as_str().unwrap_or_default();
            if status != "ACTIVE" && status != "ERROR" {
                continue;
            }
            let answer = try_send(
                http.delete(format!("{url}/{id}"))
                    .header("X-Auth-Token", &token),
            )
            .await;
            match answer {
                Some((202, _)) => {
                    if let Some(k) = load.known.lock().unwrap().get_mut(id) {
                        k.delete_acked = true;
                    }
                    load.count("delete 202".into());
                }
                // Raced with another client's delete (404), or the instance changed task
                // between the show and the delete (422): not acknowledged, nothing owed.
                Some((status @ (404 | 422), _)) => load.count(format!("delete {status}")),
                Some((status, body)) => {
                    load.count(format!("delete {status}"));
                    load.unexpected(format!("delete {id}: {status} {body}"));
                }
                None => load.count("delete lost".into()),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(20, 160))).await;
    }
}

/// Every instance the project's list shows (keyset paging by id): id, name, status.
async fn list_all(s: &TestServer) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("/instances?limit=20&marker={m}"),
            None => "/instances?limit=20".to_string(),
        };
        let (status, body) = s.get(USER, PROJECT, &path).await;
        assert_eq!(status, 200, "list: {body}");
        let page = body["instances"].as_array().cloned().unwrap_or_default();
        for i in &page {
            out.push((
                i["id"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap_or_default().to_string(),
                i["status"].as_str().unwrap_or_default().to_string(),
            ));
        }
        // Items are not in id order within a page: follow the server's next link.
        let Some(next) = body["links"][0]["href"].as_str() else {
            return out;
        };
        let m = next
            .split_once("marker=")
            .map(|(_, m)| m.split('&').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("next link without a marker: {next}"));
        assert!(!page.is_empty(), "an empty page with a next link: {body}");
        marker = Some(m);
    }
}

/// Adds instances created by a request whose answer was lost (they exist, nobody was
/// told): they must settle and be accounted for like the others. Returns how many were
/// new, and the listed instances by status.
async fn discover(s: &TestServer, load: &Load, round: usize) -> (usize, BTreeMap<String, usize>) {
    let listed = list_all(s).await;
    let mut known = load.known.lock().unwrap();
    let mut found = 0;
    let mut statuses = BTreeMap::new();
    let ids: BTreeSet<&String> = listed.iter().map(|l| &l.0).collect();
    assert_eq!(ids.len(), listed.len(), "the paged list repeats instances");
    for (id, name, status) in listed {
        let acked = known.get(&id).is_some_and(|k| k.delete_acked);
        *statuses
            .entry(format!("{status}{}", if acked { "(deleting)" } else { "" }))
            .or_default() += 1;
        known.entry(id).or_insert_with(|| {
            found += 1;
            Known {
                name,
                round,
                ..Known::default()
            }
        });
    }
    (found, statuses)
}

/// The simulated cloud's live resources: instance id → (server ids, volume ids).
type Inventory = BTreeMap<String, (Vec<String>, Vec<String>)>;

fn sim_list(dir: &Path) -> (Inventory, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["sim", "list", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run troved sim list");
    assert!(
        out.status.success(),
        "troved sim list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: Value = serde_json::from_slice(&out.stdout).expect("sim list prints JSON");
    let mut inv = Inventory::new();
    for (kind, slot) in [("servers", 0), ("volumes", 1)] {
        for r in raw[kind].as_array().expect("a list") {
            let entry = inv
                .entry(r["instance_id"].as_str().unwrap().to_string())
                .or_default();
            let id = format!("{} ({})", r["id"].as_str().unwrap(), r["status"]);
            if slot == 0 {
                entry.0.push(id)
            } else {
                entry.1.push(id)
            }
        }
    }
    (inv, raw)
}

#[derive(Clone, Debug, PartialEq)]
enum Observed {
    /// ACTIVE with operating_status HEALTHY.
    Active,
    Error,
    /// Show answers 404.
    Gone,
    /// Anything else: status / operating_status.
    Pending(String),
}

async fn observe(s: &TestServer, id: &str) -> Observed {
    let (status, body) = s.get(USER, PROJECT, &format!("/instances/{id}")).await;
    match status {
        404 => Observed::Gone,
        200 => {
            let i = &body["instance"];
            match (i["status"].as_str(), i["operating_status"].as_str()) {
                (Some("ACTIVE"), Some("HEALTHY")) => Observed::Active,
                (Some("ERROR"), _) => Observed::Error,
                (s, o) => Observed::Pending(format!("{s:?}/{o:?}")),
            }
        }
        other => Observed::Pending(format!("show answered {other}: {body}")),
    }
}

/// What is wrong now, by instance (`None`: not about one known instance).
fn problems(
    known: &BTreeMap<String, Known>,
    observed: &BTreeMap<String, Observed>,
    inv: &Inventory,
) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for (id, k) in known {
        let o = &observed[id];
        let (servers, volumes) = inv.get(id).cloned().unwrap_or_default();
        let who = format!("{id} ({}, round {})", k.name, k.round);
        match o {
            Observed::Pending(what) => {
                out.push((Some(id.clone()), format!("{who}: not final: {what}")))
            }
            Observed::Active if k.delete_acked => out.push((
                Some(id.clone()),
                format!("{who}: deletion acknowledged but ACTIVE"),
            )),
            Observed::Error if k.delete_acked => out.push((
                Some(id.clone()),
                format!("{who}: deletion acknowledged but ERROR"),
            )),
            Observed::Active if k.name.starts_with("doomed-") => out.push((
                Some(id.clone()),
                format!("{who}: ACTIVE although its prepare always fails"),
            )),
            Observed::Error if !k.name.starts_with("doomed-") => out.push((
                Some(id.clone()),
                format!("{who}: ERROR although only transient faults hit it"),
            )),
            _ => {}
        }
        let want = if *o == Observed::Active { 1 } else { 0 };
        if !matches!(o, Observed::Pending(_)) && (servers.len() != want || volumes.len() != want) {
            out.push((
                Some(id.clone()),
                format!(
                    "{who}: {o:?} but the cloud holds servers {servers:?} and volumes \
                     {volumes:?} (want {want} of each)"
                ),
            ));
        }
    }
    for (id, (servers, volumes)) in inv {
        if !known.contains_key(id) {
            out.push((
                Some(id.clone()),
                format!(
                    "cloud resources of an instance no listing ever showed: servers \
                     {servers:?}, volumes {volumes:?}"
                ),
            ));
        }
    }
    out
}

/// Every instance stream of the log, decoded (server stopped).
async fn read_log(dir: &Path) -> BTreeMap<String, Vec<InstanceEvent>> {
    let store = SqliteStore::open(&dir.join("events.db")).expect("open store");
    let mut streams: BTreeMap<String, Vec<InstanceEvent>> = BTreeMap::new();
    let mut from = Position::START;
    loop {
        let page = store.read_all(from, 1000).await.expect("read $all");
        let Some(last) = page.last() else { break };
        from = last.position;
        for r in &page {
            if let Some(id) = r.stream.strip_prefix("instance-") {
                let event = codec::decode(r)
                    .unwrap_or_else(|e| panic!("event {} of {} decodes: {e}", r.id, r.stream))
                    .0;
                streams.entry(id.to_string()).or_default().push(event);
            }
        }
    }
    store.shutdown().await;
    streams
}

fn event_summary(e: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match e {
        VolumeCreated { volume_id, .. } => format!("VolumeCreated({volume_id})"),
        ServerCreated { server_id, .. } => format!("ServerCreated({server_id})"),
        ServerDeleted { server_id, .. } => format!("ServerDeleted({server_id})"),
        VolumeDeleted { volume_id, .. } => format!("VolumeDeleted({volume_id})"),
        ProvisioningFailed { task, fault, .. } => {
            format!("ProvisioningFailed({task:?}, {:?})", fault.message)
        }
        other => other.event_type().to_string(),
    }
}

fn position_of(events: &[InstanceEvent], event_type: &str) -> Option<usize> {
    events.iter().position(|e| e.event_type() == event_type)
}

/// Checks the log against what the clients were told and what they saw last.
fn log_problems(
    known: &BTreeMap<String, Known>,
    observed: &BTreeMap<String, Observed>,
    log: &BTreeMap<String, Vec<InstanceEvent>>,
) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let empty = Vec::new();
    for (id, k) in known {
        let events = log.get(id).unwrap_or(&empty);
        let who = format!("{id} ({}, round {})", k.name, k.round);
        let mut bad = |msg: String| out.push((Some(id.clone()), format!("{who}: {msg}")));
        let created = events
            .iter()
            .filter(|e| e.event_type() == "InstanceCreated")
            .count();
        if created != 1 || position_of(events, "InstanceCreated") != Some(0) {
            bad(format!(
                "the log must start with exactly one InstanceCreated (create acknowledged: \
                 {}), found {created}",
                k.create_acked
            ));
        }
        let requested = position_of(events, "InstanceDeletionRequested");
        let deleted = position_of(events, "InstanceDeleted");
        if k.delete_acked && requested.is_none() {
            bad("deletion acknowledged, no InstanceDeletionRequested in the log".into());
        }
        match observed[id] {
            Observed::Gone => match (requested, deleted) {
                (Some(r), Some(d)) if r < d => {}
                _ => bad(format!(
                    "show answers 404, but the log has InstanceDeletionRequested at \
                     {requested:?} and InstanceDeleted at {deleted:?}"
                )),
            },
            Observed::Active => {
                if position_of(events, "ProvisioningCompleted").is_none() || requested.is_some() {
                    bad("ACTIVE without ProvisioningCompleted, or with a deletion".into());
                }
            }
            Observed::Error => {
                if position_of(events, "ProvisioningFailed").is_none()
                    || position_of(events, "ResourcesReleased").is_none()
                {
                    bad("ERROR without ProvisioningFailed and ResourcesReleased".into());
                }
            }
            Observed::Pending(_) => {}
        }
        // Exactly-once effects: one volume and one server per instance, ever.
        let volumes: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| match e {
                InstanceEvent::VolumeCreated { volume_id, .. } => Some(volume_id.as_str()),
                _ => None,
            })
            .collect();
        let servers: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| match e {
                InstanceEvent::ServerCreated { server_id, .. } => Some(server_id.as_str()),
                _ => None,
            })
            .collect();
        if volumes.len() > 1 || servers.len() > 1 {
            bad(format!(
                "more than one resource recorded: volumes {volumes:?}, servers {servers:?}"
            ));
        }
    }
    for id in log.keys() {
        if !known.contains_key(id) {
            out.push((
                Some(id.clone()),
                format!("instance stream {id} in the log that no listing ever showed"),
            ));
        }
    }
    out
}

/// Panics with everything needed to understand the failure: seed, problems, and for each
/// offending instance its events and its resources in the cloud.
fn fail(
    seed: u64,
    what: &str,
    problems: &[(Option<String>, String)],
    log: &BTreeMap<String, Vec<InstanceEvent>>,
    cloud: &Value,
) -> ! {
    let mut report = format!(
        "crash test failed ({what}); seed {seed} (rerun with CRASH_SEED={seed})\n{} problem(s):\n",
        problems.len()
    );
    for (_, p) in problems.iter().take(40) {
        report.push_str(&format!("  - {p}\n"));
    }
    if problems.len() > 40 {
        report.push_str(&format!("  ... and {} more\n", problems.len() - 40));
    }
    let ids: BTreeSet<&String> = problems.iter().filter_map(|(id, _)| id.as_ref()).collect();
    for id in ids.into_iter().take(10) {
        report.push_str(&format!("instance {id}:\n  events:"));
        for e in log.get(id).map(Vec::as_slice).unwrap_or_default() {
            report.push_str(&format!(" {}", event_summary(e)));
        }
        report.push_str("\n  cloud:");
        for kind in ["servers", "volumes"] {
            for r in cloud[kind].as_array().into_iter().flatten() {
                if r["instance_id"].as_str() == Some(id.as_str()) {
                    report.push_str(&format!(
                        " {kind}:{} {} key={}",
                        r["id"], r["status"], r["idempotency_key"]
                    ));
                }
            }
        }
        report.push('\n');
    }
    panic!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_leaves_no_stuck_instance_no_leak_and_no_lost_command() {
    let seed = seed();
    eprintln!("crash test seed: {seed} (rerun with CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let sim_seed = (seed % 1_000_000).to_string();
    let mut s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "30",
            "--sim-seed",
            &sim_seed,
            "--quota-instances",
            "-1",
            "--quota-volumes",
            "-1",
            // Transient: retried, never fails a build.
            "--sim-fault",
            "create_server:rate=0.2",
            "--sim-fault",
            "delete_server:rate=0.2",
            // The volume is made but the answer lost: the retry must find the same one.
            "--sim-fault",
            "create_volume:rate=0.2:lost",
            // Permanent: these builds fail and compensation releases their resources.
            "--sim-fault",
            "prepare:name=doomed-*:permanent",
        ],
    )
    .await;
    let load = Arc::new(Load::default());

    for round in 0..ROUNDS {
        let (found, statuses) = discover(&s, &load, round).await;
        if round > 0 {
            eprintln!("  restarted: found {found} unacknowledged creates; listed {statuses:?}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(client(
                    load.clone(),
                    http.clone(),
                    s.base.clone(),
                    seed,
                    round,
                    c,
                    stop.clone(),
                ))
            })
            .collect();
        let run = Duration::from_millis(rng.range(300, 1500));
        tokio::time::sleep(run).await;
        // SIGKILL while the clients are still sending and the saga is mid-workflow.
        s.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("client task");
        }
        eprintln!(
            "round {round}: load {run:?}, {} instances known, {} creates acknowledged so \
             far; killed at {:?}",
            load.known.lock().unwrap().len(),
            load.creates.load(Ordering::SeqCst),
            started.elapsed()
        );
        s.kill_and_restart().await;
    }
    let (found, statuses) = discover(&s, &load, ROUNDS).await;
    eprintln!("  restarted: found {found} unacknowledged creates; listed {statuses:?}");
    eprintln!("outcomes: {:?}", load.outcomes.lock().unwrap());

    // After the last restart: everything settles within the bound.
    let settle_start = Instant::now();
    let (known, observed, cloud) = loop {
        discover(&s, &load, ROUNDS).await;
        let known = load.known.lock().unwrap().clone();
        let mut observed = BTreeMap::new();
        for id in known.keys() {
            observed.insert(id.clone(), observe(&s, id).await);
        }
        let (inv, raw) = sim_list(dir.path());
        let now = problems(&known, &observed, &inv);
        if now.is_empty() {
            break (known, observed, raw);
        }
        if settle_start.elapsed() > SETTLE {
            s.kill();
            let log = read_log(dir.path()).await;
            let (_, raw) = sim_list(dir.path());
            fail(
                seed,
                &format!("not settled {SETTLE:?} after the last restart"),
                &now,
                &log,
                &raw,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let settled = settle_start.elapsed();
    s.kill();

    let log = read_log(dir.path()).await;
    let mut bad = log_problems(&known, &observed, &log);
    let unexpected = load.unexpected.lock().unwrap().clone();
    bad.extend(
        unexpected
            .into_iter()
            .map(|u| (None, format!("unexpected answer: {u}"))),
    );
    if !bad.is_empty() {
        fail(seed, "log check", &bad, &log, &cloud);
    }

    let count = |o: Observed| observed.values().filter(|v| **v == o).count();
    let acked_creates = known.values().filter(|k| k.create_acked).count();
    let acked_deletes = known.values().filter(|k| k.delete_acked).count();
    eprintln!(
        "seed {seed}: {} instances ({acked_creates} creates and {acked_deletes} deletes \
         acknowledged): {} ACTIVE, {} ERROR, {} deleted; settled {settled:?} after the last \
         restart; total {:?}",
        known.len(),
        count(Observed::Active),
        count(Observed::Error),
        count(Observed::Gone),
        started.elapsed()
    );
    assert!(
        acked_creates > 0 && acked_deletes > 0,
        "the load did nothing worth checking (seed {seed})"
    );
}
