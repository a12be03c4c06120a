//! The local provider's volumes (issue #13) through the library: real ext4 images,
//! loop-mounted, when the tests run as root with loop devices; plain directories always.
//!
//! Every test works in its own temporary root. Its guard unmounts whatever is mounted
//! under that root and detaches the loop devices of its images on drop, so a failed
//! assertion leaves no mount and no loop device behind. Without root (or loop devices),
//! the loop tests print `SKIPPED: …` and pass.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use troved::local::volume::{mount_source, VolumeMode, Volumes};
use troved::local::LocalError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A temporary local root; unmounts and detaches everything under it on drop.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The files and directories in `volumes/`, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path().join("volumes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let Ok(root) = self.dir.path().canonicalize() else {
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(&*root.to_string_lossy()))
            .map(str::to_string)
            .collect();
        targets.reverse();
        for target in targets {
            let _ = Command::new("umount").arg(&target).status();
        }
        for entry in std::fs::read_dir(root.join("volumes"))
            .into_iter()
            .flatten()
        {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            for device in loop_devices(&path) {
                let _ = Command::new("losetup").arg("-d").arg(device).status();
            }
        }
    }
}

/// The loop devices attached to `image` (`losetup -j`).
fn loop_devices(image: &Path) -> Vec<String> {
    let Ok(out) = Command::new("losetup").arg("-j").arg(image).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect()
}

/// How many mounts sit on `path`.
fn mounts_on(path: &Path) -> usize {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*target))
        .count()
}

/// A root with loop volumes, or `None` (and a `SKIPPED:` line) where they cannot work.
async fn loop_volumes() -> Option<(Root, Volumes)> {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: loop-mounted volumes need root");
        return None;
    }
    if !Path::new("/dev/loop-control").exists() {
        println!("SKIPPED: no /dev/loop-control");
        return None;
    }
    let root = Root::new();
    match Volumes::open(root.path(), Some(VolumeMode::LoopExt4)).await {
        Ok(volumes) => Some((root, volumes)),
        Err(e) => {
            println!("SKIPPED: {e}");
            None
        }
    }
}

async fn directory_volumes() -> (Root, Volumes) {
    let root = Root::new();
    let volumes = Volumes::open(root.path(), Some(VolumeMode::Directory))
        .await
        .expect("directory volumes");
    (root, volumes)
}

/// Writes `bytes` of a repeating pattern to `path`, synced.
fn write_pattern(path: &Path, bytes: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    for _ in 0..bytes / MIB {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
}

fn holds_pattern(path: &Path, bytes: u64) -> bool {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .is_ok_and(|n| n as u64 == bytes)
        && data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i as u64 % MIB % 251) as u8)
}

fn is_invalid(result: &Result<PathBuf, LocalError>) -> bool {
    matches!(result, Err(LocalError::Invalid { .. }))
}

#[tokio::test]
async fn loop_volume_of_one_gib_is_mounted_and_reports_its_real_usage() {
    let Some((root, volumes)) = loop_volumes().await else {
        return;
    };
    assert_eq!(volumes.mode(), VolumeMode::LoopExt4);
    let path = volumes.create("vol-a", 1).await.unwrap();
    assert_eq!(path, volumes.mount_point("vol-a"));
    assert!(mount_source(&path).unwrap().starts_with("/dev/loop"));
    assert!(path.join("lost+found").is_dir(), "a fresh ext4 file system");
    let image = root
        .path()
        .canonicalize()
        .unwrap()
        .join("volumes/vol-a.img");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), GIB);

    let before = volumes.usage("vol-a").await.unwrap();
    assert!(
        before.total_bytes > GIB * 9 / 10 && before.total_bytes <= GIB,
        "{before:?}"
    );
    write_pattern(&path.join("f"), 8 * MIB);
    let after = volumes.usage("vol-a").await.unwrap();
    assert!(
        after.used_bytes >= before.used_bytes + 8 * MIB
            && after.used_bytes < before.used_bytes + 9 * MIB,
        "{before:?} then {after:?}"
    );
    let listed = volumes.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size_bytes, GIB);
    assert!(listed[0].mounted);
    assert_eq!(listed[0].mode, VolumeMode::LoopExt4);
}

