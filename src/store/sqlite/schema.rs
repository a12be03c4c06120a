//! Opening SQLite connections with the pragmas the store's guarantees rest on, creating
//! or checking the schema, and mapping SQLite errors onto [`StoreError`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::chain;
use super::sql::sql_err;
use crate::store::StoreError;

/// Schema version written to `meta`; bump it together with a migration in [`init_schema`].
///
/// 1. The `events` table as in [`SCHEMA`].
/// 2. Adds `stream_hash` and `all_hash` (tamper evidence, [`chain`]), computed for the
///    rows already there.
pub(super) const SCHEMA_VERSION: i64 = 2;

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
//
// This is the version 1 shape, kept as it was: a new file is created with it and then
// migrated like an old one, so there is one path to the current shape and every test
// that creates a store runs the migrations. Later columns are in `MIGRATION_*` below.
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

// Version 2: each event's link in its stream's hash chain and in the `$all` chain (32
// bytes each, see `chain`). Nullable because ADD COLUMN cannot add NOT NULL without a
// default, and a default would hide a writer bug exactly as well as NULL does; the writer
// always sets both, and `audit verify` reports a row without them.
const MIGRATION_2: &str = "
ALTER TABLE events ADD COLUMN stream_hash BLOB;
ALTER TABLE events ADD COLUMN all_hash BLOB;
";

/// Opens the single write connection, creating the file and schema if missing.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    open_writer_at(path).map_err(|e| match e {
        StoreError::Full(m) => StoreError::Full(format!(
            "{}: {m}: free space on its disk and start again",
            path.display()
        )),
        e => e,
    })
}

fn open_writer_at(path: &Path) -> Result<Connection, StoreError> {
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

/// Opens an existing store file for an audit, read-only: no create, no write, no WAL
/// checkpoint, so the evidence is left exactly as found, also beside a running troved
/// (it joins the WAL like any reader) and after a crash (WAL recovery only rebuilds the
/// `-shm` index). SQLite may create the empty `-wal`/`-shm` side files a reader needs;
/// `events.db` and an existing WAL stay byte for byte the same. Fails if the file does
/// not exist.
pub(super) fn open_audit(path: &Path) -> Result<Connection, StoreError> {
    // SQLite's own message for a missing file is "unable to open database file".
    if !path.is_file() {
        return Err(StoreError::Io(format!(
            "no event store at {}",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    Ok(conn)
}

/// The `schema_version` a file records; `None` if it has no `meta` row (not a store
/// file, or one being created).
pub(super) fn stored_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    v.map(|v| {
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("schema_version {v:?} is not a number")))
    })
    .transpose()
}

fn init_schema(conn: &Connection) -> Result<(), StoreError> {
    // One IMMEDIATE transaction so two processes creating the same file cannot interleave.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_err)?;
    let result = (|| {
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        let version = stored_version(conn)?;
        // A file without a version row was just created by SCHEMA, i.e. it has the
        // version 1 shape.
        let v = version.unwrap_or(1);
        if v > SCHEMA_VERSION {
            return Err(StoreError::Io(format!(
                "database schema version {v} is newer than this binary supports \
                 ({SCHEMA_VERSION})"
            )));
        }
        if v < 2 {
            conn.execute_batch(MIGRATION_2).map_err(sql_err)?;
            let linked = chain::backfill(conn)?;
            if linked > 0 {
                tracing::info!(
                    events = linked,
                    "event store migrated to schema version 2: hash chains computed"
                );
            }
        }
        if v < SCHEMA_VERSION || version.is_none() {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [SCHEMA_VERSION.to_string()],
            )
            .map_err(sql_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::verify;

    /// The version 1 file format, frozen here as it was shipped, so this test keeps
    /// meaning "a file written before tamper evidence" whatever `SCHEMA` becomes.
    const V1_FILE: &str = "
        PRAGMA journal_mode = WAL;
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
        CREATE TABLE events (
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
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO events VALUES
            (1, 'instance-a', 0, randomblob(16), 'InstanceCreated', x'7b7d', x'7b7d', 1),
            (2, 'instance-b', 0, randomblob(16), 'InstanceCreated', x'7b7d', x'7b7d', 2),
            (3, 'instance-a', 1, randomblob(16), 'InstanceRenamed', x'7b7d', x'7b7d', 3);
    ";

    #[test]
    fn version_1_file_gets_chains_in_one_migration_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(V1_FILE)
            .unwrap();

        let conn = open_writer(&path).unwrap();
        assert_eq!(stored_version(&conn).unwrap(), Some(SCHEMA_VERSION));
        let unlinked: i64 = conn
            .query_row(
                "SELECT count(*) FROM events \
                 WHERE length(stream_hash) IS NOT 32 OR length(all_hash) IS NOT 32",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unlinked, 0);
        drop(conn);

        let report = verify(&path).unwrap();
        assert!(report.is_intact(), "{:?}", report.finding);
        assert_eq!((report.events, report.streams), (3, 2));
        // Opening again is not a second migration: the chains stay as they are.
        drop(open_writer(&path).unwrap());
        assert_eq!(verify(&path).unwrap(), report);
    }

    #[test]
    fn failed_migration_leaves_the_version_1_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let v1 = Connection::open(&path).unwrap();
        v1.execute_batch(V1_FILE).unwrap();
        // A stream name that is not text makes the backfill fail half-way.
        v1.execute(
            "INSERT INTO events VALUES (4, x'ff', 0, randomblob(16), 'T', x'', x'', 4)",
            [],
        )
        .unwrap();
        drop(v1);

        assert!(open_writer(&path).is_err());
        let conn = Connection::open(&path).unwrap();
        assert_eq!(stored_version(&conn).unwrap(), Some(1));
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('events') \
                 WHERE name IN ('stream_hash', 'all_hash')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 0);
    }

    #[test]
    fn newer_file_fails_to_open_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(open_writer(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [(SCHEMA_VERSION + 1).to_string()],
            )
            .unwrap();
        assert!(matches!(open_writer(&path), Err(StoreError::Io(m)) if m.contains("newer")));
        let conn = Connection::open(&path).unwrap();
        assert_eq!(stored_version(&conn).unwrap(), Some(SCHEMA_VERSION + 1));
    }
}
