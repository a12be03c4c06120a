//! `s3://bucket/prefix`: artifacts as objects `<prefix>/<container>/<name>` of an
//! S3-compatible object store (AWS S3, Ceph RGW, MinIO, …), through the `object_store`
//! crate.
//!
//! Every put is a multipart upload: S3 shows no object under the name until the upload
//! is completed, so completing it is the commit, and a body that fails aborts it (its
//! parts are deleted). An upload whose process dies in between stays invisible and
//! incomplete; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) reclaims its
//! parts (docs/operations.md).
//!
//! What it must not do: read the environment other than in [`S3Settings::from_env`], or
//! accept a location outside its bucket and prefix.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;

use super::{valid_name, BackupStore, Body, Hashing, Stored};
use crate::saga::ports::ProviderError;

/// Bytes per multipart part. S3 wants at least 5 MiB for every part but the last and
/// allows 10 000 parts: 16 MiB parts allow artifacts up to 156 GiB.
pub const PART_SIZE: usize = 16 * 1024 * 1024;

/// Parts uploaded at once; with the one being filled, a put holds at most
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes (48 MiB) in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Read the body in chunks of this many bytes.
const CHUNK: usize = 256 * 1024;

/// A read that waits this long for the next bytes has stalled (and is retried). There
/// is deliberately no timeout for a whole request: reading a large artifact takes as
/// long as it takes.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the object store is and who we are to it, by AWS's own variable names.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `http(s)://host:port` of an S3-compatible service; `None`: AWS S3 itself.
    pub endpoint: Option<String>,
    /// Region (signatures name it); `None`: `us-east-1`.
    pub region: Option<String>,
    /// Access key; without it (and the secret) the client asks the machine's instance
    /// metadata for role credentials, as on EC2.
    pub access_key_id: Option<String>,
    /// Secret access key, never logged.
    pub secret_access_key: Option<String>,
    /// Temporary credentials' session token.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// From `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`: the names the AWS CLI and SDKs read, so an operator's
    /// existing setup works unchanged.
    pub fn from_env() -> S3Settings {
        S3Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`S3Settings::from_env`], with `lookup` for the environment; empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> S3Settings {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
        };
        S3Settings {
            endpoint: var(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: var(&["AWS_SESSION_TOKEN"]),
        }
    }
}

/// Artifacts in a bucket of an S3-compatible object store.
pub struct S3Store {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty (the bucket's root).
    prefix: String,
    /// [`PART_SIZE`], smaller in tests.
    part_size: usize,
}

impl S3Store {
    /// The store `url` (`s3://bucket[/prefix]`) names, reached with `settings`. Nothing
    /// is sent yet: a wrong bucket or credentials show at the first request.
    pub fn open(url: &str, settings: &S3Settings) -> Result<S3Store, String> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
            .with_client_options(
                ClientOptions::new()
                    .with_timeout_disabled()
                    .with_read_timeout(READ_TIMEOUT),
            );
        if let Some(endpoint) = &settings.endpoint {
            // Local stand-ins and in-cluster services often speak plain HTTP; the
            // operator chose the scheme by writing the URL.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        Ok(S3Store {
            store: Arc::new(store),
            bucket,
            prefix,
            part_size: PART_SIZE,
        })
    }

    /// Uses parts of `bytes` (at least 5 MiB for S3) instead of [`PART_SIZE`].
    pub fn with_part_size(mut self, bytes: usize) -> S3Store {
        self.part_size = bytes;
        self
    }

    fn key(&self, container: &str, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("{container}/{name}")
        } else {
            format!("{}/{container}/{name}", self.prefix)
        }
    }

    /// The object of a location this store made; anything else is refused.
    fn path_of(&self, location: &str) -> Result<Path, ProviderError> {
        let foreign = || {
            ProviderError::Permanent(format!(
                "{location} is not an artifact of the backup store {}",
                self.url()
            ))
        };
        let rest = location
            .strip_prefix(&format!("{}/", self.url()))
            .ok_or_else(foreign)?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [c, n] if valid_name(c) && valid_name(n) => {
                Path::parse(self.key(c, n)).map_err(|_| foreign())
            }
            _ => Err(foreign()),
        }
    }

    /// Streams `body` into a multipart upload of `path` and completes it; a body or
    /// upload error aborts it. Returns the size and SHA-256 of the body.
    async fn upload(&self, path: &Path, body: Body) -> Result<(u64, String), ProviderError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| store_error("starting the backup upload", e))?;
        let mut open = Open(Some(WriteMultipart::new_with_chunk_size(
            upload,
            self.part_size,
        )));
        let mut body = Hashing::new(body);
        let mut chunk = vec![0u8; CHUNK];
        while let Some(writer) = open.0.as_mut() {
            let n = match body.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    open.abort().await;
                    return Err(ProviderError::Transient(format!(
                        "reading the backup artifact: {e}"
                    )));
                }
            };
            // Back-pressure: a fast body waits for parts to be stored rather than
            // piling them up in memory.
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                open.abort().await;
                return Err(store_error("uploading the backup artifact", e));
            }
            writer.write(&chunk[..n]);
        }
        // Aborts the upload itself when a part or the completion fails.
        if let Some(writer) = open.0.take() {
            writer
                .finish()
                .await
                .map_err(|e| store_error("committing the backup artifact", e))?;
        }
        Ok(body.finish())
    }
}

