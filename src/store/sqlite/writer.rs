//! The single writer thread and its group commit.
//!
//! All appends go through one thread that owns the only write connection. It takes every
//! request queued at that moment (up to [`MAX_BATCH`]) and writes them in one
//! transaction, paying one commit and one fsync for the whole batch. Each request is
//! still judged on its own: it runs its own idempotency and expected-revision checks
//! against the state left by the requests before it in the batch, inside its own
//! SAVEPOINT, and gets its own result. Callers hear back only after COMMIT returned.
//!
//! A failed COMMIT stops the writer (fsyncgate, see [`run`]), except on a full disk:
//! there the transaction was rolled back, so the batch is answered `Full` (503) and the
//! next batch tries again, which succeeds once space is freed.
//!
//! Each inserted row also gets its links in the hash chains ([`super::chain`]), chained
//! on the rows before it in the same batch: the batch keeps each touched stream's last
//! hash and the last `$all` hash, and takes them back with the rows of a request whose
//! savepoint is rolled back.

use std::collections::{HashMap, HashSet};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::chain::{self, Digest, EventFields, GENESIS};
use super::reads::{id_bytes, seq_position};
use super::sql::{from_sql_int, sql_err, to_sql_int};
use crate::store::{AppendOutcome, ExpectedRevision, NewEvent, Position, StoreError};

/// Most requests written in one transaction. Bounds the latency a request can add to
/// the others in its batch and the memory of one batch; at a few microseconds per
/// insert, 512 requests is still far cheaper than the fsync they share.
pub(super) const MAX_BATCH: usize = 512;

/// Capacity of the request queue; when it is full, `append` waits (backpressure).
pub(super) const QUEUE_CAPACITY: usize = 2 * MAX_BATCH;

/// What one caller gets back.
pub(super) type Reply = Result<AppendOutcome, StoreError>;

/// One `append` call on its way to the writer.
pub(super) struct AppendRequest {
    pub(super) stream: String,
    pub(super) expected: ExpectedRevision,
    pub(super) events: Vec<NewEvent>,
    pub(super) reply: oneshot::Sender<Reply>,
}

/// Starts the writer thread. It runs until every sender of `requests` is dropped (clean
/// shutdown, after draining what is queued) or a commit fails (fatal). Either way it
/// drops `head` on exit, which tells subscriptions the store is gone.
pub(super) fn spawn(
    conn: Connection,
    requests: mpsc::Receiver<AppendRequest>,
    head: watch::Sender<Position>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("troved-store-writer".to_string())
        .spawn(move || run(conn, requests, head))
}

fn run(
    conn: Connection,
    mut requests: mpsc::Receiver<AppendRequest>,
    head: watch::Sender<Position>,
) {
    let mut full = FullEpisode::default();
    while let Some(first) = requests.blocking_recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        tracing::trace!(requests = batch.len(), "event store batch");
        match write_batch(&conn, &batch) {
            Ok((results, new_head)) => {
                full.ended();
                // Wake subscriptions before replying: a caller that appends and then
                // waits on a subscription must find the bump already made.
                head.send_if_modified(|h| {
                    let moved = *h != new_head;
                    *h = new_head;
                    moved
                });
                for (req, result) in batch.into_iter().zip(results) {
                    // The caller may have stopped waiting; the append stands regardless.
                    let _ = req.reply.send(result);
                }
            }
            Err(BatchError::Retryable(e)) => {
                // Nothing of this batch is in the file: the transaction was rolled back.
                tracing::warn!(error = %e, "event store batch rolled back");
                reply_all(batch, || StoreError::Unavailable(e.to_string()));
            }
            Err(BatchError::Full(e)) => {
                // The disk is full: SQLite rolled the transaction back (checked in
                // `commit`), so nothing of the batch is stored and the writer goes on;
                // the next batch simply tries again, and succeeds once space is back.
                // Every batch starts from the file's tail, so no chain link or position
                // of the refused batch is remembered.
                full.refused(&e);
                let message = match &e {
                    StoreError::Full(m) => m.clone(),
                    other => other.to_string(),
                };
                reply_all(batch, || StoreError::Full(message.clone()));
            }
            Err(BatchError::Fatal(e)) => {
                // After a failed COMMIT we do not know what is on disk, and retrying is
                // not safe: after a failed fsync the kernel may have dropped the dirty
                // pages and cleared the error, so a second fsync can report success for
                // data that never reached the disk ("fsyncgate", PostgreSQL 2018). The
                // only honest answer is to fail this batch, stop writing, and let a
                // restart recover from the WAL, which SQLite checks on open.
                tracing::error!(
                    error = %e,
                    "event store commit failed; the writer stops and appends are refused \
                     until restart"
                );
                reply_all(batch, || StoreError::Unavailable(e.to_string()));
                break;
            }
        }
    }
    // Dropping `requests` here fails every queued and future send, so those callers get
    // `Unavailable`; dropping `head` ends the subscriptions.
}

