//! Assembly: opens the stores, rebuilds the read models from the log, starts the
//! projector and the lifecycle driver, and serves HTTP until shutdown.
//!
//! [`Server::start`] takes an already bound listener and returns a handle, so tests can
//! run the real server on `127.0.0.1:0` in-process and the binary stays thin.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{Limits, StaticCatalog};
use crate::config::ServeConfig;
use crate::http::auth::AuthMode;
use crate::http::{self, AppState};
use crate::runtime::commands::CommandBus;
use crate::runtime::lookups::Lookups;
use crate::runtime::projector::{self, Models};
use crate::saga::Driver;
use crate::secrets::Vault;
use crate::store::sqlite::SqliteStore;
use crate::store::{EventStore, Position};

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    http: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    store: SqliteStore,
}

impl Server {
    /// Opens everything under `cfg.data_dir`, replays the log into the read models, and
    /// starts serving on `listener`. Requests are accepted only after the replay.
    pub async fn start(
        cfg: &ServeConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Server> {
        let auth = AuthMode::from_flag(&cfg.auth)?;
        let addr = listener.local_addr()?;
        if auth.is_noauth() && !addr.ip().is_loopback() && !cfg.allow_insecure_noauth {
            anyhow::bail!(
                "refusing to serve --auth noauth on the non-loopback address {addr}: anyone who can reach it could act as any project; use --auth tokens:FILE, or --allow-insecure-noauth if you really mean it"
            );
        }
        let catalog = Arc::new(StaticCatalog::load(
            cfg.catalog.as_deref(),
            Limits {
                region: cfg.region.clone(),
                max_volume_size: cfg.max_volume_size,
                quota_instances: cfg.quota_instances,
                quota_ram: cfg.quota_ram,
                quota_volumes: cfg.quota_volumes,
            },
        )?);
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let store = SqliteStore::open(&cfg.events_path()).context("opening the event store")?;
        let vault = Arc::new(Vault::open(&cfg.secrets_path()).context("opening the secret vault")?);
        let dyn_store: Arc<dyn EventStore> = Arc::new(store.clone());

        let all = Models::default();
        let started = std::time::Instant::now();
        let reached = projector::catch_up(dyn_store.as_ref(), &all, Position::START).await?;
        tracing::info!(position = %reached, instances = all.instances.len(), elapsed_ms = started.elapsed().as_millis() as u64, "read models rebuilt from the log");
        let models = all.instances.clone();

        let (applied_tx, applied_rx) = watch::channel(reached);
        let lookups = Lookups {
            catalog: catalog.clone(),
            models: models.clone(),
            configurations: all.configurations.clone(),
        };
        let bus = CommandBus::new(
            dyn_store.clone(),
            lookups,
            applied_rx,
            Duration::from_millis(cfg.read_your_writes_timeout_ms),
        );

        let mut tasks = Vec::new();
        {
            let (store, all) = (dyn_store.clone(), all.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = projector::run(store, all, reached, applied_tx).await {
                    tracing::info!(error = %e, "projector stopped");
                }
            }));
        }
        {
            let driver = Driver::new(
                bus.clone(),
                vault.clone(),
                Duration::from_millis(cfg.sim_latency_ms),
            );
            let (store, models) = (dyn_store.clone(), models.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = driver.run(store, models).await {
                    tracing::info!(error = %e, "lifecycle driver stopped");
                }
            }));
        }

        let state = AppState {
            bus,
            models,
            configurations: all.configurations.clone(),
            backups: all.backups.clone(),
            catalog,
            vault,
            auth: Arc::new(auth),
            public_url: cfg.public_url.clone(),
            heartbeat_expiry: None,
        };
        let app = http::router(state, cfg.max_body_bytes);
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        tracing::info!(%addr, "troved serving");
        Ok(Server {
            addr,
            http,
            tasks,
            store,
        })
    }

    /// Waits for HTTP to stop (after the shutdown future resolved), then stops the
    /// background tasks and closes the store (every acknowledged append is on disk).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.http.await;
        for t in &self.tasks {
            t.abort();
        }
        self.store.shutdown().await;
        served.context("http task")?.context("http server")?;
        Ok(())
    }
}
