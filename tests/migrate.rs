//! `troved migrate`: the built binary against SQLite stores built here (copy, resume
//! after a limit and after SIGKILL, refusals, locks, `--verify-only`, URL errors); a
//! round trip SQLite → EventStoreDB → SQLite through the in-process EventStoreDB double
//! (`tests/esdb_double`) with dropped connections; and the library functions against an
//! EventStoreDB-like source (gapped opaque positions, system streams) and a target that
//! loses answers and reads.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use esdb_double::EsdbDouble;
use troved::cli::migrate::{self, CopyOptions, MigrateError};
use troved::store::sqlite::SqliteStore;
use troved::store::{
    AppendOutcome, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError,
    StoreUrl, Subscription,
};
use uuid::Uuid;

// ---- helpers -------------------------------------------------------------------------------

/// A small deterministic generator (no dependency, same log for the same seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const TYPES: [&str; 5] = [
    "InstanceCreateRequested",
    "InstanceRenamed",
    "BackupCreated",
    "ConfigurationUpdated",
    "InstanceDeleted",
];

/// Fills a new SQLite store at `path` with `total` events over `streams` streams, in
/// rounds of concurrent appends of 1 to 6 events each (so streams interleave in `$all`
/// and the writer group-commits), and returns what it holds in `$all` order.
async fn build_source(path: &Path, streams: usize, total: usize, seed: u64) -> Vec<RecordedEvent> {
    let store = SqliteStore::open(path).unwrap();
    let names: Vec<String> = (0..streams)
        .map(|s| match s % 4 {
            0 => format!("instance-{}", Uuid::from_u128(s as u128 + 1)),
            1 => format!("configuration-{s}"),
            2 => format!("backup-{s}"),
            _ => format!("instance-é{s}"),
        })
        .collect();
    let mut next = vec![0u64; streams];
    let mut rng = Lcg(seed);
    let mut written = 0usize;
    while written < total {
        let mut round = tokio::task::JoinSet::new();
        for s in 0..streams {
            if written >= total {
                break;
            }
            if rng.next(3) == 0 {
                continue;
            }
            let n = (1 + rng.next(6) as usize).min(total - written);
            let events: Vec<NewEvent> = (0..n)
                .map(|k| {
                    let revision = next[s] + k as u64;
                    let pad = "x".repeat(rng.next(200) as usize);
                    NewEvent {
                        id: Uuid::new_v4(),
                        event_type: TYPES[rng.next(TYPES.len() as u64) as usize].to_string(),
                        data: format!(r#"{{"stream":{s},"revision":{revision},"pad":"{pad}"}}"#)
                            .into_bytes(),
                        metadata: if revision % 5 == 4 {
                            Vec::new()
                        } else {
                            format!(r#"{{"actor":"u{s}","seq":{written}}}"#).into_bytes()
                        },
                    }
                })
                .collect();
            let expected = match next[s] {
                0 => ExpectedRevision::NoStream,
                r => ExpectedRevision::Exact(r - 1),
            };
            let (store, name) = (store.clone(), names[s].clone());
            round.spawn(async move { store.append(&name, expected, events).await.unwrap() });
            next[s] += n as u64;
            written += n;
        }
        while let Some(r) = round.join_next().await {
            r.unwrap();
        }
    }
    let all = read_everything(&store).await;
    store.shutdown().await;
    assert_eq!(all.len(), total);
    all
}

async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = Position::START;
    loop {
        let page = store.read_all(from, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.position;
        all.extend(page);
    }
    all
}

/// Opens a store file, reads it whole, closes it.
async fn read_file(path: &Path) -> Vec<RecordedEvent> {
    let store = SqliteStore::open(path).unwrap();
    let all = read_everything(&store).await;
    store.shutdown().await;
    all
}

fn open(path: &Path) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(path).unwrap())
}

