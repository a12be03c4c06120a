//! MariaDB GTID replicas: binary logs and server ids on every server, a consistent
//! `mariadb-dump` of the primary loaded into a fresh read-only server, `CHANGE MASTER TO
//! ... MASTER_USE_GTID = slave_pos`, and promotion ([`crate::local::replication`]).
//!
//! Why a dump rather than a physical copy: `mariadb-backup` is a separate Debian package
//! that the datastore does not depend on, and copying InnoDB files of a running server
//! is unsafe without it. `--single-transaction --master-data --gtid` takes a consistent
//! snapshot of InnoDB tables and the GTID position that matches it, under a global read
//! lock held only for the moment the snapshot starts.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Mariadb;
use crate::local::quote::{mariadb_account, mariadb_ident, mariadb_literal};
use crate::local::replication::{generate_password, primary_host, Replication};
use crate::local::{log_tail, proc, Engine, Instance, LocalError};

/// The file in the instance directory that marks a replica: its server starts with
/// `read_only` until it is promoted.
pub(super) const REPLICA_MARKER: &str = "replica";

/// Where the dump of the primary is kept while it is loaded: `primary-<attempt>.sql`, a
/// name of its own per attempt, so that a dump tool orphaned by a killed troved (it
/// outlives it) never writes into the file a later attempt loads.
const DUMP_PREFIX: &str = "primary";

/// The file in the instance directory that says a copy of the primary is under way: one
/// found by a later attempt was cut short (troved killed), and is started over.
const COPYING_MARKER: &str = "copying";

/// Schemas of the server itself, which a replica does not copy.
const SYSTEM_SCHEMAS: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";

/// The file in the instance directory that says the server is (or was) a replication
/// source: it keeps a binary log from then on.
pub(super) const SOURCE_MARKER: &str = "replication-source";

