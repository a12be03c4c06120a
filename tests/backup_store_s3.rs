//! The `s3://` backup store against a local S3-compatible server: moto's server (PyPI
//! `moto[server]`, a test stand-in only), which .ci/run installs under target/ and names in
//! `TROVED_TEST_MOTO`. Each test starts its own server on a free port and bucket, and kills
//! it by pid when done, even on failure. Without `TROVED_TEST_MOTO` each test prints
//! `SKIPPED:` and passes.
//!
//! What a user would check is checked against the server itself, not through the store
//! under test: which objects the bucket lists, which multipart uploads are still open, the
//! ETag that tells how many parts an object was uploaded in.

mod common;

use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use troved::backup_store::{BackupStore, S3Settings, S3Store};
use troved::saga::ports::ProviderError;

const BUCKET: &str = "troved-backups";

/// A moto server of this test; killed (by pid) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// Starts one with bucket [`BUCKET`], or prints `SKIPPED:` and returns `None` when no
    /// moto is configured.
    async fn start() -> Option<Moto> {
        let Some(bin) = std::env::var_os("TROVED_TEST_MOTO") else {
            println!(
                "SKIPPED: TROVED_TEST_MOTO (a moto_server binary) is not set; .ci/run sets it"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.to_string_lossy()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_ready().await;
        let created = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", moto.endpoint))
            .send()
            .await
            .expect("creating the bucket");
        assert!(created.status().is_success(), "{}", created.status());
        Some(moto)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&self.endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not listen within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            session_token: None,
        }
    }

    fn store(&self, url: &str) -> S3Store {
        S3Store::open(url, &self.settings()).expect("opening the store")
    }

    /// The text of the server's answer to `GET /<BUCKET><query>`.
    async fn bucket_get(&self, query: &str) -> String {
        reqwest::get(format!("{}/{BUCKET}{query}", self.endpoint))
            .await
            .and_then(|r| r.error_for_status())
            .expect("asking the bucket")
            .text()
            .await
            .expect("the bucket's answer")
    }

    /// The keys of the objects in the bucket (ListObjectsV2).
    async fn keys(&self) -> Vec<String> {
        elements(&self.bucket_get("?list-type=2").await, "Key")
    }

    /// The keys of the multipart uploads begun and neither completed nor aborted.
    async fn open_uploads(&self) -> Vec<String> {
        elements(&self.bucket_get("?uploads").await, "Key")
    }

    /// The ETag of object `key`: `"<md5>-<parts>"` for a multipart upload.
    async fn etag(&self, key: &str) -> String {
        let head = reqwest::Client::new()
            .head(format!("{}/{BUCKET}/{key}", self.endpoint))
            .send()
            .await
            .expect("HEAD of the object");
        let etag = head.headers().get("etag").expect("an ETag");
        etag.to_str()
            .expect("an ASCII ETag")
            .trim_matches('"')
            .into()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The texts of `<tag>…</tag>` in an XML answer (S3's listings are flat enough).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// Some bytes, then an error: a backup tool that failed half way.
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

fn data(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn read_all(store: &dyn BackupStore, location: &str) -> Vec<u8> {
    let mut back = Vec::new();
    store
        .get(location)
        .await
        .expect("opening the artifact")
        .read_to_end(&mut back)
        .await
        .expect("reading the artifact");
    back
}

#[tokio::test]
async fn s3_put_get_size_delete_round_trip() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = moto.store(&format!("s3://{BUCKET}/troved/prod/"));
    assert_eq!(store.url(), format!("s3://{BUCKET}/troved/prod"));
    let bytes = data(1_000_000);
    let stored = store
        .put("c1", "b1.gz", Box::new(io::Cursor::new(bytes.clone())))
        .await
        .unwrap();
    assert_eq!(
        stored.location,
        format!("s3://{BUCKET}/troved/prod/c1/b1.gz")
    );
    assert_eq!(
        (stored.size, stored.checksum.as_str()),
        (1_000_000, sha256(&bytes).as_str())
    );
    assert_eq!(moto.keys().await, ["troved/prod/c1/b1.gz"]);
    assert_eq!(read_all(&store, &stored.location).await, bytes);
    assert_eq!(store.size(&stored.location).await.unwrap(), Some(1_000_000));

    // A retried backup replaces the artifact; an empty one is an artifact too.
    let again = store
        .put("c1", "b1.gz", Box::new(tokio::io::empty()))
        .await
        .unwrap();
    assert_eq!(
        (again.location.as_str(), again.size),
        (stored.location.as_str(), 0)
    );
    assert_eq!(again.checksum, sha256(b""));
    assert_eq!(read_all(&store, &stored.location).await, b"");

    store.delete(&stored.location).await.unwrap();
    store.delete(&stored.location).await.unwrap();
    assert_eq!(store.size(&stored.location).await.unwrap(), None);
    assert!(matches!(
        store.get(&stored.location).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(moto.keys().await.is_empty());
}

#[tokio::test]
async fn s3_failed_body_leaves_no_object_and_no_open_upload() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    // 5 MiB parts (S3's least): the second failure comes after two parts were stored.
    let store = moto
        .store(&format!("s3://{BUCKET}/p"))
        .with_part_size(5 * 1024 * 1024);
    for (name, good_bytes) in [("small", 600_000), ("after-parts", 12 * 1024 * 1024)] {
        let err = store
            .put("c1", name, Box::new(Broken(good_bytes)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the backup tool failed"), "{err}");
        assert!(moto.keys().await.is_empty(), "{name}");
        assert!(moto.open_uploads().await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn s3_large_body_is_stored_in_parts_with_its_checksum() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = moto.store(&format!("s3://{BUCKET}/p"));
    let bytes = data(20_000_000);
    let stored = store
        .put("c1", "big", Box::new(io::Cursor::new(bytes.clone())))
        .await
        .unwrap();
    assert_eq!(
        (stored.size, stored.checksum.clone()),
        (20_000_000, sha256(&bytes))
    );
    // 16 MiB parts: two of them.
    assert!(moto.etag("p/c1/big").await.ends_with("-2"));
    assert_eq!(
        store.size(&stored.location).await.unwrap(),
        Some(20_000_000)
    );
    assert_eq!(
        sha256(&read_all(&store, &stored.location).await),
        stored.checksum
    );
}

#[tokio::test]
async fn s3_locations_outside_the_store_are_refused() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = moto.store(&format!("s3://{BUCKET}/p"));
    // An artifact of another prefix of the same bucket stays untouched.
    let other = moto.store(&format!("s3://{BUCKET}/q"));
    let theirs = other
        .put("c", "b", Box::new(io::Cursor::new(b"x".to_vec())))
        .await
        .unwrap();
    for bad in [
        theirs.location.clone(),
        "s3://other-bucket/p/c/b".to_string(),
        format!("s3://{BUCKET}/pp/c/b"),
        format!("s3://{BUCKET}/p/b"),
        format!("s3://{BUCKET}/p/c/b/x"),
        format!("s3://{BUCKET}/p/c/../b"),
        format!("s3://{BUCKET}/p/c/.b"),
        format!("s3://{BUCKET}/c/b"),
        "file:///etc/passwd".to_string(),
    ] {
        assert!(
            matches!(store.get(&bad).await, Err(ProviderError::Permanent(_))),
            "{bad}"
        );
        assert!(store.size(&bad).await.is_err(), "{bad}");
        assert!(store.delete(&bad).await.is_err(), "{bad}");
    }
    assert_eq!(moto.keys().await, ["q/c/b"]);
}

#[tokio::test]
async fn s3_missing_bucket_is_a_permanent_error() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = moto.store("s3://no-such-bucket/p");
    let err = store
        .put("c", "b", Box::new(io::Cursor::new(b"x".to_vec())))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn s3_store_opens_from_the_url_and_the_aws_environment() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    // The only test here that sets the environment, to values no other test reads (they
    // pass S3Settings); std serializes its own environment accesses.
    for (name, value) in [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        std::env::set_var(name, value);
    }
    let store = troved::backup_store::open(&format!("s3://{BUCKET}/env"))
        .await
        .unwrap();
    assert_eq!(store.url(), format!("s3://{BUCKET}/env"));
    let stored = store
        .put("c", "b", Box::new(io::Cursor::new(b"hello".to_vec())))
        .await
        .unwrap();
    assert_eq!(read_all(store.as_ref(), &stored.location).await, b"hello");
    assert_eq!(moto.keys().await, ["env/c/b"]);
    assert!(troved::backup_store::open("s3://Bad_Bucket/x")
        .await
        .is_err());
}

/// troved itself on `--backup-store s3://…` (the simulated cloud's artifacts): a backup
/// lands in the bucket under its container with the recorded checksum, a restore reads
/// it back, and a delete removes the object.
#[tokio::test]
async fn troved_keeps_its_backups_in_the_s3_store() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let url = format!("s3://{BUCKET}/troved");
    let s = common::TestServer::start_with_env(dir.path(), &["--backup-store", &url], &env).await;
    let id = s.create_active("u", "p1", "db1").await;
    let body = serde_json::json!({"backup": {"name": "b", "instance": id}});
    let (status, created) = s.post("u", "p1", "/backups", &body).await;
    assert_eq!(status, 202, "{created}");
    let bid = created["backup"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (_, shown) = s.get("u", "p1", &format!("/backups/{bid}")).await;
        if shown["backup"]["status"] == "COMPLETED" {
            break shown["backup"].clone();
        }
        assert!(Instant::now() < deadline, "not completed: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = format!("troved/database_backups/{bid}");
    assert_eq!(done["locationRef"], format!("s3://{BUCKET}/{key}").as_str());
    assert_eq!(moto.keys().await, [key.as_str()]);
    let object = reqwest::get(format!("{}/{BUCKET}/{key}", moto.endpoint))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        done["checksum"],
        hex::encode(Sha256::digest(&object)).as_str()
    );
    let mut restore = common::create_body("copy");
    restore["instance"]["restorePoint"] = serde_json::json!({"backupRef": bid});
    let (status, body) = s.post("u", "p1", "/instances", &restore).await;
    assert_eq!(status, 200, "{body}");
    let copy = body["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("u", "p1", &copy, |i| i["status"] == "ACTIVE")
        .await;
    assert_eq!(s.delete("u", "p1", &format!("/backups/{bid}")).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !moto.keys().await.is_empty() {
        assert!(Instant::now() < deadline, "the object was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A body that never ends: a copy still running.
struct Endless;

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(64 * 1024);
        buf.put_slice(&vec![7u8; n]);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn s3_put_dropped_midway_leaves_no_object_and_no_open_upload() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = moto.store(&format!("s3://{BUCKET}/p"));
    let put = store.put("c", "b", Box::new(Endless));
    assert!(tokio::time::timeout(Duration::from_secs(3), put)
        .await
        .is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !moto.open_uploads().await.is_empty() {
        assert!(Instant::now() < deadline, "the upload was left open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moto.keys().await.is_empty());
}