/// The target holds exactly the source's events (all but the positions), in order, with
/// its own increasing positions.
fn assert_same_events(source: &[RecordedEvent], target: &[RecordedEvent]) {
    assert_eq!(source.len(), target.len(), "event counts");
    for (k, (s, t)) in source.iter().zip(target).enumerate() {
        assert_eq!(
            (
                &s.id,
                &s.stream,
                s.revision,
                &s.event_type,
                &s.data,
                &s.metadata
            ),
            (
                &t.id,
                &t.stream,
                t.revision,
                &t.event_type,
                &t.data,
                &t.metadata
            ),
            "event #{}",
            k + 1
        );
    }
    assert!(target.windows(2).all(|w| w[0].position < w[1].position));
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn troved(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(args)
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .env_remove("TROVED_MIGRATE_FROM")
        .env_remove("TROVED_MIGRATE_TO")
        .stdin(Stdio::null())
        .output()
        .expect("run troved")
}

fn migrate_bin(from: &Path, to: &Path, extra: &[&str]) -> Output {
    let (from, to) = (url(from), url(to));
    let mut args = vec!["migrate", "--from", &from, "--to", &to];
    args.extend_from_slice(extra);
    troved(&args)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_success(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "troved failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[track_caller]
fn assert_failure(out: &Output) -> (String, String) {
    let (stdout, stderr) = text(out);
    assert!(
        !out.status.success(),
        "troved succeeded\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

/// Two data directories, `src/events.db` and `dst/events.db`.
struct Dirs {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    Dirs {
        src: src.join("events.db"),
        dst: dst.join("events.db"),
        _tmp: tmp,
    }
}

fn quick() -> CopyOptions {
    CopyOptions {
        retry_delay: Duration::from_millis(1),
        ..CopyOptions::default()
    }
}

/// Copies the first `k` events with the library, as an interrupted run leaves them.
async fn copy_prefix(from: &Path, to: &Path, k: u64) {
    let (source, target) = (open(from), open(to));
    let opts = CopyOptions {
        limit: Some(k),
        batch_size: 37,
        ..quick()
    };
    let report = migrate::copy(&source, &target, &opts).await.unwrap();
    assert_eq!(report.copied, k);
    source.shutdown().await;
    target.shutdown().await;
}

async fn append_one(path: &Path, stream: &str, expected: ExpectedRevision) {
    let store = SqliteStore::open(path).unwrap();
    store
        .append(
            stream,
            expected,
            vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: "Foreign".into(),
                data: b"{}".to_vec(),
                metadata: b"{}".to_vec(),
            }],
        )
        .await
        .unwrap();
    store.shutdown().await;
}

// ---- the command ---------------------------------------------------------------------------

#[tokio::test]
async fn copies_every_event_in_all_order_with_everything_intact() {
    let d = dirs();
    let source = build_source(&d.src, 200, 3000, 1).await;
    let started = Instant::now();
    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &[]));
    eprintln!("migrated 3000 events in {:?}", started.elapsed());
    assert!(
        stdout.contains("copied 3000 event(s), skipped 0 already present"),
        "{stdout}"
    );
    let digests: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("verify: source") || l.starts_with("verify: target"))
        .map(|l| l.rsplit_once("sha256 ").unwrap().1)
        .collect();
    assert_eq!(digests.len(), 2, "{stdout}");
    assert_eq!(digests[0], digests[1]);
    assert!(stdout.contains("3000 event(s), sha256"), "{stdout}");
    assert!(stdout.contains("verify: OK"), "{stdout}");

    let target = read_file(&d.dst).await;
    assert_same_events(&source, &target);
    // The embedded target's positions are its own dense sequence.
    assert!(target
        .iter()
        .enumerate()
        .all(|(k, e)| e.position.commit == k as u64 + 1));
    // Every stream reads back whole, in revision order, on the target.
    let store = SqliteStore::open(&d.dst).unwrap();
    for name in ["configuration-1", "backup-2", "instance-é3"] {
        let want: Vec<_> = source.iter().filter(|e| e.stream == name).collect();
        let got = store.read_stream(name).await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.id == w.id && g.revision == w.revision && g.data == w.data));
    }
    store.shutdown().await;
    // The target's own tamper evidence holds over the copy.
    assert!(troved::store::sqlite::verify(&d.dst).unwrap().is_intact());
}

