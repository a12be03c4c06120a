//! The guest's upgrade on the local provider: the server restarted on the target
//! version's binaries, with its data.
//!
//! Order (each step idempotent, so a retried step resumes where the previous attempt
//! stopped): check that the target can run (its binaries are there; the
//! data directory's format fits it), record the upgrade in `state.json`, stop the server
//! (fast shutdown), switch the record to the target version, start on the new binaries,
//! then let the datastore update its system tables (MariaDB: `mariadb-upgrade`) and
//! clear the record. Same major (PostgreSQL) or any series forward (MariaDB): the same
//! data directory. A PostgreSQL major upgrade would need `pg_upgrade` into a new data
//! directory; it is refused before anything is touched (Debian ships one major).
//!
//! What it must not do: touch the server before the target is known to be runnable,
//! or leave it stopped when the new binaries fail to start (it starts the old ones
//! again and reports the failure).

use std::path::Path;

use super::state::{PendingUpgrade, ServerRec};
use super::{provider_error, transient, LocalProvider};
use crate::local::{mariadb::Mariadb, proc, Datastore, Engine, Installation, Instance, LocalError};
use crate::saga::ports::{IdempotencyKey, ProviderError};

/// Where an upgrade of one server stands, from its record.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// The server is on the target version (a finished upgrade, or the same version).
    Done,
    /// Switched to the target from `from`; its start (and the datastore's own upgrade)
    /// remain.
    Switched { from: (String, String) },
    /// Not switched yet: the server still runs (or ran) its current version.
    Before,
}

/// Where the upgrade of a server on `current` to `target` stands, given its pending
/// upgrade (of this request or an earlier one: only what the record says counts).
fn stage(
    pending: Option<&PendingUpgrade>,
    current: &(String, String),
    target: &(String, String),
) -> Stage {
    match pending {
        Some(p) if &p.to == current && current == target => Stage::Switched {
            from: p.from.clone(),
        },
        _ if current == target => Stage::Done,
        _ => Stage::Before,
    }
}

