//! `troved history INSTANCE_ID`: an instance's full timeline from the log (who did
//! what, when), or with `--as-of TIME` its detail view as it was at that moment.
//!
//! Reads the embedded store's file directly through a read-only connection
//! ([`super::log::ReadOnlyLog`]), so it works while a server runs on the same data
//! directory: it takes no lock, starts no writer, creates and migrates nothing, and never
//! checkpoints the WAL. With `--event-store esdb://...` it reads EventStoreDB.

use std::io::Write as _;

use aggregates::{configuration, instance};
use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use projections::views::ViewCtx;
use serde_json::json;
use uuid::Uuid;

use super::log::StreamReader;
use crate::config::{HistoryArgs, HistoryFormat, StoreUrlArg};
use crate::store::RecordedEvent;
use crate::timeline::{self, AsOfLookup, TIME_FORMAT};

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
        .map(timeline::parse_time)
        .transpose()
        .map_err(|e| anyhow!("--as-of: {e}"))?;
    let (log, name) = StreamReader::open(
        args.event_store.as_ref().map(StoreUrlArg::as_str),
        &args.data_dir,
    )?;
    let records = log.read_stream(&instance::stream_name(id))?;
    if records.is_empty() {
        bail!("no instance {id} in the event store {name}");
    }
    match as_of {
        None => {
            let entries = timeline::timeline(&records);
            Ok(match args.format {
                HistoryFormat::Table => timeline::render_table(&entries),
                HistoryFormat::Json => format!("{}\n", serde_json::to_string_pretty(&entries)?),
            })
        }
        Some(t) => as_of_view(&log, id, &records, t),
    }
}

/// `--as-of`: `{"instance": <detail view>}` as it was at `t`, pretty JSON.
fn as_of_view(
    log: &StreamReader,
    id: Uuid,
    records: &[RecordedEvent],
    t: DateTime<Utc>,
) -> anyhow::Result<String> {
    let state = timeline::state_as_of(records, t)?;
    if !state.instance.exists() {
        bail!("{}", timeline::not_yet_message(id, t, state.created));
    }
    let inst = &state.instance;
    let configuration = match inst.configuration_id {
        Some(g) => {
            let group = log.read_stream(&configuration::stream_name(g))?;
            Some((g, timeline::configuration_name_as_of(&group, t)?))
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
        heartbeats: Default::default(),
        running_backups: Default::default(),
    };
    let view = timeline::as_of_view(inst, &ctx, &AsOfLookup { configuration });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_missing_store_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let elsewhere = format!("sqlite://{}", dir.path().join("other.db").display());
        let (a, b) = tokio::task::spawn_blocking(move || {
            (
                StreamReader::open(None, &data_dir).is_err(),
                StreamReader::open(Some(&elsewhere), &data_dir).is_err(),
            )
        })
        .await
        .unwrap();
        assert!(a && b);
        assert!(!dir.path().join("events.db").exists());
        assert!(!dir.path().join("other.db").exists());
    }
}