#[tokio::test]
async fn loop_volume_refuses_writes_beyond_its_size_with_enospc() {
    let Some((_root, volumes)) = loop_volumes().await else {
        return;
    };
    let path = volumes.create_bytes("vol-small", 32 * MIB).await.unwrap();
    let mut file = std::fs::File::create(path.join("fill")).unwrap();
    let chunk = vec![7u8; MIB as usize];
    let mut written = 0u64;
    let err = loop {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += MIB,
            Err(e) => break e,
        }
        assert!(
            written <= 64 * MIB,
            "wrote {written} bytes into a 32 MiB volume"
        );
    };
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC, got {err}");
    assert!(written >= 20 * MIB, "only {written} bytes fit");
    drop(file);
    let usage = volumes.usage("vol-small").await.unwrap();
    // Full, but for what ext4 keeps back for its own metadata (2%, at most 4096 blocks).
    assert!(
        usage.used_bytes * 100 >= usage.total_bytes * 95,
        "{usage:?}"
    );
}

#[tokio::test]
async fn loop_volume_grows_and_keeps_its_data() {
    let Some((_root, volumes)) = loop_volumes().await else {
        return;
    };
    let path = volumes.create("vol-g", 1).await.unwrap();
    write_pattern(&path.join("f"), 4 * MIB);
    let before = volumes.usage("vol-g").await.unwrap();

    if !volumes.grows_online() {
        // Growth must unmount: a volume in use is refused, untouched.
        let busy = std::fs::File::open(path.join("f")).unwrap();
        let err = volumes.grow("vol-g", 2).await.unwrap_err();
        assert!(matches!(err, LocalError::Unusable(_)), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(busy);
        assert_eq!(volumes.info("vol-g").unwrap().unwrap().size_bytes, GIB);
        assert!(volumes.info("vol-g").unwrap().unwrap().mounted);
    }

    volumes.grow("vol-g", 2).await.unwrap();
    let after = volumes.usage("vol-g").await.unwrap();
    assert!(
        after.total_bytes > before.total_bytes + GIB * 9 / 10 && after.total_bytes <= 2 * GIB,
        "{before:?} then {after:?}"
    );
    assert!(holds_pattern(&path.join("f"), 4 * MIB), "data intact");
    assert_eq!(volumes.info("vol-g").unwrap().unwrap().size_bytes, 2 * GIB);
    // The same size again completes (an interrupted growth); smaller is refused.
    volumes.grow("vol-g", 2).await.unwrap();
    let err = volumes.grow("vol-g", 1).await.unwrap_err();
    assert!(matches!(err, LocalError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn loop_volume_delete_unmounts_and_leaves_no_loop_device() {
    let Some((root, volumes)) = loop_volumes().await else {
        return;
    };
    let path = volumes.create_bytes("vol-d", 32 * MIB).await.unwrap();
    let image = root
        .path()
        .canonicalize()
        .unwrap()
        .join("volumes/vol-d.img");
    assert_eq!(loop_devices(&image).len(), 1);

    let busy = std::fs::File::create(path.join("open")).unwrap();
    let err = volumes.delete("vol-d").await.unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(mount_source(&path).is_some(), "a busy volume stays mounted");
    assert!(image.exists());
    drop(busy);

    volumes.delete("vol-d").await.unwrap();
    assert!(mount_source(&path).is_none());
    assert!(!image.exists() && !path.exists());
    assert!(
        loop_devices(&image).is_empty(),
        "{:?}",
        loop_devices(&image)
    );
    assert!(root.entries().is_empty(), "{:?}", root.entries());
    volumes.delete("vol-d").await.unwrap(); // what is gone deletes fine
    assert!(volumes.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn loop_volume_created_twice_is_one_volume() {
    let Some((root, volumes)) = loop_volumes().await else {
        return;
    };
    let first = volumes.create_bytes("vol-t", 32 * MIB).await.unwrap();
    std::fs::write(first.join("mark"), b"1").unwrap();
    let second = volumes.create_bytes("vol-t", 32 * MIB).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(mounts_on(&first), 1);
    assert_eq!(std::fs::read(second.join("mark")).unwrap(), b"1");
    assert_eq!(root.entries(), ["vol-t", "vol-t.img"]);
    // A retry may not ask for more than there is.
    assert!(is_invalid(&volumes.create_bytes("vol-t", 64 * MIB).await));
}

#[tokio::test]
async fn loop_volumes_are_mounted_again_and_half_creates_completed_after_a_crash() {
    let Some((root, volumes)) = loop_volumes().await else {
        return;
    };
    let path = volumes.create_bytes("vol-c", 32 * MIB).await.unwrap();
    std::fs::write(path.join("mark"), b"kept").unwrap();
    drop(volumes);
    // The crash: the volume unmounted behind troved's back (a reboot), and a create of
    // another volume cut short before its mkfs finished.
    assert!(Command::new("umount")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let partial = root.path().join("volumes/vol-half.img.partial");
    std::fs::write(&partial, b"not a file system").unwrap();

    let volumes = Volumes::open(root.path(), Some(VolumeMode::LoopExt4))
        .await
        .unwrap();
    assert!(mount_source(&path).is_some(), "mounted again");
    assert_eq!(std::fs::read(path.join("mark")).unwrap(), b"kept");
    assert!(!partial.exists(), "the half-made image is removed");
    let ids: Vec<String> = volumes
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, ["vol-c"]);
    // The saga's retry of the cut-short create completes it.
    std::fs::write(&partial, b"not a file system").unwrap();
    let half = volumes.create_bytes("vol-half", 16 * MIB).await.unwrap();
    assert!(half.join("lost+found").is_dir());
    assert!(!partial.exists());
}

#[tokio::test]
async fn loop_mode_is_chosen_when_root_has_loop_devices() {
    let Some((root, _)) = loop_volumes().await else {
        return;
    };
    let volumes = Volumes::open(root.path(), None).await.unwrap();
    assert_eq!(volumes.mode(), VolumeMode::LoopExt4, "{}", volumes.reason());
    assert!(
        root.entries().is_empty(),
        "the probe cleans up: {:?}",
        root.entries()
    );
}

#[tokio::test]
async fn ids_that_could_escape_the_volumes_directory_are_refused() {
    let (root, volumes) = directory_volumes().await;
    for id in ["../x", "a/b", "..", ".", "", "-x", "x y"] {
        assert!(is_invalid(&volumes.create(id, 1).await), "{id:?}");
        assert!(volumes.delete(id).await.is_err(), "{id:?}");
        assert!(volumes.usage(id).await.is_err(), "{id:?}");
    }
    assert!(!root.path().join("x").exists());
    assert!(root.entries().is_empty(), "{:?}", root.entries());
}

#[tokio::test]
async fn a_volume_larger_than_the_free_disk_is_refused_and_leaves_nothing() {
    let (root, volumes) = directory_volumes().await;
    let result = volumes.create("vol-huge", 1 << 24).await; // 16 PiB
    assert!(is_invalid(&result), "{result:?}");
    assert!(format!("{:?}", result).contains("free"), "{result:?}");
    assert!(root.entries().is_empty(), "{:?}", root.entries());

    let Some((root, volumes)) = loop_volumes().await else {
        return;
    };
    let result = volumes.create("vol-huge", 1 << 24).await;
    assert!(is_invalid(&result), "{result:?}");
    assert!(root.entries().is_empty(), "{:?}", root.entries());
}

#[tokio::test]
async fn directory_volume_accounts_the_bytes_written() {
    let (root, volumes) = directory_volumes().await;
    assert_eq!(volumes.mode(), VolumeMode::Directory);
    let path = volumes.create("vol-dir", 1).await.unwrap();
    assert_eq!(volumes.create("vol-dir", 1).await.unwrap(), path);
    let empty = volumes.usage("vol-dir").await.unwrap();
    assert_eq!(empty.total_bytes, GIB);
    std::fs::create_dir(path.join("data")).unwrap();
    write_pattern(&path.join("data/f"), 3 * MIB);
    std::fs::hard_link(path.join("data/f"), path.join("data/link")).unwrap();
    let used = volumes.usage("vol-dir").await.unwrap().used_bytes;
    assert!(
        used >= empty.used_bytes + 3 * MIB && used < empty.used_bytes + 3 * MIB + 64 * 1024,
        "{used} bytes after writing 3 MiB (hard link counted once)"
    );
    volumes.grow("vol-dir", 2).await.unwrap();
    assert_eq!(volumes.usage("vol-dir").await.unwrap().total_bytes, 2 * GIB);
    let listed = volumes.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].mode, listed[0].size_bytes, listed[0].mounted),
        (VolumeMode::Directory, 2 * GIB, true)
    );
    volumes.delete("vol-dir").await.unwrap();
    volumes.delete("vol-dir").await.unwrap();
    assert!(root.entries().is_empty(), "{:?}", root.entries());
    assert!(volumes.usage("vol-dir").await.is_err());
}
