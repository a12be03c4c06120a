//! `troved projections` (being written).

use crate::config::ProjectionsCommand;

/// Runs `troved projections ...`.
pub async fn run(_cmd: ProjectionsCommand) -> anyhow::Result<()> {
    anyhow::bail!("troved projections is not implemented yet")
}
