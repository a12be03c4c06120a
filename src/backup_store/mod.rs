//! Where backup artifacts live: the [`BackupStore`] port and its adapters.
//!
//! - `file://<dir>` ([`FileStore`], the default: `<data dir>/backups`): one file per
//!   artifact, `<dir>/<container>/<name>`.
//! - `s3://bucket/prefix` ([`S3Store`]): objects `<prefix>/<container>/<name>` of an
//!   S3-compatible object store, reached with the `AWS_*` variables ([`S3Settings`]).
//!
//! Every adapter streams: [`BackupStore::put`] reads the body in chunks while it hashes
//! them (SHA-256), writes under a temporary name and commits (rename, or completes the
//! multipart upload) only after the body ended without error, so a crash or a failed
//! copy never leaves a partial artifact that looks complete. [`BackupStore::get`] gives
//! a reader; [`verified`] wraps it so that a read whose bytes do not hash to the
//! recorded checksum ends in an error instead of a silent corruption.
//!
//! What it must not do: know what a backup or an instance is (callers name the
//! artifacts), or hold an artifact whole in memory.

mod file;
mod s3;

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

pub use file::FileStore;
pub use s3::{S3Settings, S3Store};

use crate::saga::ports::ProviderError;

/// The storage location name when a create gives none (upstream's default
/// `backup_swift_container`).
pub const DEFAULT_CONTAINER: &str = "database_backups";

/// A body to store or read back.
pub type Body = Box<dyn AsyncRead + Send + Unpin>;

/// An artifact as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Where it is: the store's URL, container and name (`file:///…/c/n`).
    pub location: String,
    /// Bytes stored.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub checksum: String,
}

/// A place to keep backup artifacts.
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Streams `body` to the end into artifact `name` of `container` (both checked by
    /// [`valid_name`]) and commits it: only then does the artifact exist under its
    /// name. A body that ends in an error leaves nothing. An existing artifact of the
    /// same name is replaced (a retried backup).
    async fn put(&self, container: &str, name: &str, body: Body) -> Result<Stored, ProviderError>;

    /// Opens a committed artifact for reading. Missing: [`ProviderError::NotFound`].
    async fn get(&self, location: &str) -> Result<Body, ProviderError>;

    /// The size of a committed artifact, or `None` when there is none.
    async fn size(&self, location: &str) -> Result<Option<u64>, ProviderError>;

    /// Deletes an artifact; deleting one that is gone succeeds.
    async fn delete(&self, location: &str) -> Result<(), ProviderError>;

    /// The location artifact `name` of `container` has (or would have) in this store:
    /// how a failed backup's leftover is found and removed.
    fn location(&self, container: &str, name: &str) -> String;

    /// The store's URL, for logs and `docs/operations.md`'s questions.
    fn url(&self) -> String;
}

/// Opens the store `url` names: `file:///abs/dir` (created if missing, with troved's
/// umask, 077), or
/// `s3://bucket/prefix` with the endpoint, region and credentials of the environment
/// ([`S3Settings::from_env`]).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn BackupStore>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        let store = FileStore::open(std::path::Path::new(path))
            .await
            .map_err(|e| format!("backup store {url}: {e}"))?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("s3://") {
        let store = S3Store::open(url, &S3Settings::from_env())
            .map_err(|e| format!("backup store {url}: {e}"))?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(format!(
        "backup store {url}: unsupported URL (expected file:///absolute/dir or s3://bucket/prefix)"
    ))
}

/// Whether `s` may name a container or an artifact: 1–128 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot (no paths, no hidden temporaries).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far and the lower-case hex SHA-256 of them.
    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            self.hasher.update(new);
            self.bytes += new.len() as u64;
        }
        polled
    }
}

/// A reader of an artifact that fails at its end (`InvalidData`) unless the bytes read
/// hash to `checksum`: a restore reading through it never takes a corrupted artifact
/// for a good one.
pub fn verified(body: Body, checksum: &str) -> Body {
    Box::new(Verified {
        inner: Hashing::new(body),
        expected: checksum.to_ascii_lowercase(),
        done: false,
    })
}

struct Verified {
    inner: Hashing<Body>,
    expected: String,
    done: bool,
}

impl AsyncRead for Verified {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() == before && !self.done {
                // End of the artifact: compare.
                self.done = true;
                let got = hex::encode(self.inner.hasher.clone().finalize());
                if got != self.expected {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "backup artifact checksum mismatch: expected {}, read {got}",
                            self.expected
                        ),
                    )));
                }
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn names_are_single_safe_components() {
        for ok in ["database_backups", "b-1.tar.gz", "A9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "ü", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn verified_reads_fail_on_a_wrong_checksum_only() {
        let data = b"some backup bytes".to_vec();
        let good = hex::encode(Sha256::digest(&data));
        let mut out = Vec::new();
        verified(Box::new(std::io::Cursor::new(data.clone())), &good)
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        let bad = hex::encode(Sha256::digest(b"other"));
        let err = verified(Box::new(std::io::Cursor::new(data)), &bad)
            .read_to_end(&mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
