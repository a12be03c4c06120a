//! The embedded store's file read through one `query_only` connection, for the auditor
//! and operator commands (`history`, `projections rebuild/verify`): it changes nothing
//! and takes no lock, so it works on a stopped server's data directory, on one left by
//! a crash, and beside a running server alike. [`StreamReader`] gives those commands
//! the same reads over EventStoreDB.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::store::{Position, RecordedEvent};

/// Events read per query while replaying (the server's start-up replay reads 4096 too).
pub const PAGE: usize = 4096;

/// The embedded store's file, read through one `query_only` connection.
///
/// Opened read-write at the file level (a read-only connection cannot run WAL recovery
/// after a crash, nor join a WAL whose `-shm` it may not write) but `query_only`,
/// without `SQLITE_OPEN_CREATE` and without a checkpoint on close, so it changes nothing
/// in the database; falls back to a read-only open for a copy the user may not write.
/// It takes no lock on the data directory: it works on a stopped server's directory and
/// beside a running one alike.
pub struct ReadOnlyLog {
    conn: Connection,
}

const SELECT_EVENT: &str =
    "SELECT position, stream, revision, id, event_type, data, metadata FROM events";

impl ReadOnlyLog {
    /// Opens the store file at `path`, which must exist.
    pub fn open(path: &Path) -> anyhow::Result<ReadOnlyLog> {
        if !path.is_file() {
            bail!("no event store at {}", path.display());
        }
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)
            .or_else(|_| {
                Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_ONLY)
            })
            .with_context(|| format!("opening the event store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        Ok(ReadOnlyLog { conn })
    }

    /// The last position; everything is read up to it, so a live server's later appends
    /// are not half-seen.
    pub fn head(&self) -> anyhow::Result<Position> {
        let head: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .context("reading the event store (is it a troved event store?)")?;
        position(head)
    }

    /// Up to `max` events after `from` and at most `to`, in order.
    pub fn read_all(
        &self,
        from: Position,
        to: Position,
        max: usize,
    ) -> anyhow::Result<Vec<RecordedEvent>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT_EVENT} WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
        ))?;
        let mut rows = stmt.query((
            sql_int(from.commit)?,
            sql_int(to.commit)?,
            i64::try_from(max).unwrap_or(i64::MAX),
        ))?;
        let mut out = Vec::with_capacity(max.min(PAGE));
        while let Some(row) = rows.next()? {
            out.push(event(row)?);
        }
        Ok(out)
    }

    /// [`ReadOnlyLog::read_all`] into `page`, reusing its events' buffers: a replay
    /// hands each page back once decoded, so reading allocates nothing per event once
    /// the buffers have grown (and no other thread frees what this one allocated).
    pub fn read_page(
        &self,
        from: Position,
        to: Position,
        max: usize,
        page: &mut Vec<RecordedEvent>,
    ) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT_EVENT} WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
        ))?;
        let mut rows = stmt.query((
            sql_int(from.commit)?,
            sql_int(to.commit)?,
            i64::try_from(max).unwrap_or(i64::MAX),
        ))?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            if n == page.len() {
                page.push(RecordedEvent {
                    id: Uuid::nil(),
                    stream: String::new(),
                    revision: 0,
                    position: Position::START,
                    event_type: String::new(),
                    data: Vec::new(),
                    metadata: Vec::new(),
                });
            }
            refill(&mut page[n], row)?;
            n += 1;
        }
        page.truncate(n);
        Ok(())
    }

    /// Calls `f` with each stream (up to `to`), whole and oldest first, one at a time.
    /// One query over the `(stream, revision)` index.
    pub fn for_each_stream(
        &self,
        to: Position,
        mut f: impl FnMut(&str, &[RecordedEvent]),
    ) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT_EVENT} WHERE position <= ?1 ORDER BY stream, revision"
        ))?;
        let mut rows = stmt.query([sql_int(to.commit)?])?;
        let mut current: Vec<RecordedEvent> = Vec::new();
        while let Some(row) = rows.next()? {
            let e = event(row)?;
            if current.first().is_some_and(|c| c.stream != e.stream) {
                f(&current[0].stream, &current);
                current.clear();
            }
            current.push(e);
        }
        if let Some(first) = current.first() {
            f(&first.stream, &current);
        }
        Ok(())
    }

    /// A whole stream, oldest first (empty if it does not exist). One SELECT: one
    /// snapshot, never part of a batch being written.
    pub fn read_stream(&self, stream: &str) -> anyhow::Result<Vec<RecordedEvent>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE stream = ?1 ORDER BY revision"
            ))
            .context("reading the event store (is it a troved event store?)")?;
        let mut rows = stmt.query([stream])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(event(row)?);
        }
        Ok(out)
    }
}

fn position(p: i64) -> anyhow::Result<Position> {
    let p = u64::try_from(p).map_err(|_| anyhow!("negative position {p} in the event store"))?;
    Ok(Position {
        commit: p,
        prepare: p,
    })
}

fn sql_int(v: u64) -> anyhow::Result<i64> {
    i64::try_from(v).map_err(|_| anyhow!("position {v} out of SQLite's range"))
}

/// A row selected with [`SELECT_EVENT`]'s columns.
fn event(row: &rusqlite::Row<'_>) -> anyhow::Result<RecordedEvent> {
    let at = position(row.get(0)?)?;
    let revision: i64 = row.get(2)?;
    let id = row.get_ref(3)?.as_blob()?;
    Ok(RecordedEvent {
        id: Uuid::from_slice(id).with_context(|| format!("event id at position {at}"))?,
        stream: row.get(1)?,
        revision: u64::try_from(revision)
            .map_err(|_| anyhow!("negative revision at position {at}"))?,
        position: at,
        event_type: row.get(4)?,
        data: row.get(5)?,
        metadata: row.get(6)?,
    })
}

