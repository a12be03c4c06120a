//! The local provider's volumes (issue #13): one volume of the requested size per
//! instance, under `<local root>/volumes/`.
//!
//! Two modes, chosen once at [`Volumes::open`]:
//! - [`VolumeMode::LoopExt4`] (root, `/dev/loop-control`, and a probe that makes, mounts
//!   and unmounts a tiny image succeeded): each volume is an ext4 image of exactly the
//!   requested size, preallocated, loop-mounted. A database on it gets `ENOSPC` at the
//!   size the user asked for, not later and not earlier.
//! - [`VolumeMode::Directory`] (everywhere else): a plain directory; the size is only
//!   accounted ([`Volumes::usage`] sums what is stored), not enforced.
//!
//! Layout of `<local root>/volumes/` (0711, root's when root):
//! - `<id>/`: the mount point (0700 while nothing is mounted on it, so nothing can write
//!   into the host file system by mistake), or the directory of a directory volume. The
//!   caller keeps its data in a subdirectory (`<id>/data`): the root of a fresh ext4 file
//!   system holds `lost+found`, and a data directory that is missing (the image is not
//!   mounted) fails loudly instead of silently filling the host disk.
//! - `<id>.img`: the image of a loop volume. It appears only once `mkfs.ext4` has finished
//!   on `<id>.img.partial`, so an image under its final name is always a complete file
//!   system. A leftover `.partial` (a crash during a create) is removed by the next
//!   create of that id, by its delete, and by the next [`Volumes::open`].
//! - `<id>.quota`: the size of a directory volume, in bytes; written (atomically) after
//!   its directory, so it too marks a complete volume.
//!
//! A volume keeps the mode it was created in: a root that has both kinds serves both.
//!
//! What it must not do: choose ids or sizes (the saga does), know about instances or
//! engines, kill processes that use a volume (delete and offline growth refuse instead),
//! or unmount anything that is not under its own directory.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::{proc, LocalError};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The smallest volume: ext4 with a journal needs a few MiB to be useful.
pub const MIN_BYTES: u64 = 16 * MIB;
/// Sizes are whole MiB (ext4 block groups and `fallocate` are happy with that).
pub const SIZE_GRANULARITY: u64 = MIB;
/// Mount options of a loop volume: no atime writes, and nothing the database user
/// could turn into a privilege (set-uid files, device nodes) on a file system it owns.
const MOUNT_OPTIONS: &str = "loop,noatime,nosuid,nodev";
/// Longest wait for one tool (`mkfs.ext4`, `mount`, `resize2fs`…), unless changed with
/// [`Volumes::with_timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an unmount that finds the volume busy is retried before it is refused.
const BUSY_GRACE: Duration = Duration::from_secs(2);
/// `CAP_SYS_RESOURCE`: the kernel refuses online ext4 growth (`EXT4_IOC_RESIZE_FS`)
/// without it, even to root.
const CAP_SYS_RESOURCE: u32 = 24;

/// How volumes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeMode {
    /// A preallocated ext4 image of exactly the size, loop-mounted: the size is enforced.
    LoopExt4,
    /// A plain directory: the size is accounted, not enforced.
    Directory,
}

impl std::fmt::Display for VolumeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VolumeMode::LoopExt4 => "loop-ext4",
            VolumeMode::Directory => "directory",
        })
    }
}

/// What a volume holds and can hold, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeUsage {
    /// Loop: the file system's used blocks (statvfs, including its own metadata).
    /// Directory: the disk space of everything under it (like `du`).
    pub used_bytes: u64,
    /// Loop: the file system's size (statvfs; a little under the image's size, the rest
    /// is ext4's own structures). Directory: the requested size.
    pub total_bytes: u64,
}

/// One volume present under the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    pub id: String,
    /// The size it was created (or grown) with: the image's length, or the quota.
    pub size_bytes: u64,
    pub mode: VolumeMode,
    /// Loop: its image is mounted on `path`. Directory: `path` exists.
    pub mounted: bool,
    /// The mount point (or directory) the caller uses.
    pub path: PathBuf,
}

