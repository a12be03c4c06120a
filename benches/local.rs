//! Local provider harness (issue #13): how long a real PostgreSQL or MariaDB instance takes
//! from `POST /instances` to a working client connection, and what an idle one costs.
//!
//! Run (as root for loop-mounted volumes; otherwise directory volumes):
//! `cargo bench --bench local -- [--count N (20)] [--datastores postgresql,mariadb]`.
//!
//! It starts the release `troved serve --provider local` in a temporary data directory
//! (`--local-ports 32500-32699`, unlimited quotas) and, per installed datastore: makes one
//! instance first (the version's template is initialized then; reported on its own), then
//! N sequential creates, each timed from the POST until show says ACTIVE *and* the
//! datastore's own client (`psql` / `mariadb`) logs in as the created user to the created
//! database and runs `select 1` (polled every 10 ms); the memory of each idle instance
//! (its server processes: PostgreSQL's postmaster and its children, `mariadbd`; RSS
//! summed, and PSS, which splits shared pages among the processes); those instances are
//! deleted; then N concurrent creates, timed from the first POST until the last one is
//! connectable. The load generator and the clients run on the same cores as troved and
//! the servers. Prints a Markdown table.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use troved::local::{discover, Datastore, Installation};

const PORTS: &str = "32500-32699";
const PASSWORD: &str = "bench-pw-1";

struct Opts {
    count: usize,
    datastores: Vec<String>,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        count: 20,
        datastores: vec!["postgresql".into(), "mariadb".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--count" => o.count = it.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--datastores" => {
                o.datastores = it
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            _ => {
                eprintln!("usage: cargo bench --bench local -- [--count N] [--datastores a,b]");
                std::process::exit(2)
            }
        }
    }
    o
}

