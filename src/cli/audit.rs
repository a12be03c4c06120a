//! `troved audit` (being written).

use crate::config::AuditCommand;

/// Runs `troved audit ...`.
pub async fn run(_cmd: AuditCommand) -> anyhow::Result<()> {
    anyhow::bail!("troved audit is not implemented yet")
}
