//! Live rebuild of the instance read models, without downtime: new models are built in
//! the background from the log while the current ones keep serving, then swapped in
//! atomically once they have applied exactly what the current ones have
//! (`ReadModels::swap_in`). One rebuild at a time; its progress is visible.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use projections::ReadModels;
use serde::Serialize;

use super::projector;
use crate::store::{EventStore, Position, StoreError};

/// What the last (or current) rebuild is doing.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RebuildStatus {
    /// `idle` (never ran), `running`, `done` or `failed`.
    pub state: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    /// Events the new models have applied so far.
    pub events: u64,
    /// Position the new models reached.
    pub position: u64,
    /// The store's head when the rebuild started (progress = position / head).
    pub head: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A rebuild is already running.
#[derive(Debug, thiserror::Error)]
#[error("a rebuild of the read models is already running (started {0})")]
pub struct AlreadyRunning(pub String);

/// Runs live rebuilds.
pub struct Rebuilder {
    store: Arc<dyn EventStore>,
    live: Arc<ReadModels>,
    status: Mutex<RebuildStatus>,
}

impl Rebuilder {
    /// A rebuilder of `live`, reading from `store`.
    pub fn new(store: Arc<dyn EventStore>, live: Arc<ReadModels>) -> Rebuilder {
        Rebuilder {
            store,
            live,
            status: Mutex::new(RebuildStatus {
                state: "idle".into(),
                ..RebuildStatus::default()
            }),
        }
    }

    /// The current status.
    pub fn status(&self) -> RebuildStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut RebuildStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Starts a rebuild in the background; refuses while one runs.
    pub fn start(self: &Arc<Self>) -> Result<RebuildStatus, AlreadyRunning> {
        {
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if s.state == "running" {
                let since = s.started.map(|t| t.to_rfc3339()).unwrap_or_default();
                return Err(AlreadyRunning(since));
            }
            *s = RebuildStatus {
                state: "running".into(),
                started: Some(Utc::now()),
                ..RebuildStatus::default()
            };
        }
        let me = self.clone();
        tokio::spawn(async move {
            let outcome = me.run().await;
            me.update(|s| {
                s.finished = Some(Utc::now());
                match outcome {
                    Ok(()) => s.state = "done".into(),
                    Err(e) => {
                        s.state = "failed".into();
                        s.error = Some(e.to_string());
                    }
                }
            });
            match &me.status().error {
                None => tracing::info!("live rebuild of the read models swapped in"),
                Some(e) => tracing::error!(error = %e, "live rebuild of the read models failed"),
            }
        });
        Ok(self.status())
    }

    async fn run(&self) -> Result<(), StoreError> {
        let head = self.store.head().await?;
        self.update(|s| s.head = head.commit);
        let fresh = ReadModels::new();
        let mut pos = Position::START;
        let mut applied_events = 0u64;
        loop {
            // Catch up with what the served models have applied, then try to swap; the
            // projector may have moved on meanwhile: then catch up again (a few events).
            let target = self.live.position();
            while pos < target {
                let batch = self.store.read_all(pos, 4096).await?;
                let Some(last) = batch.last().map(|r| r.position) else {
                    break;
                };
                for r in batch.iter().take_while(|r| r.position <= target) {
                    projector::apply_to_instances(&fresh, r);
                    pos = r.position;
                    applied_events += 1;
                }
                let applied = pos;
                self.update(|s| {
                    s.events = applied_events;
                    s.position = applied.commit;
                });
                if last > target {
                    break;
                }
                // Let the serving side breathe between batches.
                tokio::task::yield_now().await;
            }
            if self.live.swap_in(&fresh) {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_second_rebuild_is_refused_while_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        let rebuilder = Arc::new(Rebuilder::new(
            Arc::new(store.clone()),
            Arc::new(ReadModels::new()),
        ));
        assert_eq!(rebuilder.status().state, "idle");
        let first = rebuilder.start().unwrap();
        assert_eq!(first.state, "running");
        // The first has not been polled yet on this single-threaded runtime.
        assert!(rebuilder.start().is_err());
        for _ in 0..100 {
            if rebuilder.status().state != "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(rebuilder.status().state, "done");
        assert!(
            rebuilder.start().is_ok(),
            "a new rebuild may start after the last one"
        );
        store.shutdown().await;
    }
}
