//! Live rebuild of the instance read models, without downtime: new models are built in
//! the background from the log while the current ones keep serving, then swapped in
//! atomically once they have applied exactly what the current ones have
//! (`InstanceModels::swap_in`). One rebuild at a time; its progress is visible.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use projections::InstanceModels;
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
    live: Arc<InstanceModels>,
    /// Taken by the projector around each event; the rebuild takes it for its last
    /// catch-up and the swap, so writes cannot keep it from ever catching up.
    gate: Arc<tokio::sync::Mutex<()>>,
    status: Mutex<RebuildStatus>,
}

impl Rebuilder {
    /// A rebuilder of `live`, reading from `store`.
    pub fn new(
        store: Arc<dyn EventStore>,
        live: Arc<InstanceModels>,
        gate: Arc<tokio::sync::Mutex<()>>,
    ) -> Rebuilder {
        Rebuilder {
            store,
            live,
            gate,
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
            // The work runs in its own task so that a panic in it is reported as a
            // failed rebuild instead of leaving the state `running` for ever.
            let worker = me.clone();
            let outcome = match tokio::spawn(async move { worker.run().await }).await {
                Ok(outcome) => outcome,
                Err(e) => Err(StoreError::Corrupt(format!("the rebuild task failed: {e}"))),
            };
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
        let fresh = InstanceModels::new();
        let mut pos = Position::START;
        let mut applied_events = 0u64;
        // Catch up with the served models while they keep moving, until a round finds
        // little left to do...
        loop {
            let target = self.live.position();
            let before = applied_events;
            self.catch_up(&fresh, &mut pos, target, &mut applied_events)
                .await?;
            if applied_events - before < 256 {
                break;
            }
        }
        // ...then hold the projector still, apply the last few events and swap: the
        // served position cannot move while the gate is held, so the swap succeeds.
        let _held = self.gate.lock().await;
        let target = self.live.position();
        self.catch_up(&fresh, &mut pos, target, &mut applied_events)
            .await?;
        if self.live.swap_in(&fresh) {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "the rebuilt models reached {} but the served ones are at {}",
                fresh.position(),
                self.live.position()
            )))
        }
    }

    /// Applies the events after `pos` up to `target` to `fresh`.
    async fn catch_up(
        &self,
        fresh: &InstanceModels,
        pos: &mut Position,
        target: Position,
        applied_events: &mut u64,
    ) -> Result<(), StoreError> {
        while *pos < target {
            let batch = self.store.read_all(*pos, 4096).await?;
            if batch.is_empty() {
                break;
            }
            for r in batch.iter().take_while(|r| r.position <= target) {
                projector::apply_to_instances(fresh, r);
                *pos = r.position;
                *applied_events += 1;
            }
            let (applied, events) = (*pos, *applied_events);
            self.update(|s| {
                s.events = events;
                s.position = applied.commit;
            });
            if batch.last().is_some_and(|r| r.position > target) {
                break;
            }
            // Let the serving side breathe between batches.
            tokio::task::yield_now().await;
        }
        Ok(())
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
            Arc::new(InstanceModels::new()),
            Arc::new(tokio::sync::Mutex::new(())),
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
