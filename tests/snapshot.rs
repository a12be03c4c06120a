//! Read-model snapshots end to end (`src/runtime/snapshot.rs`): a clean shutdown (SIGTERM)
//! writes `read-models.snapshot` (mode 0600); the next start loads it and serves the same
//! models; a damaged snapshot, or `--no-snapshot`, replays the log instead and still
//! serves the same models.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Serve {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Serve {
    async fn start(dir: &Path, extra: &[&str]) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(env!("CARGO_BIN_EXE_troved"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .args(["--sim-latency-ms", "0"])
            // Links do not depend on the port, which changes between the restarts.
            .args(["--public-url", "https://troved.test"])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn troved");
        let s = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = s.http.get(format!("{}/readyz", s.base)).send().await {
                if r.status().is_success() {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "troved did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1.0/p1{path}", self.base))
            .header("X-Auth-Token", "alice:p1")
    }

    async fn detail(&self) -> Value {
        let (status, body) =
            common::send(self.req(reqwest::Method::GET, "/instances/detail")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// SIGTERM, and waits for a clean exit.
    fn terminate(mut self) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_same_models_from_a_snapshot_or_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("read-models.snapshot");
    let server = Serve::start(dir.path(), &[]).await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let (status, body) = common::send(
            server
                .req(reqwest::Method::POST, "/instances")
                .json(&common::create_body(name)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["instance"]["id"].as_str().unwrap().to_string());
    }
    let (status, body) = common::send(
        server
            .req(reqwest::Method::PATCH, &format!("/instances/{}", ids[0]))
            .json(&serde_json::json!({"instance": {"name": "renamed"}})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    // Wait until every saga is done, so the log does not move between the restarts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let detail = server.detail().await;
        let all_active = detail["instances"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|i| i["status"] == "ACTIVE"));
        if all_active {
            break detail;
        }
        assert!(Instant::now() < deadline, "not ACTIVE: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(before.to_string().contains("renamed"));
    server.terminate();
    assert!(snapshot.is_file(), "a clean shutdown writes the snapshot");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // From the snapshot.
    let server = Serve::start(dir.path(), &[]).await;
    assert_eq!(server.detail().await, before);
    server.terminate();

    // From the log, ignoring the snapshot.
    let server = Serve::start(dir.path(), &["--no-snapshot"]).await;
    assert_eq!(server.detail().await, before);
    server.terminate();

    // A damaged snapshot is ignored (with a warning in the log), never a crash.
    let bytes = std::fs::read(&snapshot).unwrap();
    std::fs::write(&snapshot, &bytes[..bytes.len() / 2]).unwrap();
    let server = Serve::start(dir.path(), &[]).await;
    assert_eq!(server.detail().await, before);
    server.terminate();
}