/// Option-file entries a server gets, before the configuration group's values: a server
/// id unique among the live servers (their ports are) and a relay log name; a binary log
/// with upstream Trove's retention once it is a replication source (only then: a binary
/// log takes the user's volume space, and on a full volume MariaDB waits for space before
/// any logged write, even the `DELETE` that would free some); `read_only` for a replica.
pub(super) fn server_options(inst: &Instance) -> Vec<(String, String)> {
    let mut options = vec![
        ("relay_log", "relay-bin".to_string()),
        ("server_id", inst.port.to_string()),
    ];
    if inst.dir.join(SOURCE_MARKER).exists() {
        options.extend([
            ("log_bin", "mariadb-bin".to_string()),
            ("expire_logs_days", "10".to_string()),
            ("max_binlog_size", "100M".to_string()),
        ]);
    }
    if inst.dir.join(REPLICA_MARKER).exists() {
        options.push(("read_only", "1".into()));
    }
    options
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

impl Mariadb {
    /// The answer of `SHOW SLAVE STATUS` (empty when no primary is configured).
    pub(super) async fn slave_status(&self, inst: &Instance) -> Result<String, LocalError> {
        Ok(self
            .sql(inst, "SHOW SLAVE STATUS;", &[])
            .await?
            .trim()
            .to_string())
    }

    /// A primary becomes a replication source: marked so, and restarted with a binary
    /// log if it runs without one (its first replica).
    pub(super) async fn ensure_binlog(&self, primary: &Instance) -> Result<(), LocalError> {
        std::fs::write(primary.dir.join(SOURCE_MARKER), "")
            .map_err(|e| LocalError::io("write the replication source marker", e))?;
        if self.sql(primary, "SELECT @@log_bin;", &[]).await?.trim() == "1" {
            return Ok(());
        }
        tracing::info!(
            port = primary.port,
            "restarting the primary with a binary log"
        );
        self.restart(primary).await.map(drop)
    }

    /// Creates (or resets) the replica's replication account on the primary; its
    /// (name, host, password).
    pub(super) async fn replication_account(
        &self,
        replica: &Instance,
        primary: &Instance,
    ) -> Result<(String, String, String), LocalError> {
        let name = format!("troved_repl_{}", replica.port);
        let host = primary_host(primary).to_string();
        let password = generate_password();
        let account = mariadb_account(&name, &host)?;
        let pw = mariadb_literal(&password)?;
        let sql = format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw};\n\
             ALTER USER {account} IDENTIFIED BY {pw};\n\
             GRANT REPLICATION SLAVE ON *.* TO {account};\n"
        );
        self.sql(primary, &sql, &[&password]).await?;
        Ok((name, host, password))
    }

    /// Dumps the primary's databases and accounts with the matching GTID position into
    /// the replica's directory, loads it into the replica (outside the replica's own
    /// binary log), and removes the dump.
    async fn copy_from(&self, replica: &Instance, primary: &Instance) -> Result<(), LocalError> {
        let sql = format!(
            "SELECT schema_name FROM information_schema.schemata \
             WHERE schema_name NOT IN ({SYSTEM_SCHEMAS});"
        );
        let databases = self.sql(primary, &sql, &[]).await?;
        remove_earlier_dumps(&replica.dir);
        let dump = replica.dir.join(format!(
            "{DUMP_PREFIX}-{}.sql",
            uuid::Uuid::new_v4().simple()
        ));
        // Next to the client (both are Debian's mariadb-client; discovery finds the
        // client, not the dump tool).
        let tool = self.install.tool("mariadb").with_file_name("mariadb-dump");
        let mut cmd = self.opts.user.command(&tool, &replica.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", Self::socket(primary).display()))
            .arg(format!("--user={}", self.opts.user.name))
            .args(["--single-transaction", "--master-data=1", "--gtid"])
            .args(["--routines", "--events", "--triggers"])
            // Accounts as `CREATE USER IF NOT EXISTS` and grants: the replica's own
            // administration accounts exist already.
            .args(["--system=users", "--insert-ignore"])
            .arg(format!("--result-file={}", dump.display()));
        let names: Vec<&str> = databases.lines().filter(|l| !l.is_empty()).collect();
        if !names.is_empty() {
            cmd.arg("--databases");
            for name in names {
                mariadb_ident(name)?;
                if name.starts_with('-') {
                    return Err(LocalError::invalid("database name", "starts with '-'"));
                }
                cmd.arg(name);
            }
        }
        let limit = self.opts.timeout * 4;
        proc::run(cmd, None, &[], limit)
            .await
            .map_err(primary_gone_is_transient)?;
        let script = format!("SET SESSION sql_log_bin = 0;\nsource {}\n", dump.display());
        let loaded = proc::run(self.client(replica), Some(&script), &[], limit).await;
        let _ = std::fs::remove_file(&dump);
        loaded.map(drop)
    }

    /// Makes a fresh replica server again after a copy that was cut short: the tables
    /// it loaded are dropped with its data, and a loader left running by a killed troved
    /// loses its connection with the server it was feeding.
    async fn start_over(&self, replica: &Instance) -> Result<(), LocalError> {
        tracing::warn!(
            port = replica.port,
            "an earlier copy of the primary was cut short; starting over"
        );
        self.stop(replica).await?;
        match tokio::fs::remove_dir_all(replica.data_dir()).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LocalError::io("remove the replica's data", e))
            }
            _ => {}
        }
        self.init(replica).await?;
        self.start(replica).await.map(drop)
    }

    /// Waits until the replica's replication threads run (connected to the primary).
    pub(super) async fn wait_following(&self, replica: &Instance) -> Result<(), LocalError> {
        let sql = "SELECT variable_value FROM information_schema.global_status \
                   WHERE variable_name = 'SLAVE_RUNNING';";
        let deadline = Instant::now() + self.opts.timeout;
        loop {
            if self.sql(replica, sql, &[]).await?.trim() == "ON" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalError::StartFailed(format!(
                    "the replica does not follow its primary:\n{}",
                    log_tail(replica)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl Replication for Mariadb {
    async fn init_replica(
        &self,
        replica: &Instance,
        _primary: &Instance,
    ) -> Result<(), LocalError> {
        self.init(replica).await?;
        let marker = replica.dir.join(REPLICA_MARKER);
        std::fs::write(&marker, "read_only until promoted (detach replica)\n")
            .map_err(|e| LocalError::io("write the replica marker", e))
    }

    async fn follow(&self, replica: &Instance, primary: &Instance) -> Result<(), LocalError> {
        if self.slave_status(replica).await?.is_empty() {
            let copying = replica.dir.join(COPYING_MARKER);
            if copying.exists() {
                self.start_over(replica).await?;
            }
            std::fs::write(&copying, "")
                .map_err(|e| LocalError::io("write the copying marker", e))?;
            self.ensure_binlog(primary).await?;
            let (user, host, password) = self.replication_account(replica, primary).await?;
            self.copy_from(replica, primary).await?;
            let pw = mariadb_literal(&password)?;
            let sql = format!(
                "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, \
                 MASTER_PASSWORD = {pw}, MASTER_USE_GTID = slave_pos;\n",
                mariadb_literal(&host)?,
                primary.port,
                mariadb_literal(&user)?,
            );
            self.sql(replica, &sql, &[&password]).await?;
            std::fs::remove_file(&copying)
                .map_err(|e| LocalError::io("remove the copying marker", e))?;
        }
        self.sql(replica, "START SLAVE;", &[]).await?;
        self.wait_following(replica).await
    }

    async fn promote(&self, inst: &Instance) -> Result<(), LocalError> {
        let sql = "STOP SLAVE;\nRESET SLAVE ALL;\nSET GLOBAL read_only = 0;";
        self.sql(inst, sql, &[]).await?;
        match std::fs::remove_file(inst.dir.join(REPLICA_MARKER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LocalError::io("remove the replica marker", e))
            }
            _ => {}
        }
        // The option file without read_only, for the next start.
        self.write_options(inst, &Self::saved_values(inst))
    }

    // The switchover (issue #15) is in `super::switchover`.
    async fn is_replica(&self, inst: &Instance) -> Result<bool, LocalError> {
        Ok(inst.dir.join(REPLICA_MARKER).exists())
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
        self.become_source_now(inst).await
    }

    async fn repoint(&self, replica: &Instance, source: &Instance) -> Result<(), LocalError> {
        self.repoint_now(replica, source, "slave_pos").await
    }

    async fn demote(&self, old: &Instance, source: &Instance) -> Result<(), LocalError> {
        self.demote_now(old, source).await
    }
}

/// A primary that went away during the dump (restarted for its binary log, or by the
/// supervisor) is worth a retry, which starts the copy over; not a failed build. The
/// error becomes an I/O one, which the provider reports as transient.
fn primary_gone_is_transient(e: LocalError) -> LocalError {
    const PASSING: [&str; 3] = [
        "Lost connection to server",
        "Server has gone away",
        "Can't connect to",
    ];
    match e {
        LocalError::Command { stderr, .. } if PASSING.iter().any(|p| stderr.contains(p)) => {
            LocalError::io(
                "dump the primary",
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, stderr.trim()),
            )
        }
        e => e,
    }
}

/// Removes the dumps of earlier attempts (an orphaned dump tool keeps writing into its
/// unlinked file, harmlessly).
fn remove_earlier_dumps(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(DUMP_PREFIX) && name.ends_with(".sql") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_logs_binlogs_every_server_has_its_port_as_id_and_a_replica_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance {
            dir: dir.path().to_path_buf(),
            port: 31007,
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ram_mb: None,
        };
        let has = |options: &[(String, String)], k: &str, v: &str| {
            options.iter().any(|(a, b)| a == k && b == v)
        };
        let options = server_options(&inst);
        assert!(has(&options, "server_id", "31007"), "{options:?}");
        assert!(!options.iter().any(|(k, _)| k == "log_bin"), "{options:?}");
        assert!(!options.iter().any(|(k, _)| k == "read_only"));
        std::fs::write(dir.path().join(SOURCE_MARKER), "").unwrap();
        assert!(has(&server_options(&inst), "log_bin", "mariadb-bin"));
        std::fs::write(dir.path().join(REPLICA_MARKER), "").unwrap();
        assert!(has(&server_options(&inst), "read_only", "1"));
    }
}