#[tokio::test]
async fn resumes_an_interrupted_copy_without_duplicates() {
    let d = dirs();
    let source = build_source(&d.src, 150, 2000, 2).await;
    copy_prefix(&d.src, &d.dst, 777).await;
    assert_same_events(&source[..777], &read_file(&d.dst).await);

    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &["--batch-size", "64"]));
    assert!(
        stdout.contains("copied 1223 event(s), skipped 777 already present"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK"), "{stdout}");
    assert_same_events(&source, &read_file(&d.dst).await);

    // Once more: nothing left to copy, nothing duplicated.
    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(
        stdout.contains("copied 0 event(s), skipped 2000 already present"),
        "{stdout}"
    );
    assert_same_events(&source, &read_file(&d.dst).await);
}

#[tokio::test]
async fn resumes_after_sigkill() {
    let d = dirs();
    let source = build_source(&d.src, 150, 2000, 3).await;
    let (from, to) = (url(&d.src), url(&d.dst));
    // Small appends make the copy slow enough to be killed half-way; stderr is a pipe,
    // so progress comes as a line per tenth of the log.
    let mut child = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["migrate", "--from", &from, "--to", &to, "--batch-size", "5"])
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut killed_mid_copy = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("migrate: ") && !line.contains(" 0 copied") {
            killed_mid_copy = child.kill().is_ok();
            break;
        }
    }
    let status = child.wait().unwrap();
    let before = read_file(&d.dst).await;
    eprintln!(
        "killed: {killed_mid_copy} ({status}), {} of 2000 copied",
        before.len()
    );
    assert_same_events(&source[..before.len()], &before);

    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(
        stdout.contains(&format!(
            "copied {} event(s), skipped {} already present",
            2000 - before.len(),
            before.len()
        )),
        "{stdout}"
    );
    assert_same_events(&source, &read_file(&d.dst).await);
}