/// An upload in progress: aborted (in the background) if dropped before it was
/// completed or aborted, e.g. when the saga gives up on a copy and drops the put.
struct Open(Option<WriteMultipart>);

impl Open {
    async fn abort(&mut self) {
        if let Some(writer) = self.0.take() {
            abort(writer).await;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(writer) = self.0.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(abort(writer));
        }
    }
}

/// Aborts an upload after a failure; the caller reports the failure, so an abort that
/// fails too is only logged (the parts stay invisible until a lifecycle rule reclaims
/// them).
async fn abort(writer: WriteMultipart) {
    if let Err(e) = writer.abort().await {
        tracing::warn!(error = %e, "could not abort a failed backup upload");
    }
}

/// `s3://bucket[/prefix]` → bucket and prefix (trimmed of `/`, each segment a
/// [`valid_name`], so a location's parts cannot be mistaken for the prefix's).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let invalid = |why: &str| format!("{why} (expected s3://bucket/prefix)");
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
    if !bucket_ok {
        return Err(invalid("invalid bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() && !prefix.split('/').all(valid_name) {
        return Err(invalid("invalid prefix"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// An object store failure as the saga sees it. The client has already retried
/// what it deems transient (timeouts, 5xx, throttling) with backoff. Not found here
/// (callers handle a missing artifact first) is a missing bucket: a configuration error.
fn store_error(what: &str, e: object_store::Error) -> ProviderError {
    let message = format!("{what}: {e}");
    match e {
        object_store::Error::NotFound { .. }
        | object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::InvalidPath { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::NotImplemented { .. } => ProviderError::Permanent(message),
        _ => ProviderError::Transient(message),
    }
}

#[async_trait]
impl BackupStore for S3Store {
    async fn put(&self, container: &str, name: &str, body: Body) -> Result<Stored, ProviderError> {
        if !valid_name(container) || !valid_name(name) {
            return Err(ProviderError::Permanent(format!(
                "invalid artifact name {container}/{name}"
            )));
        }
        let path = Path::parse(self.key(container, name))
            .map_err(|e| ProviderError::Permanent(format!("invalid artifact name: {e}")))?;
        let (size, checksum) = self.upload(&path, body).await?;
        Ok(Stored {
            location: self.location(container, name),
            size,
            checksum,
        })
    }

    async fn get(&self, location: &str) -> Result<Body, ProviderError> {
        let path = self.path_of(location)?;
        match self.store.get(&path).await {
            Ok(found) => {
                let bytes = found.into_stream().map_err(io::Error::other);
                Ok(Box::new(StreamReader::new(bytes)))
            }
            Err(object_store::Error::NotFound { .. }) => Err(ProviderError::NotFound(format!(
                "backup artifact {location}"
            ))),
            Err(e) => Err(store_error("opening the backup artifact", e)),
        }
    }

    async fn size(&self, location: &str) -> Result<Option<u64>, ProviderError> {
        let path = self.path_of(location)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error("reading the backup artifact", e)),
        }
    }

    async fn delete(&self, location: &str) -> Result<(), ProviderError> {
        let path = self.path_of(location)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("deleting the backup artifact", e)),
        }
    }

    fn location(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.url())
    }

    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_safe_prefix() {
        for (url, bucket, prefix) in [
            ("s3://backups", "backups", ""),
            ("s3://backups/", "backups", ""),
            (
                "s3://my.bucket-1/troved/prod/",
                "my.bucket-1",
                "troved/prod",
            ),
        ] {
            assert_eq!(
                parse_url(url),
                Ok((bucket.to_string(), prefix.to_string())),
                "{url}"
            );
        }
        for bad in [
            "file:///x",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://b_b",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "s3://bucket/a?x=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_read_aws_names_and_ignore_empty_values() {
        let env = [
            ("AWS_ENDPOINT", "http://second"),
            ("AWS_ENDPOINT_URL", "http://first"),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        let s = S3Settings::from_lookup(|n| {
            env.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(s.endpoint.as_deref(), Some("http://first"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.access_key_id.as_deref(), Some("id"));
        assert_eq!(s.session_token, None);
        assert!(!format!("{s:?}").contains("secret"));
    }
}
