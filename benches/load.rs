//! Load harness for `troved` (the performance issue): starts the real release binary on the
//! embedded defaults with the simulated cloud at zero latency and unlimited quotas, in a
//! temporary data directory, loads it, and measures.
//!
//! Run: `cargo bench --bench load -- [--sizes 1000,10000,100000] [--projects P] [--runs R]
//! [--duration-secs S] [--active-creates K] [--write-docs]`.
//!
//! Order: create -> ACTIVE on the empty store; then for each size, grow the store to it
//! with POST creates at c=64 (round robin over P projects, plus one small project of 20
//! instances that never grows), wait for the sagas to finish, read the RSS, and measure
//! GET show, GET list (first page), GET detail (first page) and the small project's
//! list at c=64; at the largest size, a mixed load (90% reads, 10% renames); last, POST
//! creates at c=1, 16, 64 (which grow the store further).
//!
//! Each figure is the median over R runs of that run's rate, p50 and p99. The load
//! generator (tokio + reqwest) runs on the same machine as the server and takes part of its
//! CPU; read the figures as a lower bound of what the server alone can do.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{machine, median, ms, sh, summarize, thousands, Run};

struct Opts {
    sizes: Vec<usize>,
    projects: usize,
    runs: usize,
    duration: Duration,
    active_creates: usize,
    write_docs: bool,
    args: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench load -- [--sizes N,N,.. (1000,10000,100000)] \
         [--projects P (100)] [--runs R (3)] [--duration-secs S (5)] \
         [--active-creates K (200)] [--write-docs]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        sizes: vec![1_000, 10_000, 100_000],
        projects: 100,
        runs: 3,
        duration: Duration::from_secs(5),
        active_creates: 200,
        write_docs: false,
        args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            // `cargo bench` passes `--bench` to every harness = false target.
            "--bench" => continue,
            "--instances" => o.sizes = vec![num(&a) as usize],
            "--sizes" => {
                let v = it.next().unwrap_or_default();
                o.sizes = v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().unwrap_or_else(|_| usage()))
                    .collect();
                o.sizes.sort_unstable();
                o.sizes.dedup();
                if o.sizes.is_empty() || o.sizes[0] == 0 {
                    usage()
                }
            }
            "--projects" => o.projects = (num(&a) as usize).max(1),
            "--runs" => o.runs = (num(&a) as usize).max(1),
            "--duration-secs" => o.duration = Duration::from_secs(num(&a).max(1)),
            "--active-creates" => o.active_creates = (num(&a) as usize).max(1),
            "--write-docs" => o.write_docs = true,
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("unknown argument {a}");
                usage()
            }
        }
    }
    o.args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    o
}

/// The `troved serve` child process.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(http: &reqwest::Client) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
                .arg("serve")
                .args(["--provider", "sim"])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--sim-latency-ms", "0"])
                .args(["--quota-instances", "-1", "--quota-volumes", "-1"])
                // A cloud big enough that every loaded instance can reach ACTIVE.
                .args([
                    "--sim-zone",
                    "nova:vcpus=100000000:ram_mb=1000000000000:volume_gb=1000000000",
                ])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn troved");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken?
                }
                if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                    if r.status().is_success() {
                        return Server {
                            child,
                            base,
                            _dir: dir,
                        };
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("troved did not start");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS in bytes.
    fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// CPU time (user + system) of the process, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the `(comm)`, which may contain spaces.
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the comm.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Waits until the server is idle (background sagas done): under ~4% of a core over
    /// 500 ms, at most 60 s.
    async fn settle(&self) {
        self.settle_within(Duration::from_secs(60)).await
    }

    async fn settle_within(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut last = self.cpu_ticks();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.cpu_ticks();
            if now - last <= 2 {
                return;
            }
            last = now;
        }
        eprintln!("warning: server still busy after {} s", bound.as_secs());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_body(name: &str) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": "mysql", "version": "8.0"}
    }})
}

fn project(i: usize) -> String {
    format!("benchp{i:04}")
}

#[derive(Clone)]
struct Ctx {
    http: reqwest::Client,
    base: String,
}

