//! The command path: load the stream, fold, decide, append with the revision read; on a
//! concurrency conflict reload and decide again (bounded), then wait until the read
//! models show the change (read your writes).

use std::sync::Arc;
use std::time::Duration;

use aggregates::instance::{
    self, decide_all, Caller, DecideCtx, DomainError, Instance, InstanceCommand, InstanceEvent,
};
use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::codec::{self, CodecError, CommandMeta};
use crate::catalog::Lookups;
use crate::store::{EventStore, ExpectedRevision, Position, StoreError};

/// How many times a command is re-decided after losing an optimistic-concurrency race.
/// 200 concurrent renames of one instance must all land: each retry is cheap (one stream
/// read), and a loser only loses to a writer that made progress, so this bounds latency,
/// not correctness.
const MAX_ATTEMPTS: usize = 64;

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Still conflicting after every retry.
    #[error("too many concurrent changes to instance {0}")]
    Conflict(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// What a command did.
#[derive(Debug)]
pub struct Executed {
    /// The instance after the command.
    pub state: Instance,
    /// The events appended (empty for a no-op).
    pub events: Vec<InstanceEvent>,
    /// Position of the last appended event, if any.
    pub position: Option<Position>,
}

/// Executes commands against instance streams.
#[derive(Clone)]
pub struct CommandBus {
    store: Arc<dyn EventStore>,
    lookups: Lookups,
    /// The read models' applied position, published by the projector.
    applied: watch::Receiver<Position>,
    /// Bound on the read-your-writes wait.
    ryw_timeout: Duration,
}

impl CommandBus {
    /// A bus over `store`, deciding with `lookups`, waiting on `applied`.
    pub fn new(
        store: Arc<dyn EventStore>,
        lookups: Lookups,
        applied: watch::Receiver<Position>,
        ryw_timeout: Duration,
    ) -> CommandBus {
        CommandBus {
            store,
            lookups,
            applied,
            ryw_timeout,
        }
    }

    /// Loads an instance's state from its stream (the source of truth).
    pub async fn load(&self, id: Uuid) -> Result<Instance, CommandError> {
        let records = self.store.read_stream(&instance::stream_name(id)).await?;
        let mut state = Instance::default();
        for r in &records {
            let (event, _) = codec::decode(r)?;
            state = instance::evolve(state, &event);
        }
        Ok(state)
    }

    /// Decides `cmds` (all or nothing) for instance `id` and appends the events.
    pub async fn execute(
        &self,
        id: Uuid,
        cmds: &[InstanceCommand],
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError> {
        let stream = instance::stream_name(id);
        for _ in 0..MAX_ATTEMPTS {
            let state = self.load(id).await?;
            // The context borrows the catalog (not Sync): keep it out of the awaits below.
            let events = {
                let ctx = DecideCtx {
                    now: Utc::now(),
                    instance_id: id,
                    caller,
                    catalog: &self.lookups,
                };
                decide_all(&state, cmds, &ctx)?
            };
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    events,
                    position: None,
                });
            }
            let expected = match state.version {
                0 => ExpectedRevision::NoStream,
                v => ExpectedRevision::Exact(v - 1),
            };
            let batch = events.iter().map(|e| codec::encode(e, meta)).collect();
            match self.store.append(&stream, expected, batch).await {
                Ok(outcome) => {
                    self.wait_applied(outcome.position).await;
                    let state = events.iter().fold(state, instance::evolve);
                    return Ok(Executed {
                        state,
                        events,
                        position: Some(outcome.position),
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict(id))
    }

    /// Waits (bounded) until the read models applied `position`, so the client's next
    /// read sees its change. On timeout the command still succeeded (it is durable);
    /// the wait is logged.
    pub async fn wait_applied(&self, position: Position) {
        let mut rx = self.applied.clone();
        let waited = tokio::time::timeout(self.ryw_timeout, rx.wait_for(|p| *p >= position)).await;
        if waited.is_err() {
            tracing::warn!(%position, "read models did not catch up within the read-your-writes bound");
        }
    }
}
