//! MariaDB's side of promote and eject (issue #15; [`crate::local::replication`]):
//! a GTID switch.
//!
//! No committed transaction is lost on promote: the old source is made `read_only`
//! (troved's users have no `SUPER`/`READ_ONLY ADMIN`), its GTID position read, and the
//! candidate and the siblings wait for it (`MASTER_GTID_WAIT`). The candidate then gets
//! a binary log that starts at the position it applied (`RESET MASTER` and
//! `gtid_binlog_state`; replicas log no binary log of what they replicate), so that
//! the others, asking for that position with `MASTER_USE_GTID = slave_pos`, find it.
//! The old source follows with `MASTER_USE_GTID = current_pos`: the position of its own
//! binary log, which is the one the new source starts at.

use std::time::Duration;

use super::replica::{REPLICA_MARKER, SOURCE_MARKER};
use super::Mariadb;
use crate::local::quote::mariadb_literal;
use crate::local::{Instance, LocalError};

impl Mariadb {
    /// `read_only` on, and the GTID position of everything the source committed.
    pub(super) async fn freeze_now(&self, primary: &Instance) -> Result<String, LocalError> {
        let sql = "SET GLOBAL read_only = 1;\nSELECT @@gtid_binlog_pos;";
        let pos = self.sql(primary, sql, &[]).await?.trim().to_string();
        gtid_value(&pos)?;
        Ok(pos)
    }

    /// Lets the old source take writes again after a failed promote.
    pub(super) async fn thaw_now(&self, primary: &Instance) -> Result<(), LocalError> {
        self.sql(primary, "SET GLOBAL read_only = 0;", &[]).await?;
        Ok(())
    }

    /// Waits until `replica` applied `pos`.
    pub(super) async fn catch_up_now(
        &self,
        replica: &Instance,
        pos: &str,
    ) -> Result<(), LocalError> {
        gtid_value(pos)?;
        if pos.is_empty() {
            return Ok(());
        }
        let secs = self.opts.timeout.as_secs().max(1);
        let sql = format!(
            "SELECT MASTER_GTID_WAIT({}, {secs});",
            mariadb_literal(pos)?
        );
        match self.sql(replica, &sql, &[]).await?.trim() {
            "0" => Ok(()),
            _ => Err(LocalError::Timeout(
                "the replica's catch-up with the old source".into(),
                self.opts.timeout,
            )),
        }
    }

    /// How far `replica` applied: the sequence numbers of its GTID position.
    pub(super) async fn applied_now(&self, replica: &Instance) -> Result<u64, LocalError> {
        let pos = self.sql(replica, "SELECT @@gtid_slave_pos;", &[]).await?;
        gtid_value(pos.trim())
    }

    /// A binary log that starts at the position the replica applied, before it takes
    /// writes; it stops replicating first, so that the position holds still.
    pub(super) async fn become_source_now(&self, inst: &Instance) -> Result<(), LocalError> {
        self.ensure_binlog(inst).await?;
        self.sql(inst, "STOP SLAVE;", &[]).await?;
        let pos = self.sql(inst, "SELECT @@gtid_slave_pos;", &[]).await?;
        let pos = pos.trim();
        gtid_value(pos)?;
        let mut sql = "RESET MASTER;\n".to_string();
        if !pos.is_empty() {
            sql.push_str(&format!(
                "SET GLOBAL gtid_binlog_state = {};\n",
                mariadb_literal(pos)?
            ));
        }
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    /// Makes `replica` replicate from `source` (`use_gtid`: `slave_pos` or
    /// `current_pos`) with an account of its own there, and waits until it does.
    pub(super) async fn repoint_now(
        &self,
        replica: &Instance,
        source: &Instance,
        use_gtid: &str,
    ) -> Result<(), LocalError> {
        let (user, host, password) = self.replication_account(replica, source).await?;
        let pw = mariadb_literal(&password)?;
        let sql = format!(
            "STOP SLAVE;\nCHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, \
             MASTER_USER = {}, MASTER_PASSWORD = {pw}, MASTER_USE_GTID = {use_gtid};\n\
             START SLAVE;\n",
            mariadb_literal(&host)?,
            source.port,
            mariadb_literal(&user)?,
        );
        self.sql(replica, &sql, &[&password]).await?;
        self.wait_following(replica).await
    }

    /// The frozen old source becomes a read-only replica of `source` (also after a
    /// restart: the replica marker puts `read_only` in its option file).
    pub(super) async fn demote_now(
        &self,
        old: &Instance,
        source: &Instance,
    ) -> Result<(), LocalError> {
        std::fs::write(old.dir.join(REPLICA_MARKER), "read_only until promoted\n")
            .map_err(|e| LocalError::io("write the replica marker", e))?;
        self.write_options(old, &Self::saved_values(old))?;
        self.sql(old, "SET GLOBAL read_only = 1;", &[]).await?;
        // Its own binary log says where it stands; from the first demotion on, what it
        // replicates is not logged there, and `current_pos` takes the later of the two.
        let use_gtid = if old.dir.join(SOURCE_MARKER).exists() {
            "current_pos"
        } else {
            "slave_pos"
        };
        self.repoint_now(old, source, use_gtid).await?;
        // Give the I/O thread a moment to report a refused position before calling it done.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.wait_following(old).await
    }
}

/// A GTID position (`0-31007-12,1-31008-3`) checked to go into SQL; its value is the sum
/// of the sequence numbers (one domain in practice: its sequence number).
fn gtid_value(pos: &str) -> Result<u64, LocalError> {
    let mut total = 0u64;
    for gtid in pos.split(',').filter(|g| !g.trim().is_empty()) {
        let parts: Vec<&str> = gtid.trim().split('-').collect();
        let numbers: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
        match numbers.as_deref() {
            Some([_, _, seq]) => total = total.saturating_add(*seq),
            _ => return Err(LocalError::invalid("GTID position", pos.to_string())),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_are_checked_and_summed() {
        assert_eq!(gtid_value("").unwrap(), 0);
        assert_eq!(gtid_value("0-31007-12").unwrap(), 12);
        assert_eq!(gtid_value("0-1-12,1-2-3").unwrap(), 15);
        assert!(gtid_value("0-1-2'; DROP").is_err());
    }
}