/// A full-disk episode, for the log: one error when appends start being refused,
/// one line when they are accepted again (not one per refused batch).
#[derive(Default)]
struct FullEpisode {
    since: Option<std::time::Instant>,
    refused: u64,
}

impl FullEpisode {
    fn refused(&mut self, e: &StoreError) {
        self.refused += 1;
        if self.since.is_none() {
            self.since = Some(std::time::Instant::now());
            tracing::error!(
                error = %e,
                "the disk holding the event store is full: appends are refused (503) until \
                 space is freed; reads go on, and appends resume by themselves"
            );
        }
    }

    fn ended(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                refused_batches = self.refused,
                full_for_ms = since.elapsed().as_millis() as u64,
                "the event store accepts appends again (the disk was full)"
            );
            self.refused = 0;
        }
    }
}

/// Fails a whole batch (`Unavailable`, or `Full`): the caller may retry later (with the
/// same event ids, a retry is deduplicated if the batch did reach the disk after all).
fn reply_all(batch: Vec<AppendRequest>, error: impl Fn() -> StoreError) {
    for req in batch {
        let _ = req.reply.send(Err(error()));
    }
}

/// Why a whole batch failed.
enum BatchError {
    /// The transaction was rolled back; the writer can go on.
    Retryable(StoreError),
    /// The disk is full (`SQLITE_FULL`) and the transaction was rolled back; the writer
    /// goes on, and the callers hear `Full` (503).
    Full(StoreError),
    /// COMMIT (or the rollback after a failure) failed; the file's state is unknown.
    Fatal(StoreError),
}

/// A stream's last event as of this point in the batch; `None` for a missing stream.
type StreamHead = Option<StreamTip>;

#[derive(Clone, Copy)]
struct StreamTip {
    revision: u64,
    position: u64,
    /// Its stream hash: the next event of the stream chains on it.
    hash: Digest,
}

/// Per-batch state: what earlier requests of the batch did, so later ones see it.
struct Batch<'c> {
    conn: &'c Connection,
    /// Last position used; the next event gets `last_position + 1`.
    last_position: u64,
    /// The `$all` hash at `last_position`; the next event chains on it.
    last_all_hash: Digest,
    /// Streams touched or looked up in this batch. Only valid inside one transaction,
    /// so it is rebuilt for every batch.
    heads: HashMap<String, StreamHead>,
    recorded_at: i64,
}

fn write_batch(
    conn: &Connection,
    batch: &[AppendRequest],
) -> Result<(Vec<Reply>, Position), BatchError> {
    // IMMEDIATE takes the write lock now, so nothing below can fail with SQLITE_BUSY
    // half-way (only relevant if another process opened the file, which we do not do).
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| rolled_back(sql_err(e)))?;
    let before = match tail(conn) {
        Ok(t) => t,
        Err(e) => return Err(abort(conn, e)),
    };
    let (last_position, last_all_hash) = before;
    let mut state = Batch {
        conn,
        last_position,
        last_all_hash,
        heads: HashMap::new(),
        recorded_at: unix_ms(),
    };
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        match state.apply(req) {
            Ok(result) => results.push(result),
            Err(e) => return Err(abort(conn, e)),
        }
        // SQLite rolls the whole transaction back on its own after some errors (disk
        // full, I/O); then the savepoint bookkeeping above is meaningless and COMMIT
        // would fail. Detect it here and report the batch as not written.
        if conn.is_autocommit() {
            return Err(BatchError::Retryable(StoreError::Io(
                "the batch transaction was rolled back by SQLite".to_string(),
            )));
        }
    }
    commit(conn, before)?;
    Ok((results, seq_position(state.last_position)))
}

