//! The event store contract: behaviour every `EventStore` adapter must show, written
//! once against `Arc<dyn EventStore>` and run against each adapter through a
//! [`Fixture`]. Adding an adapter (EventStoreDB) means one `Fixture` impl and one
//! `contract_tests!` line.
//!
//! Adapters under the contract: SQLite; EventStoreDB against the in-process gRPC test
//! double (`tests/esdb_double`); EventStoreDB against a real node when
//! `TROVED_TEST_EVENTSTORE_URL` is set (docs/event-stores.md).
//!
//! Below the contract: EventStoreDB-specific tests (resubscription, system events,
//! deleted streams, an unreachable server), SQLite-specific tests (documented edge cases, schema, a
//! throughput print) and the SIGKILL durability test, which re-executes this test binary
//! as a child writer (`crash_child`) and kills it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use esdb_double::EsdbDouble;
use tokio::sync::Barrier;
use troved::store::esdb::EsdbStore;
use troved::store::sqlite::SqliteStore;
use troved::store::{
    AppendOutcome, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// What an adapter guarantees beyond the port, so the contract checks exactly that.
#[derive(Clone, Copy)]
struct Caps {
    /// Positions are 1, 2, 3, … with no gaps.
    dense_positions: bool,
    /// The store holds only this test's events (no system or foreign streams in `$all`).
    private: bool,
    /// Event ids are unique in the whole store and compared with their content: a
    /// known id is refused whatever the expected revision says. EventStoreDB checks ids
    /// per stream only, and only against the expected revision (docs/event-stores.md).
    strict_ids: bool,
}

/// A store under test, fresh for each test.
#[async_trait]
trait Fixture: Send + Sync + Sized + 'static {
    const CAPS: Caps;
    /// A fresh store, or `None` when this adapter cannot run here (a real EventStoreDB
    /// without `TROVED_TEST_EVENTSTORE_URL`).
    async fn create() -> Option<Self>;
    fn store(&self) -> Arc<dyn EventStore>;
    /// Stops the store; its subscriptions must end with `Unavailable`.
    async fn shutdown(&self);
    /// Stops the store and opens the same data again; `store()` then returns the new one.
    async fn restart(&mut self);
}

struct SqliteFixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: SqliteStore,
}

#[async_trait]
impl Fixture for SqliteFixture {
    const CAPS: Caps = Caps {
        dense_positions: true,
        private: true,
        strict_ids: true,
    };

    async fn create() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        Some(SqliteFixture {
            _dir: dir,
            path,
            store,
        })
    }

    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn shutdown(&self) {
        self.store.shutdown().await;
    }

    async fn restart(&mut self) {
        self.store.shutdown().await;
        self.store = SqliteStore::open(&self.path).unwrap();
    }
}

/// The EventStoreDB adapter against the in-process gRPC double: a fresh server per test.
struct EsdbDoubleFixture {
    double: EsdbDouble,
    store: EsdbStore,
}

#[async_trait]
impl Fixture for EsdbDoubleFixture {
    const CAPS: Caps = Caps {
        dense_positions: false,
        private: true,
        strict_ids: false,
    };

    async fn create() -> Option<Self> {
        let double = EsdbDouble::start().await;
        let store = EsdbStore::connect(&double.url()).await.unwrap();
        Some(EsdbDoubleFixture { double, store })
    }

    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn shutdown(&self) {
        EventStore::shutdown(&self.store).await;
    }

    /// The server restarts (same data, same port); the adapter is a new one.
    async fn restart(&mut self) {
        EventStore::shutdown(&self.store).await;
        self.double.stop().await;
        self.double.restart().await;
        self.store = EsdbStore::connect(&self.double.url()).await.unwrap();
    }
}

/// The EventStoreDB adapter against the double as a *shared* node, as the live suite
/// meets one: another writer appends to streams of its own all the time (from before the
/// test until after it), so `$all` and the head move under the test's feet. The contract
/// must hold here as on a real shared node (`private: false`).
struct EsdbSharedDoubleFixture {
    double: EsdbDouble,
    store: EsdbStore,
    /// The other writer; aborted on drop.
    noise: tokio::task::JoinHandle<()>,
}

impl Drop for EsdbSharedDoubleFixture {
    fn drop(&mut self) {
        self.noise.abort();
    }
}

#[async_trait]
impl Fixture for EsdbSharedDoubleFixture {
    const CAPS: Caps = Caps {
        dense_positions: false,
        private: false,
        strict_ids: false,
    };

