//! Clean-up and inspection for tests of the local provider (real database servers,
//! loop-mounted volumes): whatever a test leaves under its local root is killed,
//! unmounted and detached, also when the test fails; a tempdir removed while a volume
//! is still mounted would otherwise keep a deleted image (and its disk space) mounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use troved::local::{discover, Datastore, Installation};

use super::TestServer;

/// Processes (pid, arguments) with an argument that names a path under `root`.
pub fn processes_under(root: &Path) -> Vec<(u32, Vec<String>)> {
    let root = root.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let under = |a: &String| {
                let path = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
                path == root || path.starts_with(&format!("{root}/"))
            };
            args.iter().any(under).then_some((pid, args))
        })
        .collect()
}

/// The data directory a server's command line names (`-D DIR`, `--datadir=DIR`).
pub fn served_data_dir(args: &[String]) -> Option<String> {
    let pos = args.iter().position(|a| a == "-D");
    pos.and_then(|i| args.get(i + 1).cloned()).or_else(|| {
        args.iter()
            .find_map(|a| a.strip_prefix("--datadir=").map(str::to_string))
    })
}

/// Server processes under `root`, by the data directory they serve.
pub fn servers_by_data_dir(root: &Path) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for (pid, args) in processes_under(root) {
        if let Some(dir) = served_data_dir(&args) {
            out.entry(dir).or_default().push(pid);
        }
    }
    out
}

/// Mount points under `root` (the kernel's view, `/proc/self/mountinfo`).
pub fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &root || p.starts_with(&format!("{root}/")))
        .collect()
}

/// Loop devices whose backing file is under `root` (`losetup -a`).
pub fn loops_under(root: &Path) -> Vec<String> {
    let Ok(out) = Command::new("losetup").arg("-a").output() else {
        return Vec::new();
    };
    let root = root.to_string_lossy().into_owned();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("({root}/")))
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect()
}

/// Kills, unmounts and detaches whatever is left under the local root (by pid and by
/// path: nothing outside the root is touched).
pub struct Guard {
    pub root: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Each server leads its own process group: killing the group also takes the
        // PostgreSQL children, whose rewritten command lines name no path.
        for (pid, _) in processes_under(&self.root) {
            for target in [format!("-{pid}"), pid.to_string()] {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &target])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_under(&self.root).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // An unmount may find the volume busy while the last processes exit: retried.
        while !mounts_under(&self.root).is_empty() && Instant::now() < deadline {
            let mut mounts = mounts_under(&self.root);
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let _ = Command::new("umount").arg(&m).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for dev in loops_under(&self.root) {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
    }
}

/// The `(address, port)` of a shown instance's address of `kind` (`private`, `public`):
/// the local provider shows each server's own port beside its address.
pub fn endpoint(inst: &Value, kind: &str) -> (String, u16) {
    let a = inst["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} address in {inst}"));
    let host = a["address"].as_str().expect("an address").to_string();
    let port = a["port"].as_u64().expect("a port beside the address");
    (host, u16::try_from(port).expect("a TCP port"))
}

/// The installed server of `datastore`, or None after printing a `SKIPPED:` line.
pub async fn installation(datastore: Datastore) -> Option<Installation> {
    let found = discover::installed()
        .await
        .into_iter()
        .find(|i| i.datastore == datastore);
    if found.is_none() {
        println!("SKIPPED: no {} server installed", datastore.manager());
    }
    found
}

/// `troved local list` of `data_dir`, parsed.
pub fn local_list(data_dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["local", "list", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run troved local list");
    assert!(
        out.status.success(),
        "troved local list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("local list prints JSON")
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The shown instance `id` (200 expected).
pub async fn show(s: &TestServer, id: &str) -> Value {
    let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["instance"].clone()
}

/// A predicate: the instance reads `status` / `operating_status`.
pub fn reads(status: &'static str, operating: &'static str) -> impl Fn(&Value) -> bool {
    move |i: &Value| i["status"] == status && i["operating_status"] == operating
}

/// Polls show until `pred` holds (every 100 ms, at most `within`).
pub async fn wait_until(
    s: &TestServer,
    id: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let inst = show(s, id).await;
        if pred(&inst) {
            return inst;
        }
        assert!(Instant::now() < deadline, "not {what} in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A temporary directory the database user can traverse (a tempdir is 0700).
pub fn traversable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// A troved with the local provider on a fresh data directory, and its reaper. Dropped in
/// this order: troved first, then what it left (servers, mounts, loop devices), then the
/// files.
pub struct LocalTroved {
    pub server: TestServer,
    pub guard: Guard,
    pub dir: tempfile::TempDir,
}

impl LocalTroved {
    /// `troved serve --provider local --local-ports PORTS EXTRA…` on `<tempdir>/data`,
    /// its local root the default `<data>/local`.
    pub async fn start(ports: &str, extra: &[&str]) -> LocalTroved {
        let dir = traversable_tempdir();
        // Canonical: the guard matches command lines and the mount table, which have no
        // symlinks.
        let data_dir = dir.path().canonicalize().unwrap().join("data");
        let args = [&["--provider", "local", "--local-ports", ports][..], extra].concat();
        let server = TestServer::start(&data_dir, &args).await;
        LocalTroved {
            server,
            guard: Guard {
                root: data_dir.join("local"),
            },
            dir,
        }
    }

    /// Its data directory (canonical).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join("data")
    }
}

/// Runs `sql` as `app` (password `s3cret-pw`) on `orders` at 127.0.0.1:`port` through
/// the datastore's own client over TCP; Ok(stdout) or Err(stderr), both trimmed.
pub fn app_query(install: &Installation, port: u16, sql: &str) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://app:s3cret-pw@127.0.0.1:{port}/orders"
            ))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .args(["-u", "app", "-ps3cret-pw", "orders", "-N", "-e", sql])
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Polls until table `t` (queried as `app`, [`app_query`]) on `port` holds exactly the
/// rows `want` (comma-separated), within `limit`: replication is asynchronous.
pub async fn wait_rows(install: &Installation, port: u16, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = app_query(install, port, "SELECT i FROM t ORDER BY i")
            .map(|o| o.lines().collect::<Vec<_>>().join(","));
        if now.as_deref() == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} holds {now:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls show (as `u` of `p1`) until the instance is ACTIVE and `done` holds, within
/// `limit`; panics at ERROR.
pub async fn wait_active_for(
    s: &TestServer,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let inst = body["instance"].clone();
        match inst["status"].as_str() {
            Some("ACTIVE") if done(&inst) => return inst,
            Some("ERROR") => panic!("instance {id} failed: {inst}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the instance (as `u` of `p1`, 202) and waits up to a minute until show is 404.
pub async fn delete_and_wait(s: &TestServer, id: &str) {
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("u", "p1", &format!("/instances/{id}")).await.0 != 404 {
        assert!(Instant::now() < deadline, "instance {id} not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