impl Ctx {
    fn req(&self, method: reqwest::Method, project: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1.0/{project}{path}", self.base))
            .header("X-Auth-Token", format!("bench:{project}"))
    }

    /// POST create; the new id, or None on a non-200.
    async fn create(&self, project: &str, name: &str) -> Option<String> {
        let r = self
            .req(reqwest::Method::POST, project, "/instances")
            .json(&create_body(name))
            .send()
            .await
            .ok()?;
        if r.status().as_u16() != 200 {
            static SHOWN: AtomicUsize = AtomicUsize::new(0);
            if SHOWN.fetch_add(1, Ordering::Relaxed) < 3 {
                let s = r.status();
                eprintln!("create: {s} {}", r.text().await.unwrap_or_default());
            }
            return None;
        }
        let v: Value = r.json().await.ok()?;
        v["instance"]["id"].as_str().map(str::to_string)
    }

    /// PATCH rename (a durable command, answered once the read models show it); true on 202.
    async fn rename(&self, project: &str, id: &str, name: &str) -> bool {
        match self
            .req(reqwest::Method::PATCH, project, &format!("/instances/{id}"))
            .json(&json!({"instance": {"name": name}}))
            .send()
            .await
        {
            Ok(r) => {
                let ok = r.status().as_u16() == 202;
                r.bytes().await.is_ok() && ok
            }
            Err(_) => false,
        }
    }

    /// GET, reading the whole body; true on 200.
    async fn get_ok(&self, project: &str, path: &str) -> bool {
        match self.req(reqwest::Method::GET, project, path).send().await {
            Ok(r) => {
                let ok = r.status().as_u16() == 200;
                r.bytes().await.is_ok() && ok
            }
            Err(_) => false,
        }
    }
}

/// Small deterministic PRNG (xorshift64*), one per worker.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy)]
enum Op {
    Create,
    Show,
    List,
    Detail,
    /// The list of the small project (20 instances), whatever the others hold.
    ListSmall,
    /// 90% reads (show, list, detail in 6:2:1), 10% renames.
    Mixed,
}

/// The project that stays small while the others grow.
const SMALL: &str = "benchsmall";
const SMALL_SIZE: usize = 20;

/// `concurrency` workers issue `op` back to back for `duration`; latencies of the
/// successful requests, the error count and the measured wall time.
async fn closed_loop(
    ctx: &Ctx,
    ids: &Arc<Vec<(String, String)>>,
    projects: usize,
    op: Op,
    concurrency: usize,
    duration: Duration,
    seed: u64,
) -> Mixed {
    let seq = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let ctx = ctx.clone();
        let ids = ids.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(1_000_003) ^ ((w as u64 + 1) * 0x9E37_79B9));
            let mut lat = Vec::with_capacity(16_384);
            let mut writes = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match op {
                    Op::Create => {
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        let p = project(n % projects);
                        ctx.create(&p, &format!("c{seed}-{n}")).await.is_some()
                    }
                    Op::Show => {
                        let (p, id) = &ids[rng.below(ids.len())];
                        ctx.get_ok(p, &format!("/instances/{id}")).await
                    }
                    Op::List => {
                        let p = project(rng.below(projects));
                        ctx.get_ok(&p, "/instances").await
                    }
                    Op::Detail => {
                        let p = project(rng.below(projects));
                        ctx.get_ok(&p, "/instances/detail").await
                    }
                    Op::ListSmall => ctx.get_ok(SMALL, "/instances").await,
                    Op::Mixed => {
                        let roll = rng.below(90);
                        let p = project(rng.below(projects));
                        if rng.below(10) == 0 {
                            let (p, id) = &ids[rng.below(ids.len())];
                            let n = seq.fetch_add(1, Ordering::Relaxed);
                            let ok = ctx.rename(p, id, &format!("m{seed}-{n}")).await;
                            if ok {
                                writes.push(t.elapsed());
                            } else {
                                errors += 1;
                            }
                            continue;
                        } else if roll < 60 {
                            let (p, id) = &ids[rng.below(ids.len())];
                            ctx.get_ok(p, &format!("/instances/{id}")).await
                        } else if roll < 80 {
                            ctx.get_ok(&p, "/instances").await
                        } else {
                            ctx.get_ok(&p, "/instances/detail").await
                        }
                    }
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, writes, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut writes = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, w, e) = t.await.unwrap();
        lat.extend(l);
        writes.extend(w);
        errors += e;
    }
    let elapsed = start.elapsed();
    let reads = summarize(lat, errors, elapsed);
    let writes = summarize(writes, 0, elapsed);
    Mixed { reads, writes }
}

