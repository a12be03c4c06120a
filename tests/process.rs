//! The process as an operator meets it: one server per data directory whatever happens
//! to the files in it, private files whatever the umask, a clean shutdown that does not
//! flood the log, and start-up errors that say their cause once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// A child killed (if still running) when the test ends, also when it fails.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for `child` to exit; kills it and returns `None` if it does not.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn troved_serve(data_dir: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troved"));
    cmd.args([
        "serve",
        "--provider",
        "sim",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data_dir)
    .stdout(Stdio::null());
    cmd
}

#[tokio::test]
async fn deleting_files_in_the_data_directory_does_not_let_a_second_server_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    s.create("alice", "p1", "first").await;
    // Whatever the operator (or a cleanup script) deletes, the lock stays with the
    // process: here every file that is not a database.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains(".db") {
            let _ = std::fs::remove_file(&path);
        }
    }
    let mut second = Reaped(
        troved_serve(dir.path(), 0)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut second, Duration::from_secs(15));
    let mut err = String::new();
    if let Some(mut e) = second.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        matches!(status, Some(s) if !s.success()),
        "a second server started on a data directory in use"
    );
    assert!(err.contains("in use by another troved process"), "{err}");
    // The first server still works.
    assert_eq!(s.get("alice", "p1", "/instances").await.0, 200);
}

#[tokio::test]
async fn every_file_in_the_data_directory_is_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &[]).await;
    // Writes make SQLite create the `-wal` and `-shm` files beside each database.
    s.create_active("alice", "p1", "one").await;
    s.create("alice", "p1", "two").await;
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_file() {
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
            seen.push(name);
        }
    }
    assert!(
        seen.iter().any(|n| n == "events.db-wal"),
        "the log's write-ahead log was checked too: {seen:?}"
    );
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    s.kill();
}

/// SIGTERM while many builds are in flight: the saga's steps interrupted by the shutdown
/// are expected, not failures; the log says nothing about them at WARN.
#[tokio::test]
async fn a_clean_shutdown_with_builds_in_flight_logs_no_step_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut port = 0;
    let mut child = None;
    for _ in 0..5 {
        port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = troved_serve(dir.path(), port)
            .args([
                "--sim-latency-ms",
                "150",
                "--quota-instances",
                "-1",
                "--quota-volumes",
                "-1",
            ])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if wait_listening(port, &mut c).await {
            child = Some(Reaped(c));
            break;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut child = child.expect("troved started");
    let http = reqwest::Client::new();
    for i in 0..40 {
        let r = http
            .post(format!("http://127.0.0.1:{port}/v1.0/p1/instances"))
            .header("X-Auth-Token", "alice:p1")
            .json(&common::create_body(&format!("i{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exited after SIGTERM");
    let mut err = String::new();
    {
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
    }
    assert!(status.success(), "{status:?}: {err}");
    let warned = err
        .lines()
        .filter(|l| l.contains("workflow step failed"))
        .count();
    assert_eq!(warned, 0, "{err}");
}

async fn wait_listening(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn an_unreachable_event_store_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Reaped(
        troved_serve(dir.path(), 0)
            .args([
                "--event-store",
                &format!("esdb://127.0.0.1:{port}?tls=false"),
            ])
            .env("RUST_LOG", "off")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("gave up in time");
    let mut err = String::new();
    {
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
    }
    assert!(!status.success());
    assert_eq!(
        err.matches("event store unavailable").count(),
        1,
        "the cause is said once: {err}"
    );
    assert!(!err.contains("stack backtrace"), "{err}");
}
