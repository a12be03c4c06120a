//! Test harness for `--auth keystone`: a real Keystone (PyPI `keystone` under gunicorn,
//! started by `tests/keystone/keystone_server.py` with the Python named by
//! `TROVED_TEST_KEYSTONE`), and `troved serve --auth keystone` pointed at it.
//!
//! Keystone's process is owned through a small `sh` that holds a pipe from the test: the
//! test kills gunicorn by pid to stop it, and if the test process ends without doing so
//! (a panic, the shared server of a test binary) the pipe closes and `sh` kills it, so no
//! Keystone outlives its tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `keystone_server.py serve` in the background, prints gunicorn's pid, and waits
/// on its stdin: a line (the test's [`Keystone::stop`]) stops gunicorn; the end of
/// input (the test process ended without stopping it: the binary's shared Keystone, or
/// a crash) stops it and removes its directory, which no `Drop` will.
const WATCHDOG: &str = r#""$0" "$1" serve "$2" "$3" </dev/null >/dev/null 2>&1 &
pid=$!
echo $pid
if read _; then
  kill -TERM $pid 2>/dev/null; wait $pid
else
  kill -TERM $pid 2>/dev/null; wait $pid; rm -rf "$2"
fi"#;

/// The harness script, beside this crate's tests.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keystone/keystone_server.py")
}

/// The Python of the Keystone venv, or `None` after printing `SKIPPED:`.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("TROVED_TEST_KEYSTONE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            println!("SKIPPED: TROVED_TEST_KEYSTONE not set (tests/keystone/install.sh makes a venv; set it to its python)");
            None
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A Keystone of these tests, with the accounts `provision` made.
pub struct Keystone {
    /// `http://127.0.0.1:PORT/v3`.
    pub url: String,
    pub port: u16,
    python: PathBuf,
    dir: tempfile::TempDir,
    /// The `sh` owning gunicorn (its stdin is the pipe that ends it), and gunicorn's pid.
    serving: Option<(Child, u32)>,
    /// `provision`'s JSON: `users.<name>.{id,password,project_id}`, `projects.<name>`.
    pub accounts: Value,
}