/// A closed loop's result: for the mixed load, reads and writes apart (`writes` is
/// empty for the other operations; errors are counted in `reads`).
struct Mixed {
    reads: Run,
    writes: Run,
}

/// Sequential creates, each polled (show every 1 ms) until ACTIVE: create -> ACTIVE times.
async fn to_active(ctx: &Ctx, projects: usize, count: usize, run: usize) -> Run {
    let start = Instant::now();
    let mut lat = Vec::with_capacity(count);
    let mut errors = 0;
    for i in 0..count {
        let p = project(i % projects);
        let t = Instant::now();
        let Some(id) = ctx.create(&p, &format!("a{run}-{i}")).await else {
            errors += 1;
            continue;
        };
        let path = format!("/instances/{id}");
        let deadline = t + Duration::from_secs(30);
        loop {
            let status = match ctx.req(reqwest::Method::GET, &p, &path).send().await {
                Ok(r) if r.status().as_u16() == 200 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["instance"]["status"].as_str().map(str::to_string)),
                _ => None,
            };
            match status.as_deref() {
                Some("ACTIVE") => {
                    lat.push(t.elapsed());
                    // Frees the simulated cloud's capacity (256 vCPU in its default zone);
                    // not timed.
                    let _ = ctx.req(reqwest::Method::DELETE, &p, &path).send().await;
                    break;
                }
                Some("ERROR") => {
                    eprintln!("create -> ERROR: {id}");
                    errors += 1;
                    break;
                }
                _ if Instant::now() > deadline => {
                    eprintln!("create -> ACTIVE: timed out, last status {status:?}");
                    errors += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    summarize(lat, errors, start.elapsed())
}

/// A table row: what, size, rate, p50, p99, errors, target.
struct Row {
    what: String,
    size: String,
    rate: String,
    p50: String,
    p99: String,
    errors: String,
    target: String,
}

fn row(what: &str, size: String, r: Run, unit: &str, target: &str) -> Row {
    Row {
        what: what.into(),
        size,
        rate: format!("{} {unit}", thousands(r.rate)),
        p50: ms(r.p50),
        p99: ms(r.p99),
        errors: format!("{} / {}", r.errors, r.count + r.errors),
        target: target.into(),
    }
}

/// Grows the store to `size` instances (round robin over the projects) with POST
/// creates at c=64; returns the ids added and the time the POSTs took.
async fn grow(
    ctx: &Ctx,
    from: usize,
    size: usize,
    projects: usize,
) -> (Vec<(String, String)>, Duration) {
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let ctx = ctx.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= size {
                    return ids;
                }
                let p = project(i % projects);
                let id = ctx
                    .create(&p, &format!("load-{i}"))
                    .await
                    .expect("create while loading");
                ids.push((p, id));
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    (ids, t.elapsed())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

#[tokio::main]
async fn main() {
    let o = parse_opts();
    let wall = Instant::now();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let server = Server::start(&http).await;
    let ctx = Ctx {
        http,
        base: server.base.clone(),
    };
    server.settle().await;
    let rss0 = server.rss();
    eprintln!(
        "troved pid {} at {}, RSS {} KiB",
        server.pid(),
        ctx.base,
        rss0 / 1024
    );
    let report = |name: &str, runs: &[Run]| {
        let m = median(runs);
        eprintln!(
            "{name}: {:.0}/s p50 {} p99 {} (runs: {})",
            m.rate,
            ms(m.p50),
            ms(m.p99),
            runs.iter()
                .map(|r| format!("{:.0}", r.rate))
                .collect::<Vec<_>>()
                .join(", ")
        );
        m
    };
    let mut rows = Vec::new();

    // Create -> ACTIVE on the empty store.
    let mut runs = Vec::new();
    for r in 0..o.runs {
        runs.push(to_active(&ctx, o.projects, o.active_creates, r).await);
        server.settle().await;
    }
    let active = report("active", &runs);
    server.settle().await;
    let rss_empty = server.rss();

    // The small project, which never grows.
    for i in 0..SMALL_SIZE {
        ctx.create(SMALL, &format!("small-{i}"))
            .await
            .expect("create in the small project");
    }

    let mut ids: Vec<(String, String)> = Vec::new();
    let mut loads = Vec::new();
    let mut rss_at = Vec::new();
    let mut largest = String::new();
    for &size in &o.sizes {
        let (added, took) = grow(&ctx, ids.len(), size, o.projects).await;
        ids.extend(added);
        let t = Instant::now();
        server.settle_within(Duration::from_secs(900)).await;
        let rss = server.rss();
        eprintln!(
            "loaded {} instances over {} projects ({:.0} creates/s at c=64; sagas done {:.1} s later), RSS {} KiB",
            size,
            o.projects,
            (size - loads.iter().map(|(s, _, _)| *s).max().unwrap_or(0)) as f64 / took.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            rss / 1024
        );
        loads.push((size, took, t.elapsed()));
        rss_at.push((size, rss));
        let shared = Arc::new(ids.clone());
        let label = format!("{} over {} projects", thousands(size as f64), o.projects);
        for (name, op, what, target) in [
            (
                "show",
                Op::Show,
                "GET show, c=64",
                ">= 40,000 req/s, p99 < 5 ms (at 100k)",
            ),
            (
                "list",
                Op::List,
                "GET list (first page of 20), c=64",
                ">= 20,000 req/s (at 100k)",
            ),
            (
                "detail",
                Op::Detail,
                "GET detail (first page of 20), c=64",
                "",
            ),
            (
                "list-small",
                Op::ListSmall,
                "GET list of a 20-instance project beside them, c=64",
                "independent of the others' size",
            ),
        ] {
            let mut runs = Vec::new();
            for r in 0..o.runs {
                let seed = (size + r) as u64;
                runs.push(
                    closed_loop(&ctx, &shared, o.projects, op, 64, o.duration, seed)
                        .await
                        .reads,
                );
            }
            let m = report(&format!("{name} at {size}"), &runs);
            rows.push(row(what, label.clone(), m, "req/s", target));
        }
        largest = label;
    }

    // Mixed: 90% reads, 10% renames, at the largest size.
    let shared = Arc::new(ids.clone());
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for r in 0..o.runs {
        let m = closed_loop(
            &ctx,
            &shared,
            o.projects,
            Op::Mixed,
            64,
            o.duration,
            7 + r as u64,
        )
        .await;
        reads.push(m.reads);
        writes.push(m.writes);
        server.settle().await;
    }
    rows.push(row(
        "mixed c=64: the reads (show 6 : list 2 : detail 1)",
        largest.clone(),
        report("mixed reads", &reads),
        "req/s",
        "",
    ));
    rows.push(row(
        "mixed c=64: the commands (PATCH rename, durable, 10% of requests)",
        largest.clone(),
        report("mixed writes", &writes),
        "/s",
        "",
    ));

    // Durable creates; each run waits for the sagas it started to finish.
    for (name, c, target) in [
        ("create1", 1, ""),
        ("create16", 16, ""),
        ("create64", 64, ">= 5,000 /s"),
    ] {
        let mut runs = Vec::new();
        for r in 0..o.runs {
            let seed = (c * 100 + r) as u64;
            runs.push(
                closed_loop(&ctx, &shared, o.projects, Op::Create, c, o.duration, seed)
                    .await
                    .reads,
            );
            server.settle_within(Duration::from_secs(300)).await;
        }
        let m = report(name, &runs);
        rows.push(row(
            &format!("POST create, durable, c={c}"),
            format!("from {largest}, growing"),
            m,
            "/s",
            target,
        ));
    }
    rows.push(row(
        &format!(
            "create -> ACTIVE, sim latency 0, sequential, show polled every 1 ms ({} creates per run)",
            o.active_creates
        ),
        "0 (each deleted once ACTIVE)".into(),
        active,
        "creates/s",
        "p99 < 20 ms",
    ));

    // Memory.
    let sizes: Vec<String> = rss_at
        .iter()
        .map(|(n, r)| format!("{}: {}", thousands(*n as f64), mib(*r)))
        .collect();
    rows.push(Row {
        what: "RSS of troved (VmRSS) after the sagas settled".into(),
        size: "0 / each size".into(),
        rate: format!(
            "fresh {}; empty after create -> ACTIVE {}; {}",
            mib(rss0),
            mib(rss_empty),
            sizes.join("; ")
        ),
        p50: String::new(),
        p99: String::new(),
        errors: String::new(),
        target: String::new(),
    });
    if let (Some(&(n1, r1)), Some(&(n2, r2))) = (rss_at.first(), rss_at.last()) {
        let marginal = if n2 > n1 {
            format!(
                "{:.2} KiB from {} to {} instances; ",
                r2.saturating_sub(r1) as f64 / (n2 - n1) as f64 / 1024.0,
                thousands(n1 as f64),
                thousands(n2 as f64)
            )
        } else {
            String::new()
        };
        rows.push(Row {
            what: "RSS per instance (whole process: read models, store caches, saga, allocator)"
                .into(),
            size: largest.clone(),
            rate: format!(
                "{marginal}{:.2} KiB from empty to {}",
                r2.saturating_sub(rss_empty) as f64 / n2 as f64 / 1024.0,
                thousands(n2 as f64)
            ),
            p50: String::new(),
            p99: String::new(),
            errors: String::new(),
            target: "<= 2 KiB (read models)".into(),
        });
    }
    let total = wall.elapsed();
    drop(server);

    let mut table = String::from(
        "| what | instances | median rate | p50 | p99 | errors / requests | target (issue, 2 cores) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for x in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            x.what, x.size, x.rate, x.p50, x.p99, x.errors, x.target
        ));
    }
    let loading: Vec<String> = loads
        .iter()
        .map(|(n, took, settle)| {
            format!(
                "to {}: POSTs {:.1} s, sagas done {:.1} s later",
                thousands(*n as f64),
                took.as_secs_f64(),
                settle.as_secs_f64()
            )
        })
        .collect();

    let mut commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    if !sh("git", &["status", "--porcelain"]).is_empty() {
        commit.push_str(" (with uncommitted changes)");
    }
    let command = if o.args.is_empty() {
        "cargo bench --bench load".to_string()
    } else {
        format!("cargo bench --bench load -- {}", o.args.join(" "))
    };
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let block = format!(
        "Machine: {}. Commit: `{commit}`. Date: {date}.\n\
         Command: `{command}` (whole run {:.0} s; loading {}).\n\
         Each figure is the median over {} runs of {} s each (create -> ACTIVE: {} creates \
         per run); p50/p99 are client-side latencies of the successful requests. Server: \
         `troved serve --sim-latency-ms 0 --quota-instances -1 --quota-volumes -1` with a \
         large simulated zone, on a fresh data dir; the load generator (tokio + reqwest) \
         runs on the same 2 cores and takes about half of them.\n\n{table}",
        machine(),
        total.as_secs_f64(),
        loading.join("; "),
        o.runs,
        o.duration.as_secs(),
        o.active_creates,
    );
    println!("{block}");

    if o.write_docs {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/performance.md");
        let doc = std::fs::read_to_string(&path).expect("docs/performance.md");
        let (b, e) = ("<!-- bench:begin -->", "<!-- bench:end -->");
        let new = match (doc.find(b), doc.find(e)) {
            (Some(i), Some(j)) if i < j => {
                format!("{}{b}\n{block}{}", &doc[..i], &doc[j..])
            }
            _ => format!("{doc}\n{b}\n{block}{e}\n"),
        };
        std::fs::write(&path, new).expect("write docs/performance.md");
        eprintln!("wrote {}", path.display());
    }
}