/// The volumes under one local root.
pub struct Volumes {
    /// `<local root>/volumes`, canonical (mount points are compared with the kernel's
    /// view in `/proc/self/mountinfo`, which has no symlinks).
    dir: PathBuf,
    mode: VolumeMode,
    /// Why that mode, for the start-up log.
    reason: String,
    /// Whether a mounted volume can grow without unmounting (needs `CAP_SYS_RESOURCE`).
    online_growth: bool,
    limit: Duration,
    /// One lock per id: a retried saga step may overlap with its first attempt, and two
    /// `mkfs` on one `.partial` must not interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Volumes {
    /// Creates `root/volumes`, detects the mode (`prefer`: `Some(LoopExt4)` fails when
    /// loop volumes do not work here; `Some(Directory)` never probes; `None` probes and
    /// falls back to directories), removes leftovers of interrupted creates, and mounts
    /// the images of existing volumes that are not mounted (after a reboot or a crash).
    pub async fn open(root: &Path, prefer: Option<VolumeMode>) -> Result<Volumes, LocalError> {
        let dir = make_volumes_dir(root)?;
        remove_leftovers(&dir, DEFAULT_TIMEOUT).await;
        let (mode, reason) = match prefer {
            Some(VolumeMode::Directory) => (VolumeMode::Directory, "asked for".to_string()),
            _ => match probe(&dir, DEFAULT_TIMEOUT).await {
                Ok(()) => (
                    VolumeMode::LoopExt4,
                    "running as root with loop devices".to_string(),
                ),
                Err(why) if prefer.is_some() => {
                    return Err(LocalError::Unusable(format!(
                        "loop-mounted volumes were asked for but do not work here: {why}"
                    )))
                }
                Err(why) => (VolumeMode::Directory, why),
            },
        };
        let volumes = Volumes {
            dir,
            mode,
            reason,
            online_growth: has_capability(CAP_SYS_RESOURCE),
            limit: DEFAULT_TIMEOUT,
            locks: Mutex::new(HashMap::new()),
        };
        tracing::info!(
            mode = %volumes.mode,
            reason = %volumes.reason,
            online_growth = volumes.online_growth,
            dir = %volumes.dir.display(),
            "local volumes"
        );
        volumes.remount_all().await;
        Ok(volumes)
    }

    /// Changes the longest wait for one tool (default two minutes).
    pub fn with_timeout(mut self, limit: Duration) -> Volumes {
        self.limit = limit;
        self
    }

    /// The mode new volumes are created in.
    pub fn mode(&self) -> VolumeMode {
        self.mode
    }

    /// Why that mode was chosen (for the start-up log): e.g. "not running as root".
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether a loop volume grows while mounted and in use. Without `CAP_SYS_RESOURCE`
    /// the kernel refuses online ext4 growth, so [`Volumes::grow`] unmounts, grows and
    /// remounts, which needs the volume unused: the caller stops the server first.
    pub fn grows_online(&self) -> bool {
        self.online_growth
    }

