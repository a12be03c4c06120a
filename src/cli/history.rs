//! `troved history` (being written).

use crate::config::HistoryArgs;

/// Runs `troved history`.
pub async fn run(_args: HistoryArgs) -> anyhow::Result<()> {
    anyhow::bail!("troved history is not implemented yet")
}