/// Where an auditor's command reads streams: the embedded store's file (read-only, no
/// lock), or an EventStoreDB through the adapter. Blocking: call it off the runtime's
/// worker threads (`spawn_blocking`).
pub enum StreamReader {
    File(ReadOnlyLog),
    Store {
        store: std::sync::Arc<dyn crate::store::EventStore>,
        runtime: tokio::runtime::Handle,
    },
}

impl StreamReader {
    /// `--event-store URL`, or the data directory's `events.db`. Must be called from
    /// inside the runtime (a blocking thread of it is fine).
    pub fn open(url: Option<&str>, data_dir: &Path) -> anyhow::Result<(StreamReader, String)> {
        let url = match url {
            Some(url) => {
                crate::store::StoreUrl::parse(url).map_err(|e| anyhow!("--event-store: {e}"))?
            }
            None => crate::store::StoreUrl::Sqlite(data_dir.join("events.db")),
        };
        let name = url.redacted();
        let reader = match url {
            crate::store::StoreUrl::Sqlite(path) => StreamReader::File(ReadOnlyLog::open(&path)?),
            esdb @ crate::store::StoreUrl::Esdb(_) => {
                let runtime = tokio::runtime::Handle::current();
                let store = runtime
                    .block_on(esdb.open())
                    .map_err(|e| anyhow!("opening the event store {name}: {e}"))?;
                StreamReader::Store { store, runtime }
            }
        };
        Ok((reader, name))
    }

    /// A whole stream, oldest first (empty if it does not exist).
    pub fn read_stream(&self, stream: &str) -> anyhow::Result<Vec<RecordedEvent>> {
        match self {
            StreamReader::File(log) => log.read_stream(stream),
            StreamReader::Store { store, runtime } => runtime
                .block_on(store.read_stream(stream))
                .map_err(|e| anyhow!("reading {stream}: {e}")),
        }
    }

    /// The last position; a command reads up to it, so later appends (a running
    /// server's) are not half-seen.
    pub fn head(&self) -> anyhow::Result<Position> {
        match self {
            StreamReader::File(log) => log.head(),
            StreamReader::Store { store, runtime } => runtime
                .block_on(store.head())
                .map_err(|e| anyhow!("reading the store's last position: {e}")),
        }
    }

    /// Up to `max` events after `from` and at most `to`, in order, into `page`
    /// ([`ReadOnlyLog::read_page`]).
    pub fn read_page(
        &self,
        from: Position,
        to: Position,
        max: usize,
        page: &mut Vec<RecordedEvent>,
    ) -> anyhow::Result<()> {
        match self {
            StreamReader::File(log) => log.read_page(from, to, max, page),
            StreamReader::Store { store, runtime } => {
                let read = runtime
                    .block_on(store.read_all(from, max))
                    .map_err(|e| anyhow!("reading $all after {from}: {e}"))?;
                page.clear();
                page.extend(read.into_iter().take_while(|e| e.position <= to));
                Ok(())
            }
        }
    }

    /// Calls `f` with each stream holding events up to `to`, whole (up to `to`) and
    /// oldest first, one at a time ([`ReadOnlyLog::for_each_stream`]). Over a store,
    /// `$all` is read once for the stream names, then each stream on its own.
    pub fn for_each_stream(
        &self,
        to: Position,
        mut f: impl FnMut(&str, &[RecordedEvent]),
    ) -> anyhow::Result<()> {
        match self {
            StreamReader::File(log) => log.for_each_stream(to, f),
            StreamReader::Store { .. } => {
                let mut streams = std::collections::BTreeSet::new();
                let (mut from, mut page) = (Position::START, Vec::new());
                while from < to {
                    self.read_page(from, to, PAGE, &mut page)?;
                    let Some(last) = page.last() else { break };
                    from = last.position;
                    streams.extend(page.iter().map(|e| e.stream.clone()));
                }
                for stream in &streams {
                    let mut records = self.read_stream(stream)?;
                    records.retain(|e| e.position <= to);
                    if !records.is_empty() {
                        f(stream, &records);
                    }
                }
                Ok(())
            }
        }
    }
}

/// Overwrites `e` with a row selected with [`SELECT_EVENT`]'s columns, keeping its
/// buffers.
fn refill(e: &mut RecordedEvent, row: &rusqlite::Row<'_>) -> anyhow::Result<()> {
    let at = position(row.get(0)?)?;
    let revision: i64 = row.get(2)?;
    e.id = Uuid::from_slice(row.get_ref(3)?.as_blob()?)
        .with_context(|| format!("event id at position {at}"))?;
    e.revision =
        u64::try_from(revision).map_err(|_| anyhow!("negative revision at position {at}"))?;
    e.position = at;
    e.stream.clear();
    e.stream.push_str(row.get_ref(1)?.as_str()?);
    e.event_type.clear();
    e.event_type.push_str(row.get_ref(4)?.as_str()?);
    e.data.clear();
    e.data.extend_from_slice(row.get_ref(5)?.as_blob()?);
    e.metadata.clear();
    e.metadata.extend_from_slice(row.get_ref(6)?.as_blob()?);
    Ok(())
}