    /// The directory volumes live in (`<local root>/volumes`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where volume `id` is (or would be) mounted. The id is not checked here; every
    /// operation that touches the disk checks it.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn image(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.img"))
    }

    fn partial(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.img.partial"))
    }

    fn quota(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.quota"))
    }

    /// Creates volume `id` of `size_gib` GiB and returns its mount point, an empty
    /// directory (but for ext4's `lost+found`) where the caller makes `data/`.
    /// Idempotent: an existing volume of that id is returned (mounted again if needed),
    /// and an interrupted create is completed.
    pub async fn create(&self, id: &str, size_gib: u64) -> Result<PathBuf, LocalError> {
        self.create_bytes(id, gib_to_bytes(size_gib)?).await
    }

    /// [`Volumes::create`] with the size in bytes (a whole number of MiB, at least
    /// [`MIN_BYTES`]): for tests and tools that want volumes smaller than a GiB.
    pub async fn create_bytes(&self, id: &str, bytes: u64) -> Result<PathBuf, LocalError> {
        check_id(id)?;
        check_size(bytes)?;
        let _guard = self.lock(id).lock_owned().await;
        if let Some(info) = self.info(id)? {
            if info.size_bytes < bytes {
                return Err(LocalError::invalid(
                    "volume size",
                    format!(
                        "volume {id} exists with {} bytes, less than the {bytes} asked for",
                        info.size_bytes
                    ),
                ));
            }
            self.make_ready(&info).await?;
            return Ok(info.path);
        }
        check_free_space(&self.dir, bytes).await?;
        match self.mode {
            VolumeMode::LoopExt4 => {
                make_image(&self.partial(id), &self.image(id), bytes, self.limit).await?;
                self.mount(id).await?;
            }
            VolumeMode::Directory => {
                make_dir(&self.mount_point(id), 0o711)?;
                write_quota(&self.quota(id), bytes)?;
            }
        }
        tracing::info!(volume = id, bytes, mode = %self.mode, "volume created");
        Ok(self.mount_point(id))
    }

    /// Deletes volume `id`: unmounts it, detaches its loop device, removes its image and
    /// its directory. Deleting a volume that is gone succeeds. A volume in use (a process
    /// has files open on it) is refused and left intact: nothing is killed, and a lazy
    /// unmount would keep the space in use behind a file that no longer has a name.
    pub async fn delete(&self, id: &str) -> Result<(), LocalError> {
        check_id(id)?;
        let lock = self.lock(id);
        let guard = lock.lock_owned().await;
        let mount_point = self.mount_point(id);
        self.unmount(id).await?;
        if mount_source(&mount_point).is_some() {
            return Err(LocalError::Unusable(format!(
                "volume {id} is still mounted after unmounting it"
            )));
        }
        detach_loops(&self.image(id), self.limit).await?;
        remove_dir(&mount_point).await?;
        for file in [self.partial(id), self.quota(id), self.image(id)] {
            remove_file(&file).await?;
        }
        drop(guard);
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        tracing::info!(volume = id, "volume deleted");
        Ok(())
    }

    /// What volume `id` holds and can hold. A loop volume that is not mounted is an
    /// error (the statvfs of an empty mount point would describe the host disk).
    pub async fn usage(&self, id: &str) -> Result<VolumeUsage, LocalError> {
        check_id(id)?;
        let info = self.info(id)?.ok_or_else(|| no_volume(id))?;
        match info.mode {
            VolumeMode::LoopExt4 => {
                if !info.mounted {
                    return Err(LocalError::Unusable(format!("volume {id} is not mounted")));
                }
                let fs = statvfs(&info.path).await?;
                Ok(VolumeUsage {
                    used_bytes: fs.f_blocks.saturating_sub(fs.f_bfree) * fs.f_frsize,
                    total_bytes: fs.f_blocks * fs.f_frsize,
                })
            }
            VolumeMode::Directory => {
                let path = info.path.clone();
                let used = tokio::task::spawn_blocking(move || disk_usage(&path))
                    .await
                    .map_err(|e| LocalError::io("measure a volume", e.into()))??;
                Ok(VolumeUsage {
                    used_bytes: used,
                    total_bytes: info.size_bytes,
                })
            }
        }
    }

    /// Grows volume `id` to `size_gib` GiB (a smaller size is refused; the same size
    /// completes an interrupted growth). See [`Volumes::grows_online`].
    pub async fn grow(&self, id: &str, size_gib: u64) -> Result<(), LocalError> {
        self.grow_bytes(id, gib_to_bytes(size_gib)?).await
    }

    /// [`Volumes::grow`] with the size in bytes (see [`Volumes::create_bytes`]).
    pub async fn grow_bytes(&self, id: &str, bytes: u64) -> Result<(), LocalError> {
        check_id(id)?;
        check_size(bytes)?;
        let _guard = self.lock(id).lock_owned().await;
        let info = self.info(id)?.ok_or_else(|| no_volume(id))?;
        if bytes < info.size_bytes {
            return Err(LocalError::invalid(
                "volume size",
                format!(
                    "volume {id} has {} bytes; volumes only grow, {bytes} is smaller",
                    info.size_bytes
                ),
            ));
        }
        check_free_space(&self.dir, bytes - info.size_bytes).await?;
        match info.mode {
            VolumeMode::Directory => write_quota(&self.quota(id), bytes)?,
            VolumeMode::LoopExt4 if self.online_growth => self.grow_online(id, bytes).await?,
            VolumeMode::LoopExt4 => self.grow_offline(id, bytes).await?,
        }
        tracing::info!(volume = id, bytes, "volume grown");
        Ok(())
    }

    /// Every volume present (complete ones: an interrupted create is not listed), by id.
    pub async fn list(&self) -> Result<Vec<VolumeInfo>, LocalError> {
        let mut ids = Vec::new();
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| LocalError::io("list the volumes", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_suffix(".img")
                .or_else(|| name.strip_suffix(".quota"));
            if let Some(id) = id.filter(|id| check_id(id).is_ok()) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.info(&id)?);
        }
        Ok(out)
    }

    /// Volume `id`, if it exists (complete).
    pub fn info(&self, id: &str) -> Result<Option<VolumeInfo>, LocalError> {
        check_id(id)?;
        let path = self.mount_point(id);
        let image = self.image(id);
        if let Ok(meta) = std::fs::metadata(&image) {
            return Ok(Some(VolumeInfo {
                id: id.to_string(),
                size_bytes: meta.len(),
                mode: VolumeMode::LoopExt4,
                mounted: mounted_image(&path, &image),
                path,
            }));
        }
        let Some(size_bytes) = read_quota(&self.quota(id))? else {
            return Ok(None);
        };
        Ok(Some(VolumeInfo {
            id: id.to_string(),
            size_bytes,
            mode: VolumeMode::Directory,
            mounted: path.is_dir(),
            path,
        }))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Mounts a loop volume / recreates a directory volume's directory.
    async fn make_ready(&self, info: &VolumeInfo) -> Result<(), LocalError> {
        match info.mode {
            VolumeMode::LoopExt4 if info.mounted => Ok(()),
            VolumeMode::LoopExt4 => self.mount(&info.id).await,
            VolumeMode::Directory => make_dir(&info.path, 0o711),
        }
    }

    /// Mounts the image of `id` on its mount point, unless it is mounted there already;
    /// something else mounted there is an error.
    async fn mount(&self, id: &str) -> Result<(), LocalError> {
        let (image, mount_point) = (self.image(id), self.mount_point(id));
        if mounted_image(&mount_point, &image) {
            return Ok(());
        }
        if let Some(source) = mount_source(&mount_point) {
            return Err(LocalError::Unusable(format!(
                "{source} is mounted on the mount point of volume {id}, not its image"
            )));
        }
        make_dir(&mount_point, 0o700)?;
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "ext4", "-o", MOUNT_OPTIONS])
            .arg(&image)
            .arg(&mount_point);
        proc::run(cmd, None, &[], self.limit).await?;
        Ok(())
    }

    /// Unmounts whatever is mounted on the mount point of `id`; a busy volume is refused.
    async fn unmount(&self, id: &str) -> Result<(), LocalError> {
        let mount_point = self.mount_point(id);
        if mount_source(&mount_point).is_none() {
            return Ok(());
        }
        // "Busy" is retried for a moment: a process forked elsewhere holds copies of its
        // parent's descriptors until it execs, and a tool that just finished may still be
        // exiting; a server that runs on the volume stays busy and is refused.
        let deadline = std::time::Instant::now() + BUSY_GRACE.min(self.limit);
        loop {
            let mut cmd = Command::new("umount");
            cmd.arg(&mount_point);
            match proc::run(cmd, None, &[], self.limit).await {
                Err(LocalError::Command { stderr, .. }) if stderr.contains("busy") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(LocalError::Unusable(format!(
                            "volume {id} is in use (a process has files open on it): stop \
                             that process first"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other.map(drop),
            }
        }
    }

    /// Extends the image, tells the loop device, and lets ext4 grow while mounted.
    async fn grow_online(&self, id: &str, bytes: u64) -> Result<(), LocalError> {
        self.mount(id).await?;
        extend_image(&self.image(id), bytes).await?;
        let device = mount_source(&self.mount_point(id))
            .ok_or_else(|| LocalError::Unusable(format!("volume {id} is not mounted")))?;
        let mut cmd = Command::new("losetup");
        cmd.arg("-c").arg(&device);
        proc::run(cmd, None, &[], self.limit).await?;
        let mut cmd = Command::new("resize2fs");
        cmd.arg(&device);
        proc::run(cmd, None, &[], self.limit).await?;
        Ok(())
    }

    /// Unmounts (refused while in use, before anything changed), extends the image,
    /// checks and grows the file system on the image, and mounts it again.
    async fn grow_offline(&self, id: &str, bytes: u64) -> Result<(), LocalError> {
        let image = self.image(id);
        self.unmount(id).await.map_err(|e| match e {
            LocalError::Unusable(why) => LocalError::Unusable(format!(
                "{why}: growing a mounted volume needs CAP_SYS_RESOURCE, which troved \
                 lacks, so it must be unmounted"
            )),
            other => other,
        })?;
        detach_loops(&image, self.limit).await?;
        extend_image(&image, bytes).await?;
        let mut cmd = Command::new("e2fsck");
        cmd.args(["-f", "-p"]).arg(&image);
        match proc::run(cmd, None, &[], self.limit).await {
            // e2fsck's exit status 1 means "errors corrected", which is fine to go on.
            Err(LocalError::Command { status, .. }) if status == "exit status: 1" => {}
            other => other.map(drop)?,
        }
        let mut cmd = Command::new("resize2fs");
        cmd.arg(&image);
        proc::run(cmd, None, &[], self.limit).await?;
        self.mount(id).await
    }

    /// Mounts every loop volume that is not mounted (after a reboot, or a crash between
    /// a create's `mkfs` and its `mount`). A volume that fails is logged and left: one
    /// broken image must not keep troved from serving the others.
    async fn remount_all(&self) {
        let Ok(volumes) = self.list().await else {
            return;
        };
        for info in volumes.iter().filter(|v| v.mode == VolumeMode::LoopExt4) {
            if info.mounted {
                continue;
            }
            if self.mode != VolumeMode::LoopExt4 {
                tracing::warn!(volume = %info.id, "loop volume cannot be mounted in directory mode");
                continue;
            }
            match self.mount(&info.id).await {
                Ok(()) => tracing::info!(volume = %info.id, "volume mounted again"),
                Err(e) => tracing::error!(volume = %info.id, error = %e, "volume not mounted"),
            }
        }
    }
}

/// Checks a volume id: it becomes a file name, so only `[A-Za-z0-9_-]`, not starting
/// with `-` (it would read as an option), at most 128 characters. This is what keeps
/// `../x` or `a/b` from reaching outside the volumes directory.
pub fn check_id(id: &str) -> Result<(), LocalError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LocalError::invalid(
            "volume id",
            format!("{id:?}: use 1 to 128 of A-Z a-z 0-9 - _, not starting with -"),
        ))
    }
}

