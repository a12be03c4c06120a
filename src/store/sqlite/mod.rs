//! The embedded event store: one SQLite file in WAL mode, the default adapter of the
//! [`EventStore`] port.
//!
//! Responsibility: durable, totally ordered appends with optimistic concurrency and
//! idempotency by event id, reads of streams and of `$all`, and catch-up subscriptions.
//!
//! Shape:
//! * one writer thread owns the only write connection and group-commits whatever is
//!   queued ([`writer`]); an append is acknowledged only after its COMMIT, with
//!   `synchronous=FULL`, returned;
//! * reads run on `spawn_blocking` against a small pool of `query_only` connections
//!   ([`reads`]); WAL snapshots mean they never see part of a batch and never block the
//!   writer;
//! * the writer publishes the committed head on a `watch` channel that live
//!   subscriptions wait on;
//! * every row carries its links in a per-stream and an `$all` hash chain, computed by
//!   the writer in the same transaction ([`chain`]), which [`verify`] recomputes to
//!   detect edited, removed or reordered events (tamper evidence, not prevention).
//!
//! Positions are the dense sequence numbers 1, 2, 3, … (`commit == prepare`).
//! The file must be used by one process at a time; positions are assigned by the writer
//! thread of that process.

mod chain;
mod reads;
mod schema;
mod sql;
mod verify;
mod writer;

pub use self::chain::{Digest, GENESIS};
pub use self::verify::{verify, Finding, Problem, VerifyReport};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use self::reads::{head_blocking, read_stream_blocking, shut_down, Reads};
use self::writer::{AppendRequest, QUEUE_CAPACITY};
use super::{
    AppendOutcome, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError,
    Subscription,
};

/// How many events a subscription reads per query while catching up.
const SUBSCRIPTION_BATCH: usize = 1000;

/// The embedded SQLite event store.
///
/// Cheap to clone; all clones share one writer thread and one read pool. The store
/// stops when [`SqliteStore::shutdown`] is called or the last clone is dropped: queued
/// appends are still written, then the writer thread exits and the file is closed.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writer: Mutex<Option<Writer>>,
    reads: Arc<Reads>,
    head: watch::Receiver<Position>,
}

struct Writer {
    requests: mpsc::Sender<AppendRequest>,
    thread: JoinHandle<()>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and schema if missing, and starts
    /// the writer thread.
    ///
    /// Synchronous: it opens the file, may run WAL recovery and creates tables, which
    /// takes milliseconds, so call it at startup (or in `spawn_blocking` if that matters).
    /// It needs no tokio runtime; the returned store's async methods do.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = schema::open_writer(path)?;
        let head = head_blocking(&conn)?;
        let (head_tx, head_rx) = watch::channel(head);
        let (requests, requests_rx) = mpsc::channel(QUEUE_CAPACITY);
        let thread = writer::spawn(conn, requests_rx, head_tx)
            .map_err(|e| StoreError::Io(format!("cannot start the store writer thread: {e}")))?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(Writer { requests, thread })),
                reads: Arc::new(Reads::new(path.to_path_buf())),
                head: head_rx,
            }),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Stops the store for every clone: appends already queued are written and
    /// answered, later calls fail with `Unavailable`, subscriptions end with
    /// `Unavailable`, and the file is closed when this returns. Idempotent.
    pub async fn shutdown(&self) {
        let writer = self.shared.lock_writer().take();
        if let Some(writer) = writer {
            let thread = writer.stop();
            // A panicked writer has already failed its callers; nothing more to do here.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.shared.reads.close();
    }

    fn requests(&self) -> Result<mpsc::Sender<AppendRequest>, StoreError> {
        match &*self.shared.lock_writer() {
            Some(writer) => Ok(writer.requests.clone()),
            None => Err(shut_down()),
        }
    }
}

impl Writer {
    /// Closes the queue; the thread drains it and exits once in-flight sends are done.
    fn stop(self) -> JoinHandle<()> {
        drop(self.requests);
        self.thread
    }
}

impl Shared {
    fn lock_writer(&self) -> MutexGuard<'_, Option<Writer>> {
        // The guarded value is only ever taken or cloned, which cannot leave it
        // half-updated, so a poisoned lock is still consistent.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let writer = self.lock_writer().take();
        if let Some(writer) = writer {
            // Joining makes "last handle dropped" mean "file closed", so a reopen in the
            // same process finds a quiet file. It blocks for at most the batch in flight:
            // no handle is left to enqueue more.
            let _ = writer.stop().join();
        }
        self.reads.close();
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    /// See the trait. An empty `events` is a check of `expected` only: for an existing
    /// stream it returns the stream's current revision and the position of its last
    /// event; for a missing stream it fails with `WrongExpectedVersion { actual: None }`
    /// because there is no revision to report.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let requests = self.requests()?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(AppendRequest {
                stream: stream.to_string(),
                expected,
                events,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the event store writer stopped before answering".into())
        })?
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_string();
        self.shared
            .reads
            .run(move |conn| read_stream_blocking(conn, &stream))
            .await
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.shared.reads.read_all(from, max).await
    }

    async fn subscribe_all(&self, from: Position) -> Result<Box<dyn Subscription>, StoreError> {
        if self.shared.reads.is_closed() {
            return Err(shut_down());
        }
        Ok(Box::new(SqliteSubscription {
            reads: Arc::clone(&self.shared.reads),
            head: self.shared.head.clone(),
            last: from,
            buffer: VecDeque::new(),
        }))
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.shared.reads.run(head_blocking).await
    }

    /// Positions are dense (1, 2, 3, …): the difference is the count, exactly, unbounded
    /// (nothing is read).
    async fn events_after(
        &self,
        from: Position,
        head: Position,
        _max: u64,
    ) -> Result<u64, StoreError> {
        Ok(head.commit.saturating_sub(from.commit))
    }

    async fn shutdown(&self) {
        SqliteStore::shutdown(self).await;
    }
}

/// Catch-up subscription: reads `$all` in pages after the last delivered position and,
/// once caught up, waits for the writer to publish a new head.
///
/// No gap between history and live: the head is marked as seen *before* each read, so a
/// commit that lands after the read started changes the watch and wakes the wait. No
/// duplicate: every read starts strictly after the last delivered position. `next` is
/// cancel-safe: `last` only moves when an event is handed out.
struct SqliteSubscription {
    reads: Arc<Reads>,
    head: watch::Receiver<Position>,
    last: Position,
    buffer: VecDeque<RecordedEvent>,
}

#[async_trait]
impl Subscription for SqliteSubscription {
    async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if self.reads.is_closed() {
                return Err(shut_down());
            }
            if let Some(event) = self.buffer.pop_front() {
                self.last = event.position;
                return Ok(event);
            }
            let head = *self.head.borrow_and_update();
            if head > self.last {
                let page = self.reads.read_all(self.last, SUBSCRIPTION_BATCH).await?;
                if !page.is_empty() {
                    self.buffer.extend(page);
                    continue;
                }
            }
            if self.head.changed().await.is_err() {
                // The writer thread is gone (shutdown or fatal commit error).
                return Err(StoreError::Unavailable(
                    "the event store writer has stopped".to_string(),
                ));
            }
        }
    }
}