    async fn create() -> Option<Self> {
        let double = EsdbDouble::start().await;
        let store = EsdbStore::connect(&double.url()).await.unwrap();
        let other = EsdbStore::connect(&double.url()).await.unwrap();
        let noise = tokio::spawn(async move {
            for n in 0u64.. {
                // Errors (the server restarting) are the other writer's business.
                let _ = other
                    .append(
                        &uniq("noise"),
                        ExpectedRevision::Any,
                        vec![event("Noise", n)],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        // Let the other writer be under way before the test starts.
        let deadline = Instant::now() + WAIT;
        while double.user_event_count() < 3 {
            assert!(Instant::now() < deadline, "the other writer never wrote");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(EsdbSharedDoubleFixture {
            double,
            store,
            noise,
        })
    }

    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn shutdown(&self) {
        EventStore::shutdown(&self.store).await;
    }

    /// A real restart of the shared server, the other writer going on around it.
    async fn restart(&mut self) {
        EventStore::shutdown(&self.store).await;
        self.double.stop().await;
        self.double.restart().await;
        self.store = EsdbStore::connect(&self.double.url()).await.unwrap();
    }
}

/// The EventStoreDB adapter against a real node: `TROVED_TEST_EVENTSTORE_URL`, e.g.
/// `esdb://127.0.0.1:2113?tls=false` for `docker run -p 2113:2113
/// eventstore/eventstore --insecure --run-projections=none`. The database is shared
/// between tests and runs: streams are unique per test, and `$all` holds other data.
struct EsdbLiveFixture {
    url: String,
    store: EsdbStore,
}

#[async_trait]
impl Fixture for EsdbLiveFixture {
    const CAPS: Caps = Caps {
        dense_positions: false,
        private: false,
        strict_ids: false,
    };

    async fn create() -> Option<Self> {
        let Ok(url) = std::env::var("TROVED_TEST_EVENTSTORE_URL") else {
            eprintln!("skipped: TROVED_TEST_EVENTSTORE_URL is not set");
            return None;
        };
        let store = EsdbStore::connect(&url).await.unwrap();
        Some(EsdbLiveFixture { url, store })
    }

    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn shutdown(&self) {
        EventStore::shutdown(&self.store).await;
    }

    /// A real server is not ours to restart: a new connection stands in for it, unless
    /// `TROVED_TEST_EVENTSTORE_RESTART` gives a shell command that restarts it (say
    /// `docker restart esdb`): then that runs, and the new connection waits (up to 60 s)
    /// until the server answers again.
    async fn restart(&mut self) {
        EventStore::shutdown(&self.store).await;
        if let Ok(command) = std::env::var("TROVED_TEST_EVENTSTORE_RESTART") {
            let status = std::process::Command::new("sh")
                .args(["-c", &command])
                .status()
                .expect("run TROVED_TEST_EVENTSTORE_RESTART");
            assert!(status.success(), "{command}: {status}");
        }
        self.store = EsdbStore::connect(&self.url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = self.store.head().await {
            assert!(
                Instant::now() < deadline,
                "the server did not come back: {e}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Runs every contract function against a fresh store from `$fixture`.
macro_rules! contract_tests {
    ($module:ident, $fixture:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn expected_revision() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_expected_revision(fx.store(), <$fixture>::CAPS).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn idempotent_append() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_idempotent_append(fx.store(), <$fixture>::CAPS).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers_one_stream() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_concurrent_writers_one_stream(fx.store()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn group_commit_isolation() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_group_commit_isolation(fx.store(), <$fixture>::CAPS).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn subscription_order() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_subscription_order(fx.store(), <$fixture>::CAPS).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn shutdown_ends_subscriptions() {
                let Some(fx) = <$fixture>::create().await else {
                    return;
                };
                contract_shutdown(&fx).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn reopen_after_restart() {
                let Some(mut fx) = <$fixture>::create().await else {
                    return;
                };
                contract_restart(&mut fx).await;
            }
        }
    };
}

contract_tests!(sqlite, SqliteFixture);
contract_tests!(esdb_on_double, EsdbDoubleFixture);
contract_tests!(esdb_shared_double, EsdbSharedDoubleFixture);
contract_tests!(esdb_live, EsdbLiveFixture);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Upper bound for any single wait in the contract, so a bug fails instead of hanging.
const WAIT: Duration = Duration::from_secs(15);

/// Stream names unique per run, so a shared server (EventStoreDB) needs no cleanup.
fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        data: format!(r#"{{"n":{n}}}"#).into_bytes(),
        metadata: format!(r#"{{"actor":"test","n":{n}}}"#).into_bytes(),
    }
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n as u64).map(|i| event("Tested", i)).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

fn assert_wrong_expected(
    result: Result<AppendOutcome, StoreError>,
    stream: &str,
    expected: ExpectedRevision,
    actual: Option<u64>,
) {
    match result {
        Err(StoreError::WrongExpectedVersion {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(s, stream);
            assert_eq!(e, expected);
            assert_eq!(a, actual);
        }
        other => panic!("expected WrongExpectedVersion(actual {actual:?}), got {other:?}"),
    }
}

fn assert_duplicate(result: Result<AppendOutcome, StoreError>, id: Uuid) {
    match result {
        Err(StoreError::DuplicateEventId(got)) => assert_eq!(got, id),
        other => panic!("expected DuplicateEventId({id}), got {other:?}"),
    }
}

/// All of `$all` after `from`, read in small pages so paging is exercised too.
async fn read_everything(store: &dyn EventStore, from: Position) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = from;
    loop {
        let page = store.read_all(after, 97).await.unwrap();
        assert!(page.len() <= 97);
        let Some(last) = page.last() else {
            return out;
        };
        after = last.position;
        out.extend(page);
    }
}

fn assert_strictly_increasing(events: &[RecordedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions not increasing: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
}

fn assert_dense(events: &[RecordedEvent]) {
    for (i, e) in events.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(
            e.position,
            Position {
                commit: n,
                prepare: n
            },
            "positions not dense"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------

/// Contract 1: optimistic concurrency with NoStream / Exact / Any, dense revisions,
/// increasing positions.
async fn contract_expected_revision(store: Arc<dyn EventStore>, caps: Caps) {
    // On a shared store `$all` holds (and keeps receiving) others' events: the checks of
    // `$all` look at this test's window of it and at its own streams.
    let window = if caps.private {
        Position::START
    } else {
        store.head().await.unwrap()
    };
    let s = uniq("order");
    let missing = uniq("missing");
    assert!(store.read_stream(&missing).await.unwrap().is_empty());

    let e0 = events(1);
    let o0 = store
        .append(&s, ExpectedRevision::NoStream, e0.clone())
        .await
        .unwrap();
    assert_eq!(o0.next_revision, 0);

    assert_wrong_expected(
        store
            .append(&s, ExpectedRevision::NoStream, events(1))
            .await,
        &s,
        ExpectedRevision::NoStream,
        Some(0),
    );
    assert_wrong_expected(
        store
            .append(&s, ExpectedRevision::Exact(5), events(1))
            .await,
        &s,
        ExpectedRevision::Exact(5),
        Some(0),
    );
    assert_wrong_expected(
        store
            .append(&missing, ExpectedRevision::Exact(0), events(1))
            .await,
        &missing,
        ExpectedRevision::Exact(0),
        None,
    );
    assert!(store.read_stream(&missing).await.unwrap().is_empty());

    let e12 = events(2);
    let o2 = store
        .append(&s, ExpectedRevision::Exact(0), e12.clone())
        .await
        .unwrap();
    assert_eq!(o2.next_revision, 2);
    assert!(o2.position > o0.position);

    let e3 = events(1);
    let o3 = store
        .append(&s, ExpectedRevision::Any, e3.clone())
        .await
        .unwrap();
    assert_eq!(o3.next_revision, 3);
    assert!(o3.position > o2.position);

    // Any also creates a stream.
    let other = uniq("other");
    let o_other = store
        .append(&other, ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    assert_eq!(o_other.next_revision, 0);
    assert!(o_other.position > o3.position);

    let written: Vec<NewEvent> = e0.into_iter().chain(e12).chain(e3).collect();
    let stream = store.read_stream(&s).await.unwrap();
    assert_eq!(stream.len(), 4);
    for (i, (got, want)) in stream.iter().zip(&written).enumerate() {
        assert_eq!(got.revision, i as u64);
        assert_eq!(got.stream, s);
        assert_eq!(got.id, want.id);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.data, want.data);
        assert_eq!(got.metadata, want.metadata);
    }
    assert_strictly_increasing(&stream);
    assert_eq!(stream[0].position, o0.position);
    assert_eq!(stream[2].position, o2.position);
    assert_eq!(stream[3].position, o3.position);

    // $all agrees with the stream, and the head is at least the last append.
    let all = read_everything(store.as_ref(), window).await;
    assert_strictly_increasing(&all);
    let from_all: Vec<_> = all.iter().filter(|e| e.stream == s).cloned().collect();
    assert_eq!(from_all, stream);
    let head = store.head().await.unwrap();
    assert!(head >= o_other.position);
    if caps.private {
        assert_eq!(head, o_other.position);
        assert_eq!(all.len(), 5);
    }
    if caps.dense_positions {
        assert_dense(&all);
    }

    // read_all is strictly after `from` and honours `max`.
    let after_first = store.read_all(o0.position, 2).await.unwrap();
    assert_eq!(after_first.len(), 2);
    assert!(after_first.iter().all(|e| e.position > o0.position));
    let after_head = store.read_all(head, 10).await.unwrap();
    assert!(after_head.iter().all(|e| e.position > head));
    assert!(after_head
        .iter()
        .all(|e| e.stream != s && e.stream != other));
    if caps.private {
        assert!(after_head.is_empty());
    }
    assert!(store.read_all(Position::START, 0).await.unwrap().is_empty());
}

/// Contract 2: Appending the same event ids again succeeds with the original outcome and stores
/// nothing; overlapping or altered ids are rejected.
async fn contract_idempotent_append(store: Arc<dyn EventStore>, caps: Caps) {
    let s = uniq("idem");
    let ab = events(2);
    let first = store
        .append(&s, ExpectedRevision::NoStream, ab.clone())
        .await
        .unwrap();
    assert_eq!(first.next_revision, 1);

    // The retry carries the same, now stale, expected revision.
    let retry = store
        .append(&s, ExpectedRevision::NoStream, ab.clone())
        .await
        .unwrap();
    assert_eq!(retry, first);
    let retry_exact = store
        .append(&s, ExpectedRevision::Exact(7), ab.clone())
        .await
        .unwrap();
    assert_eq!(retry_exact, first);

    let c = events(1);
    let oc = store
        .append(&s, ExpectedRevision::Exact(1), c.clone())
        .await
        .unwrap();
    assert_eq!(oc.next_revision, 2);
    // Still the original outcome after the stream moved on.
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Any, ab.clone())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Exact(1), c.clone())
            .await
            .unwrap(),
        oc
    );

    // Partial overlap (one new, one old id) from a stale expected revision: the old
    // ones are there but not all, in place.
    let d = event("Tested", 9);
    assert_duplicate(
        store
            .append(
                &s,
                ExpectedRevision::Exact(0),
                vec![ab[1].clone(), d.clone()],
            )
            .await,
        ab[1].id,
    );
    assert_duplicate(
        store
            .append(
                &s,
                ExpectedRevision::Exact(0),
                vec![d.clone(), ab[0].clone()],
            )
            .await,
        ab[0].id,
    );
    if !caps.strict_ids {
        // EventStoreDB: an id is known per stream, by the expected revision only.
        let stream = store.read_stream(&s).await.unwrap();
        assert_eq!(ids(&stream), vec![ab[0].id, ab[1].id, c[0].id]);
        return;
    }
    // The same at the current revision.
    assert_duplicate(
        store
            .append(
                &s,
                ExpectedRevision::Exact(2),
                vec![ab[1].clone(), d.clone()],
            )
            .await,
        ab[1].id,
    );
    // Same id, other content.
    let mut altered = ab[0].clone();
    altered.data = br#"{"n":"changed"}"#.to_vec();
    assert_duplicate(
        store.append(&s, ExpectedRevision::Any, vec![altered]).await,
        ab[0].id,
    );
    // Same ids, other stream.
    let elsewhere = uniq("elsewhere");
    assert_duplicate(
        store
            .append(&elsewhere, ExpectedRevision::NoStream, ab.clone())
            .await,
        ab[0].id,
    );
    assert!(store.read_stream(&elsewhere).await.unwrap().is_empty());

    let stream = store.read_stream(&s).await.unwrap();
    assert_eq!(ids(&stream), vec![ab[0].id, ab[1].id, c[0].id]);
    assert!(!ids(&stream).contains(&d.id));
    let all = read_everything(store.as_ref(), Position::START).await;
    let mut seen = HashSet::new();
    for e in &all {
        assert!(seen.insert(e.id), "event {} stored twice", e.id);
    }
    assert!(!seen.contains(&d.id));
}

/// Contract 3: Many writers on one stream: exactly one of a simultaneous race wins; a re-read and
/// retry loop lets every writer land, with dense revisions.
async fn contract_concurrent_writers_one_stream(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 50;
    let s = uniq("contended");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let (store, barrier, s) = (store.clone(), barrier.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .append(
                    &s,
                    ExpectedRevision::Exact(0),
                    vec![event("Raced", i as u64)],
                )
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match tokio::time::timeout(WAIT, t).await.unwrap().unwrap() {
            Ok(o) => {
                assert_eq!(o.next_revision, 1);
                winners += 1;
            }
            r @ Err(_) => assert_wrong_expected(r, &s, ExpectedRevision::Exact(0), Some(1)),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.read_stream(&s).await.unwrap().len(), 2);

    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let (store, barrier, s) = (store.clone(), barrier.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            // The same id on every attempt: a failed attempt wrote nothing.
            let e = event("Retried", i as u64);
            barrier.wait().await;
            for _attempt in 0..10_000 {
                let current = store.read_stream(&s).await.unwrap();
                let last = current.last().unwrap().revision;
                match store
                    .append(&s, ExpectedRevision::Exact(last), vec![e.clone()])
                    .await
                {
                    Ok(o) => return (e.id, o),
                    Err(StoreError::WrongExpectedVersion { .. }) => continue,
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
            panic!("writer {i} never got through");
        }));
    }
    let mut landed = HashMap::new();
    for t in tasks {
        let (id, o) = tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        landed.insert(id, o);
    }
    let stream = store.read_stream(&s).await.unwrap();
    assert_eq!(stream.len(), 2 + WRITERS);
    for (i, e) in stream.iter().enumerate() {
        assert_eq!(e.revision, i as u64);
    }
    assert_strictly_increasing(&stream);
    for e in &stream[2..] {
        let o = landed.remove(&e.id).expect("an event nobody acknowledged");
        assert_eq!(o.next_revision, e.revision);
        assert_eq!(o.position, e.position);
    }
    assert!(landed.is_empty());
}

/// Contract 4: Concurrent appends to many streams, some doomed: each caller gets its own result,
/// failures leave nothing, every acknowledged event is readable where it was reported.
async fn contract_group_commit_isolation(store: Arc<dyn EventStore>, caps: Caps) {
    const TASKS: usize = 200;
    let prefix = uniq("gc");
    // Streams for the "already exists" cases.
    for i in 0..TASKS {
        if i % 5 == 2 || i % 5 == 3 {
            store
                .append(
                    &format!("{prefix}-{i}"),
                    ExpectedRevision::NoStream,
                    events(1),
                )
                .await
                .unwrap();
        }
    }
    let before = read_everything(store.as_ref(), Position::START).await;

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, barrier) = (store.clone(), barrier.clone());
        let (stream, expected) = match i % 5 {
            0 => (format!("{prefix}-{i}"), ExpectedRevision::NoStream), // ok
            1 => (format!("{prefix}-{i}"), ExpectedRevision::Exact(0)), // missing stream
            2 => (format!("{prefix}-{i}"), ExpectedRevision::NoStream), // exists
            3 => (format!("{prefix}-{i}"), ExpectedRevision::Exact(0)), // ok
            // Pairs racing to create one stream: exactly one of each pair wins.
            _ => (
                format!("{prefix}-pair-{}", i / 10),
                ExpectedRevision::NoStream,
            ),
        };
        let batch = events(1 + i % 3);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = store.append(&stream, expected, batch.clone()).await;
            (i, stream, expected, batch, result)
        }));
    }
    let mut acked: Vec<(String, Vec<NewEvent>, AppendOutcome)> = Vec::new();
    let mut rejected: Vec<NewEvent> = Vec::new();
    let mut pair_wins: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let (i, stream, expected, batch, result) =
            tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        match i % 5 {
            0 | 3 => {
                let o = result.unwrap();
                let first = if i % 5 == 0 { 0 } else { 1 };
                assert_eq!(o.next_revision, first + batch.len() as u64 - 1);
                acked.push((stream, batch, o));
            }
            1 => {
                assert_wrong_expected(result, &stream, expected, None);
                rejected.extend(batch);
            }
            2 => {
                assert_wrong_expected(result, &stream, expected, Some(0));
                rejected.extend(batch);
            }
            _ => match result {
                Ok(o) => {
                    *pair_wins.entry(stream.clone()).or_default() += 1;
                    assert_eq!(o.next_revision, batch.len() as u64 - 1);
                    acked.push((stream, batch, o));
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    assert!(actual.is_some());
                    pair_wins.entry(stream).or_default();
                    rejected.extend(batch);
                }
                Err(other) => panic!("unexpected {other}"),
            },
        }
    }
    assert_eq!(pair_wins.len(), TASKS / 10);
    assert!(pair_wins.values().all(|&w| w == 1), "{pair_wins:?}");

    let all = read_everything(store.as_ref(), Position::START).await;
    assert_strictly_increasing(&all);
    if caps.dense_positions {
        assert_dense(&all);
    }
    let after: Vec<_> = all
        .iter()
        .filter(|e| !before.iter().any(|b| b.id == e.id))
        .collect();
    let by_id: HashMap<Uuid, &RecordedEvent> = all.iter().map(|e| (e.id, e)).collect();
    for e in &rejected {
        assert!(!by_id.contains_key(&e.id), "a rejected event was stored");
    }
    let mut acked_events = 0;
    for (stream, batch, o) in &acked {
        let first_revision = o.next_revision + 1 - batch.len() as u64;
        for (k, e) in batch.iter().enumerate() {
            let got = by_id.get(&e.id).expect("an acknowledged event is missing");
            assert_eq!(&got.stream, stream);
            assert_eq!(got.revision, first_revision + k as u64);
            assert_eq!(got.data, e.data);
        }
        // An append is atomic and contiguous in its stream; its reported position is its
        // last event's.
        assert_eq!(by_id[&batch.last().unwrap().id].position, o.position);
        acked_events += batch.len();
    }
    if caps.private {
        assert_eq!(after.len(), acked_events);
    }
    // Every stream's revisions are dense from 0.
    let mut per_stream: HashMap<&str, u64> = HashMap::new();
    for e in all.iter().filter(|e| e.stream.starts_with(&prefix)) {
        let next = per_stream.entry(&e.stream).or_default();
        assert_eq!(e.revision, *next, "revision gap in {}", e.stream);
        *next += 1;
    }
}

/// Contract 5: A catch-up subscription yields history then live events, each exactly once, in
/// position order, while 8 writers append; a subscription from the middle yields only
/// what follows.
async fn contract_subscription_order(store: Arc<dyn EventStore>, caps: Caps) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 200;
    const HISTORY: usize = 300;
    let prefix = uniq("sub");
    let start = store.head().await.unwrap();

    // History, written before the subscription exists.
    for i in 0..3 {
        let s = format!("{prefix}-history-{i}");
        let mut expected = ExpectedRevision::NoStream;
        for _ in 0..10 {
            let o = store.append(&s, expected, events(10)).await.unwrap();
            expected = ExpectedRevision::Exact(o.next_revision);
        }
    }
    let mut sub = store.subscribe_all(start).await.unwrap();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, s) = (store.clone(), format!("{prefix}-live-{w}"));
        writers.push(tokio::spawn(async move {
            let mut expected = ExpectedRevision::NoStream;
            for n in 0..PER_WRITER {
                let o = store
                    .append(&s, expected, vec![event("Live", n as u64)])
                    .await
                    .unwrap();
                expected = ExpectedRevision::Exact(o.next_revision);
            }
        }));
    }

    let total = HISTORY + WRITERS * PER_WRITER;
    let mut got: Vec<RecordedEvent> = Vec::with_capacity(total);
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < total {
        let e = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("subscription stalled")
            .unwrap();
        if let Some(prev) = got.last() {
            assert!(e.position > prev.position, "subscription went backwards");
        }
        assert!(seen.insert(e.id), "subscription delivered {} twice", e.id);
        if e.stream.starts_with(&prefix) {
            got.push(e);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<_> = read_everything(store.as_ref(), start)
        .await
        .into_iter()
        .filter(|e| e.stream.starts_with(&prefix))
        .collect();
    assert_eq!(all.len(), total);
    assert_eq!(got, all);
    if caps.dense_positions && caps.private {
        assert_dense(&got);
    }

    // Live after caught up: one more event arrives.
    let extra = event("Extra", 0);
    let o = store
        .append(
            &format!("{prefix}-extra"),
            ExpectedRevision::NoStream,
            vec![extra.clone()],
        )
        .await
        .unwrap();
    let e = loop {
        let e = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if e.stream.starts_with(&prefix) {
            break e;
        }
    };
    assert_eq!((e.id, e.position), (extra.id, o.position));
    got.push(e);

    // From the middle: only later events.
    let middle = got[950].position;
    let mut from_middle = store.subscribe_all(middle).await.unwrap();
    let mut later = Vec::new();
    while later.len() < got.len() - 951 {
        let e = tokio::time::timeout(WAIT, from_middle.next())
            .await
            .unwrap()
            .unwrap();
        assert!(e.position > middle);
        if e.stream.starts_with(&prefix) {
            later.push(e);
        }
    }
    assert_eq!(later, got[951..]);
    if caps.private {
        assert!(
            tokio::time::timeout(Duration::from_millis(200), from_middle.next())
                .await
                .is_err(),
            "a subscription delivered an event that was never appended"
        );
    }
}

/// Shutdown: a waiting subscription ends with `Unavailable`, and so do later calls.
async fn contract_shutdown<F: Fixture>(fx: &F) {
    let store = fx.store();
    let s = uniq("bye");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let mut sub = store.subscribe_all(head).await.unwrap();
    // On a shared store others' events may come first; they are not the point.
    let mine = s.clone();
    let waiting = tokio::spawn(async move {
        loop {
            match sub.next().await {
                Ok(e) if !F::CAPS.private && e.stream != mine => continue,
                other => return other,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fx.shutdown().await;
    match tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap() {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        store.append(&s, ExpectedRevision::Any, events(1)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.subscribe_all(Position::START).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// Contract 6: Everything acknowledged is there after a restart, and appends continue after it.
async fn contract_restart<F: Fixture>(fx: &mut F) {
    let store = fx.store();
    // A shared store: this test's window of `$all` (others keep writing after it).
    let window = if F::CAPS.private {
        Position::START
    } else {
        store.head().await.unwrap()
    };
    let (a, b) = (uniq("restart-a"), uniq("restart-b"));
    store
        .append(&a, ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    store
        .append(&b, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let oa = store
        .append(&a, ExpectedRevision::Exact(2), events(1))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let upto_head = |events: Vec<RecordedEvent>| -> Vec<RecordedEvent> {
        events.into_iter().filter(|e| e.position <= head).collect()
    };
    let before = upto_head(read_everything(store.as_ref(), window).await);
    assert!(before.iter().any(|e| e.position == oa.position));
    let stream_a = store.read_stream(&a).await.unwrap();
    let stream_b = store.read_stream(&b).await.unwrap();
    drop(store);

    fx.restart().await;
    let store = fx.store();
    // The log up to the head is as it was; beyond it, only others may have written.
    let after = read_everything(store.as_ref(), window).await;
    assert!(after
        .iter()
        .filter(|e| e.position > head)
        .all(|e| e.stream != a && e.stream != b));
    assert_eq!(upto_head(after), before);
    let head_after = store.head().await.unwrap();
    if F::CAPS.private {
        assert_eq!(head_after, head);
    } else {
        assert!(head_after >= head);
    }
    assert_eq!(store.read_stream(&b).await.unwrap(), stream_b);
    assert_eq!(store.read_stream(&a).await.unwrap(), stream_a);

    // Expected revisions and idempotency survive the restart.
    assert_wrong_expected(
        store
            .append(&a, ExpectedRevision::NoStream, events(1))
            .await,
        &a,
        ExpectedRevision::NoStream,
        Some(3),
    );
    let last_of_a = stream_a.last().unwrap();
    let replay = NewEvent {
        id: last_of_a.id,
        event_type: last_of_a.event_type.clone(),
        data: last_of_a.data.clone(),
        metadata: last_of_a.metadata.clone(),
    };
    assert_eq!(
        store
            .append(&a, ExpectedRevision::Exact(2), vec![replay])
            .await
            .unwrap(),
        oa
    );
    let next = store
        .append(&a, ExpectedRevision::Exact(3), events(1))
        .await
        .unwrap();
    assert_eq!(next.next_revision, 4);
    assert!(next.position > head);
    if F::CAPS.dense_positions && F::CAPS.private {
        assert_eq!(next.position.commit, head.commit + 1);
    }
}

// ---------------------------------------------------------------------------------------
// SQLite-specific behaviour
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_documented_edge_cases() {
    let fx = SqliteFixture::create().await.unwrap();
    let store = fx.store();
    let s = uniq("edge");

    // An empty append checks the expected revision only.
    assert_wrong_expected(
        store.append(&s, ExpectedRevision::NoStream, vec![]).await,
        &s,
        ExpectedRevision::NoStream,
        None,
    );
    let o = store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Any, vec![])
            .await
            .unwrap(),
        o
    );
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Exact(1), vec![])
            .await
            .unwrap(),
        o
    );
    assert_wrong_expected(
        store.append(&s, ExpectedRevision::Exact(0), vec![]).await,
        &s,
        ExpectedRevision::Exact(0),
        Some(1),
    );

    // One id twice in one append.
    let x = event("Twice", 0);
    assert_duplicate(
        store
            .append(
                &uniq("twice"),
                ExpectedRevision::NoStream,
                vec![x.clone(), x.clone()],
            )
            .await,
        x.id,
    );

    // A replay of a suffix of an earlier append reports that suffix's last event; a replay
    // out of order is a conflict.
    let stream = store.read_stream(&s).await.unwrap();
    let as_new = |e: &RecordedEvent| NewEvent {
        id: e.id,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.metadata.clone(),
    };
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Any, vec![as_new(&stream[0])])
            .await
            .unwrap(),
        AppendOutcome {
            next_revision: 0,
            position: stream[0].position
        }
    );
    assert_duplicate(
        store
            .append(
                &s,
                ExpectedRevision::Any,
                vec![as_new(&stream[1]), as_new(&stream[0])],
            )
            .await,
        // The first event found out of place is reported.
        stream[0].id,
    );

    // Same request in one batch twice (from two tasks): the second is a replay.
    let batch = events(3);
    let t1 = {
        let (store, s2, b) = (store.clone(), format!("{s}-twin"), batch.clone());
        tokio::spawn(async move { store.append(&s2, ExpectedRevision::NoStream, b).await })
    };
    let t2 = {
        let (store, s2, b) = (store.clone(), format!("{s}-twin"), batch.clone());
        tokio::spawn(async move { store.append(&s2, ExpectedRevision::NoStream, b).await })
    };
    assert_eq!(t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap());
    assert_eq!(
        store.read_stream(&format!("{s}-twin")).await.unwrap().len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_schema_and_pragmas() {
    let fx = SqliteFixture::create().await.unwrap();
    fx.store()
        .append("s", ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&fx.path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "2");
    let (position, stream, revision, id_len): (i64, String, i64, i64) = conn
        .query_row(
            "SELECT position, stream, revision, length(id) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (position, stream.as_str(), revision, id_len),
        (1, "s", 0, 16)
    );
}

/// Dropping every handle (no explicit shutdown) stops the writer, ends subscriptions
/// and leaves a file that reopens with everything in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_drop_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.db");
    let store = SqliteStore::open(&path).unwrap();
    let dyn_store: Arc<dyn EventStore> = Arc::new(store.clone());
    dyn_store
        .append("s", ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    let mut sub = dyn_store.subscribe_all(Position::START).await.unwrap();
    for _ in 0..5 {
        sub.next().await.unwrap();
    }
    let waiting = tokio::spawn(async move { sub.next().await });
    drop(dyn_store);
    drop(store);
    match tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap() {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.read_stream("s").await.unwrap().len(), 5);
    assert_eq!(
        store
            .append("s", ExpectedRevision::Exact(4), events(1))
            .await
            .unwrap()
            .position
            .commit,
        6
    );
    store.shutdown().await;
    store.shutdown().await; // idempotent
}

/// Prints appends/s for one sequential writer and for 64 concurrent ones; the ratio
/// shows group commit at work. Never asserts timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_throughput_print() {
    let fx = SqliteFixture::create().await.unwrap();
    let store = fx.store();

    const SEQUENTIAL: usize = 100;
    let started = Instant::now();
    let mut expected = ExpectedRevision::NoStream;
    for _ in 0..SEQUENTIAL {
        let o = store.append("seq", expected, events(1)).await.unwrap();
        expected = ExpectedRevision::Exact(o.next_revision);
    }
    let sequential = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();

    const WRITERS: usize = 64;
    const PER_WRITER: usize = 50;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = format!("w{w}");
            let mut expected = ExpectedRevision::NoStream;
            for _ in 0..PER_WRITER {
                let o = store.append(&s, expected, events(1)).await.unwrap();
                expected = ExpectedRevision::Exact(o.next_revision);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    let concurrent = (WRITERS * PER_WRITER) as f64 / started.elapsed().as_secs_f64();
    println!(
        "sqlite appends/s (1 event each): 1 writer {sequential:.0}, \
         {WRITERS} writers {concurrent:.0}"
    );
}

// ---------------------------------------------------------------------------------------
// Durability across SIGKILL
// ---------------------------------------------------------------------------------------

/// Set only in the child process; holds the database path it writes.
const CRASH_CHILD_ENV: &str = "TROVED_CRASH_CHILD_DB";
const CRASH_WRITERS: usize = 8;

fn crash_event(stream: &str, revision: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "Crashed".to_string(),
        // Padding makes records span pages, so a torn write would be visible.
        data: serde_json::json!({ "stream": stream, "revision": revision, "pad": "x".repeat(300) })
            .to_string()
            .into_bytes(),
        metadata: b"{}".to_vec(),
    }
}

/// Not a test on its own: the writer process of `sqlite_survives_sigkill`. Without
/// `TROVED_CRASH_CHILD_DB` it returns at once.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(Path::new(&path)).unwrap();
        // Bounded even if the parent never kills us.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tasks = Vec::new();
        for w in 0..CRASH_WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = format!("crash-{w}");
                let mut last: Option<u64> = None;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let first = last.map_or(0, |r| r + 1);
                    let batch: Vec<NewEvent> = (0..1 + n % 3)
                        .map(|k| crash_event(&stream, first + k))
                        .collect();
                    let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                    let o = store
                        .append(&stream, expected, batch.clone())
                        .await
                        .unwrap();
                    last = Some(o.next_revision);
                    // Announced only after the append returned Ok, i.e. after the commit.
                    let mut out = std::io::stdout().lock();
                    for e in &batch {
                        writeln!(out, "ACK {stream} {}", e.id).unwrap();
                    }
                    out.flush().unwrap();
                    n += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Kills the child even when an assertion fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sqlite_survives_sigkill() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Different kill moments: early, mid, and late (or at the time limit).
    for target_acks in [40usize, 300, 1500] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("crash.db");
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD_ENV, &db)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let mut stderr = child.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(String, Uuid)>();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A line cut by the kill has no newline and was never a full ack. libtest
                // may print "test crash_child ... " in front of the first line.
                let Some(at) = line.find("ACK ").filter(|_| line.ends_with('\n')) else {
                    continue;
                };
                let mut parts = line[at + 4..].split_whitespace();
                if let (Some(stream), Some(id)) = (parts.next(), parts.next()) {
                    let _ = tx.send((stream.to_string(), id.parse().unwrap()));
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });

        let deadline = Instant::now() + Duration::from_secs(3);
        let mut acked = Vec::new();
        while acked.len() < target_acks {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(ack) => acked.push(ack),
                Err(_) => break,
            }
        }
        child.0.kill().unwrap(); // SIGKILL on Unix
        let status = child.0.wait().unwrap();
        reader.join().unwrap();
        // Acks printed between our last read and the kill are acknowledged too.
        acked.extend(rx.try_iter());
        let child_stderr = stderr_reader.join().unwrap();
        assert!(
            !acked.is_empty(),
            "the child acknowledged nothing ({status}); stderr:\n{child_stderr}"
        );

        let stored = rt.block_on(async {
            let store = SqliteStore::open(&db).unwrap();
            let all = read_everything(&store, Position::START).await;
            let head = store.head().await.unwrap();
            store.shutdown().await;
            (all, head)
        });
        let (all, head) = stored;

        let conn = rusqlite::Connection::open(&db).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");

        // Dense positions 1..=head.
        assert_dense(&all);
        assert_eq!(head.commit, all.len() as u64);
        // Dense revisions per stream, and no torn record: every body decodes to what the
        // child wrote for that stream and revision.
        let mut next_revision: HashMap<&str, u64> = HashMap::new();
        for e in &all {
            let next = next_revision.entry(&e.stream).or_default();
            assert_eq!(e.revision, *next, "revision gap in {}", e.stream);
            *next += 1;
            let body: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
            assert_eq!(body["stream"], e.stream.as_str());
            assert_eq!(body["revision"], e.revision);
            assert_eq!(body["pad"].as_str().map(str::len), Some(300));
        }
        // Every acknowledged event survived, in the stream it was acknowledged for.
        let by_id: HashMap<Uuid, &RecordedEvent> = all.iter().map(|e| (e.id, e)).collect();
        for (stream, id) in &acked {
            let e = by_id
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged event {id} lost"));
            assert_eq!(&e.stream, stream);
        }
        println!(
            "sigkill after {} acks: {} events stored, head {head}",
            acked.len(),
            all.len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// EventStoreDB-specific behaviour, against the test double
// ---------------------------------------------------------------------------------------

/// Reads `n` events from `sub` whose stream starts with `prefix`, bounded in time.
async fn next_of(
    sub: &mut Box<dyn troved::store::Subscription>,
    prefix: &str,
    n: usize,
) -> Vec<RecordedEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        let e = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("subscription stalled")
            .unwrap();
        if e.stream.starts_with(prefix) {
            got.push(e);
        }
    }
    got
}

/// A subscription outlives a dropped connection and a server restart: it resubscribes
/// from the last event it delivered, so nothing is missed and nothing comes twice, and
/// writes made while it was away arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_subscription_resubscribes_after_drops_and_restarts() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("resub");
    let mut expected = ExpectedRevision::NoStream;
    let mut append = |n: u64| {
        let (store, s) = (store.clone(), s.clone());
        let exp = expected;
        expected = ExpectedRevision::Exact(n);
        async move {
            store
                .append(&s, exp, vec![event("Tested", n)])
                .await
                .unwrap()
        }
    };
    for n in 0..5 {
        append(n).await;
    }
    let mut sub = store.subscribe_all(Position::START).await.unwrap();
    let mut got = next_of(&mut sub, &s, 5).await;

    // A network blip with the subscriber idle, then new events.
    double.drop_connections().await;
    for n in 5..10 {
        append(n).await;
    }
    got.extend(next_of(&mut sub, &s, 5).await);

    // The server goes away while the subscriber waits; events appended once it is back.
    double.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    double.restart().await;
    for n in 10..15 {
        let mut tries = 0;
        loop {
            let exp = if n == 0 {
                ExpectedRevision::NoStream
            } else {
                ExpectedRevision::Exact(n - 1)
            };
            match store.append(&s, exp, vec![event("Tested", n)]).await {
                Ok(_) => break,
                Err(StoreError::Unavailable(_)) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("append after restart: {e}"),
            }
        }
    }
    got.extend(next_of(&mut sub, &s, 5).await);

    let stream = store.read_stream(&s).await.unwrap();
    assert_eq!(got, stream, "exactly the stream, in order, once each");
    assert!(
        store.resubscriptions() >= 2,
        "{} resubscriptions",
        store.resubscriptions()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err(),
        "an event delivered twice after resubscribing"
    );
}

/// The server's own events never reach troved: not in reads, not in subscriptions, not
/// as the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_system_events_are_hidden() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    assert_eq!(
        store.head().await.unwrap(),
        Position::START,
        "only system events so far"
    );
    assert!(store
        .read_all(Position::START, 10)
        .await
        .unwrap()
        .is_empty());

    let s = uniq("user");
    let o = store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    for _ in 0..100 {
        double.append_system_event();
    }
    assert_eq!(
        store.head().await.unwrap(),
        o.position,
        "the head skips system events"
    );
    let all = read_everything(&store, Position::START).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.stream == s));
    // A page boundary inside a run of system events still finds later user events.
    let later = store
        .append(&s, ExpectedRevision::Exact(1), events(1))
        .await
        .unwrap();
    let page = store.read_all(o.position, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].position, later.position);

    let mut sub = store.subscribe_all(Position::START).await.unwrap();
    let got = next_of(&mut sub, &s, 3).await;
    assert_eq!(got, store.read_stream(&s).await.unwrap());
    double.append_system_event();
    assert!(tokio::time::timeout(Duration::from_millis(200), sub.next())
        .await
        .is_err());
}

