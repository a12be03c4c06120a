//! A server whose run directory is too long for a Unix socket gets a short one outside
//! its instance directory (`/run/troved/<hash>` as root, `/tmp/troved-<uid>/<hash>`
//! otherwise), which a reboot removes. A start after that (the heartbeat supervisor's,
//! here) makes it again: the server comes back HEALTHY.
//!
//! The test runs its own troved (`--heartbeat-secs 1`, a deep `--local-root`, ports
//! 31970-31999); a `Drop` guard kills every database server under the local root and
//! unmounts its volumes, even when an assertion failed, and the short run directory is
//! removed. A datastore whose binaries are absent is skipped with a `SKIPPED:` line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{
    installation, processes_under, reads, served_data_dir, show, wait_until, Guard,
};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

/// Removes a short run directory when the test ends (after the servers are gone).
struct RemoveDir(Option<PathBuf>);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct Fixture {
    // Dropped in this order: troved, what it left, the short run directory, the files.
    server: TestServer,
    _guard: Guard,
    run_dir: RemoveDir,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    async fn start(ports: &str) -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let base = dir.path().canonicalize().unwrap();
        // Deep enough that `<root>/volumes/vol-<32 hex>/server/run/.s.PGSQL.<port>`
        // exceeds a socket path's 107 bytes.
        let root = base.join("a-local-root-deep-enough-to-move-the-sockets-elsewhere");
        let data_dir = base.join("data");
        let root_arg = root.to_string_lossy().into_owned();
        let args = [
            "--provider",
            "local",
            "--local-ports",
            ports,
            "--local-root",
            &root_arg,
            "--heartbeat-secs",
            "1",
        ];
        let server = TestServer::start(&data_dir, &args).await;
        Fixture {
            server,
            _guard: Guard { root: root.clone() },
            run_dir: RemoveDir(None),
            _dir: dir,
            root,
        }
    }
}

/// The (pid, run directory) of the only database server under `root`: the server's
/// own process (its command line names the data directory) with its socket directory
/// (`-k DIR` for PostgreSQL, `--socket=DIR/…` for MariaDB).
fn server_and_run_dir(root: &Path) -> (u32, PathBuf) {
    let found: Vec<(u32, PathBuf)> = processes_under(root)
        .into_iter()
        .filter_map(|(pid, args)| {
            let k = args.iter().position(|a| a == "-k");
            let dir = k
                .and_then(|i| args.get(i + 1).map(PathBuf::from))
                .or_else(|| {
                    args.iter().find_map(|a| {
                        let socket = Path::new(a.strip_prefix("--socket=")?);
                        socket.parent().map(Path::to_path_buf)
                    })
                })?;
            Some((pid, dir))
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn create_body(install: &Installation) -> Value {
    json!({"instance": {
        "name": "deep", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }})
}

/// Create → HEALTHY with a moved run directory → the server killed and its run
/// directory removed (as a reboot does) → the supervisor starts it again: HEALTHY, and
/// its run directory is back.
async fn a_removed_short_run_dir_is_made_again(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let mut f = Fixture::start(ports).await;
    let s = &f.server;
    let (status, created) = s
        .post("u", "p1", "/instances", &create_body(&install))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let within = Duration::from_secs(120);
    wait_until(s, &id, within, "ACTIVE/HEALTHY", reads("ACTIVE", "HEALTHY")).await;

    let (pid, run) = server_and_run_dir(&f.root);
    f.run_dir.0 = Some(run.clone());
    assert!(
        !run.starts_with(&f.root),
        "the run directory {run:?} was not moved"
    );
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "server {pid} still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_dir_all(&run).unwrap();

    // Found down at the next heartbeat, and started again.
    let healthy = reads("ACTIVE", "HEALTHY");
    let root = f.root.clone();
    let restarted = move |i: &Value| {
        healthy(i)
            && processes_under(&root)
                .iter()
                .any(|(p, args)| *p != pid && served_data_dir(args).is_some())
    };
    let back = wait_until(s, &id, within, "HEALTHY again, restarted", restarted).await;
    assert!(run.is_dir(), "the run directory was not made again: {back}");
    let (again, same) = server_and_run_dir(&f.root);
    assert_ne!(again, pid);
    assert_eq!(same, run);
    assert_eq!(show(s, &id).await["operating_status"], "HEALTHY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_removed_short_run_dir_is_made_again() {
    a_removed_short_run_dir_is_made_again(Datastore::Postgresql, "31970-31984").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_removed_short_run_dir_is_made_again() {
    a_removed_short_run_dir_is_made_again(Datastore::Mariadb, "31985-31999").await;
}
