//! `file://<dir>`: artifacts as files, `<dir>/<container>/<name>`, written as
//! `.<name>.partial-<random>` beside their final name and renamed once complete and
//! synced (the rename is the commit). Leftover partials of a crash are removed when the
//! store opens.

use std::io;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncWriteExt, BufReader};

use super::{valid_name, BackupStore, Body, Hashing, Stored};
use crate::saga::ports::ProviderError;

/// Read and write in chunks of this many bytes.
const CHUNK: usize = 256 * 1024;

/// Artifacts in a directory of this machine.
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creates) the store in `root`, which must be absolute, and removes the
    /// partial artifacts an interrupted write left.
    pub async fn open(root: &Path) -> io::Result<FileStore> {
        if !root.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the backup directory must be an absolute path",
            ));
        }
        tokio::fs::create_dir_all(root).await?;
        let store = FileStore {
            root: root.to_path_buf(),
        };
        let removed = store.sweep().await?;
        if removed > 0 {
            tracing::info!(removed, dir = %root.display(), "removed partial backup artifacts of interrupted writes");
        }
        Ok(store)
    }

    /// Removes `.<name>.partial-*` files of every container; returns how many.
    async fn sweep(&self) -> io::Result<usize> {
        let mut removed = 0;
        let mut containers = tokio::fs::read_dir(&self.root).await?;
        while let Some(c) = containers.next_entry().await? {
            if !c.file_type().await?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(c.path()).await?;
            while let Some(f) = files.next_entry().await? {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.contains(".partial-") {
                    tokio::fs::remove_file(f.path()).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The file of a location this store made; anything else is refused.
    fn path_of(&self, location: &str) -> Result<PathBuf, ProviderError> {
        let foreign = || {
            ProviderError::Permanent(format!(
                "{location} is not an artifact of the backup store {}",
                self.url()
            ))
        };
        let path = location.strip_prefix("file://").ok_or_else(foreign)?;
        let rel = Path::new(path)
            .strip_prefix(&self.root)
            .map_err(|_| foreign())?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str().unwrap_or(""),
                _ => "",
            })
            .collect();
        match parts.as_slice() {
            [c, n] if valid_name(c) && valid_name(n) => Ok(self.root.join(c).join(n)),
            _ => Err(foreign()),
        }
    }
}

/// An I/O failure as the saga sees it: a full disk does not get better by retrying.
fn io_error(what: &str, e: io::Error) -> ProviderError {
    let message = format!("{what}: {e}");
    match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => {
            ProviderError::Permanent(message)
        }
        _ => ProviderError::Transient(message),
    }
}

#[async_trait]
impl BackupStore for FileStore {
    async fn put(&self, container: &str, name: &str, body: Body) -> Result<Stored, ProviderError> {
        if !valid_name(container) || !valid_name(name) {
            return Err(ProviderError::Permanent(format!(
                "invalid artifact name {container}/{name}"
            )));
        }
        let dir = self.root.join(container);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating the backup container", e))?;
        let tmp = dir.join(format!(".{name}.partial-{}", uuid::Uuid::new_v4().simple()));
        // Removes the partial file however the put ends short of the rename: an error,
        // or the caller dropping the put (a copy the saga gave up on).
        let mut partial = Partial(Some(tmp.clone()));
        let (size, checksum) = write_synced(&tmp, body)
            .await
            .map_err(|e| io_error("writing the backup artifact", e))?;
        tokio::fs::rename(&tmp, dir.join(name))
            .await
            .map_err(|e| io_error("committing the backup artifact", e))?;
        partial.0 = None;
        sync_dir(&dir)
            .await
            .map_err(|e| io_error("committing the backup artifact", e))?;
        Ok(Stored {
            location: self.location(container, name),
            size,
            checksum,
        })
    }

    async fn get(&self, location: &str) -> Result<Body, ProviderError> {
        let path = self.path_of(location)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::new(BufReader::with_capacity(CHUNK, f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ProviderError::NotFound(format!(
                "backup artifact {location}"
            ))),
            Err(e) => Err(io_error("opening the backup artifact", e)),
        }
    }

    async fn size(&self, location: &str) -> Result<Option<u64>, ProviderError> {
        let path = self.path_of(location)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading the backup artifact", e)),
        }
    }

    async fn delete(&self, location: &str) -> Result<(), ProviderError> {
        let path = self.path_of(location)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("deleting the backup artifact", e)),
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)
                .await
                .map_err(|e| io_error("deleting the backup artifact", e))?;
        }
        Ok(())
    }

    fn location(&self, container: &str, name: &str) -> String {
        format!("file://{}/{container}/{name}", self.root.display())
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// A partial artifact's file, removed on drop unless committed (`None`).
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Copies `body` into a new file at `path`, synced; returns its size and SHA-256.
async fn write_synced(path: &Path, body: Body) -> io::Result<(u64, String)> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    let mut reader = BufReader::with_capacity(CHUNK, Hashing::new(body));
    tokio::io::copy_buf(&mut reader, &mut file).await?;
    file.flush().await?;
    file.sync_all().await?;
    Ok(reader.into_inner().finish())
}

/// fsyncs a directory, so a rename or removal in it survives a power loss.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

    use super::*;

    /// Some bytes, then an error: a copy that failed half way.
    struct Broken(usize);

    impl AsyncRead for Broken {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0 == 0 {
                return Poll::Ready(Err(io::Error::other("the backup tool failed")));
            }
            let n = self.0.min(buf.remaining());
            buf.put_slice(&vec![7u8; n]);
            self.0 -= n;
            Poll::Ready(Ok(()))
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn put_get_size_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let stored = store
            .put("c1", "b1", Box::new(std::io::Cursor::new(data.clone())))
            .await
            .unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(
            stored.checksum,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data))
        );
        assert_eq!(listing(&dir.path().join("c1")), ["b1"]);
        let mut back = Vec::new();
        store
            .get(&stored.location)
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(store.size(&stored.location).await.unwrap(), Some(1_000_000));
        store.delete(&stored.location).await.unwrap();
        store.delete(&stored.location).await.unwrap();
        assert_eq!(store.size(&stored.location).await.unwrap(), None);
        assert!(matches!(
            store.get(&stored.location).await,
            Err(ProviderError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_body_leaves_nothing_and_partials_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let err = store
            .put("c1", "b1", Box::new(Broken(600_000)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the backup tool failed"), "{err}");
        assert!(listing(&dir.path().join("c1")).is_empty());
        // A crash mid-write leaves a partial: the next open removes it.
        std::fs::write(dir.path().join("c1/.b2.partial-x"), b"half").unwrap();
        FileStore::open(dir.path()).await.unwrap();
        assert!(listing(&dir.path().join("c1")).is_empty());
    }

    /// A body that never ends: a copy still running.
    struct Endless;

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(4096);
            buf.put_slice(&vec![1u8; n]);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_put_dropped_midway_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let put = store.put("c1", "b1", Box::new(Endless));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), put)
                .await
                .is_err()
        );
        assert!(listing(&dir.path().join("c1")).is_empty());
    }

    #[tokio::test]
    async fn locations_outside_the_store_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let root = dir.path().display();
        for bad in [
            "file:///etc/passwd".to_string(),
            format!("file://{root}/c/../../x"),
            format!("file://{root}/c/.b.partial-1"),
            format!("s3://b/{root}/c/b"),
            format!("file://{root}/b"),
        ] {
            assert!(store.get(&bad).await.is_err(), "{bad}");
            assert!(store.delete(&bad).await.is_err(), "{bad}");
        }
    }
}
