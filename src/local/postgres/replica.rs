//! PostgreSQL streaming replicas: `pg_basebackup -R` over the primary's private socket,
//! a hot standby, and promotion ([`crate::local::replication`]).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::{Postgres, ADMIN};
use crate::local::replication::Replication;
use crate::local::{prepare_dirs, proc, remove_earlier_copies, scratch_name, Instance, LocalError};

/// What `pg_hba.conf` needs for a replica to copy and follow its primary over the
/// primary's private socket (only the database user reaches it, as for `local all`).
const HBA_REPLICATION: &str = "local replication all trust";

impl Postgres {
    /// Adds [`HBA_REPLICATION`] to the primary's `pg_hba.conf` if it lacks it (a file an
    /// older troved wrote: [`crate::local::access::pg_hba`] has the line now) and
    /// reloads it.
    pub(super) async fn allow_local_replication(
        &self,
        primary: &Instance,
    ) -> Result<(), LocalError> {
        let path = primary.data_dir().join("pg_hba.conf");
        let text =
            std::fs::read_to_string(&path).map_err(|e| LocalError::io("read pg_hba.conf", e))?;
        if text.lines().any(|l| l.trim() == HBA_REPLICATION) {
            return Ok(());
        }
        let text = format!(
            "{text}\n# troved: replicas copy and follow over the socket.\n{HBA_REPLICATION}\n"
        );
        std::fs::write(&path, text).map_err(|e| LocalError::io("write pg_hba.conf", e))?;
        self.psql(primary, ADMIN, "SELECT pg_reload_conf();", &[])
            .await?;
        // The postmaster reads the file when it handles the signal: give it a moment
        // before the base backup connects.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    /// `pg_basebackup -R` of `primary` into `target` (which must not exist).
    pub(super) async fn base_backup(
        &self,
        primary: &Instance,
        target: &Path,
    ) -> Result<(), LocalError> {
        let cwd = target.parent().unwrap_or(target);
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("pg_basebackup"), cwd);
        cmd.arg("-h")
            .arg(primary.run_dir())
            .arg("-p")
            .arg(primary.port.to_string())
            .args(["-U", ADMIN, "-w", "-D"])
            .arg(target)
            // -R: standby.signal and primary_conninfo (the same socket); -X stream: the
            // WAL written during the copy comes along; -c fast: no wait for a checkpoint;
            // -N: no fsync of each file, as for a template copy: the standby's first
            // start syncs its data directory before it recovers (a backup is not a
            // clean shutdown), and the copy took seconds longer with it.
            .args(["-R", "-X", "stream", "-c", "fast", "-N"]);
        proc::run(cmd, None, &[], self.opts.timeout * 4)
            .await
            .map(drop)
            .map_err(primary_busy_is_transient)
    }

    /// The one-line answer of `sql` run as the superuser.
    pub(super) async fn scalar(&self, inst: &Instance, sql: &str) -> Result<String, LocalError> {
        Ok(self.psql(inst, ADMIN, sql, &[]).await?.trim().to_string())
    }
}

/// A primary that cannot serve a base backup *yet* (starting, in crash recovery after a
/// backend was killed, shutting down for a restart) is worth a retry, not a failed
/// build: the error becomes an I/O one, which the provider reports as transient.
fn primary_busy_is_transient(e: LocalError) -> LocalError {
    const PASSING: [&str; 3] = [
        "the database system is in recovery mode",
        "the database system is starting up",
        "the database system is shutting down",
    ];
    match e {
        LocalError::Command { stderr, .. } if PASSING.iter().any(|p| stderr.contains(p)) => {
            LocalError::io(
                "reach the primary for a base backup",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, stderr.trim()),
            )
        }
        e => e,
    }
}

#[async_trait]
impl Replication for Postgres {
    async fn init_replica(&self, replica: &Instance, primary: &Instance) -> Result<(), LocalError> {
        prepare_dirs(&self.opts.user, replica)?;
        let data = replica.data_dir();
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        self.allow_local_replication(primary).await?;
        // Into a scratch name first, as a template copy does: a crash mid-copy never
        // leaves a partial data directory under the final name.
        remove_earlier_copies(&data).await;
        let partial = scratch_name(&data);
        if let Err(e) = self.base_backup(primary, &partial).await {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, &data)
            .await
            .map_err(|e| LocalError::io("rename the base backup", e))
    }

    async fn follow(&self, replica: &Instance, _primary: &Instance) -> Result<(), LocalError> {
        // The standby streams from its start (primary_conninfo of the base backup); wait
        // until it does, so that a replica shown ACTIVE is following.
        let sql = "SELECT status FROM pg_stat_wal_receiver;";
        let deadline = std::time::Instant::now() + self.opts.timeout;
        loop {
            if self.scalar(replica, sql).await? == "streaming" {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(LocalError::Timeout(
                    "the standby's WAL receiver".into(),
                    self.opts.timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn promote(&self, inst: &Instance) -> Result<(), LocalError> {
        if self.scalar(inst, "SELECT pg_is_in_recovery();").await? == "t" {
            let wait = self.opts.timeout.as_secs().max(1);
            let done = self
                .scalar(inst, &format!("SELECT pg_promote(true, {wait});"))
                .await?;
            if done != "t" {
                return Err(LocalError::Timeout(
                    "the promotion".into(),
                    self.opts.timeout,
                ));
            }
        }
        // Promotion removed standby.signal; nothing should name the old primary either.
        let sql = "ALTER SYSTEM RESET primary_conninfo;\nSELECT pg_reload_conf();";
        self.psql(inst, ADMIN, sql, &[]).await?;
        match std::fs::remove_file(inst.data_dir().join("standby.signal")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LocalError::io("remove standby.signal", e))
            }
            _ => Ok(()),
        }
    }

    // The switchover (issue #15) is in `super::switchover`.
    async fn is_replica(&self, inst: &Instance) -> Result<bool, LocalError> {
        Ok(self.scalar(inst, "SELECT pg_is_in_recovery();").await? == "t")
    }

    async fn freeze(&self, primary: &Instance) -> Result<String, LocalError> {
        self.freeze_now(primary).await
    }

    async fn thaw(&self, primary: &Instance) -> Result<(), LocalError> {
        self.thaw_now(primary).await
    }

    async fn catch_up(&self, replica: &Instance, position: &str) -> Result<(), LocalError> {
        self.catch_up_now(replica, position).await
    }

    async fn applied(&self, replica: &Instance) -> Result<u64, LocalError> {
        self.applied_now(replica).await
    }

    async fn become_source(&self, inst: &Instance) -> Result<(), LocalError> {
        self.allow_local_replication(inst).await
    }

    async fn repoint(&self, replica: &Instance, source: &Instance) -> Result<(), LocalError> {
        self.repoint_now(replica, source).await
    }

    async fn demote(&self, old: &Instance, source: &Instance) -> Result<(), LocalError> {
        self.demote_now(old, source).await
    }
}