/// A deleted (tombstoned) stream is `StreamDeleted` for reads and appends, which the API
/// answers with 404.
/// A lost connection costs no failed call: the client only notices it on its next call,
/// which the adapter makes again (appends only when that cannot duplicate them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_calls_right_after_a_lost_connection_succeed() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("blip");
    for n in 0..200u64 {
        double.drop_connections().await;
        let expected = match n {
            0 => ExpectedRevision::NoStream,
            n => ExpectedRevision::Exact(n - 1),
        };
        let appended = store.append(&s, expected, vec![event("Tested", n)]).await;
        assert_eq!(appended.expect("append after a blip").next_revision, n);
        double.drop_connections().await;
        let read = store.read_stream(&s).await.expect("read after a blip");
        assert_eq!(read.len() as u64, n + 1, "each append landed once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_deleted_stream() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("gone");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    double.tombstone(&s);
    assert!(matches!(store.read_stream(&s).await, Err(StoreError::StreamDeleted(x)) if x == s));
    assert!(matches!(
        store.append(&s, ExpectedRevision::Exact(0), events(1)).await,
        Err(StoreError::StreamDeleted(x)) if x == s
    ));
}

/// An unreachable server is `Unavailable` (503 on the API), never a hang or a panic, and
/// the same adapter works again once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_unavailable_then_back() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("away");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    double.stop().await;
    let started = Instant::now();
    let append = store
        .append(&s, ExpectedRevision::Exact(0), events(1))
        .await;
    assert!(
        matches!(append, Err(StoreError::Unavailable(_))),
        "{append:?}"
    );
    assert!(matches!(
        store.read_stream(&s).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.head().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < WAIT);
    double.restart().await;
    let deadline = Instant::now() + WAIT;
    loop {
        match store
            .append(&s, ExpectedRevision::Exact(0), events(1))
            .await
        {
            Ok(o) => {
                assert_eq!(o.next_revision, 1);
                break;
            }
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("after restart: {e}"),
        }
    }
    assert_eq!(store.read_stream(&s).await.unwrap().len(), 2);
}

/// The `eventstore` client gives up for good when its first call finds no server (every
/// later call: `ConnectionClosed`); the adapter replaces it, so troved recovers once the
/// server is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_a_client_that_gave_up_is_replaced() {
    let double = EsdbDouble::start().await;
    double.stop().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("late");
    assert!(matches!(
        store
            .append(&s, ExpectedRevision::NoStream, events(1))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    let mut sub = store.subscribe_all(Position::START).await.unwrap();
    double.restart().await;
    let deadline = Instant::now() + WAIT;
    let written = loop {
        match store
            .append(&s, ExpectedRevision::NoStream, events(1))
            .await
        {
            Ok(o) => break o,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("never recovered: {e}"),
        }
    };
    let got = next_of(&mut sub, &s, 1).await;
    assert_eq!(got[0].position, written.position);
}

/// The server answers an append with its last event's own position (commit == prepare ==
/// that event's offset), so the adapter trusts it: no read after the append, and a read
/// that fails right then does not turn an append that landed into an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_append_answers_the_last_events_position_without_reading_back() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("lastpos");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    double.fail_reads(true);
    let appended = store
        .append(&s, ExpectedRevision::Exact(0), events(3))
        .await
        .expect("an append that landed is a success, whatever reads do");
    double.fail_reads(false);
    assert_eq!(appended.next_revision, 3);
    let stored = store.read_stream(&s).await.unwrap();
    assert_eq!(appended.position, stored[3].position);
    assert_eq!(stored[3].position.commit, stored[3].position.prepare);
    let after = store.read_all(stored[2].position, 10).await.unwrap();
    assert_eq!(
        after[0].id, stored[3].id,
        "the answer is the last event, not the first"
    );
    assert_eq!(store.head().await.unwrap(), appended.position);
}

/// NotLeader (a leader change, or a connection string naming a follower): the server
/// refused before writing anything and named the leader, so the adapter makes the call
/// again, appends with any expectation included, and the client sends it to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_not_leader_is_retried_on_the_leader() {
    let first = EsdbDouble::start().await;
    let second = EsdbDouble::start_node_of(&first).await;
    let store = EsdbStore::connect(&first.url()).await.unwrap();
    let s = uniq("leader");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    first.demote(Some(&second));
    let exact = store
        .append(&s, ExpectedRevision::Exact(0), events(1))
        .await
        .expect("made again on the leader");
    assert_eq!(exact.next_revision, 1);
    // The leader changes back: `Any` is made again too (nothing was written).
    first.demote(None);
    second.demote(Some(&first));
    let any = store
        .append(&s, ExpectedRevision::Any, events(1))
        .await
        .expect("made again on the leader");
    assert_eq!(any.next_revision, 2);
    let stored = store.read_stream(&s).await.unwrap();
    assert_eq!(stored.len(), 3, "each append landed once");
    // Reads follow the leader the same way.
    first.demote(Some(&second));
    second.demote(None);
    assert_eq!(store.read_stream(&s).await.expect("read").len(), 3);
    first.demote(None);
    second.demote(Some(&first));
    assert_eq!(store.head().await.expect("head"), any.position);
    second.demote(None);
    first.demote(Some(&second));
    let all = store
        .read_all(Position::START, 100)
        .await
        .expect("read $all");
    assert_eq!(ids(&all), ids(&stored));
}