impl Keystone {
    /// One Keystone shared by the tests of this binary (started by the first to ask).
    pub fn shared() -> Option<&'static Keystone> {
        static SHARED: OnceLock<Keystone> = OnceLock::new();
        let python = python()?;
        Some(SHARED.get_or_init(|| Keystone::start(&python, None)))
    }

    /// A Keystone of its own (tokens live `expiration` seconds if given), provisioned.
    pub fn start(python: &Path, expiration: Option<u64>) -> Keystone {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let out = Command::new(python)
            .arg(script())
            .arg("init")
            .arg(dir.path())
            .arg(port.to_string())
            .output()
            .expect("run keystone_server.py init");
        assert!(out.status.success(), "keystone init: {out:?}");
        let mut ks = Keystone {
            url: format!("http://127.0.0.1:{port}/v3"),
            port,
            python: python.to_path_buf(),
            dir,
            serving: None,
            accounts: Value::Null,
        };
        ks.serve();
        ks.accounts = ks.provision();
        if let Some(secs) = expiration {
            ks.shorten_token_life(secs);
        }
        ks
    }

    /// Tokens issued from now on live `secs` seconds: set after provisioning, which
    /// under load can take longer than a short life (its admin token would expire).
    fn shorten_token_life(&mut self, secs: u64) {
        self.stop();
        let conf = self.dir.path().join("keystone.conf");
        let text = std::fs::read_to_string(&conf).expect("keystone.conf");
        let text = text.replace("expiration = 3600", &format!("expiration = {secs}"));
        std::fs::write(&conf, text).expect("keystone.conf");
        self.serve();
    }

    /// Starts gunicorn (again, on the same directory) and waits until Keystone answers.
    pub fn serve(&mut self) {
        assert!(self.serving.is_none(), "already serving");
        let mut sh = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&self.python)
            .arg(script())
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn keystone serve");
        let mut line = String::new();
        BufReader::new(sh.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("gunicorn's pid");
        let pid: u32 = line.trim().parse().expect("a pid");
        self.serving = Some((sh, pid));
        self.wait_answering();
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_get_status(self.port, "/v3") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "Keystone did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops gunicorn: SIGTERM to its pid, then waits for it (and its `sh`) to end.
    pub fn stop(&mut self) {
        let Some((mut sh, pid)) = self.serving.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if let Some(mut stdin) = sh.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = sh.wait();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "Keystone did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn provision(&self) -> Value {
        let out = Command::new(&self.python)
            .arg(script())
            .arg("provision")
            .arg(&self.url)
            .arg(self.dir.path())
            .output()
            .expect("run keystone_server.py provision");
        assert!(out.status.success(), "keystone provision: {out:?}");
        serde_json::from_slice(&out.stdout).expect("provision's JSON")
    }

    /// `name`'s password.
    pub fn password(&self, name: &str) -> String {
        self.accounts["users"][name]["password"]
            .as_str()
            .or_else(|| self.accounts[name]["password"].as_str())
            .expect("a password")
            .to_string()
    }

    /// The id of project `name`.
    pub fn project_id(&self, name: &str) -> String {
        self.accounts["projects"][name]
            .as_str()
            .expect("a project id")
            .to_string()
    }

    /// A project-scoped token of `user` (password login, as the openstack CLI does).
    pub async fn token(&self, user: &str, project: &str) -> String {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": self.password(user)}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let resp = reqwest::Client::new()
            .post(format!("{}/auth/tokens?nocatalog", self.url))
            .json(&body)
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status().as_u16(), 201, "login of {user}");
        resp.headers()["x-subject-token"]
            .to_str()
            .expect("a token")
            .to_string()
    }

    /// Revokes `token` (`DELETE /v3/auth/tokens`), as the admin.
    pub async fn revoke(&self, token: &str) {
        let admin = self.token("admin", "admin").await;
        let resp = reqwest::Client::new()
            .delete(format!("{}/auth/tokens", self.url))
            .header("X-Auth-Token", admin)
            .header("X-Subject-Token", token)
            .send()
            .await
            .expect("revoke");
        assert_eq!(resp.status().as_u16(), 204, "revoke");
    }

    /// An admin's call to Keystone's API (`path` below `/v3`); its status.
    pub async fn admin_call(&self, method: reqwest::Method, path: &str, body: Value) -> u16 {
        let admin = self.token("admin", "admin").await;
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", admin)
            .json(&body)
            .send()
            .await
            .expect("admin call")
            .status()
            .as_u16()
    }

    /// A new user in project `service` with the `service` role (another troved's
    /// service user): its name and password.
    pub async fn service_user(&self, name: &str) -> (String, String) {
        let password = format!("pw-{}", free_port());
        let admin = self.token("admin", "admin").await;
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{}/users", self.url))
            .header("X-Auth-Token", &admin)
            .json(&serde_json::json!({"user": {"name": name, "domain_id": "default", "password": password}}))
            .send()
            .await
            .expect("create user")
            .json()
            .await
            .expect("user JSON");
        let uid = created["user"]["id"].as_str().expect("user id");
        let roles: Value = http
            .get(format!("{}/roles?name=service", self.url))
            .header("X-Auth-Token", &admin)
            .send()
            .await
            .expect("roles")
            .json()
            .await
            .expect("roles JSON");
        let role = roles["roles"][0]["id"].as_str().expect("service role");
        let project = self.project_id("service");
        let granted = http
            .put(format!(
                "{}/projects/{project}/users/{uid}/roles/{role}",
                self.url
            ))
            .header("X-Auth-Token", &admin)
            .send()
            .await
            .expect("grant");
        assert_eq!(granted.status().as_u16(), 204);
        (uid.to_string(), password)
    }

    /// The environment of troved's service user.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("TROVED_KEYSTONE_URL".into(), self.url.clone()),
            ("TROVED_KEYSTONE_USER".into(), "troved".into()),
            ("TROVED_KEYSTONE_PASSWORD".into(), self.password("troved")),
            ("TROVED_KEYSTONE_PROJECT".into(), "service".into()),
        ]
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status of a plain `GET path` (no client library: used from sync code).
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `troved serve --auth keystone` on a free port, stdout and stderr in a log file;
/// killed on drop.
pub struct Troved {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Troved {
    /// Starts with `env` (the Keystone settings) and `extra` flags, `RUST_LOG=rust_log`;
    /// waits until `/readyz` answers. `Err(log)` if it exits first.
    pub async fn start(
        env: &[(String, String)],
        extra: &[&str],
        rust_log: &str,
    ) -> Result<Troved, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("troved.log");
        let file = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_troved"))
            .arg("serve")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--auth",
                "keystone",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(super::sim_unless_named(extra))
            .args(["--sim-latency-ms", "0"])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn troved");
        let mut t = Troved {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if t.child.try_wait().expect("wait").is_some() {
                return Err(t.log());
            }
            if let Ok(r) = t.http.get(format!("{}/readyz", t.base)).send().await {
                if r.status().is_success() {
                    return Ok(t);
                }
            }
            assert!(Instant::now() < deadline, "troved did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process has ended (and then waits for it).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_some()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /v1.0/{project}{path}` with `token` (none if `None`).
    pub async fn get(&self, token: Option<&str>, project: &str, path: &str) -> reqwest::Response {
        let mut rb = self.http.get(format!("{}/v1.0/{project}{path}", self.base));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        rb.send().await.expect("request sent")
    }

    /// A counter's value in `GET /metrics` (the sum of the series whose labels contain
    /// every one of `labels`, e.g. `kind="validate"`).
    pub async fn counter(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Troved {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