/// Commits the batch. A failure is fatal (the writer stops), except a full disk that
/// provably left the file as it was before the batch (`before`, the tail read at its
/// start): `SQLITE_FULL` means a `write()` of a WAL frame failed with `ENOSPC`, before
/// the commit frame and its fsync, and SQLite then rolls the transaction back; the
/// partial frames after the last commit frame are ignored by readers and recovery and
/// overwritten by the next commit. An fsync failure is `SQLITE_IOERR_FSYNC`, never
/// `SQLITE_FULL`, so it stays fatal.
fn commit(conn: &Connection, before: (u64, Digest)) -> Result<(), BatchError> {
    let e = match conn.execute_batch("COMMIT") {
        Ok(()) => return Ok(()),
        Err(e) => sql_err(e),
    };
    if !matches!(e, StoreError::Full(_)) {
        return Err(BatchError::Fatal(e));
    }
    if !conn.is_autocommit() {
        if let Err(rollback) = conn.execute_batch("ROLLBACK") {
            return Err(BatchError::Fatal(StoreError::Io(format!(
                "{e}; rollback failed too: {}",
                sql_err(rollback)
            ))));
        }
    }
    match tail(conn) {
        Ok(now) if now == before => Err(BatchError::Full(e)),
        Ok((position, _)) => Err(BatchError::Fatal(StoreError::Io(format!(
            "{e}, and the log's end moved from position {} to {position}: the commit's \
             outcome is unknown",
            before.0
        )))),
        Err(check) => Err(BatchError::Fatal(StoreError::Io(format!(
            "{e}; the log's end cannot be read back: {check}"
        )))),
    }
}

/// A batch rolled back as a whole: `Full` when the disk is full, `Retryable` otherwise.
fn rolled_back(e: StoreError) -> BatchError {
    match e {
        StoreError::Full(_) => BatchError::Full(e),
        e => BatchError::Retryable(e),
    }
}

/// Rolls the whole batch back after an error that left it in an unknown state.
fn abort(conn: &Connection, e: StoreError) -> BatchError {
    if conn.is_autocommit() {
        return rolled_back(e);
    }
    match conn.execute_batch("ROLLBACK") {
        Ok(()) => rolled_back(e),
        Err(rollback) => BatchError::Fatal(StoreError::Io(format!(
            "{e}; rollback failed too: {}",
            sql_err(rollback)
        ))),
    }
}

/// The last position and its `$all` hash; `(0, GENESIS)` for an empty store.
fn tail(conn: &Connection) -> Result<(u64, Digest), StoreError> {
    let last: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT position, all_hash FROM events ORDER BY position DESC LIMIT 1")
        .map_err(sql_err)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .map_err(sql_err)?;
    let Some((position, hash)) = last else {
        return Ok((0, GENESIS));
    };
    let hash = chain::stored_digest(hash).ok_or_else(|| {
        // Chaining on a made-up value would hide the damage; `audit verify` names it.
        StoreError::Corrupt(format!("the $all hash at position {position} is missing"))
    })?;
    Ok((from_sql_int(position, "position")?, hash))
}

