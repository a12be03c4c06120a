//! `troved sim check`: which instances of the log claim a server or volume the
//! simulated cloud (`cloud.db`) no longer has. Read only: it replays the log into
//! scratch read models (as `troved projections rebuild`) and reads `cloud.db` with a
//! `query_only` connection, so it runs beside a running server and on a stopped one. It
//! records nothing: the server is the log's only writer, and records these losses itself
//! (at start, every `--reconcile-interval-secs`, and on `POST
//! /v1.0/{project}/mgmt/reconcile`; `crate::reconcile`).

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use super::log::StreamReader;
use super::projections::replay_all;
use crate::reconcile::{claims, matching};
use crate::runtime::projector::ReadModels;

/// Runs the check; prints `{"checked": N, "lost": [...]}` and fails when something is
/// lost.
pub async fn check(data_dir: &Path, event_store: Option<&str>) -> anyhow::Result<()> {
    let (data_dir, url) = (data_dir.to_path_buf(), event_store.map(str::to_string));
    let (checked, lost) = tokio::task::spawn_blocking(move || {
        let (log, _name) = StreamReader::open(url.as_deref(), &data_dir)?;
        let models = ReadModels::default();
        replay_all(&log, &models, "sim check")?;
        let (candidates, claimed) = claims(&models.instances);
        let gone = crate::sim::gone_in(&data_dir, &claimed)?;
        anyhow::Ok((candidates.len(), matching(&candidates, &gone)))
    })
    .await
    .context("the check task failed")??;
    let report = json!({ "checked": checked, "lost": lost });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !lost.is_empty() {
        bail!(
            "{} instance(s) claim servers or volumes the simulated cloud no longer has; troved records them as lost at its next start, every --reconcile-interval-secs, or now with POST /v1.0/<project>/mgmt/reconcile (docs/operations.md, \"Lost state files\")",
            lost.len()
        );
    }
    Ok(())
}