impl LocalProvider {
    /// The work of `GuestAgent::upgrade`, under the server's lock. Where a previous
    /// attempt stopped is read from the record alone (which binaries the server is on,
    /// and the pending upgrade), so a retry under any key resumes correctly.
    pub(super) async fn upgrade_now(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        version: &str,
    ) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let current = match (&rec.datastore, rec.prepared) {
            (Some(d), true) => d.clone(),
            _ => {
                return Err(ProviderError::Permanent(format!(
                    "server {server_id} is not set up: nothing to upgrade"
                )))
            }
        };
        let target = (current.0.clone(), version.to_string());
        let stage = stage(rec.upgrade.as_ref(), &current, &target);
        let engine = self.inner.engines.get(&target).cloned().ok_or_else(|| {
            ProviderError::Permanent(format!(
                "datastore {} version {} is not installed on this machine",
                target.0, target.1
            ))
        })?;
        let inst = self.instance(&rec);
        let from = match stage {
            Stage::Done => {
                // Nothing to switch (a retry after the end, or the same version): the
                // server only has to run.
                engine.start(&inst).await.map_err(provider_error)?;
                if rec.upgrade.is_some() {
                    self.set_upgrade(server_id, None).await?;
                }
                return Ok(());
            }
            Stage::Switched { from } => from,
            Stage::Before => {
                check_runnable(engine.installation())?;
                self.check_compatible(&current, engine.installation(), &inst)?;
                self.switch(server_id, key, &current, &target, engine.as_ref(), &inst)
                    .await?;
                current
            }
        };
        self.start_switched(server_id, &from, engine.as_ref(), &inst)
            .await?;
        self.after_start(engine.installation(), &inst).await?;
        self.set_upgrade(server_id, None).await
    }

    /// Records the upgrade, stops the server, then records it on the target version.
    async fn switch(
        &self,
        server_id: &str,
        key: &IdempotencyKey,
        from: &(String, String),
        to: &(String, String),
        engine: &dyn Engine,
        inst: &Instance,
    ) -> Result<(), ProviderError> {
        let pending = PendingUpgrade {
            key: key.0.clone(),
            from: from.clone(),
            to: to.clone(),
        };
        self.set_upgrade(server_id, Some(pending)).await?;
        tracing::info!(
            server = server_id,
            from = %from.1,
            to = %to.1,
            "upgrade: stopping the server"
        );
        // Any engine of the datastore stops it: the stop signals the recorded process.
        engine.stop(inst).await.map_err(provider_error)?;
        self.set_datastore(server_id, to).await
    }

    /// Starts the switched server on the new binaries; if they do not start, goes back
    /// to the old ones (the data is unchanged by a minor switch) and reports why.
    async fn start_switched(
        &self,
        server_id: &str,
        from: &(String, String),
        engine: &dyn Engine,
        inst: &Instance,
    ) -> Result<(), ProviderError> {
        let err = match engine.start(inst).await {
            Ok(record) => {
                tracing::info!(server = server_id, version = %record.version, "upgrade: started");
                return Ok(());
            }
            Err(e @ (LocalError::Io { .. } | LocalError::Timeout(..))) => {
                return Err(transient(e));
            }
            Err(e) => e,
        };
        let Some(old) = self.inner.engines.get(from).cloned() else {
            return Err(provider_error(err));
        };
        tracing::warn!(
            server = server_id,
            error = %err,
            "upgrade: the new binaries did not start; back to the old ones"
        );
        self.set_datastore(server_id, from).await?;
        self.set_upgrade(server_id, None).await?;
        old.start(inst).await.map_err(provider_error)?;
        Err(ProviderError::Permanent(format!(
            "the server did not start on version {}; it runs version {} again: {err}",
            engine.installation().version,
            old.installation().version
        )))
    }

    /// Refuses what the target's binaries cannot run from the current data: a PostgreSQL
    /// data directory of another major (that needs `pg_upgrade`), a MariaDB downgrade
    /// across series (MariaDB does not support it).
    fn check_compatible(
        &self,
        current: &(String, String),
        to: &Installation,
        inst: &Instance,
    ) -> Result<(), ProviderError> {
        match to.datastore {
            Datastore::Postgresql => {
                let data_major = std::fs::read_to_string(inst.data_dir().join("PG_VERSION"))
                    .map(|s| s.trim().to_string())
                    .map_err(|e| transient(LocalError::io("read PG_VERSION", e)))?;
                if data_major != to.series {
                    return Err(ProviderError::Permanent(format!(
                        "upgrading PostgreSQL {data_major} to {} is a major upgrade (pg_upgrade), \
                         which the local provider does not support: only versions of the same \
                         major can be switched",
                        to.series
                    )));
                }
                Ok(())
            }
            Datastore::Mariadb => {
                let from = self
                    .inner
                    .engines
                    .get(current)
                    .map(|e| e.installation().series.clone());
                match from {
                    Some(from) if series_key(&from) > series_key(&to.series) => {
                        Err(ProviderError::Permanent(format!(
                            "MariaDB {from} cannot be downgraded to {}",
                            to.series
                        )))
                    }
                    _ => Ok(()),
                }
            }
            Datastore::Mysql => Err(ProviderError::Permanent(
                "the local provider does not run MySQL".into(),
            )),
        }
    }

    /// The datastore's own upgrade after a start on new binaries: MariaDB updates its
    /// system tables with `mariadb-upgrade` (over the private socket, as the
    /// administration account), which records the version it upgraded to in the data
    /// directory's `mysql_upgrade_info` (so running it again is quick). Its output is
    /// appended to the server's log. PostgreSQL needs nothing within a major. Failures
    /// are transient: the saga retries a few times before the upgrade fails.
    async fn after_start(&self, to: &Installation, inst: &Instance) -> Result<(), ProviderError> {
        if to.datastore != Datastore::Mariadb {
            return Ok(());
        }
        let cfg = &self.inner.cfg;
        let tool = mariadb_upgrade_tool(to);
        let mut cmd = cfg.user.command(&tool, &inst.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", Mariadb::socket(inst).display()))
            .arg(format!("--user={}", cfg.user.name));
        // Retried as transient: it may meet a server still starting, or the lock of a
        // `mariadb-upgrade` left running by a troved killed mid-upgrade.
        let out = proc::run(cmd, None, &[], cfg.timeout * 4)
            .await
            .map_err(transient)?;
        let text = format!("troved: mariadb-upgrade ({}):\n{out}\n", to.version);
        append(&inst.log_path(), &text);
        tracing::info!(version = %to.version, "upgrade: mariadb-upgrade done");
        Ok(())
    }

    async fn set_datastore(
        &self,
        server_id: &str,
        to: &(String, String),
    ) -> Result<(), ProviderError> {
        self.change(|st| {
            let s = server_mut(&mut st.servers, server_id)?;
            s.datastore = Some(to.clone());
            Ok(())
        })
        .await
    }

    /// Sets (or with `None`, clears) the server's pending upgrade.
    async fn set_upgrade(
        &self,
        server_id: &str,
        pending: Option<PendingUpgrade>,
    ) -> Result<(), ProviderError> {
        self.change(|st| {
            let s = server_mut(&mut st.servers, server_id)?;
            s.upgrade = pending;
            Ok(())
        })
        .await
    }
}