fn check_size(bytes: u64) -> Result<(), LocalError> {
    if bytes < MIN_BYTES || !bytes.is_multiple_of(SIZE_GRANULARITY) {
        return Err(LocalError::invalid(
            "volume size",
            format!("{bytes} bytes: a whole number of MiB, at least {MIN_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn gib_to_bytes(size_gib: u64) -> Result<u64, LocalError> {
    size_gib
        .checked_mul(GIB)
        .filter(|b| *b > 0)
        .ok_or_else(|| LocalError::invalid("volume size", format!("{size_gib} GiB")))
}

fn no_volume(id: &str) -> LocalError {
    LocalError::invalid("volume", format!("no volume {id}"))
}

/// Refuses `bytes` more than the free space of the volumes' file system. Loop images
/// are then preallocated, which is the real reservation (see `make_image`); directory
/// volumes are not reserved, so several of them can promise more than the disk has.
async fn check_free_space(dir: &Path, bytes: u64) -> Result<(), LocalError> {
    let fs = statvfs(dir).await?;
    let free = fs.f_bavail * fs.f_frsize;
    if bytes > free {
        return Err(too_large(bytes, free));
    }
    Ok(())
}

fn too_large(bytes: u64, free: u64) -> LocalError {
    LocalError::invalid(
        "volume size",
        format!(
            "{:.1} GiB more is needed but only {:.1} GiB is free on this machine's disk",
            bytes as f64 / GIB as f64,
            free as f64 / GIB as f64
        ),
    )
}

async fn statvfs(path: &Path) -> Result<rustix::fs::StatVfs, LocalError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || rustix::fs::statvfs(&path))
        .await
        .map_err(|e| LocalError::io("statvfs", e.into()))?
        .map_err(|e| LocalError::io("statvfs", e.into()))
}

/// Makes an ext4 image of `bytes` at `image` through `partial`: preallocated (so the
/// space is the volume's, and the database gets ENOSPC inside its own file system
/// instead of I/O errors when the host disk fills behind a sparse image), then
/// `mkfs.ext4`, then renamed. A crash at any point leaves only `partial`, never an image
/// that looks complete.
async fn make_image(
    partial: &Path,
    image: &Path,
    bytes: u64,
    limit: Duration,
) -> Result<(), LocalError> {
    let _ = tokio::fs::remove_file(partial).await;
    let result = async {
        preallocate(partial, bytes, true).await?;
        let mut cmd = Command::new("mkfs.ext4");
        // -m 0: no blocks reserved for root, the database user gets all of them.
        // nodiscard: mkfs would otherwise punch holes into the preallocated file.
        cmd.args(["-q", "-F", "-m", "0", "-E", "nodiscard"])
            .arg(partial);
        proc::run(cmd, None, &[], limit).await?;
        tokio::fs::rename(partial, image)
            .await
            .map_err(|e| LocalError::io("rename the volume image", e))?;
        sync_dir(image)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(partial).await;
    }
    result
}

/// Makes `path` `bytes` long with every block allocated (`fallocate`); creates it when
/// `new`. Running out of space is the "volume too large" error.
async fn preallocate(path: &Path, bytes: u64, new: bool) -> Result<(), LocalError> {
    let image = path;
    let path = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(new)
            .truncate(new)
            .mode(0o600)
            .open(&path)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes)?;
        file.sync_all()
    })
    .await
    .map_err(|e| LocalError::io("preallocate a volume image", e.into()))?;
    match result {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
            // Another volume took the space since the check: say what is free now,
            // without what a new file got before it failed.
            if new {
                let _ = tokio::fs::remove_file(image).await;
            }
            let dir = image.parent().unwrap_or(Path::new("/"));
            let free = statvfs(dir).await.map_or(0, |fs| fs.f_bavail * fs.f_frsize);
            Err(too_large(bytes, free))
        }
        other => other.map_err(|e| LocalError::io("preallocate a volume image", e)),
    }
}

