//! The local provider's own persistent state: `state.json` in its root.
//!
//! It is what a cloud's database is to a real provider: which volumes and servers exist,
//! under which idempotency keys, on which ports, for which instance. The event log does
//! not own it (the start-up check reports it lost the way `cloud.db` is,
//! `crate::reconcile`). Deleted resources stay as tombstones so that a key is never
//! reused. Every change is written through a temporary file, fsynced and renamed, so a
//! crash leaves either the old or the new state; the file is 0600 (it holds the servers'
//! superuser passwords, sealed: see docs/providers.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use aggregates::instance::SealedSecret;

use crate::local::LocalError;
use crate::saga::ports::StoredState;

/// The file name of the state in the local root.
pub const FILE_NAME: &str = "state.json";

/// Every volume and server the provider ever created (deleted ones as tombstones).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub volumes: BTreeMap<String, VolumeRec>,
    pub servers: BTreeMap<String, ServerRec>,
}

/// A volume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeRec {
    /// The idempotency key it was created under.
    pub key: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    /// GB.
    pub size: u64,
    pub volume_type: Option<String>,
    /// Its directory (the mount point of a loop-mounted image, or a plain directory).
    pub path: PathBuf,
    pub attached_to: Option<String>,
    pub deleted: bool,
}

/// A server: a reserved port and, once prepared, a database server process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerRec {
    pub key: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    /// The reserved TCP port (reserved while the server is not deleted).
    pub port: u16,
    /// Whether it binds the public address (`--local-public-bind`).
    pub public: bool,
    /// The flavor's RAM, MB: sizes the server's memory.
    pub ram_mb: u32,
    pub volume_id: Option<String>,
    /// The engine's instance directory (`data/`, `run/`, `server.json`...).
    pub dir: PathBuf,
    /// The datastore manager and version name, known from `prepare` on.
    pub datastore: Option<(String, String)>,
    /// Whether `prepare` finished.
    pub prepared: bool,
    /// The superuser's password in plaintext, as files written before it was sealed
    /// hold it: sealed when the provider opens them ([`ServerRec::sealed_admin_password`]),
    /// never written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    /// The superuser's password (generated at the first prepare), sealed with the
    /// instance's vault key, so it is shredded with the instance (`crate::secrets`).
    #[serde(default)]
    pub sealed_admin_password: Option<SealedSecret>,
    pub deleted: bool,
    /// An upgrade begun and not finished (`super::upgrade`); absent in older files.
    #[serde(default)]
    pub upgrade: Option<PendingUpgrade>,
    /// The users `(name, host)` prepare created: `allowed_cidrs` apply to their accounts.
    #[serde(default)]
    pub users: Vec<(String, String)>,
    /// `access.allowed_cidrs` as last applied (empty: from anywhere).
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// The idempotency key of the last restart or flavor resize done (`super::actions`):
    /// a step retried with it does not restart the server again. Absent in older files.
    #[serde(default)]
    pub last_action_key: Option<String>,
    /// A flavor resize begun and not finished: its key and the RAM (MB) the server had
    /// before it. `ram_mb` already holds the new RAM then, so a step retried after a
    /// crash rolls back to this one. Absent in older files.
    #[serde(default)]
    pub resize_from: Option<(String, u32)>,
}

/// An upgrade of a server to other binaries, recorded before the server is stopped, so
/// that a retried step (same key) resumes it where it stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpgrade {
    /// The idempotency key of the upgrade step.
    pub key: String,
    /// The (manager, version name) the server ran before.
    pub from: (String, String),
    /// The (manager, version name) it is upgraded to.
    pub to: (String, String),
}

impl ServerRec {
    /// The address the server binds.
    pub fn bind(&self, public_bind: IpAddr) -> IpAddr {
        if self.public {
            public_bind
        } else {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// Where the state of `root` is.
pub fn path(root: &Path) -> PathBuf {
    root.join(FILE_NAME)
}

/// The state of `root`; `None` when there is no file. Blocking (small file).
pub fn load(root: &Path) -> Result<Option<State>, LocalError> {
    let path = path(root);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LocalError::io(&format!("read {}", path.display()), e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| LocalError::Unusable(format!("{} is corrupt: {e}", path.display())))
}

/// Writes `state` durably: temporary file, fsync, rename, fsync of the directory.
pub fn save(root: &Path, state: &State) -> Result<(), LocalError> {
    let path = path(root);
    let tmp = path.with_extension("json.tmp");
    let io = |what: &str, e| LocalError::io(&format!("{what} {}", tmp.display()), e);
    let text = serde_json::to_vec_pretty(state).map_err(|e| io("encode", e.into()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode_0600()
        .open(&tmp)
        .map_err(|e| io("open", e))?;
    f.write_all(&text).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    if let Ok(dir) = std::fs::File::open(root) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// `OpenOptions::mode(0o600)` on Unix.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// What `state.json` in `root` holds before the server opens it (opening creates it).
pub fn probe(root: &Path) -> Result<StoredState, LocalError> {
    Ok(match load(root)? {
        None => StoredState::Missing,
        Some(s) if s.volumes.is_empty() && s.servers.is_empty() => StoredState::Empty,
        Some(_) => StoredState::Present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_loads_and_probes_present() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(dir.path()).unwrap(), StoredState::Missing);
        let mut s = State::default();
        save(dir.path(), &s).unwrap();
        assert_eq!(probe(dir.path()).unwrap(), StoredState::Empty);
        s.volumes.insert(
            "v".into(),
            VolumeRec {
                key: "k".into(),
                instance_id: Uuid::nil(),
                instance_name: "n".into(),
                size: 1,
                volume_type: None,
                path: "/x".into(),
                attached_to: None,
                deleted: true,
            },
        );
        save(dir.path(), &s).unwrap();
        assert_eq!(probe(dir.path()).unwrap(), StoredState::Present);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), "{").unwrap();
        assert!(probe(dir.path()).is_err());
    }

    #[test]
    fn a_server_written_before_upgrades_existed_loads() {
        let old = r#"{"volumes": {}, "servers": {"srv-1": {
            "key": "k", "instance_id": "00000000-0000-0000-0000-000000000000",
            "instance_name": "n", "port": 30000, "public": false, "ram_mb": 512,
            "volume_id": null, "dir": "/x", "datastore": ["postgresql", "15"],
            "prepared": true, "admin_password": null, "deleted": false}}}"#;
        let st: State = serde_json::from_str(old).unwrap();
        assert_eq!(st.servers["srv-1"].upgrade, None);
        assert_eq!(st.servers["srv-1"].resize_from, None);
    }
}
