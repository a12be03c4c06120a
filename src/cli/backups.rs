//! `troved backups verify`: reads the completed backups from the log (the same replay as
//! `troved projections rebuild`) and each one's artifact back from the backup store
//! through its recorded SHA-256, so an operator knows every backup can still be
//! restored before it is needed. Read only: it changes neither the log nor the store.

use std::fmt::Write as _;

use aggregates::backup::Backup;
use anyhow::{bail, Context};
use uuid::Uuid;

use super::log::StreamReader;
use super::projections::replay_all;
use crate::backup_store::{self, verified};
use crate::config::BackupsCommand;
use crate::runtime::projector::ReadModels;

/// Runs `troved backups ...`.
pub async fn run(cmd: BackupsCommand) -> anyhow::Result<()> {
    let BackupsCommand::Verify {
        ids,
        data_dir,
        event_store,
        backup_store,
    } = cmd;
    let url = event_store.as_ref().map(|u| u.as_str().to_string());
    let dir = data_dir.clone();
    let backups = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Backup>> {
        let (log, _) = StreamReader::open(url.as_deref(), &dir)?;
        let models = ReadModels::default();
        replay_all(&log, &models, "backups")?;
        Ok(models
            .backups
            .image()
            .into_iter()
            .map(|(b, _)| b)
            .filter(|b| b.is_live() && b.artifact.is_some())
            .collect())
    })
    .await
    .context("the replay task failed")??;
    let chosen = choose(backups, &ids)?;
    let store_url = match backup_store {
        Some(u) => u,
        None => {
            let dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
            format!("file://{}", dir.join("backups").display())
        }
    };
    let store = backup_store::open(&store_url)
        .await
        .map_err(anyhow::Error::msg)?;
    let (report, bad) = check_all(store.as_ref(), &chosen).await;
    print!("{report}");
    if bad > 0 {
        bail!(
            "{bad} of {} backup(s) cannot be restored as recorded",
            chosen.len()
        );
    }
    Ok(())
}

/// The backups named by `ids` (all of them when none is); an id that is not a live
/// backup with an artifact is an error.
fn choose(all: Vec<Backup>, ids: &[Uuid]) -> anyhow::Result<Vec<Backup>> {
    if ids.is_empty() {
        return Ok(all);
    }
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|b| b.id == Some(*id))
                .cloned()
                .with_context(|| format!("no completed backup {id} in the log"))
        })
        .collect()
}

/// One line per backup (`OK` or what is wrong), and how many are not OK.
async fn check_all(store: &dyn backup_store::BackupStore, backups: &[Backup]) -> (String, usize) {
    let mut report = String::new();
    let mut bad = 0;
    for b in backups {
        let Some(a) = &b.artifact else { continue };
        let verdict = match store.get(&a.location).await {
            Ok(body) => {
                let mut body = verified(body, &a.checksum);
                match tokio::io::copy(&mut body, &mut tokio::io::sink()).await {
                    Ok(n) if n == a.size_bytes => "OK".to_string(),
                    Ok(n) => format!("SIZE {n} bytes, recorded {}", a.size_bytes),
                    Err(e) => format!("BAD {e}"),
                }
            }
            Err(e) => format!("MISSING {e}"),
        };
        if verdict != "OK" {
            bad += 1;
        }
        let _ = writeln!(
            report,
            "{}  {}  {} bytes  {}",
            b.id.unwrap_or_default(),
            b.status.as_str(),
            a.size_bytes,
            verdict
        );
    }
    (report, bad)
}
