//! Identity cost (issue #16): GET show with `--auth keystone` against a real Keystone
//! (token cache warm) beside `--auth tokens:FILE`, and how many times troved calls
//! Keystone for N requests carrying one token.
//!
//! Run: `TROVED_TEST_KEYSTONE=<venv>/bin/python cargo bench --bench auth -- [--runs R (5)]
//! [--duration-secs S (5)] [--concurrency C (16)] [--requests N (10000)]`
//! (`bash tests/keystone/install.sh` prints such a python). Without it: SKIPPED.
//!
//! Both servers are the release binary on the simulated cloud, one instance each; the
//! runs alternate between the two modes so that machine noise hits both alike. Each
//! figure is the median over R runs. The load generator shares the machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{machine, median, ms, sh, summarize, thousands, Run};

struct Opts {
    runs: usize,
    duration: Duration,
    concurrency: usize,
    requests: usize,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        runs: 5,
        duration: Duration::from_secs(5),
        concurrency: 16,
        requests: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--bench" {
            continue; // `cargo bench` passes it to every harness = false target
        }
        let n: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!(
                "usage: cargo bench --bench auth -- [--runs R] [--duration-secs S] \
                 [--concurrency C] [--requests N]"
            );
            std::process::exit(2)
        });
        match a.as_str() {
            "--runs" => o.runs = n.max(1),
            "--duration-secs" => o.duration = Duration::from_secs(n.max(1) as u64),
            "--concurrency" => o.concurrency = n.max(1),
            "--requests" => o.requests = n.max(1),
            _ => {
                eprintln!("unknown option {a}");
                std::process::exit(2)
            }
        }
    }
    o
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Keystone from tests/keystone/keystone_server.py, provisioned.
struct Keystone {
    _proc: Proc,
    url: String,
    info: Value,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keystone/keystone_server.py")
}

