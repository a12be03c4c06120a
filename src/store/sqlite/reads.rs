//! The read side: a small pool of `query_only` connections used from `spawn_blocking`,
//! and the queries that turn rows back into [`RecordedEvent`]s.
//!
//! Every read is one SELECT, i.e. one implicit read transaction over one WAL snapshot,
//! so a reader sees either all or none of a writer batch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, Row};
use uuid::Uuid;

use super::schema::open_reader;
use super::sql::{from_sql_int, sql_err};
use crate::store::{Position, RecordedEvent, StoreError};

/// Idle connections kept open. The machine class we target has few cores and reads are
/// short, so a handful covers the steady state; bursts beyond it open extra connections
/// that are closed again when returned.
const POOL_IDLE_MAX: usize = 8;
/// At most this many reads run at once (each holds a connection and a blocking thread).
const READS_IN_FLIGHT_MAX: usize = 32;

const SELECT_EVENT: &str =
    "SELECT position, stream, revision, id, event_type, data, metadata FROM events";

/// Shared by the store handles and every subscription, so subscriptions keep reading
/// while the store handle that created them is gone (until the store is shut down).
pub(super) struct Reads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
    /// Bounds the reads in flight (and so the open connections and blocking threads):
    /// under a burst, readers wait here instead of opening connections until the
    /// process runs out of file descriptors.
    permits: tokio::sync::Semaphore,
}

impl Reads {
    pub(super) fn new(path: PathBuf) -> Reads {
        Reads {
            path,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            permits: tokio::sync::Semaphore::new(READS_IN_FLIGHT_MAX),
        }
    }

    /// After this every read fails with `Unavailable` and pooled connections are closed;
    /// connections in use are closed when their read finishes.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lock_idle().clear();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A panic while holding this lock can only have happened inside Vec::push/pop/clear;
        // the vector is still a valid list of connections, so poisoning is ignored.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on a pooled connection on the blocking thread pool, so SQLite's
    /// synchronous I/O never stalls a runtime worker.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.is_closed() {
            return Err(shut_down());
        }
        let _permit = self.permits.acquire().await.map_err(|_| shut_down())?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = match this.lock_idle().pop() {
                Some(conn) => conn,
                None => open_reader(&this.path)?,
            };
            let result = f(&conn);
            if !this.is_closed() {
                let mut idle = this.lock_idle();
                if idle.len() < POOL_IDLE_MAX {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
    }

    pub(super) async fn read_all(
        self: &Arc<Self>,
        from: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.run(move |conn| read_all_blocking(conn, from, max))
            .await
    }
}

pub(super) fn shut_down() -> StoreError {
    StoreError::Unavailable("the event store is shut down".to_string())
}

fn read_all_blocking(
    conn: &Connection,
    from: Position,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // Embedded positions have commit == prepare; a position beyond i64 is after
    // everything we can store, so it reads nothing rather than failing.
    let Ok(after) = i64::try_from(from.commit) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT_EVENT} WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .map_err(sql_err)?;
    let mut rows = stmt.query((after, limit)).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

pub(super) fn read_stream_blocking(
    conn: &Connection,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT_EVENT} WHERE stream = ?1 ORDER BY revision"
        ))
        .map_err(sql_err)?;
    let mut rows = stmt.query([stream]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// The last committed position, `Position::START` for an empty store.
pub(super) fn head_blocking(conn: &Connection) -> Result<Position, StoreError> {
    let last: i64 = conn
        .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| {
            row.get(0)
        })
        .map_err(sql_err)?;
    Ok(seq_position(from_sql_int(last, "position")?))
}

/// The embedded store's position for sequence number `n`.
pub(super) fn seq_position(n: u64) -> Position {
    Position {
        commit: n,
        prepare: n,
    }
}

/// Decodes a row selected with [`SELECT_EVENT`]'s column order.
fn decode(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(0).map_err(sql_err)?;
    let revision: i64 = row.get(2).map_err(sql_err)?;
    // Borrowed: the 16 bytes go straight into the Uuid, no Vec in between.
    let id = row
        .get_ref(3)
        .map_err(sql_err)?
        .as_blob()
        .map_err(|e| StoreError::Corrupt(format!("event id at position {position}: {e}")))?;
    let id = Uuid::from_slice(id)
        .map_err(|e| StoreError::Corrupt(format!("event id at position {position}: {e}")))?;
    Ok(RecordedEvent {
        id,
        stream: row.get(1).map_err(sql_err)?,
        revision: from_sql_int(revision, "revision")?,
        position: seq_position(from_sql_int(position, "position")?),
        event_type: row.get(4).map_err(sql_err)?,
        data: row.get(5).map_err(sql_err)?,
        metadata: row.get(6).map_err(sql_err)?,
    })
}

/// Used by the writer to store ids; kept next to [`decode`] so both agree on the format.
pub(super) fn id_bytes(id: &Uuid) -> &[u8] {
    id.as_bytes()
}