fn unix_ms() -> i64 {
    // recorded_at is informational; a clock before 1970 just records 0.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the read-only checks decided for a request.
enum Decision {
    /// Answered without writing (replay, conflict, empty append).
    Done(Reply),
    /// Write the events with revisions from `first_revision`, chained on the stream
    /// hash `prev`.
    Write { first_revision: u64, prev: Digest },
}

/// An already stored event, as far as the idempotency check needs it.
struct Stored {
    stream: String,
    revision: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
}

impl Batch<'_> {
    /// Applies one request. `Ok(reply)` is that request's own result, with the batch
    /// intact; `Err` means the batch transaction is in an unknown state and must be
    /// rolled back as a whole.
    fn apply(&mut self, req: &AppendRequest) -> Result<Reply, StoreError> {
        let (first_revision, prev) = match self.decide(req) {
            Ok(Decision::Done(reply)) => return Ok(reply),
            Ok(Decision::Write {
                first_revision,
                prev,
            }) => (first_revision, prev),
            // The checks only read, so a failure there leaves nothing behind.
            Err(e) => return Ok(Err(e)),
        };
        // A savepoint per request, so a failure in the middle of its inserts takes back
        // exactly its own rows and leaves the earlier requests of the batch in place.
        if let Err(e) = self.conn.execute_batch("SAVEPOINT append") {
            return per_request(sql_err(e));
        }
        let before = (self.last_position, self.last_all_hash);
        match self.insert(req, first_revision, prev) {
            Ok((outcome, hash)) => {
                self.conn.execute_batch("RELEASE append").map_err(sql_err)?;
                self.heads.insert(
                    req.stream.clone(),
                    Some(StreamTip {
                        revision: outcome.next_revision,
                        position: outcome.position.commit,
                        hash,
                    }),
                );
                Ok(Ok(outcome))
            }
            Err(e) => {
                (self.last_position, self.last_all_hash) = before;
                self.conn
                    .execute_batch("ROLLBACK TO append; RELEASE append")
                    .map_err(sql_err)?;
                per_request(e)
            }
        }
    }

    fn decide(&mut self, req: &AppendRequest) -> Result<Decision, StoreError> {
        let mut ids = HashSet::with_capacity(req.events.len());
        for e in &req.events {
            if !ids.insert(e.id) {
                return Ok(Decision::Done(Err(StoreError::DuplicateEventId(e.id))));
            }
        }
        // Idempotency comes before the revision check: a retry of an append that did
        // land carries a now stale expected revision and must still succeed.
        if let Some(reply) = self.replay(req)? {
            return Ok(Decision::Done(reply));
        }
        let head = self.stream_head(&req.stream)?;
        let current = head.map(|tip| tip.revision);
        let ok = match req.expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::Exact(r) => current == Some(r),
        };
        if !ok {
            return Ok(Decision::Done(Err(StoreError::WrongExpectedVersion {
                stream: req.stream.clone(),
                expected: req.expected,
                actual: current,
            })));
        }
        if req.events.is_empty() {
            // An empty append is an assertion on the stream's state. If it holds and the
            // stream exists, report where the stream is; a missing stream has no
            // revision or position to report, so that is reported as `actual: None`.
            return Ok(Decision::Done(match head {
                Some(tip) => Ok(AppendOutcome {
                    next_revision: tip.revision,
                    position: seq_position(tip.position),
                }),
                None => Err(StoreError::WrongExpectedVersion {
                    stream: req.stream.clone(),
                    expected: req.expected,
                    actual: None,
                }),
            }));
        }
        Ok(Decision::Write {
            first_revision: current.map_or(0, |r| r + 1),
            prev: head.map_or(GENESIS, |tip| tip.hash),
        })
    }

    /// `Some` when some of the ids are already stored: either the request is an exact
    /// replay of an earlier append (same stream, contiguous, same order, type and data),
    /// answered with that append's outcome, or it is a conflict. Metadata is not
    /// compared: a retry may legitimately carry a new timestamp or attempt counter.
    fn replay(&self, req: &AppendRequest) -> Result<Option<Reply>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stream, revision, position, event_type, data FROM events WHERE id = ?1",
            )
            .map_err(sql_err)?;
        let mut stored = Vec::with_capacity(req.events.len());
        for e in &req.events {
            let row = stmt
                .query_row([id_bytes(&e.id)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .optional()
                .map_err(sql_err)?;
            if let Some((stream, revision, position, event_type, data)) = row {
                stored.push((
                    e,
                    Stored {
                        stream,
                        revision: from_sql_int(revision, "revision")?,
                        position: from_sql_int(position, "position")?,
                        event_type,
                        data,
                    },
                ));
            }
        }
        let Some((_, first)) = stored.first() else {
            return Ok(None);
        };
        if stored.len() != req.events.len() {
            return Ok(Some(Err(StoreError::DuplicateEventId(stored[0].0.id))));
        }
        let first_revision = first.revision;
        for (k, (new, old)) in stored.iter().enumerate() {
            let same = old.stream == req.stream
                && old.revision == first_revision + k as u64
                && old.event_type == new.event_type
                && old.data == new.data;
            if !same {
                return Ok(Some(Err(conflict(new.id))));
            }
        }
        let last = &stored[stored.len() - 1].1;
        Ok(Some(Ok(AppendOutcome {
            next_revision: last.revision,
            position: seq_position(last.position),
        })))
    }

    fn stream_head(&mut self, stream: &str) -> Result<StreamHead, StoreError> {
        if let Some(head) = self.heads.get(stream) {
            return Ok(*head);
        }
        let row: Option<(i64, i64, Option<Vec<u8>>)> = self
            .conn
            .prepare_cached(
                "SELECT revision, position, stream_hash FROM events WHERE stream = ?1 \
                 ORDER BY revision DESC LIMIT 1",
            )
            .map_err(sql_err)?
            .query_row([stream], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()
            .map_err(sql_err)?;
        let head = match row {
            Some((revision, position, hash)) => Some(StreamTip {
                revision: from_sql_int(revision, "revision")?,
                position: from_sql_int(position, "position")?,
                // Refuse to extend a chain whose end is gone rather than start it anew
                // and hide the damage; `audit verify` names the row.
                hash: chain::stored_digest(hash).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the stream hash at position {position} of {stream} is missing"
                    ))
                })?,
            }),
            None => None,
        };
        self.heads.insert(stream.to_string(), head);
        Ok(head)
    }

    /// Inserts the request's events; returns the outcome and the stream hash of its last
    /// event. On `Err` the caller rolls the savepoint back and restores the position and
    /// `$all` hash it had.
    fn insert(
        &mut self,
        req: &AppendRequest,
        first_revision: u64,
        prev: Digest,
    ) -> Result<(AppendOutcome, Digest), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO events \
                 (position, stream, revision, id, event_type, data, metadata, recorded_at, \
                  stream_hash, all_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(sql_err)?;
        let mut revision = first_revision;
        let mut stream_hash = prev;
        for (k, e) in req.events.iter().enumerate() {
            revision = first_revision + k as u64;
            self.last_position += 1;
            stream_hash = chain::stream_hash(
                &stream_hash,
                &EventFields {
                    stream: &req.stream,
                    revision,
                    id: id_bytes(&e.id),
                    event_type: &e.event_type,
                    data: &e.data,
                    metadata: &e.metadata,
                    recorded_at: self.recorded_at,
                },
            );
            self.last_all_hash =
                chain::all_hash(&self.last_all_hash, &stream_hash, self.last_position);
            stmt.execute((
                to_sql_int(self.last_position)?,
                &req.stream,
                to_sql_int(revision)?,
                id_bytes(&e.id),
                &e.event_type,
                &e.data,
                &e.metadata,
                self.recorded_at,
                &stream_hash[..],
                &self.last_all_hash[..],
            ))
            .map_err(|err| match &err {
                // `replay` rules this out; should it happen anyway (a check bug), the
                // caller still gets the precise error instead of a generic I/O one.
                rusqlite::Error::SqliteFailure(f, Some(msg))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        && msg.contains("events.id") =>
                {
                    conflict(e.id)
                }
                _ => sql_err(err),
            })?;
        }
        Ok((
            AppendOutcome {
                next_revision: revision,
                position: seq_position(self.last_position),
            },
            stream_hash,
        ))
    }
}

/// A request's own failure, answered on its own while the batch goes on; except a full
/// disk, which fails the whole batch (the next insert or the COMMIT would hit it too,
/// and every caller then hears the same `Full`).
fn per_request(e: StoreError) -> Result<Reply, StoreError> {
    match e {
        StoreError::Full(_) => Err(e),
        e => Ok(Err(e)),
    }
}

fn conflict(id: Uuid) -> StoreError {
    StoreError::DuplicateEventId(id)
}
