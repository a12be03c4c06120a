//! Provider selection at start (`--provider local|sim|auto`): what is installed decides
//! `auto`, and the local provider's catalog and configuration come from it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LocalConfig, PortRange};
use crate::catalog::installed::InstalledVersion;
use crate::catalog::StaticCatalog;
use crate::config::ServeConfig;
use crate::local::discover::{self, SearchPaths};
use crate::local::{user, Datastore, DbUser, Installation};

/// Which provider serves the saga's ports.
#[derive(Debug)]
pub enum Choice {
    /// The simulated cloud (`cloud.db`).
    Sim,
    /// Real servers on this machine.
    Local(LocalConfig),
}

/// Decides the provider from `--provider` and what is installed, and returns the
/// catalog to serve with it (sim mode: `catalog` unchanged). The log says which and why.
pub async fn choose(
    cfg: &ServeConfig,
    catalog: StaticCatalog,
) -> Result<(StaticCatalog, Choice), String> {
    let mode = cfg.provider.as_str();
    if mode == "sim" {
        tracing::info!("provider: sim (--provider sim): the simulated cloud");
        return Ok((catalog, Choice::Sim));
    }
    if mode != "local" && mode != "auto" {
        return Err(format!(
            "--provider must be local, sim or auto, not `{mode}`"
        ));
    }
    let found = runnable(&catalog.named_bin_dirs()).await;
    if found.is_empty() {
        let why = "no PostgreSQL or MariaDB server binaries are installed (Debian packages postgresql, mariadb-server)";
        if mode == "auto" {
            tracing::info!("provider: sim (--provider auto): {why}");
            return Ok((catalog, Choice::Sim));
        }
        return Err(format!("--provider local: {why}"));
    }
    let names: Vec<String> = found
        .iter()
        .map(|i| {
            format!(
                "{} {} in {}",
                i.datastore.manager(),
                i.version,
                i.bin_dir.display()
            )
        })
        .collect();
    tracing::info!(provider = "local", mode, found = %names.join(", "), "provider: local, running real database servers");
    let catalog = catalog.localized(&found.iter().map(installed_version).collect::<Vec<_>>());
    let local = local_config(cfg, &catalog, &found).await?;
    Ok((catalog, Choice::Local(local)))
}

/// The local provider's configuration from the flags and the localized catalog.
async fn local_config(
    cfg: &ServeConfig,
    catalog: &StaticCatalog,
    found: &[Installation],
) -> Result<LocalConfig, String> {
    let ports: PortRange = cfg
        .local_ports
        .parse()
        .map_err(|e| format!("--local-ports: {e}"))?;
    let user = DbUser::resolve(user::DEFAULT_LOCAL_USER)
        .await
        .map_err(|e| format!("--provider local: {e}"))?;
    let public_bind: IpAddr = cfg.local_public_bind;
    Ok(LocalConfig {
        root: cfg.local_root(),
        ports,
        public_bind,
        versions: versions(catalog, found),
        user,
        timeout: Duration::from_secs(60),
    })
}

/// (manager, version name, installation) of every active version.
fn versions(
    catalog: &StaticCatalog,
    found: &[Installation],
) -> Vec<(String, String, Installation)> {
    let mut out = Vec::new();
    for ds in &catalog.datastores {
        for v in ds.versions.iter().filter(|v| v.active) {
            let Some(dir) = catalog.version_extras(v.id).bin_dir else {
                continue;
            };
            if let Some(i) = found
                .iter()
                .find(|i| i.datastore.manager() == v.manager && i.bin_dir == dir)
            {
                out.push((v.manager.clone(), v.name.clone(), i.clone()));
            }
        }
    }
    out
}

fn installed_version(i: &Installation) -> InstalledVersion {
    InstalledVersion {
        manager: i.datastore.manager().to_string(),
        series: i.series.clone(),
        version: i.version.clone(),
        bin_dir: i.bin_dir.clone(),
    }
}

/// The installations troved can run (PostgreSQL, MariaDB; a MySQL is never run, see
/// `discover`): the machine's, and those in the directories the catalog names.
async fn runnable(named: &[PathBuf]) -> Vec<Installation> {
    let mut found = discover::installed().await;
    for dir in named {
        let mut path = vec![dir.clone()];
        path.extend(SearchPaths::system().path);
        let paths = SearchPaths {
            postgres_root: dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(dir)
                .to_path_buf(),
            path,
        };
        for i in discover::installed_in(&paths).await {
            if &i.bin_dir == dir && !found.contains(&i) {
                found.push(i);
            }
        }
    }
    found.retain(|i| i.datastore != Datastore::Mysql);
    found
}