/// The single-event read behind an empty append (a check of the expectation) and behind
/// an answer without a position is made again like the other reads: after NotLeader on
/// the leader it names, and after "Server Is Not Ready" while the node gets ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_event_reads_are_retried_like_the_other_reads() {
    let first = EsdbDouble::start().await;
    let second = EsdbDouble::start_node_of(&first).await;
    let store = EsdbStore::connect(&first.url()).await.unwrap();
    let s = uniq("eventat");
    let written = store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    first.demote(Some(&second));
    let checked = store
        .append(&s, ExpectedRevision::Exact(0), Vec::new())
        .await
        .expect("read again on the leader");
    assert_eq!(checked.next_revision, 0);
    assert_eq!(checked.position, written.position);

    // Not ready for less than the retries last (50 + 100 + 150 ms).
    second.fail_reads(true);
    let ready = {
        let second = &second;
        async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            second.fail_reads(false);
        }
    };
    let (checked, ()) = tokio::join!(
        store.append(&s, ExpectedRevision::Exact(0), Vec::new()),
        ready
    );
    assert_eq!(checked.expect("read again once ready").next_revision, 0);
}

/// What a subscription does when its node is demoted: the server keeps an open
/// subscription live on the follower (its `SubscriptionsService` drops subscribers only at
/// shutdown; the follower's log grows by replication), so events keep coming. A new one
/// (after a drop, or a first one on a follower) is refused with NotLeader: the client
/// switches to the leader and the adapter resubscribes there from the last position it
/// delivered, without gap or duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_subscriptions_across_a_demotion() {
    let first = EsdbDouble::start().await;
    let second = EsdbDouble::start_node_of(&first).await;
    let store = EsdbStore::connect(&first.url()).await.unwrap();
    let s = uniq("demoted");
    let mut sub = store.subscribe_all(Position::START).await.unwrap();
    let mut written = Vec::new();
    written.push(
        store
            .append(&s, ExpectedRevision::NoStream, vec![event("Tested", 0)])
            .await
            .unwrap(),
    );
    assert_eq!(
        next_of(&mut sub, &s, 1).await[0].position,
        written[0].position
    );

    first.demote(Some(&second));
    written.push(
        store
            .append(&s, ExpectedRevision::Exact(0), vec![event("Tested", 1)])
            .await
            .unwrap(),
    );
    let live = next_of(&mut sub, &s, 1).await;
    assert_eq!(
        live[0].position, written[1].position,
        "still live on the follower"
    );

    // A subscription opened on the follower is refused, then resubscribes on the leader.
    let late = EsdbStore::connect(&first.url()).await.unwrap();
    let mut late_sub = late.subscribe_all(Position::START).await.unwrap();
    let caught_up = next_of(&mut late_sub, &s, 2).await;
    assert_eq!(
        caught_up.iter().map(|e| e.position).collect::<Vec<_>>(),
        written.iter().map(|w| w.position).collect::<Vec<_>>()
    );
    assert!(late.resubscriptions() >= 1, "refused once with NotLeader");

    // The first subscription's connection drops: it resubscribes, without gap or duplicate.
    first.drop_connections().await;
    written.push(
        store
            .append(&s, ExpectedRevision::Exact(1), vec![event("Tested", 2)])
            .await
            .unwrap(),
    );
    let after = next_of(&mut sub, &s, 1).await;
    assert_eq!(after[0].position, written[2].position);
    assert_eq!(
        next_of(&mut late_sub, &s, 1).await[0].position,
        written[2].position
    );
}