async fn extend_image(image: &Path, bytes: u64) -> Result<(), LocalError> {
    preallocate(image, bytes, false).await
}

/// Persists a rename: fsync of the directory holding `path`.
fn sync_dir(path: &Path) -> Result<(), LocalError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LocalError::io("sync the volumes directory", e))
}

/// Creates `dir` with exactly `mode` (troved runs with umask 077, which a mode given at
/// creation would not escape); an existing one is left as it is.
fn make_dir(dir: &Path, mode: u32) -> Result<(), LocalError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(LocalError::io(&format!("create {}", dir.display()), e))
        }
        Err(_) => Ok(()),
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| LocalError::io(&format!("chmod {}", dir.display()), e)),
    }
}

/// Creates the root (0711 when new: the database user must be able to pass through it)
/// and its `volumes/`, and returns the latter, canonical.
fn make_volumes_dir(root: &Path) -> Result<PathBuf, LocalError> {
    use std::os::unix::fs::PermissionsExt;
    if !root.is_dir() {
        std::fs::create_dir_all(root)
            .and_then(|()| std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)))
            .map_err(|e| LocalError::io(&format!("create {}", root.display()), e))?;
    }
    let dir = root.join("volumes");
    make_dir(&dir, 0o711)?;
    // Also when an earlier start made it under the umask: the database user must pass.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| LocalError::io(&format!("chmod {}", dir.display()), e))?;
    dir.canonicalize()
        .map_err(|e| LocalError::io(&format!("resolve {}", dir.display()), e))
}

