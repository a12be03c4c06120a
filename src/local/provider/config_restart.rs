//! A restart for configuration values that cannot take the server down for good.
//!
//! The engines refuse what they can recognize as a bad value before anything changes
//! (MariaDB's `SET GLOBAL` errors, PostgreSQL's `postgres -C` check of the files). A
//! value that passes those checks can still stop the server from starting (PostgreSQL's
//! `shared_buffers = '1TB'`: shared memory the machine does not have). Then the
//! configuration files are put back as they were before the apply, the server is
//! started on them again, and the apply fails with a permanent error naming the values
//! and the server's own reason, as `upgrade::start_switched` goes back to the old
//! binaries. The values that failed are remembered for the server (in memory), so that
//! the saga's retries of the same apply do not restart the server again and again: a
//! retry with the same values fails at once; other values are tried.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{provider_error, LocalProvider};
use crate::local::{Engine, Instance, LocalError};
use crate::saga::ports::ProviderError;

/// The configuration files of an instance as they were before an apply: each engine's
/// (PostgreSQL's `troved.conf`, MariaDB's `my.cnf` and `config.json`; a file the other
/// engine has is simply absent), with their contents (`None`: did not exist).
pub(super) struct ConfigFiles(Vec<(PathBuf, Option<Vec<u8>>)>);

impl ConfigFiles {
    pub(super) fn snapshot(inst: &Instance) -> ConfigFiles {
        let paths = [
            inst.data_dir().join("troved.conf"),
            inst.dir.join("my.cnf"),
            inst.dir.join("config.json"),
        ];
        ConfigFiles(
            paths
                .into_iter()
                .map(|p| {
                    let bytes = std::fs::read(&p).ok();
                    (p, bytes)
                })
                .collect(),
        )
    }

    /// Writes every file back as it was (an existing file keeps its owner).
    fn restore(&self) -> Result<(), LocalError> {
        for (path, bytes) in &self.0 {
            match bytes {
                Some(b) => std::fs::write(path, b)
                    .map_err(|e| LocalError::io("restore a configuration file", e))?,
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(LocalError::io("remove a configuration file", e));
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

/// Per server, the values whose restart failed and why.
#[derive(Default)]
pub(super) struct RefusedConfigs(std::sync::Mutex<HashMap<String, Refused>>);

struct Refused {
    values: Vec<(String, String)>,
    why: String,
}

impl RefusedConfigs {
    /// The error of an earlier failed restart with exactly these values.
    pub(super) fn check(
        &self,
        server_id: &str,
        values: &[(String, String)],
    ) -> Result<(), ProviderError> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(server_id) {
            Some(r) if r.values == values => Err(ProviderError::Permanent(r.why.clone())),
            _ => Ok(()),
        }
    }

    fn remember(&self, server_id: &str, values: &[(String, String)], why: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            server_id.to_string(),
            Refused {
                values: values.to_vec(),
                why: why.to_string(),
            },
        );
    }

    fn forget(&self, server_id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(server_id);
    }
}

/// `name = value, ...` for messages.
fn listed(values: &[(String, String)]) -> String {
    let parts: Vec<String> = values.iter().map(|(n, v)| format!("{n} = {v}")).collect();
    if parts.is_empty() {
        "(none)".to_string()
    } else {
        parts.join(", ")
    }
}

impl LocalProvider {
    /// Restarts the server of `inst` for `values` (written by the engine's
    /// `apply_config`); if it does not start, goes back to the files of `before`.
    pub(super) async fn restart_for_configuration(
        &self,
        server_id: &str,
        engine: &dyn Engine,
        inst: &Instance,
        before: &ConfigFiles,
        values: &[(String, String)],
    ) -> Result<(), ProviderError> {
        engine.stop(inst).await.map_err(provider_error)?;
        let err = match engine.start(inst).await {
            Ok(_) => {
                self.inner.refused_configs.forget(server_id);
                return Ok(());
            }
            Err(e) => e,
        };
        tracing::warn!(
            server = server_id,
            error = %err,
            "the server did not start with its new configuration; back to the previous one"
        );
        before.restore().map_err(provider_error)?;
        engine.start(inst).await.map_err(provider_error)?;
        let why = format!(
            "the server did not start with the configuration values {}; it runs with its \
             previous values again: {err}",
            listed(values)
        );
        self.inner.refused_configs.remember(server_id, values, &why);
        Err(ProviderError::Permanent(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &str) -> Vec<(String, String)> {
        vec![("shared_buffers".to_string(), v.to_string())]
    }

    #[test]
    fn a_refused_configuration_is_refused_again_until_the_values_change() {
        let r = RefusedConfigs::default();
        assert!(r.check("s1", &values("1TB")).is_ok());
        r.remember("s1", &values("1TB"), "no memory");
        assert!(matches!(
            r.check("s1", &values("1TB")),
            Err(ProviderError::Permanent(why)) if why == "no memory"
        ));
        assert!(r.check("s1", &values("128MB")).is_ok());
        assert!(r.check("s2", &values("1TB")).is_ok());
        r.forget("s1");
        assert!(r.check("s1", &values("1TB")).is_ok());
    }

    #[test]
    fn files_are_put_back_or_removed_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance {
            dir: dir.path().to_path_buf(),
            port: 1,
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ram_mb: None,
        };
        std::fs::create_dir_all(inst.data_dir()).unwrap();
        std::fs::write(inst.dir.join("my.cnf"), "old").unwrap();
        let before = ConfigFiles::snapshot(&inst);
        std::fs::write(inst.dir.join("my.cnf"), "new").unwrap();
        std::fs::write(inst.data_dir().join("troved.conf"), "new").unwrap();
        before.restore().unwrap();
        assert_eq!(
            std::fs::read_to_string(inst.dir.join("my.cnf")).unwrap(),
            "old"
        );
        assert!(!inst.data_dir().join("troved.conf").exists());
    }
}
