//! Test harness: runs the real `troved` binary on a free loopback port with its own
//! data directory, and speaks HTTP to it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod keystone;
pub mod local;

/// A running `troved serve` child process.
pub struct TestServer {
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// `ulimit` arguments the server is started under (through `sh -c`), if any.
    ulimit: Option<String>,
    /// Environment variables the server is started with, beside the test's own.
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestServer {
    /// Starts a server on a fresh data dir with the given extra flags.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        Self::start_limited(data_dir, extra_args, None).await
    }

    /// Starts a server under `ulimit <ulimit>` (e.g. `-Sn 256`: a lower soft limit of open
    /// files), run by `sh -c '... exec troved'` so the server keeps the child's pid.
    pub async fn start_limited(
        data_dir: &Path,
        extra_args: &[&str],
        ulimit: Option<&str>,
    ) -> TestServer {
        let mut s = TestServer {
            base: String::new(),
            port: 0,
            data_dir: data_dir.to_path_buf(),
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ulimit: ulimit.map(str::to_string),
            env: Vec::new(),
            http: reqwest::Client::new(),
        };
        s.spawn().await;
        s
    }

    /// Starts a server with the given extra flags and environment variables.
    pub async fn start_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut s = TestServer {
            base: String::new(),
            port: 0,
            data_dir: data_dir.to_path_buf(),
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ulimit: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: reqwest::Client::new(),
        };
        s.spawn().await;
        s
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (a clean shutdown), then waits up to `within` for the process to exit;
    /// its exit status, or `None` if it still runs (it is then SIGKILLed when dropped).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.pid()?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts the server again on the same data dir (after [`TestServer::terminate`]).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        // A restart tries the old port first, so links (built from Host) stay the same.
        let previous = (self.port != 0).then_some(self.port);
        for attempt in 0..5 {
            let port = match (attempt, previous) {
                (0, Some(p)) => p,
                _ => free_port(),
            };
            let mut command = match &self.ulimit {
                None => Command::new(env!("CARGO_BIN_EXE_troved")),
                Some(limit) => {
                    let mut sh = Command::new("sh");
                    sh.arg("-c")
                        .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
                        .arg(env!("CARGO_BIN_EXE_troved"));
                    sh
                }
            };
            let child = command
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(sim_unless_named(&self.extra_args))
                .args(&self.extra_args)
                .env("RUST_LOG", "error")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn troved");
            self.child = Some(child);
            self.port = port;
            self.base = format!("http://127.0.0.1:{port}");
            if self.wait_ready().await {
                return;
            }
            self.kill();
        }
        panic!("troved did not start");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited (port taken?)
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// SIGKILL, no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then start again on the same data dir.
    pub async fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn url(&self, project: &str, path: &str) -> String {
        format!("{}/v1.0/{project}{path}", self.base)
    }

    /// A request as `user` of `project` (token `user:project`).
    pub fn req(
        &self,
        method: reqwest::Method,
        user: &str,
        project: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(project, path))
            .header("X-Auth-Token", format!("{user}:{project}"))
    }

    pub async fn get(&self, user: &str, project: &str, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, user, project, path)).await
    }

    pub async fn post(&self, user: &str, project: &str, path: &str, body: &Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::POST, user, project, path)
                .json(body),
        )
        .await
    }

    pub async fn patch(&self, user: &str, project: &str, path: &str, body: &Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::PATCH, user, project, path)
                .json(body),
        )
        .await
    }

    pub async fn put(&self, user: &str, project: &str, path: &str, body: &Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::PUT, user, project, path)
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, user: &str, project: &str, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::DELETE, user, project, path)).await
    }

    /// Creates a small mysql instance and returns its create-response `instance`.
    pub async fn create(&self, user: &str, project: &str, name: &str) -> Value {
        let (status, body) = self
            .post(user, project, "/instances", &create_body(name))
            .await;
        assert_eq!(status, 200, "create failed: {body}");
        body["instance"].clone()
    }

    /// POST /instances, then polls until the instance is ACTIVE; its id.
    pub async fn create_active(&self, user: &str, project: &str, name: &str) -> String {
        let id = self.create(user, project, name).await["id"]
            .as_str()
            .expect("the created instance's id")
            .to_string();
        self.wait_for(user, project, &id, |i| i["status"] == "ACTIVE")
            .await;
        id
    }

    /// Polls show until `pred` holds (bounded).
    pub async fn wait_for(
        &self,
        user: &str,
        project: &str,
        id: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(user, project, &format!("/instances/{id}")).await;
            if status == 200 && pred(&body["instance"]) {
                return body["instance"].clone();
            }
            if status == 404 && pred(&Value::Null) {
                return Value::Null;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `troved serve` child on a fresh port at each start, for tests that stop it
/// cleanly (SIGTERM) and start it again themselves: snapshots, a full disk, a damaged
/// log. Its stderr goes to the test's, or to a file ([`Serve::start_logged`]) for tests
/// that read the log. Killed on drop.
pub struct Serve {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    log: Option<PathBuf>,
}

impl Serve {
    /// Starts with `extra` flags (say `--sim-latency-ms` if it matters) and
    /// `RUST_LOG=error`, and waits until `/readyz` answers 200.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Serve {
        Serve::spawn(data_dir, None, extra).await
    }

    /// As [`Serve::start`], with stderr (no colours) in the file `log`.
    pub async fn start_logged(data_dir: &Path, log: PathBuf, extra: &[&str]) -> Serve {
        Serve::spawn(data_dir, Some(log), extra).await
    }

    async fn spawn(data_dir: &Path, log: Option<PathBuf>, extra: &[&str]) -> Serve {
        let port = free_port();
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_troved"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(sim_unless_named(extra))
            .args(extra)
            .env("RUST_LOG", "error")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn troved");
        let mut s = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(s.alive(), "troved exited during start-up");
            if let Ok(r) = s.http.get(format!("{}/readyz", s.base)).send().await {
                if r.status().is_success() {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "troved did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// A request as `alice` of project `p1`, to `/v1.0/p1{path}`.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1.0/p1{path}", self.base))
            .header("X-Auth-Token", "alice:p1")
    }

    /// What the process logged so far (empty unless started with a log file).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// SIGTERM, and waits (bounded) for a clean exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                assert!(exit.success(), "troved exited with {exit}");
                return;
            }
            assert!(Instant::now() < deadline, "troved did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends and decodes: (status, JSON body or Null for an empty body).
pub async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

/// A minimal valid create body.
pub fn create_body(name: &str) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": "mysql", "version": "8.0"}
    }})
}

/// The directory of upstream's samples, if this checkout has `shared/` beside it.
pub fn samples_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/trove-api/samples");
    p.is_dir().then_some(p)
}

/// `--provider sim` unless `args` name a provider: the default, `auto`, runs real
/// database servers wherever their binaries are installed, and these tests mean the
/// simulated cloud.
pub fn sim_unless_named<S: AsRef<str>>(args: &[S]) -> &'static [&'static str] {
    let named = args.iter().any(|a| {
        let a = a.as_ref();
        a == "--provider" || a.starts_with("--provider=")
    });
    if named {
        &[]
    } else {
        &["--provider", "sim"]
    }
}