/// The `troved serve --provider local` child; on drop it is killed, then every server
/// it still lists is killed by pid and every mount under its root is undone.
struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        // The database user must traverse to the data directory (a tempdir is 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let data_dir = dir.path().canonicalize().unwrap().join("data");
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
                .arg("serve")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--provider", "local", "--local-ports", PORTS])
                .args(["--quota-instances", "-1", "--quota-volumes", "-1"])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn troved");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                    if r.status().is_success() {
                        return Server {
                            child,
                            base,
                            http,
                            data_dir,
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

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1.0/bench{path}", self.base))
            .header("X-Auth-Token", "bench:bench")
    }

    async fn create(&self, name: &str, install: &Installation) -> String {
        let body = json!({"instance": {
            "name": name,
            "flavorRef": "1",
            "volume": {"size": 1},
            "datastore": {"type": install.datastore.manager(), "version": install.series},
            "databases": [{"name": "orders"}],
            "users": [{"name": "app", "password": PASSWORD, "databases": [{"name": "orders"}]}],
        }});
        let r = self.req(reqwest::Method::POST, "/instances").json(&body);
        let r = r.send().await.expect("POST");
        assert_eq!(r.status(), 200, "create");
        let v: Value = r.json().await.expect("JSON");
        v["instance"]["id"].as_str().expect("id").to_string()
    }

    async fn show(&self, id: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, &format!("/instances/{id}"));
        let r = r.send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// Polls until `id` is ACTIVE and its client logs in; the port.
    async fn until_connectable(&self, id: &str, install: &Installation) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(300);
        let port = loop {
            let (_, v) = self.show(id).await;
            match v["instance"]["status"].as_str() {
                Some("ACTIVE") => break private_port(&v["instance"]),
                Some("ERROR") => panic!("instance {id} failed: {}", v["instance"]["fault"]),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{id} not ACTIVE in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        while !connects(install, port).await {
            assert!(Instant::now() < deadline, "{id} not connectable in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        port
    }

    async fn delete_all(&self, ids: &[String]) {
        for id in ids {
            let r = self.req(reqwest::Method::DELETE, &format!("/instances/{id}"));
            r.send().await.expect("DELETE");
        }
        for id in ids {
            while self.show(id).await.0 != 404 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The pid of each listed server, by instance id (`troved local list`).
    fn pids(&self) -> Vec<(String, u32)> {
        let out = Command::new(env!("CARGO_BIN_EXE_troved"))
            .args(["local", "list", "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("troved local list");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let id = s["instance_id"].as_str()?.to_string();
                Some((id, s["pid"].as_u64()? as u32))
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (_, pid) in self.pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(500));
        let root = self.data_dir.join("local").to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in info.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&format!("{root}/")) {
                let _ = Command::new("umount").arg(m).status();
            }
        }
    }
}

fn private_port(inst: &Value) -> u16 {
    inst["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "private"))
        .and_then(|a| a["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .expect("a private address with its port")
}

/// Whether the datastore's client logs in as `app` to `orders` and runs `select 1`.
async fn connects(install: &Installation, port: u16) -> bool {
    let port = port.to_string();
    let mut cmd = match install.datastore {
        Datastore::Postgresql => {
            let mut c = tokio::process::Command::new(install.tool("psql"));
            c.arg(format!(
                "postgresql://app:{PASSWORD}@127.0.0.1:{port}/orders"
            ))
            .args(["-X", "-w", "-A", "-t", "-c", "select 1"])
            .env_remove("PGPASSWORD");
            c
        }
        _ => {
            let mut c = tokio::process::Command::new(install.tool("mariadb"));
            c.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
                .args([&port, "-u", "app", &format!("-p{PASSWORD}"), "orders"])
                .args(["-N", "-e", "select 1"]);
            c
        }
    };
    let out = cmd.stdin(Stdio::null()).output().await;
    out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1")
}

/// (RSS, PSS) in bytes of `pid` and its children.
fn memory(pid: u32) -> (u64, u64) {
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(p);
        }
    }
    let field = |p: u32, file: &str, name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{p}/{file}")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    pids.iter().fold((0, 0), |(r, s), p| {
        (
            r + field(*p, "status", "VmRSS:"),
            s + field(*p, "smaps_rollup", "Pss:"),
        )
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}

const MIB: f64 = 1024.0 * 1024.0;

/// One datastore's figures as Markdown rows.
async fn measure(s: &Server, install: &Installation, n: usize) -> Vec<String> {
    let name = format!("{} {}", install.datastore.manager(), install.series);
    let t = Instant::now();
    let first = s.create("first", install).await;
    s.until_connectable(&first, install).await;
    let first_time = t.elapsed().as_secs_f64();
    let mut ids = vec![first.clone()];

    let mut times = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let id = s.create(&format!("seq-{i}"), install).await;
        s.until_connectable(&id, install).await;
        times.push(t.elapsed().as_secs_f64());
        ids.push(id);
    }
    times.sort_by(f64::total_cmp);
    // Idle: a few seconds after the last create, then each server's memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut rss, mut pss): (Vec<f64>, Vec<f64>) = s
        .pids()
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .map(|(_, pid)| memory(pid))
        .map(|(r, p)| (r as f64 / MIB, p as f64 / MIB))
        .unzip();
    let servers = rss.len();
    s.delete_all(&ids).await;

    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(s.create(&format!("conc-{i}"), install).await);
    }
    let waits = ids.iter().map(|id| s.until_connectable(id, install));
    for w in waits {
        w.await;
    }
    let wall = t.elapsed().as_secs_f64();
    s.delete_all(&ids).await;

    vec![
        format!("| {name}: first create (initializes the version's template) | {first_time:.2} s |"),
        format!(
            "| {name}: create -> connectable, {n} sequential | p50 {:.2} s, p99 {:.2} s (min {:.2} s, max {:.2} s) |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[0],
            times[times.len() - 1]
        ),
        format!("| {name}: {n} concurrent creates until all connectable (wall) | {wall:.2} s |"),
        format!(
            "| {name}: memory per idle instance, flavor 1 (512 MB), median of {servers} | RSS {:.0} MiB summed over its processes; PSS {:.0} MiB |",
            median(&mut rss),
            median(&mut pss)
        ),
    ]
}

#[tokio::main]
async fn main() {
    let o = parse_opts();
    let installed = discover::installed().await;
    let s = Server::start().await;
    let mut rows = Vec::new();
    for ds in &o.datastores {
        let Some(install) = installed.iter().find(|i| i.datastore.manager() == ds) else {
            eprintln!("SKIPPED: no {ds} server installed");
            continue;
        };
        eprintln!("measuring {ds} {} ...", install.series);
        rows.extend(measure(&s, install, o.count).await);
    }
    println!("| what | measured |\n| --- | --- |");
    for r in rows {
        println!("{r}");
    }
}