/// A server-side timeout (`Aborted`, "Operation timed out") leaves the outcome unknown:
/// the write may have landed. With an exact or "no stream" expectation the adapter sends
/// it again (the same ids: idempotent), also past retries the leader drops as too early,
/// and at last looks for the events: found once replicated, else `Unavailable` (the write
/// may still land); with `Any` it answers `Unavailable` (503), never an I/O error (500),
/// and writes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_server_timeouts_are_retried_or_unavailable() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("timeout");

    double.time_out_after_write(1);
    let first = store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .expect("landed, then timed out: sent again, idempotent");
    assert_eq!(first.next_revision, 1);

    double.time_out_after_write(1);
    double.drop_early_retries(1);
    let second = store
        .append(&s, ExpectedRevision::Exact(1), events(1))
        .await
        .expect("a too-early retry dropped, the next one answered");
    assert_eq!(second.next_revision, 2);

    // Every retry dropped: the original is not replicated, so it cannot be read either
    // (the server's `IdempotentNotReady`); the outcome is unknown: Unavailable, "may
    // still land". Once replicated, the same append is idempotent.
    double.time_out_after_write(1);
    double.drop_early_retries(100);
    let third_events = events(1);
    let pending = store
        .append(&s, ExpectedRevision::Exact(2), third_events.clone())
        .await;
    match &pending {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("may still land"), "{m}"),
        other => panic!("expected Unavailable while not replicated, got {other:?}"),
    }
    assert_eq!(store.read_stream(&s).await.unwrap().len(), 3, "not visible");
    double.replicate();
    double.drop_early_retries(0);
    let third = store
        .append(&s, ExpectedRevision::Exact(2), third_events)
        .await
        .expect("replicated: the same append is idempotent");
    assert_eq!(third.next_revision, 3);

    let stored = store.read_stream(&s).await.unwrap();
    assert_eq!(stored.len(), 4, "each append landed once");
    assert_eq!(first.position, stored[1].position);
    assert_eq!(second.position, stored[2].position);
    assert_eq!(third.position, stored[3].position);

    double.time_out_after_write(1);
    let any = store.append(&s, ExpectedRevision::Any, events(1)).await;
    assert!(matches!(any, Err(StoreError::Unavailable(_))), "{any:?}");
    assert_eq!(
        store.read_stream(&s).await.unwrap().len(),
        5,
        "not sent twice"
    );
}

