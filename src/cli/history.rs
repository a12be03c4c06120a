//! `troved history INSTANCE_ID`: an instance's full timeline from the log (who did
//! what, when), or with `--as-of TIME` its detail view as it was at that moment.
//!
//! Reads the store file directly through a read-only connection ([`ReadOnlyLog`]), so
//! it works while a server runs on the same data directory: it takes no lock, starts no
//! writer, creates and migrates nothing, and never checkpoints the WAL.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aggregates::{configuration, instance};
use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use projections::views::ViewCtx;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use uuid::Uuid;

use crate::config::{HistoryArgs, HistoryFormat};
use crate::history::{self, AsOfLookup, TIME_FORMAT};
use crate::store::{Position, RecordedEvent};

/// The base of the links in an as-of view (there is no request to take a host from).
const BASE_URL: &str = "https://localhost";

/// Runs `troved history`.
pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let output = tokio::task::spawn_blocking(move || render(&args))
        .await
        .context("the history task failed")??;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `troved history ... | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Everything `troved history` prints on stdout.
fn render(args: &HistoryArgs) -> anyhow::Result<String> {
    let id = Uuid::parse_str(args.instance_id.trim())
        .map_err(|_| anyhow!("{:?} is not an instance id (a UUID)", args.instance_id))?;
    let as_of = args
        .as_of
        .as_deref()
        .map(history::parse_time)
        .transpose()
        .map_err(|e| anyhow!("--as-of: {e}"))?;
    let path = events_path(args)?;
    let log = ReadOnlyLog::open(&path)?;
    let records = log.read_stream(&instance::stream_name(id))?;
    if records.is_empty() {
        bail!("no instance {id} in the event store {}", path.display());
    }
    match as_of {
        None => {
            let entries = history::timeline(&records)?;
            Ok(match args.format {
                HistoryFormat::Table => history::render_table(&entries),
                HistoryFormat::Json => format!("{}\n", serde_json::to_string_pretty(&entries)?),
            })
        }
        Some(t) => as_of_view(&log, id, &records, t),
    }
}

/// `--as-of`: `{"instance": <detail view>}` as it was at `t`, pretty JSON.
fn as_of_view(
    log: &ReadOnlyLog,
    id: Uuid,
    records: &[RecordedEvent],
    t: DateTime<Utc>,
) -> anyhow::Result<String> {
    let state = history::state_as_of(records, t)?;
    if !state.instance.exists() {
        bail!("{}", history::not_yet_message(id, t, state.created));
    }
    let inst = &state.instance;
    let configuration = match inst.configuration_id {
        Some(g) => {
            let group = log.read_stream(&configuration::stream_name(g))?;
            Some((g, history::configuration_name_as_of(&group, t)?))
        }
        None => None,
    };
    let ctx = ViewCtx {
        base_url: BASE_URL.into(),
        api_version: "1.0".into(),
        caller_project: inst.project_id.clone(),
        caller_is_admin: true,
        now: t,
        heartbeat_expiry: None,
    };
    let view = history::as_of_view(inst, &ctx, &AsOfLookup { configuration });
    eprintln!(
        "instance {id} as of {}: {} of {} events",
        t.format(TIME_FORMAT),
        state.events,
        records.len()
    );
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&json!({ "instance": view }))?
    ))
}

/// The store file: `--event-store sqlite:///PATH` or `<data dir>/events.db`.
fn events_path(args: &HistoryArgs) -> anyhow::Result<PathBuf> {
    match &args.event_store {
        Some(url) => {
            // Only the scheme is echoed: another store's URL may carry credentials.
            let scheme = url.split("://").next().unwrap_or("");
            let path = url.strip_prefix("sqlite://").ok_or_else(|| {
                anyhow!("--event-store {scheme}://...: only sqlite:///PATH stores can be read")
            })?;
            if path.is_empty() {
                bail!("--event-store {url:?}: no path");
            }
            Ok(PathBuf::from(path))
        }
        None => Ok(args.data_dir.join("events.db")),
    }
}

/// A read-only view of the embedded store's file, safe beside a running server.
///
/// The connection is opened read-write at the file level (a truly read-only connection
/// cannot join a WAL database whose `-shm` it may not write, nor run WAL recovery after
/// a crash) but `query_only`, without `SQLITE_OPEN_CREATE`, and with checkpoint-on-close
/// off, so it changes nothing. If the file is not writable for this user (an auditor's
/// copy), it falls back to a read-only open.
pub struct ReadOnlyLog {
    conn: Connection,
}

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

    /// A whole stream, oldest first (empty if it does not exist). One SELECT: one
    /// snapshot, never part of a batch being written.
    pub fn read_stream(&self, stream: &str) -> anyhow::Result<Vec<RecordedEvent>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT position, revision, id, event_type, data, metadata FROM events \
                 WHERE stream = ?1 ORDER BY revision",
            )
            .context("reading the event store (is it a troved event store?)")?;
        let mut rows = stmt.query([stream])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let position: i64 = row.get(0)?;
            let revision: i64 = row.get(1)?;
            let id: Vec<u8> = row.get(2)?;
            let position = u64::try_from(position)
                .map_err(|_| anyhow!("negative position {position} in {stream}"))?;
            out.push(RecordedEvent {
                id: Uuid::from_slice(&id)
                    .with_context(|| format!("event id at position {position}"))?,
                stream: stream.to_string(),
                revision: u64::try_from(revision)
                    .map_err(|_| anyhow!("negative revision {revision} in {stream}"))?,
                position: Position {
                    commit: position,
                    prepare: position,
                },
                event_type: row.get(3)?,
                data: row.get(4)?,
                metadata: row.get(5)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(event_store: Option<&str>) -> HistoryArgs {
        HistoryArgs {
            instance_id: Uuid::nil().to_string(),
            data_dir: PathBuf::from("/srv/troved"),
            event_store: event_store.map(str::to_string),
            format: HistoryFormat::Table,
            as_of: None,
        }
    }

    #[test]
    fn the_store_is_the_data_dirs_or_a_sqlite_url() {
        assert_eq!(
            events_path(&args(None)).unwrap(),
            PathBuf::from("/srv/troved/events.db")
        );
        assert_eq!(
            events_path(&args(Some("sqlite:///tmp/e.db"))).unwrap(),
            PathBuf::from("/tmp/e.db")
        );
        assert!(events_path(&args(Some("esdb://localhost:2113"))).is_err());
        assert!(events_path(&args(Some("sqlite://"))).is_err());
    }

    #[test]
    fn a_missing_store_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        assert!(ReadOnlyLog::open(&path).is_err());
        assert!(!path.exists());
    }
}
