//! Where a server's Unix socket lives. A socket path must fit `sun_path` (107 bytes and
//! a NUL), and `<local root>/volumes/vol-<32 hex>/server/run/.s.PGSQL.<port>` does not
//! when the local root is deep (a data directory under a temporary directory is enough).
//! A run directory too long for its sockets moves to a short one named by a hash of the
//! long path (stable across restarts, so a re-adopted server is found at the same
//! socket): under `/run/troved` as root, `/tmp/troved-<uid>` otherwise. The base
//! directory must be a real directory owned by troved's user, never a symlink or another
//! user's: a predictable name in a shared directory is otherwise a way in.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::LocalError;

/// Longest path of a Unix socket (without its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Room for the longest file an engine keeps in the run directory, with its slash
/// (`/.s.PGSQL.65535.lock`).
const NAME_ROOM: usize = 21;

/// The run directory for `own` (the instance's `run/`): `own` itself when its sockets fit.
pub fn run_dir_for(own: PathBuf) -> PathBuf {
    if own.as_os_str().len() + NAME_ROOM <= MAX_SOCKET_PATH {
        return own;
    }
    let digest = Sha256::digest(own.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    base().join(name)
}

/// The directory short run directories are made in.
fn base() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/troved")
    } else {
        PathBuf::from(format!("/tmp/troved-{}", uid.as_raw()))
    }
}

/// Whether `run` is a short run directory (outside the instance directory `dir`).
pub fn is_moved(dir: &Path, run: &Path) -> bool {
    !run.starts_with(dir)
}

/// Makes sure the base of a moved run directory exists and is troved's own: a real
/// directory owned by this process's user, searchable by others only as root's
/// `/run/troved` (0711: the database user reaches its own directory in it, lists none).
pub fn ensure_base(run: &Path) -> Result<(), LocalError> {
    let Some(base) = run.parent() else {
        return Ok(());
    };
    let root = rustix::process::geteuid().is_root();
    let mode = if root { 0o711 } else { 0o700 };
    let fail = |e| {
        LocalError::io(
            &format!("create the socket directory {}", base.display()),
            e,
        )
    };
    match std::fs::DirBuilder::new().mode(mode).create(base) {
        Ok(()) => {
            std::fs::set_permissions(base, std::fs::Permissions::from_mode(mode)).map_err(fail)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e)),
    }
    let meta = std::fs::symlink_metadata(base).map_err(fail)?;
    let ours = meta.uid() == rustix::process::geteuid().as_raw();
    if !meta.file_type().is_dir() || !ours || meta.mode() & 0o022 != 0 {
        return Err(LocalError::invalid(
            "socket directory",
            format!(
                "{} exists but is not a directory owned by troved's user and writable only by it; remove it",
                base.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_run_directories_stay_and_long_ones_move_to_a_stable_short_one() {
        let short = PathBuf::from("/var/lib/troved/local/servers/srv-1/run");
        assert_eq!(run_dir_for(short.clone()), short);
        let long = PathBuf::from(format!("/tmp/{}/server/run", "x".repeat(100)));
        let moved = run_dir_for(long.clone());
        assert_ne!(moved, long);
        assert_eq!(moved, run_dir_for(long.clone()), "stable");
        assert!(moved.as_os_str().len() + NAME_ROOM <= MAX_SOCKET_PATH);
        assert!(is_moved(
            Path::new("/tmp").join("x".repeat(100)).as_path(),
            &moved
        ));
        let other = run_dir_for(PathBuf::from(format!(
            "/tmp/{}/server/run",
            "y".repeat(100)
        )));
        assert_ne!(moved, other, "one directory per instance");
    }
}