/// The projection's lag is a count of events (`EventStore::events_after`), not a
/// difference of positions: on EventStoreDB positions are byte offsets (here about 200
/// bytes per event), so the difference would be two orders of magnitude too high.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_lag_is_counted_in_events() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("lag");
    let first = store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    double.append_system_event();
    store
        .append(&s, ExpectedRevision::Exact(0), events(3))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let max = troved::store::EVENTS_AFTER_MAX;
    assert_eq!(
        store.events_after(first.position, head, max).await.unwrap(),
        3
    );
    assert_eq!(
        store
            .events_after(Position::START, head, max)
            .await
            .unwrap(),
        4
    );
    assert_eq!(store.events_after(head, head, max).await.unwrap(), 0);
    // Capped: a larger lag reads as the cap.
    assert_eq!(
        store.events_after(Position::START, head, 2).await.unwrap(),
        2
    );
    // No lag, no read: it answers even while reads fail.
    double.fail_reads(true);
    assert_eq!(store.events_after(head, head, max).await.unwrap(), 0);
    double.fail_reads(false);
    assert!(
        head.commit - first.position.commit > 300,
        "positions are offsets"
    );
    // The embedded store counts the same way.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("events.db")).unwrap();
    let at = sqlite
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    sqlite
        .append(&s, ExpectedRevision::Exact(0), events(3))
        .await
        .unwrap();
    let head = sqlite.head().await.unwrap();
    assert_eq!(
        sqlite.events_after(at.position, head, max).await.unwrap(),
        3
    );
}