#[tokio::test]
async fn a_diverging_target_is_refused_and_left_unchanged() {
    let d = dirs();
    build_source(&d.src, 20, 300, 4).await;

    // The first 100 events, then one the source does not have.
    copy_prefix(&d.src, &d.dst, 100).await;
    append_one(&d.dst, "instance-foreign", ExpectedRevision::NoStream).await;
    let before = read_file(&d.dst).await;
    let (_, stderr) = assert_failure(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(stderr.contains("not an earlier, partial copy"), "{stderr}");
    assert!(stderr.contains("event #101 differs"), "{stderr}");
    assert!(stderr.contains("instance-foreign"), "{stderr}");
    assert_eq!(read_file(&d.dst).await, before);

    // A full copy with one more event than the source.
    let d2 = dirs();
    std::fs::copy(&d.src, &d2.src).unwrap();
    std::fs::copy(&d.src, &d2.dst).unwrap();
    append_one(&d2.dst, "configuration-1", ExpectedRevision::Any).await;
    let before = read_file(&d2.dst).await;
    let (_, stderr) = assert_failure(&migrate_bin(&d2.src, &d2.dst, &[]));
    assert!(
        stderr.contains("the target holds more events than the source"),
        "{stderr}"
    );
    assert_eq!(read_file(&d2.dst).await, before);
}

#[tokio::test]
async fn a_locked_data_directory_is_refused() {
    let d = dirs();
    build_source(&d.src, 10, 100, 5).await;

    let lock = troved::server::lock_dir(d.src.parent().unwrap()).unwrap();
    let (_, stderr) = assert_failure(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(stderr.contains("--from"), "{stderr}");
    assert!(stderr.contains("in use by a running troved"), "{stderr}");
    assert!(!d.dst.exists());
    drop(lock);

    let lock = troved::server::lock_dir(d.dst.parent().unwrap()).unwrap();
    let (_, stderr) = assert_failure(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(stderr.contains("--to"), "{stderr}");
    assert!(stderr.contains("in use by a running troved"), "{stderr}");
    assert!(!d.dst.exists());
    drop(lock);

    assert_success(&migrate_bin(&d.src, &d.dst, &[]));
    // Two stores in one directory: one lock, taken once.
    let beside = d.src.with_file_name("copy.db");
    assert_success(&migrate_bin(&d.src, &beside, &[]));
    let (_, stderr) = assert_failure(&migrate_bin(
        &d.src,
        &d.src.parent().unwrap().join("./events.db"),
        &[],
    ));
    assert!(stderr.contains("the same store"), "{stderr}");
}

#[tokio::test]
async fn verify_only_detects_an_altered_target() {
    let d = dirs();
    build_source(&d.src, 30, 300, 6).await;
    copy_prefix(&d.src, &d.dst, 300).await;

    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &["--verify-only"]));
    assert!(!stdout.contains("copied"), "{stdout}");
    assert_eq!(
        stdout.matches("300 event(s), sha256").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK"), "{stdout}");

    append_one(&d.dst, "backup-2", ExpectedRevision::Any).await;
    let (stdout, stderr) = assert_failure(&migrate_bin(&d.src, &d.dst, &["--verify-only"]));
    assert!(stdout.contains("300 event(s), sha256"), "{stdout}");
    assert!(stdout.contains("301 event(s), sha256"), "{stdout}");
    assert!(
        stdout.contains("first difference: event #301 differs: the source has none"),
        "{stdout}"
    );
    assert!(
        stderr.contains("the target differs from the source"),
        "{stderr}"
    );
    // Verification wrote nothing.
    assert_eq!(read_file(&d.dst).await.len(), 301);

    // A missing target is an error, not an empty store created on the way.
    let (_, stderr) = assert_failure(&migrate_bin(
        &d.src,
        &d.dst.with_file_name("none.db"),
        &["--verify-only"],
    ));
    assert!(stderr.contains("no event store there"), "{stderr}");
    assert!(!d.dst.with_file_name("none.db").exists());
}

#[tokio::test]
async fn bad_urls_missing_and_empty_sources() {
    let d = dirs();
    let dst = url(&d.dst);

    let (stdout, stderr) = assert_failure(&troved(&[
        "migrate",
        "--from",
        "postgres://u:hunter22@db/x",
        "--to",
        &dst,
    ]));
    assert!(
        stderr.contains("--from") && stderr.contains("postgres"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("hunter22"));

    let (_, stderr) = assert_failure(&troved(&["migrate", "--from", "sqlite://", "--to", &dst]));
    assert!(stderr.contains("no path"), "{stderr}");

    // The EventStoreDB credentials never show, whatever the failure.
    let (stdout, stderr) = assert_failure(&troved(&[
        "migrate",
        "--from",
        &url(&d.src),
        "--to",
        "esdb://admin:hunter22@127.0.0.1:1?tls=false",
        "--retry-delay-ms",
        "1",
    ]));
    assert!(
        !format!("{stdout}{stderr}").contains("hunter22"),
        "{stderr}"
    );
    assert!(stderr.contains("no event store there"), "{stderr}");
    SqliteStore::open(&d.src).unwrap().shutdown().await;
    let (stdout, stderr) = assert_failure(&troved(&[
        "migrate",
        "--from",
        &url(&d.src),
        "--to",
        "esdb://admin:hunter22@127.0.0.1:1?tls=false",
        "--retry-delay-ms",
        "1",
    ]));
    assert!(
        !format!("{stdout}{stderr}").contains("hunter22"),
        "{stderr}"
    );
    assert!(stderr.contains("esdb://127.0.0.1:1"), "{stderr}");
    std::fs::remove_file(&d.src).unwrap();

    // A missing source: an error, and no target created.
    let (_, stderr) = assert_failure(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(stderr.contains("no event store there"), "{stderr}");
    assert!(!d.dst.exists());

    // An empty source: nothing to copy.
    SqliteStore::open(&d.src).unwrap().shutdown().await;
    let stdout = assert_success(&migrate_bin(&d.src, &d.dst, &[]));
    assert!(stdout.contains("nothing to copy"), "{stdout}");
}

// ---- the library, against EventStoreDB-like stores ----------------------------------------

/// Positions as EventStoreDB gives them: sparse, opaque, with commit != prepare; and
/// system events (`$stats-…`) in `$all` after every 7th event.
struct Gapped {
    inner: Arc<dyn EventStore>,
}

const GAP: u64 = 100;

fn gapped(p: u64) -> Position {
    Position {
        commit: p * GAP,
        prepare: p * GAP - 3,
    }
}

fn system_event(p: u64) -> RecordedEvent {
    RecordedEvent {
        id: Uuid::from_u128((1 << 100) | u128::from(p)),
        stream: "$stats-127.0.0.1:2113".into(),
        revision: p / 7 - 1,
        position: Position {
            commit: p * GAP + 50,
            prepare: p * GAP + 50,
        },
        event_type: "$statsCollected".into(),
        data: b"{}".to_vec(),
        metadata: Vec::new(),
    }
}

fn map(mut e: RecordedEvent) -> RecordedEvent {
    e.position = gapped(e.position.commit);
    e
}

#[async_trait]
impl EventStore for Gapped {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut outcome = self.inner.append(stream, expected, events).await?;
        outcome.position = gapped(outcome.position.commit);
        Ok(outcome)
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .inner
            .read_stream(stream)
            .await?
            .into_iter()
            .map(map)
            .collect())
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let q = from.commit / GAP;
        let mut out = Vec::new();
        if q >= 1 && q.is_multiple_of(7) && from.commit % GAP < 50 {
            out.push(system_event(q));
        }
        let inner_from = Position {
            commit: q,
            prepare: q,
        };
        for e in self.inner.read_all(inner_from, max).await? {
            let p = e.position.commit;
            out.push(map(e));
            if p.is_multiple_of(7) {
                out.push(system_event(p));
            }
        }
        out.truncate(max);
        Ok(out)
    }

    async fn subscribe_all(&self, _from: Position) -> Result<Box<dyn Subscription>, StoreError> {
        Err(StoreError::Unavailable("not in this double".into()))
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(match self.inner.head().await?.commit {
            0 => Position::START,
            h if h.is_multiple_of(7) => system_event(h).position,
            h => gapped(h),
        })
    }
}

/// A connection that drops: every 3rd append lands but its answer is lost, and every
/// 4th read fails before reaching the store.
struct Flaky {
    inner: Arc<dyn EventStore>,
    appends: AtomicU64,
    reads: AtomicU64,
    lost: AtomicU64,
}

impl Flaky {
    fn new(inner: Arc<dyn EventStore>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner,
            appends: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl EventStore for Flaky {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.append(stream, expected, events).await?;
        if n % 3 == 1 {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("connection reset (test)".into()));
        }
        Ok(outcome)
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream).await
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) % 4 == 2 {
            return Err(StoreError::Unavailable("connection reset (test)".into()));
        }
        self.inner.read_all(from, max).await
    }

    async fn subscribe_all(&self, from: Position) -> Result<Box<dyn Subscription>, StoreError> {
        self.inner.subscribe_all(from).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
}

#[tokio::test]
async fn gapped_positions_system_streams_and_lost_answers() {
    let d = dirs();
    let source_events = build_source(&d.src, 60, 1000, 7).await;
    let src_sqlite = open(&d.src);
    let source: Arc<dyn EventStore> = Flaky::new(Arc::new(Gapped {
        inner: Arc::clone(&src_sqlite),
    }));
    let dst_sqlite = open(&d.dst);
    let flaky_target = Flaky::new(Arc::clone(&dst_sqlite));
    let target: Arc<dyn EventStore> = flaky_target.clone();

    // Interrupted once (the limit), then resumed; both through the failures.
    let first = CopyOptions {
        limit: Some(400),
        batch_size: 50,
        ..quick()
    };
    let report = migrate::copy(&source, &target, &first).await.unwrap();
    assert_eq!((report.copied, report.skipped), (400, 0));
    let second = CopyOptions {
        batch_size: 50,
        ..quick()
    };
    let report = migrate::copy(&source, &target, &second).await.unwrap();
    assert_eq!((report.copied, report.skipped), (600, 400));
    assert_eq!(report.system, 1000 / 7, "system events passed over");
    assert!(flaky_target.lost.load(Ordering::SeqCst) > 10);

    assert_same_events(&source_events, &read_everything(dst_sqlite.as_ref()).await);
    let v = migrate::verify(&source, &target, &second).await.unwrap();
    assert!(v.matches(), "{v:?}");
    assert_eq!(v.source.events, 1000);
    assert_eq!(
        v.source,
        migrate::tally(&src_sqlite, &quick()).await.unwrap(),
        "system events are not part of the digest"
    );

    // A target that diverges is refused by the library too, before any write.
    append_one_store(&dst_sqlite, "instance-late").await;
    let err = migrate::copy(&source, &target, &second).await.unwrap_err();
    assert!(matches!(err, MigrateError::Diverged(_)), "{err}");
    let v = migrate::verify(&source, &target, &second).await.unwrap();
    assert!(!v.matches());
    assert_eq!((v.source.events, v.target.events), (1000, 1001));
    src_sqlite.shutdown().await;
    dst_sqlite.shutdown().await;
}

async fn append_one_store(store: &Arc<dyn EventStore>, stream: &str) {
    store
        .append(
            stream,
            ExpectedRevision::NoStream,
            vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: "Late".into(),
                data: b"{}".to_vec(),
                metadata: b"{}".to_vec(),
            }],
        )
        .await
        .unwrap();
}

