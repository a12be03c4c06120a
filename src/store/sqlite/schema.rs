//! Opening SQLite connections with the pragmas the store's guarantees rest on, creating
//! or checking the schema, and mapping SQLite errors onto [`StoreError`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

use crate::store::StoreError;

/// Schema version written to `meta`; bump it together with a migration in [`init_schema`].
pub(super) const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits on a lock held by another connection before failing.
/// In WAL mode only the rare WAL-recovery and checkpoint paths take such locks.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// The `events` table is the only source of truth. There is deliberately no `streams`
// table: a stream's last revision is one seek into the UNIQUE(stream, revision) index
// (`ORDER BY revision DESC LIMIT 1`), which costs about the same as a lookup in a
// separate table, while a `streams` table would be a second write per append and a
// second copy of the truth that could disagree with `events` after a bug. The writer
// additionally caches revisions within a batch, so repeated appends to one stream in a
// batch do not even seek.
//
// `position` is the rowid alias without AUTOINCREMENT: the writer assigns it as
// MAX(position)+1 inside the write transaction, so positions are dense and a rolled
// back request gives its numbers back. `id` is the 16 raw bytes of the UUID.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY CHECK (position > 0),
    stream      TEXT    NOT NULL,
    revision    INTEGER NOT NULL CHECK (revision >= 0),
    id          BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    event_type  TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    metadata    BLOB    NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream, revision)
);
";

/// Opens the single write connection, creating the file and schema if missing.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    // WAL lets readers run against the last commit while the writer appends, and makes a
    // commit one sequential WAL write plus one fsync. The mode is persistent in the file,
    // but SQLite silently keeps the old mode when it cannot switch, so check the answer.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(format!(
            "cannot switch {} to WAL journal mode (still {mode})",
            path.display()
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged append survives power
    // loss (NORMAL would only survive a process crash).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err)?;
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .map_err(sql_err)?;
    if sync < 2 {
        return Err(StoreError::Io(format!(
            "cannot set synchronous=FULL on {} (got {sync})",
            path.display()
        )));
    }
    // On macOS a plain fsync does not flush the drive cache; F_FULLFSYNC does. No effect
    // elsewhere.
    conn.pragma_update(None, "fullfsync", "ON")
        .map_err(sql_err)?;
    init_schema(&conn)?;
    Ok(conn)
}

/// Opens a connection for reads. It is read-write at the file level but `query_only`:
/// a truly read-only connection cannot run WAL recovery and fails in edge cases
/// (SQLITE_READONLY_RECOVERY), while `query_only` still rejects any write by mistake.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(sql_err)?;
    Ok(conn)
}

fn init_schema(conn: &Connection) -> Result<(), StoreError> {
    // One IMMEDIATE transaction so two processes creating the same file cannot interleave.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_err)?;
    let result = (|| {
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_err)?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(sql_err)?;
            }
            Some(v) => {
                let v: i64 = v.parse().map_err(|_| {
                    StoreError::Corrupt(format!("schema_version {v:?} is not a number"))
                })?;
                if v > SCHEMA_VERSION {
                    return Err(StoreError::Io(format!(
                        "database schema version {v} is newer than this binary supports \
                         ({SCHEMA_VERSION})"
                    )));
                }
                // v < SCHEMA_VERSION: migrations go here once there is a version 2.
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(sql_err),
        Err(e) => {
            // The original error is the interesting one; a failing rollback changes nothing
            // because the connection is dropped by the caller.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Maps a rusqlite error: damaged files and undecodable values are `Corrupt`, everything
/// else (disk full, permissions, locks, I/O) is `Io`.
pub(super) fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Io(e.to_string()),
    }
}

/// Converts a sequence number or revision for storage. Values above `i64::MAX` cannot
/// occur in practice (they would need 2^63 appends) but are rejected rather than wrapped.
pub(super) fn to_sql_int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Io(format!("value {v} exceeds the SQLite integer range")))
}

/// Converts a stored integer back; a negative value means the row was not written by us.
pub(super) fn from_sql_int(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v} in the store")))
}