async fn start_keystone(python: &str, http: &reqwest::Client) -> Keystone {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().to_string();
    let d = dir.path().to_str().expect("utf-8 temp dir");
    let ok = Command::new(python)
        .arg(script())
        .args(["init", d, &port])
        .status()
        .expect("keystone_server.py init");
    assert!(ok.success(), "keystone init failed");
    let child = Command::new(python)
        .arg(script())
        .args(["serve", d, &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keystone serve");
    let proc = Proc(child);
    let url = format!("http://127.0.0.1:{port}/v3");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
        assert!(Instant::now() < deadline, "keystone did not answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = Command::new(python)
        .arg(script())
        .args(["provision", &url, d])
        .output()
        .expect("keystone provision");
    assert!(out.status.success(), "provision failed");
    let info = serde_json::from_slice(&out.stdout).expect("provision JSON");
    Keystone {
        _proc: proc,
        url,
        info,
        _dir: dir,
    }
}

/// A project-scoped token for `user` (password auth), as the CLI gets one.
async fn login(http: &reqwest::Client, ks: &Keystone, user: &str) -> String {
    let u = &ks.info["users"][user];
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": u["password"], "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": u["project"], "domain": {"name": "Default"}}}}});
    let r = http
        .post(format!("{}/auth/tokens?nocatalog", ks.url))
        .json(&body)
        .send()
        .await
        .expect("keystone login");
    assert_eq!(r.status().as_u16(), 201, "login {user}");
    r.headers()["x-subject-token"]
        .to_str()
        .expect("token")
        .to_string()
}

/// `troved serve` (release build) on the simulated cloud.
struct Server {
    _proc: Proc,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start_server(http: &reqwest::Client, args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_troved"))
        .arg("serve")
        .args(["--provider", "sim", "--sim-latency-ms", "0"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn troved");
    let proc = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status().is_success())
    {
        assert!(Instant::now() < deadline, "troved did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        _proc: proc,
        base,
        _dir: dir,
    }
}

/// The instance a mode's loop shows: base URL, its project, the id and the token.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    url: String,
    token: String,
}

async fn create_instance(http: &reqwest::Client, base: &str, project: &str, token: &str) -> Target {
    let r = http
        .post(format!("{base}/v1.0/{project}/instances"))
        .header("X-Auth-Token", token)
        .json(&json!({"instance": {"name": "bench", "flavorRef": "1",
            "volume": {"size": 1}, "datastore": {"type": "mysql", "version": "8.0"}}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 200, "create on {base}");
    let v: Value = r.json().await.expect("create body");
    let id = v["instance"]["id"].as_str().expect("id");
    Target {
        http: http.clone(),
        url: format!("{base}/v1.0/{project}/instances/{id}"),
        token: token.to_string(),
    }
}

/// `concurrency` workers GET show back to back, for `duration` or until `limit`
/// requests in all have been sent.
async fn show_loop(t: &Target, concurrency: usize, duration: Duration, limit: usize) -> Run {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (t, sent) = (t.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while start.elapsed() < duration
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < limit
            {
                let at = Instant::now();
                let r = t.http.get(&t.url).header("X-Auth-Token", &t.token).send();
                let ok = match r.await {
                    Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(at.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.expect("worker");
        lat.extend(l);
        errors += e;
    }
    summarize(lat, errors, start.elapsed())
}

/// Keystone token validations troved has made, from its GET /metrics.
async fn validations(http: &reqwest::Client, base: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| {
            l.starts_with("troved_keystone_calls_total{") && l.contains("kind=\"validate\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let o = parse_opts();
    let Ok(python) = std::env::var("TROVED_TEST_KEYSTONE") else {
        println!("SKIPPED: TROVED_TEST_KEYSTONE not set (bash tests/keystone/install.sh)");
        return;
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .expect("client");
    let ks = start_keystone(&python, &http).await;
    let p1 = ks.info["projects"]["p1"].as_str().expect("p1").to_string();
    let alice = &ks.info["users"]["alice"];

    let tokens_dir = tempfile::tempdir().expect("temp dir");
    let file = tokens_dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[token]]\ntoken = \"bench-static\"\nuser = \"{}\"\nproject = \"{p1}\"\nroles = [\"member\"]\n",
            alice["id"].as_str().expect("alice id")
        ),
    )
    .expect("token file");
    let static_auth = format!("tokens:{}", file.display());
    let by_file = start_server(&http, &["--auth", &static_auth], &[]).await;
    let svc_password = ks.info["users"]["troved"]["password"].as_str().expect("pw");
    let env = [
        ("TROVED_KEYSTONE_USER", "troved"),
        ("TROVED_KEYSTONE_PASSWORD", svc_password),
        ("TROVED_KEYSTONE_PROJECT", "service"),
    ];
    let by_keystone = start_server(
        &http,
        &["--auth", "keystone", "--keystone-url", &ks.url],
        &env,
    )
    .await;

    let token = login(&http, &ks, "alice").await;
    let modes = [
        (
            "tokens:FILE",
            create_instance(&http, &by_file.base, &p1, "bench-static").await,
        ),
        (
            "keystone (cache warm)",
            create_instance(&http, &by_keystone.base, &p1, &token).await,
        ),
    ];
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..o.runs {
        for (i, (_, t)) in modes.iter().enumerate() {
            runs[i].push(show_loop(t, o.concurrency, o.duration, usize::MAX).await);
        }
    }
    let med = [median(&runs[0]), median(&runs[1])];

    // N requests with one token never seen before: how many validations do they cost?
    let fresh = login(&http, &ks, "alice").await;
    let before = validations(&http, &by_keystone.base).await;
    let mut t = modes[1].1.clone();
    t.token = fresh;
    let burst = show_loop(&t, o.concurrency, Duration::from_secs(3600), o.requests).await;
    let calls = validations(&http, &by_keystone.base).await - before;

    let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    println!("## Identity: Keystone against a token file (`benches/auth.rs`)\n");
    println!(
        "`TROVED_TEST_KEYSTONE=... cargo bench --bench auth -- --runs {} --duration-secs {} \
         --concurrency {} --requests {}`, commit {commit}, {}.\n",
        o.runs,
        o.duration.as_secs(),
        o.concurrency,
        o.requests,
        machine()
    );
    println!(
        "| GET show, c={} | rate (median) | p50 | p99 | errors |",
        o.concurrency
    );
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in modes.iter().enumerate() {
        let r = med[i];
        println!(
            "| {name} | {} req/s | {} | {} | {} |",
            thousands(r.rate),
            ms(r.p50),
            ms(r.p99),
            r.errors
        );
    }
    println!(
        "\nkeystone / tokens:FILE: rate {:.3}, p50 {:.3} (per-run rates: file {:?}, keystone {:?})",
        med[1].rate / med[0].rate,
        med[1].p50.as_secs_f64() / med[0].p50.as_secs_f64(),
        runs[0].iter().map(|r| r.rate.round()).collect::<Vec<_>>(),
        runs[1].iter().map(|r| r.rate.round()).collect::<Vec<_>>(),
    );
    println!(
        "\n{} requests (c={}) with one new token: {} Keystone validations ({} errors)",
        burst.count, o.concurrency, calls, burst.errors
    );
}