// ---- EventStoreDB (the in-process double) --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_eventstoredb() {
    let d = dirs();
    let t0 = Instant::now();
    let source = build_source(&d.src, 40, 300, 8).await;
    let double = EsdbDouble::start().await;
    double.append_system_event();

    // SQLite → EventStoreDB, interrupted after 250 events, with the connection cut
    // under it a few times on the way.
    let sqlite = open(&d.src);
    let esdb = StoreUrl::parse(&double.url())
        .unwrap()
        .open()
        .await
        .unwrap();
    let opts = CopyOptions {
        limit: Some(120),
        batch_size: 20,
        retry_delay: Duration::from_millis(5),
        ..CopyOptions::default()
    };
    let chaos = async {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            double.drop_connections().await;
        }
    };
    let (report, ()) = tokio::join!(migrate::copy(&sqlite, &esdb, &opts), chaos);
    assert_eq!(report.unwrap().copied, 120);
    eprintln!("library copy done at {:?}", t0.elapsed());
    assert_eq!(double.user_event_count(), 120);
    sqlite.shutdown().await;
    esdb.shutdown().await;
    double.append_system_event();

    // The binary resumes it.
    let stdout = assert_success(&troved(&[
        "migrate",
        "--from",
        &url(&d.src),
        "--to",
        &double.url(),
    ]));
    assert!(
        stdout.contains("copied 180 event(s), skipped 120 already present"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK"), "{stdout}");
    assert_eq!(double.user_event_count(), 300);
    eprintln!("resumed by the binary at {:?}", t0.elapsed());

    // EventStoreDB → SQLite: the same events as the original store, in the same order.
    let back = d.dst.with_file_name("back.db");
    let stdout = assert_success(&troved(&[
        "migrate",
        "--from",
        &double.url(),
        "--to",
        &url(&back),
    ]));
    assert!(
        stdout.contains("copied 300 event(s), skipped 0 already present"),
        "{stdout}"
    );
    assert_same_events(&source, &read_file(&back).await);
    eprintln!("copied back at {:?}", t0.elapsed());
    assert_success(&troved(&[
        "migrate",
        "--from",
        &url(&d.src),
        "--to",
        &double.url(),
        "--verify-only",
    ]));
}