fn server_mut<'s>(
    servers: &'s mut std::collections::BTreeMap<String, ServerRec>,
    id: &str,
) -> Result<&'s mut ServerRec, ProviderError> {
    servers
        .get_mut(id)
        .filter(|s| !s.deleted)
        .ok_or_else(|| ProviderError::NotFound(format!("server {id}")))
}

/// Refuses a target whose binaries are gone (removed since troved started) before the
/// server is touched: every tool the engine runs must still be an executable file.
fn check_runnable(to: &Installation) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    let missing: Vec<String> = to
        .tools
        .values()
        .filter(|p| {
            !std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ProviderError::Permanent(format!(
        "{} {} cannot run: missing {}",
        to.datastore.manager(),
        to.version,
        missing.join(", ")
    )))
}

/// `mariadb-upgrade` beside the `mariadb` client (Debian: `/usr/bin`, while `mariadbd`
/// is in `/usr/sbin`).
fn mariadb_upgrade_tool(to: &Installation) -> std::path::PathBuf {
    to.tool("mariadb").with_file_name("mariadb-upgrade")
}

/// A series as numbers (`10.11` → `[10, 11]`) for ordering.
fn series_key(series: &str) -> Vec<u32> {
    series.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// Appends `text` to a log file; a failure only loses the note.
fn append(path: &Path, text: &str) {
    use std::io::Write;
    let file = std::fs::OpenOptions::new().append(true).open(path);
    if let Ok(mut f) = file {
        let _ = f.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> (String, String) {
        ("postgresql".into(), name.into())
    }

    fn pending(from: &str, to: &str) -> PendingUpgrade {
        PendingUpgrade {
            key: "k".into(),
            from: v(from),
            to: v(to),
        }
    }

    #[test]
    fn a_retried_upgrade_resumes_where_the_record_says() {
        // Nothing recorded: switch, unless the server is on the target already.
        assert_eq!(stage(None, &v("a"), &v("b")), Stage::Before);
        assert_eq!(stage(None, &v("b"), &v("b")), Stage::Done);
        // Recorded, not switched yet (stopped or not): switch.
        assert_eq!(
            stage(Some(&pending("a", "b")), &v("a"), &v("b")),
            Stage::Before
        );
        // Switched: start (and the datastore's upgrade) remain.
        assert_eq!(
            stage(Some(&pending("a", "b")), &v("b"), &v("b")),
            Stage::Switched { from: v("a") }
        );
        // An unfinished upgrade to b, then a request for c: from b to c.
        assert_eq!(
            stage(Some(&pending("a", "b")), &v("b"), &v("c")),
            Stage::Before
        );
        // An upgrade never switched, then a request for the version it runs: done.
        assert_eq!(
            stage(Some(&pending("a", "b")), &v("a"), &v("a")),
            Stage::Done
        );
    }

    #[test]
    fn series_order_numerically() {
        assert!(series_key("10.11") > series_key("10.6"));
        assert!(series_key("11.4") > series_key("10.11"));
        assert_eq!(series_key("10.11"), series_key("10.11"));
    }
}