fn write_quota(path: &Path, bytes: u64) -> Result<(), LocalError> {
    let tmp = path.with_extension("quota.tmp");
    std::fs::write(&tmp, format!("{bytes}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| LocalError::io("write a volume quota", e))?;
    sync_dir(path)
}

fn read_quota(path: &Path) -> Result<Option<u64>, LocalError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            text.trim().parse().map(Some).map_err(|_| {
                LocalError::Unusable(format!("{} does not hold a size", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::io("read a volume quota", e)),
    }
}

async fn remove_file(path: &Path) -> Result<(), LocalError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io(&format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Removes a volume's directory; only called once nothing is mounted on it.
async fn remove_dir(path: &Path) -> Result<(), LocalError> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io(&format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Detaches every loop device still attached to `image` (`mount` sets autoclear, but a
/// crash inside `mount`, or a hand-made `losetup`, can leave one).
async fn detach_loops(image: &Path, limit: Duration) -> Result<(), LocalError> {
    if !image.exists() {
        return Ok(());
    }
    let mut cmd = Command::new("losetup");
    cmd.arg("-j").arg(image);
    let Ok(out) = proc::run(cmd, None, &[], limit).await else {
        return Ok(()); // no losetup (directory mode): nothing can be attached
    };
    for device in out.lines().filter_map(|l| l.split(':').next()) {
        let mut cmd = Command::new("losetup");
        cmd.arg("-d").arg(device);
        proc::run(cmd, None, &[], limit).await?;
    }
    Ok(())
}

/// Probes loop volumes: makes, mounts and unmounts a tiny image under a hidden name
/// (never a valid id). The reason it fails is kept for the log.
async fn probe(dir: &Path, limit: Duration) -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not running as root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control".into());
    }
    let name = format!(".probe-{}", uuid::Uuid::new_v4().simple());
    let (image, mount_point) = (dir.join(format!("{name}.img")), dir.join(&name));
    let result = async {
        make_image(
            &dir.join(format!("{name}.partial")),
            &image,
            MIN_BYTES,
            limit,
        )
        .await?;
        make_dir(&mount_point, 0o700)?;
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "ext4", "-o", MOUNT_OPTIONS])
            .arg(&image)
            .arg(&mount_point);
        proc::run(cmd, None, &[], limit).await?;
        let mut cmd = Command::new("umount");
        cmd.arg(&mount_point);
        proc::run(cmd, None, &[], limit).await.map(drop)
    }
    .await;
    remove_leftovers(dir, limit).await;
    result.map_err(|e| e.to_string())
}

/// Removes what interrupted creates and probes left: `*.partial` files, and `.probe-*`
/// images and mount points (unmounted first).
async fn remove_leftovers(dir: &Path, limit: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(".probe-") && path.is_dir() {
            if mount_source(&path).is_some() {
                let mut cmd = Command::new("umount");
                cmd.arg(&path);
                let _ = proc::run(cmd, None, &[], limit).await;
            }
            if mount_source(&path).is_none() {
                let _ = std::fs::remove_dir_all(&path);
            }
        } else if name.ends_with(".partial")
            || name.ends_with(".tmp")
            || name.starts_with(".probe-")
        {
            let _ = detach_loops(&path, limit).await;
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The source of the topmost mount on `mount_point` (`/dev/loop3`), from
/// `/proc/self/mountinfo`.
pub fn mount_source(mount_point: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo_source(&text, &mount_point.to_string_lossy())
}

/// The source of the last (topmost) mount on `mount_point` in a mountinfo text.
pub fn mountinfo_source(mountinfo: &str, mount_point: &str) -> Option<String> {
    mountinfo.lines().rev().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        let target = unescape(fields.split(' ').nth(4)?);
        let source = rest.split(' ').nth(1)?;
        (target == mount_point).then(|| unescape(source))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `image` is what is mounted on `mount_point` (through a loop device whose
/// backing file it is).
fn mounted_image(mount_point: &Path, image: &Path) -> bool {
    let Some(source) = mount_source(mount_point) else {
        return false;
    };
    let Some(device) = source.strip_prefix("/dev/") else {
        return false;
    };
    let backing = format!("/sys/block/{device}/loop/backing_file");
    std::fs::read_to_string(backing).is_ok_and(|b| Path::new(b.trim_end()) == image)
}

/// Whether this process has capability `bit` in its effective set.
fn has_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .is_some_and(|caps| caps >> bit & 1 == 1)
}

/// `CapEff` of a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The disk space used under `dir`, like `du`: allocated blocks, each hard-linked file
/// once, symlinks not followed. Files that vanish while it walks are skipped (the
/// database keeps writing).
fn disk_usage(dir: &Path) -> Result<u64, LocalError> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LocalError::io(&format!("read {}", path.display()), e)),
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_leave_the_directory_are_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".",
            "..",
            "-rf",
            "a b",
            "x\0",
            "é",
            &"a".repeat(129),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["vol-1f2e", "A_b-9", &"a".repeat(128)] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn sizes_are_whole_mib_above_the_minimum_and_gib_does_not_overflow() {
        assert!(check_size(MIN_BYTES).is_ok());
        assert!(check_size(MIN_BYTES - MIB).is_err());
        assert!(check_size(MIN_BYTES + 1).is_err());
        assert_eq!(gib_to_bytes(2).unwrap(), 2 * GIB);
        assert!(gib_to_bytes(0).is_err());
        assert!(gib_to_bytes(u64::MAX / 2).is_err());
    }

    #[test]
    fn the_topmost_mount_on_a_path_is_found_with_escapes_undone() {
        let text = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 7:0 / /srv/my\\040root/volumes/v1 rw,noatime - ext4 /dev/loop0 rw
41 40 7:1 / /srv/my\\040root/volumes/v1 rw,noatime - ext4 /dev/loop1 rw
42 22 7:2 / /srv/my\\040root/volumes/v10 rw - ext4 /dev/loop2 rw
";
        assert_eq!(
            mountinfo_source(text, "/srv/my root/volumes/v1").as_deref(),
            Some("/dev/loop1")
        );
        assert_eq!(mountinfo_source(text, "/srv/my root/volumes/v"), None);
        assert_eq!(unescape("a\\134b\\011c\\0"), "a\\b\tc\\0");
    }

    #[test]
    fn the_effective_capabilities_are_read_from_status() {
        let status = "Name:\tx\nCapPrm:\t0\nCapEff:\t000001fffeffffff\n";
        let caps = parse_cap_eff(status).unwrap();
        assert_eq!(caps >> CAP_SYS_RESOURCE & 1, 0);
        assert_eq!(caps >> 21 & 1, 1); // CAP_SYS_ADMIN
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
    }
}
