//! MariaDB backups ([`crate::local::backup`]): `mariadb-backup --stream=xbstream` of the
//! running server (Debian package `mariadb-backup`, next to the client), full or
//! incremental, and restores that extract, prepare and move the files into place.
//!
//! The tool logs in over the private socket as the database user's own account
//! (`unix_socket`, as every administration: no password), and runs as that user, which
//! owns the data directory it copies. Where a backup ended (`to_lsn`) comes from the
//! `xtrabackup_checkpoints` it also writes into a scratch directory (`--extra-lsndir`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::Mariadb;
use crate::backup_store::Body;
use crate::local::backup::{feed, Backups, ToolStream};
use crate::local::quote::{mariadb_account, mariadb_literal};
use crate::local::{proc, Instance, LocalError};

/// Files of the source's data directory a restored server must not start with: what it
/// replicated from (a replica's), and what the backup tool adds.
const NOT_INHERITED: &[&str] = &[
    "master.info",
    "relay-log.info",
    "multi-master.info",
    "xtrabackup_binlog_pos_innodb",
    "xtrabackup_info",
];

/// The prefix of the replication accounts a primary makes for its replicas
/// (`crate::local::mariadb::replica`): a restored copy must not let them in.
const REPLICATION_ACCOUNTS: &str = "troved_repl_";

impl Mariadb {
    /// A tool installed next to the client (`mariadb-backup`, `mbstream`).
    fn backup_tool(&self, name: &str, cwd: &Path) -> tokio::process::Command {
        let tool = self.install.tool("mariadb").with_file_name(name);
        self.opts.user.command(&tool, cwd)
    }

    /// `mariadb-backup --prepare` of `full`, applying `incremental` if given.
    async fn prepare_backup(
        &self,
        full: &Path,
        incremental: Option<&Path>,
    ) -> Result<(), LocalError> {
        let mut cmd = self.backup_tool("mariadb-backup", full);
        cmd.args(["--no-defaults", "--prepare"])
            .arg(format!("--target-dir={}", full.display()));
        if let Some(dir) = incremental {
            cmd.arg(format!("--incremental-dir={}", dir.display()));
        }
        proc::run(cmd, None, &[], self.opts.timeout * 10)
            .await
            .map(drop)
    }
}

#[async_trait]
impl Backups for Mariadb {
    fn incremental(&self) -> bool {
        true
    }

    async fn backup(
        &self,
        inst: &Instance,
        scratch: &Path,
        since: Option<&str>,
    ) -> Result<ToolStream, LocalError> {
        let mut cmd = self.backup_tool("mariadb-backup", scratch);
        cmd.args(["--no-defaults", "--backup", "--stream=xbstream"])
            .arg(format!("--socket={}", Self::socket(inst).display()))
            .arg(format!("--user={}", self.opts.user.name))
            .arg(format!("--datadir={}", inst.data_dir().display()))
            .arg(format!("--target-dir={}", scratch.display()))
            .arg(format!("--extra-lsndir={}", scratch.display()))
            .arg(format!("--tmpdir={}", scratch.display()));
        if let Some(lsn) = since {
            if lsn.is_empty() || !lsn.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LocalError::invalid("parent position", lsn.to_string()));
            }
            cmd.arg(format!("--incremental-lsn={lsn}"));
        }
        ToolStream::spawn(cmd)
    }

    async fn finish(&self, _inst: &Instance, scratch: &Path) -> Result<Option<String>, LocalError> {
        let path = scratch.join("xtrabackup_checkpoints");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LocalError::io("read xtrabackup_checkpoints", e))?;
        let to_lsn = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == "to_lsn")
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| LocalError::invalid("xtrabackup_checkpoints", "no to_lsn"))?;
        Ok(Some(to_lsn))
    }

    async fn unpack(&self, into: &Path, artifact: Body) -> Result<(), LocalError> {
        let mut cmd = self.backup_tool("mbstream", into);
        cmd.arg("-x").arg("-C").arg(into);
        feed(cmd, artifact).await
    }

    async fn assemble(&self, parts: &[PathBuf], data: &Path) -> Result<(), LocalError> {
        let Some((full, incrementals)) = parts.split_first() else {
            return Err(LocalError::invalid("backup chain", "no artifact"));
        };
        self.prepare_backup(full, None).await?;
        for dir in incrementals {
            self.prepare_backup(full, Some(dir)).await?;
        }
        let mut cmd = self.backup_tool("mariadb-backup", full);
        cmd.args(["--no-defaults", "--move-back"])
            .arg(format!("--target-dir={}", full.display()))
            .arg(format!("--datadir={}", data.display()));
        proc::run(cmd, None, &[], self.opts.timeout * 10).await?;
        remove_not_inherited(data)
    }

    async fn adopt(&self, inst: &Instance) -> Result<Vec<(String, String)>, LocalError> {
        // Out of the binary log: what is reset here is this server's own business.
        let reset = "SET SESSION sql_log_bin = 0;\nSTOP ALL SLAVES;\nRESET SLAVE ALL;\n\
                     SET GLOBAL gtid_slave_pos = '';";
        self.sql(inst, reset, &[]).await?;
        let admin = mariadb_literal(&self.opts.user.name)?;
        let prefix = mariadb_literal(REPLICATION_ACCOUNTS)?;
        let len = REPLICATION_ACCOUNTS.len();
        let repl =
            format!("SELECT User, Host FROM mysql.global_priv WHERE LEFT(User, {len}) = {prefix};");
        let mut drop = String::from("SET SESSION sql_log_bin = 0;\n");
        for (name, host) in pairs(&self.sql(inst, &repl, &[]).await?) {
            drop.push_str(&format!(
                "DROP USER IF EXISTS {};\n",
                mariadb_account(&name, &host)?
            ));
        }
        self.sql(inst, &drop, &[]).await?;
        // The users of the data: not the administration accounts, not roles (no host),
        // not the per-CIDR copies troved made of them (`network/netmask` hosts).
        let users = format!(
            "SELECT User, Host FROM mysql.global_priv WHERE User NOT IN \
             ('root', 'mariadb.sys', 'PUBLIC', '', {admin}) AND Host <> '' \
             AND LOCATE('/', Host) = 0 ORDER BY User, Host;"
        );
        Ok(pairs(&self.sql(inst, &users, &[]).await?))
    }
}

/// `(name, host)` rows of the client's batch output.
fn pairs(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(u, h)| (u.to_string(), h.to_string()))
        .collect()
}

/// Removes [`NOT_INHERITED`] and the source's relay and binary logs from `data`.
fn remove_not_inherited(data: &Path) -> Result<(), LocalError> {
    let entries =
        std::fs::read_dir(data).map_err(|e| LocalError::io("list the restored data", e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let logs = name.starts_with("relay-bin.") || name.starts_with("mariadb-bin.");
        if logs || NOT_INHERITED.contains(&name.as_str()) {
            std::fs::remove_file(e.path())
                .map_err(|err| LocalError::io(&format!("remove {name}"), err))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rows_become_accounts() {
        assert_eq!(
            pairs("app\t%\nother\t10.0.0.1\n\n"),
            vec![
                ("app".to_string(), "%".to_string()),
                ("other".to_string(), "10.0.0.1".to_string())
            ]
        );
    }
}
