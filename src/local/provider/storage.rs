//! Stand-in for the volumes of the local provider until `crate::local::volume` (loop-
//! mounted ext4 images) is wired: a volume is a plain directory under
//! `<local root>/volumes/<id>`, its usage the disk space of the files in it. The method
//! names and shapes are `Volumes`', so that switching is a change of type here.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::local::LocalError;

/// A volume's use of space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// Plain-directory volumes under one directory.
#[derive(Clone, Debug)]
pub struct DirVolumes {
    root: PathBuf,
}

impl DirVolumes {
    /// Volumes under `root` (created, 0711: the database user must traverse it).
    pub fn open(root: &Path) -> Result<DirVolumes, LocalError> {
        traversable_dir(root)?;
        Ok(DirVolumes {
            root: root.to_path_buf(),
        })
    }

    /// Where volume `id` is.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates volume `id` (idempotent); returns its directory.
    pub async fn create(&self, id: &str, _size_gib: u64) -> Result<PathBuf, LocalError> {
        let dir = self.mount_point(id);
        traversable_dir(&dir)?;
        Ok(dir)
    }

    /// Deletes volume `id` and everything on it (idempotent).
    pub async fn delete(&self, id: &str) -> Result<(), LocalError> {
        match tokio::fs::remove_dir_all(self.mount_point(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LocalError::io("remove the volume", e))
            }
            _ => Ok(()),
        }
    }

    /// The disk space used by the files of volume `id`, and its size.
    pub async fn usage(&self, id: &str, size_gib: u64) -> Result<Usage, LocalError> {
        let dir = self.mount_point(id);
        if !dir.is_dir() {
            return Err(LocalError::Unusable(format!("volume {id} is gone")));
        }
        let used = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .map_err(|e| LocalError::Unusable(format!("usage task: {e}")))?;
        Ok(Usage {
            used_bytes: used,
            total_bytes: size_gib.saturating_mul(1 << 30),
        })
    }
}

/// Creates `dir` as 0711: reachable by the database user, not listable.
pub fn traversable_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LocalError::io(&format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| LocalError::io(&format!("chmod {}", dir.display()), e))
}

/// Bytes of disk the tree at `path` occupies (allocated blocks, as `du`).
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let children = std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0);
    own + children
}