/// An append over the server's size limit is `TooLarge` (a 4xx on the API), nothing
/// written; access to `$all` denied ends a subscription with `Denied` at once instead of
/// resubscribing for ever, and reads of `$all` say `Denied` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_too_large_and_denied_are_said_plainly() {
    let double = EsdbDouble::start().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("limits");
    double.max_append_size(Some(64));
    let big = NewEvent {
        data: vec![b' '; 100],
        ..event("Big", 1)
    };
    let too_large = store
        .append(&s, ExpectedRevision::NoStream, vec![big])
        .await;
    assert!(
        matches!(too_large, Err(StoreError::TooLarge(_))),
        "{too_large:?}"
    );
    assert!(store.read_stream(&s).await.unwrap().is_empty());
    double.max_append_size(None);

    let mut sub = store.subscribe_all(Position::START).await.unwrap();
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    next_of(&mut sub, &s, 1).await;
    double.deny_all(true);
    let ended = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("ends instead of resubscribing for ever");
    assert!(matches!(ended, Err(StoreError::Denied(_))), "{ended:?}");
    assert_eq!(store.resubscriptions(), 0);
    assert!(matches!(store.head().await, Err(StoreError::Denied(_))));
    assert!(matches!(
        store.read_all(Position::START, 10).await,
        Err(StoreError::Denied(_))
    ));
}

