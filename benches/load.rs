//! Load harness for `troved` (the performance issue): starts the real release binary on the
//! embedded defaults with the simulated cloud at zero latency and unlimited quotas, in a
//! temporary data directory, loads it, and measures.
//!
//! Run: `cargo bench --bench load -- [--instances N] [--projects P] [--runs R]
//! [--duration-secs S] [--active-creates K] [--write-docs]`.
//!
//! Each figure is the median over R runs of that run's rate, p50 and p99. The load
//! generator (tokio + reqwest) runs on the same machine as the server and takes part of its
//! CPU; read the figures as a lower bound of what the server alone can do.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Opts {
    instances: usize,
    projects: usize,
    runs: usize,
    duration: Duration,
    active_creates: usize,
    write_docs: bool,
    args: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench load -- [--instances N (2000)] [--projects P (100)] \
         [--runs R (3)] [--duration-secs S (5)] [--active-creates K (200)] [--write-docs]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        instances: 2000,
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
            "--instances" => o.instances = num(&a) as usize,
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
                if let Ok(r) = http.get(format!("{base}/v1.0")).send().await {
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
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.cpu_ticks();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.cpu_ticks();
            if now - last <= 2 {
                return;
            }
            last = now;
        }
        eprintln!("warning: server still busy after 60 s");
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

/// One run's result.
#[derive(Clone, Copy, Default)]
struct Run {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    count: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summarize(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Run {
    lat.sort_unstable();
    Run {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        errors,
        count: lat.len(),
    }
}

/// Median of each column over the runs.
fn median(runs: &[Run]) -> Run {
    fn med<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
    Run {
        rate: med(runs.iter().map(|r| r.rate).collect()),
        p50: med(runs.iter().map(|r| r.p50).collect()),
        p99: med(runs.iter().map(|r| r.p99).collect()),
        errors: runs.iter().map(|r| r.errors).sum(),
        count: runs.iter().map(|r| r.count).sum(),
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
}

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
) -> Run {
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
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    summarize(lat, errors, start.elapsed())
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

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else {
        format!("{m:.1} ms")
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} cores (nproc), {cpu}", sh("nproc", &[]))
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

    let mut results: BTreeMap<&str, Run> = BTreeMap::new();
    let mut measure = |name: &'static str, runs: Vec<Run>| {
        let m = median(&runs);
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
        results.insert(name, m);
    };

    // Create -> ACTIVE on the empty store: the sim's default zone holds 256 vCPU only.
    let mut runs = Vec::new();
    for r in 0..o.runs {
        runs.push(to_active(&ctx, o.projects, o.active_creates, r).await);
        server.settle().await;
    }
    measure("active", runs);

    let rss_pre = server.rss();
    // Load: N creates at concurrency 64, round robin over the projects.
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let ctx = ctx.clone();
        let next = next.clone();
        let (n, projects) = (o.instances, o.projects);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
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
    let load_time = t.elapsed();
    server.settle().await;
    let settle_time = t.elapsed();
    let rss1 = server.rss();
    let ids = Arc::new(ids);
    eprintln!(
        "loaded {} instances over {} projects in {:.1} s ({:.0}/s; idle after {:.1} s), RSS {} KiB",
        o.instances,
        o.projects,
        load_time.as_secs_f64(),
        o.instances as f64 / load_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        rss1 / 1024
    );

    // Reads first, at the loaded size (creates below grow the store).
    for (name, op) in [("show", Op::Show), ("list", Op::List)] {
        let mut runs = Vec::new();
        for r in 0..o.runs {
            runs.push(closed_loop(&ctx, &ids, o.projects, op, 64, o.duration, r as u64 + 1).await);
        }
        measure(name, runs);
    }

    // Durable creates; each run waits for the sagas it started to finish.
    let before_creates = server.rss();
    for (name, c) in [("create1", 1), ("create16", 16), ("create64", 64)] {
        let mut runs = Vec::new();
        for r in 0..o.runs {
            let seed = (c * 100 + r) as u64;
            runs.push(closed_loop(&ctx, &ids, o.projects, Op::Create, c, o.duration, seed).await);
            server.settle().await;
        }
        measure(name, runs);
    }

    let rss_end = server.rss();
    let total = wall.elapsed();
    drop(server);

    // The table.
    let n = o.instances;
    let size = format!("{} over {} projects", thousands(n as f64), o.projects);
    let r = &results;
    let mut rows = vec![
        row(
            "POST create, durable, c=1",
            "growing".into(),
            r["create1"],
            "/s",
            "",
        ),
        row(
            "POST create, durable, c=16",
            "growing".into(),
            r["create16"],
            "/s",
            "",
        ),
        row(
            "POST create, durable, c=64",
            "growing".into(),
            r["create64"],
            "/s",
            ">= 5,000 /s",
        ),
        row(
            "GET show, c=64",
            size.clone(),
            r["show"],
            "req/s",
            ">= 40,000 req/s, p99 < 5 ms (at 100k)",
        ),
        row(
            "GET list (first page of 20), c=64",
            size.clone(),
            r["list"],
            "req/s",
            ">= 20,000 req/s (at 100k)",
        ),
        row(
            &format!(
                "create -> ACTIVE, sim latency 0, sequential, show polled every 1 ms ({} creates per run)",
                o.active_creates
            ),
            "0 (each deleted once ACTIVE)".into(),
            r["active"],
            "creates/s",
            "p99 < 20 ms",
        ),
    ];
    let per_instance = rss1.saturating_sub(rss_pre) as f64 / n.max(1) as f64;
    rows.push(Row {
        what: "RSS of troved (VmRSS)".into(),
        size: format!("0 / 0 / {} / all", thousands(n as f64)),
        rate: format!(
            "fresh {:.1} MiB; before loading {:.1} MiB; loaded {:.1} MiB; {:.1} MiB after all {} creates of the run",
            rss0 as f64 / 1048576.0,
            rss_pre as f64 / 1048576.0,
            rss1 as f64 / 1048576.0,
            rss_end as f64 / 1048576.0,
            thousands(
                (n + ["create1", "create16", "create64", "active"]
                    .iter()
                    .map(|k| r[k].count + r[k].errors)
                    .sum::<usize>()) as f64
            )
        ),
        p50: String::new(),
        p99: String::new(),
        errors: String::new(),
        target: String::new(),
    });
    rows.push(Row {
        what: "RSS per instance ((loaded - before loading) / N)".into(),
        size: size.clone(),
        rate: format!("{:.2} KiB", per_instance / 1024.0),
        p50: String::new(),
        p99: String::new(),
        errors: String::new(),
        target: "<= 2 KiB".into(),
    });
    let _ = before_creates;

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
         Command: `{command}` (whole run {:.0} s: loading {} instances took {:.1} s, \
         {:.0} creates/s at c=64).\n\
         Each figure is the median over {} runs of {} s each (create -> ACTIVE: {} creates \
         per run); p50/p99 are client-side latencies of the successful requests. Server: \
         `troved serve --sim-latency-ms 0 --quota-instances -1 --quota-volumes -1` on a \
         fresh data dir; the load generator runs on the same cores.\n\n{table}",
        machine(),
        total.as_secs_f64(),
        thousands(n as f64),
        load_time.as_secs_f64(),
        n as f64 / load_time.as_secs_f64(),
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
