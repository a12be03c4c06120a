//! PostgreSQL's side of promote and eject (issue #15; [`crate::local::replication`]).
//!
//! No committed transaction is lost on promote: the old source is shut down cleanly
//! ("fast"), which makes its WAL senders wait until the connected standbys have flushed
//! all of its WAL, the shut-down checkpoint included; the candidate is promoted only once
//! it replayed past that checkpoint. The old source then starts as a standby of the new
//! one from its shut-down state (its WAL ends where the new timeline branches off); if
//! it cannot follow, its data directory is replaced by a fresh base backup of the new
//! source. Siblings are re-pointed with `primary_conninfo` (reloadable since PostgreSQL
//! 13) and follow the new timeline (`recovery_target_timeline = 'latest'`, the default).

use std::time::{Duration, Instant};

use super::{Postgres, ADMIN};
use crate::local::quote::{pg_conninfo_value, pg_literal};
use crate::local::replication::Replication;
use crate::local::{proc, remove_earlier_copies, running, Engine, Instance, LocalError};

impl Postgres {
    /// The source's connection string for a standby: its private socket.
    fn conninfo(source: &Instance) -> Result<String, LocalError> {
        Ok(format!(
            "host={} port={} user={ADMIN} application_name=troved",
            pg_conninfo_value(&source.run_dir().to_string_lossy())?,
            source.port
        ))
    }

    /// Shuts `primary` down cleanly (if it runs) and returns its shut-down checkpoint's
    /// LSN, read with `pg_controldata`.
    pub(super) async fn freeze_now(&self, primary: &Instance) -> Result<String, LocalError> {
        if running(primary).is_some() {
            self.stop(primary).await?;
        }
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("pg_controldata"), &primary.dir);
        cmd.arg("-D").arg(primary.data_dir());
        let out = proc::run(cmd, None, &[], self.opts.timeout).await?;
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if field("Database cluster state:").as_deref() != Some("shut down") {
            return Err(LocalError::StartFailed(format!(
                "the old source did not shut down cleanly: {}",
                field("Database cluster state:").unwrap_or_default()
            )));
        }
        let lsn = field("Latest checkpoint location:").unwrap_or_default();
        lsn_value(&lsn)?;
        Ok(lsn)
    }

    /// Starts the shut-down old source again after a failed promote: it is still a
    /// primary (no `standby.signal` was written before the promote).
    pub(super) async fn thaw_now(&self, primary: &Instance) -> Result<(), LocalError> {
        if running(primary).is_none() {
            self.start(primary).await?;
        }
        Ok(())
    }

    /// Waits until `replica` replayed past `lsn`.
    pub(super) async fn catch_up_now(
        &self,
        replica: &Instance,
        lsn: &str,
    ) -> Result<(), LocalError> {
        lsn_value(lsn)?;
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() > {}::pg_lsn, false);",
            pg_literal(lsn)?
        );
        self.wait_for(
            replica,
            &sql,
            "t",
            "the replica's replay of the old source's WAL",
        )
        .await
    }

    /// The LSN `replica` replayed up to, as a number (0: none).
    pub(super) async fn applied_now(&self, replica: &Instance) -> Result<u64, LocalError> {
        let lsn = self
            .scalar(replica, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0');")
            .await?;
        lsn_value(&lsn)
    }

    /// Points running standby `replica` at `source` and waits until it streams from it.
    pub(super) async fn repoint_now(
        &self,
        replica: &Instance,
        source: &Instance,
    ) -> Result<(), LocalError> {
        let sql = format!(
            "ALTER SYSTEM SET primary_conninfo = {};\nSELECT pg_reload_conf();",
            pg_literal(&Self::conninfo(source)?)?
        );
        self.psql(replica, ADMIN, &sql, &[]).await?;
        self.wait_streaming_from(replica, source).await
    }

    /// Makes the shut-down old source a standby of `source`; a fresh base backup when
    /// it cannot follow from its own data.
    pub(super) async fn demote_now(
        &self,
        old: &Instance,
        source: &Instance,
    ) -> Result<(), LocalError> {
        if running(old).is_some() && self.is_replica(old).await? {
            return self.wait_streaming_from(old, source).await;
        }
        if running(old).is_some() {
            self.stop(old).await?;
        }
        let data = old.data_dir();
        let line = format!(
            "\n# troved: a replica of the new source since a promote.\nprimary_conninfo = {}\n",
            pg_literal(&Self::conninfo(source)?)?
        );
        append(&data.join("postgresql.auto.conf"), &line)?;
        std::fs::write(data.join("standby.signal"), "")
            .map_err(|e| LocalError::io("write standby.signal", e))?;
        let followed = match self.start(old).await {
            Ok(_) => self.wait_streaming_from(old, source).await,
            Err(e) => Err(e),
        };
        let Err(e) = followed else {
            return Ok(());
        };
        tracing::warn!(port = old.port, error = %e,
            "the old source cannot follow the new one from its own data; copying it afresh");
        self.recopy(old, source).await
    }

    /// Replaces `old`'s data directory with a base backup of `source` and starts it.
    async fn recopy(&self, old: &Instance, source: &Instance) -> Result<(), LocalError> {
        if running(old).is_some() {
            self.stop(old).await?;
        }
        let data = old.data_dir();
        remove_earlier_copies(&data).await;
        tokio::fs::remove_dir_all(&data)
            .await
            .map_err(|e| LocalError::io("remove the old source's data", e))?;
        self.init_replica(old, source).await?;
        self.start(old).await?;
        self.wait_streaming_from(old, source).await
    }

    /// Waits until `replica`'s WAL receiver streams from `source`'s port.
    async fn wait_streaming_from(
        &self,
        replica: &Instance,
        source: &Instance,
    ) -> Result<(), LocalError> {
        let sql = "SELECT status || ':' || sender_port FROM pg_stat_wal_receiver;";
        let want = format!("streaming:{}", source.port);
        self.wait_for(replica, sql, &want, "the standby's WAL receiver")
            .await
    }

    /// Runs `sql` until it answers `want`, within the server timeout.
    async fn wait_for(
        &self,
        inst: &Instance,
        sql: &str,
        want: &str,
        what: &str,
    ) -> Result<(), LocalError> {
        let deadline = Instant::now() + self.opts.timeout;
        loop {
            // A standby starting up refuses connections for a moment: keep asking.
            if self.scalar(inst, sql).await.is_ok_and(|v| v == want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalError::Timeout(what.into(), self.opts.timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An LSN (`16/B374D848`) as a number; anything else is refused (it goes into SQL).
fn lsn_value(lsn: &str) -> Result<u64, LocalError> {
    let bad = || LocalError::invalid("LSN", lsn.to_string());
    let (hi, lo) = lsn.trim().split_once('/').ok_or_else(bad)?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
    Ok((hi << 32) | lo)
}

fn append(path: &std::path::Path, text: &str) -> Result<(), LocalError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| LocalError::io("open postgresql.auto.conf", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| LocalError::io("append to postgresql.auto.conf", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_order_as_numbers_and_nothing_else_is_taken() {
        assert_eq!(lsn_value("0/3000028").unwrap(), 0x300_0028);
        assert!(lsn_value("1/0").unwrap() > lsn_value("0/FFFFFFFF").unwrap());
        assert!(lsn_value("0/1'; DROP").is_err());
        assert!(lsn_value("").is_err());
    }
}