/// The server knows the ids of `Any` appends only from an in-memory cache, empty after a
/// restart: the same ids with `Any` are then written again, while an exact expectation
/// still finds them in the index and stays idempotent. So the adapter never sends an
/// `Any` append twice on its own (a lost answer, a server timeout: 503 instead), and
/// troved's retried commands carry exact expectations.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn esdb_any_ids_are_forgotten_after_a_restart() {
    let double = EsdbDouble::start().await;
    double.forget_ids_on_restart(true);
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let s = uniq("forgetful");
    let first = events(1);
    store
        .append(&s, ExpectedRevision::NoStream, first.clone())
        .await
        .unwrap();
    let second = events(1);
    let any = store
        .append(&s, ExpectedRevision::Any, second.clone())
        .await
        .unwrap();
    assert_eq!(
        store
            .append(&s, ExpectedRevision::Any, second.clone())
            .await
            .unwrap(),
        any,
        "before the restart, the cache knows the ids"
    );

    EventStore::shutdown(&store).await;
    double.stop().await;
    double.restart().await;
    let store = EsdbStore::connect(&double.url()).await.unwrap();
    let exact = store
        .append(&s, ExpectedRevision::NoStream, first.clone())
        .await
        .expect("an exact retry is still recognised");
    assert_eq!(exact.next_revision, 0);
    let again = store
        .append(&s, ExpectedRevision::Any, second.clone())
        .await
        .unwrap();
    assert_eq!(
        again.next_revision, 2,
        "written again: the ids were forgotten"
    );
    let stored = store.read_stream(&s).await.unwrap();
    assert_eq!(ids(&stored), vec![first[0].id, second[0].id, second[0].id]);
}
