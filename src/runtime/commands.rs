//! The command path: load the stream, fold, decide, append with the revision read; on a
//! concurrency conflict reload and decide again (bounded), then wait until the read
//! models show the change (read your writes).

use std::sync::Arc;
use std::time::Duration;

use aggregates::fault::Fault;
use aggregates::instance::{
    self, decide_all, Caller, DecideCtx, DomainError, Instance, InstanceCommand, InstanceEvent,
};
use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::codec::{self, CodecError, CommandMeta};
use super::lookups::Lookups;
use crate::store::{EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError};

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
    /// Another aggregate refused it: its Trove fault class and message.
    #[error("{1}")]
    Rejected(Fault, String),
    /// Still conflicting after every retry (the stream name).
    #[error("too many concurrent changes to {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// What a command on any stream did.
#[derive(Debug)]
pub struct Ran<S, E> {
    /// The state after the command.
    pub state: S,
    /// The events appended (empty for a no-op).
    pub events: Vec<E>,
    /// Position of the last appended event, if any.
    pub position: Option<Position>,
}

/// What an instance command did.
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
        fold_instance(&records)
    }

    /// Decides `cmds` (all or nothing) for instance `id` and appends the events.
    pub async fn execute(
        &self,
        id: Uuid,
        cmds: &[InstanceCommand],
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError> {
        let done = self
            .run(
                &instance::stream_name(id),
                fold_instance,
                |state: &Instance| {
                    let ctx = DecideCtx {
                        now: Utc::now(),
                        instance_id: id,
                        caller,
                        catalog: &self.lookups,
                    };
                    decide_all(state, cmds, &ctx).map_err(CommandError::from)
                },
                |e: &InstanceEvent| codec::encode(e, meta),
                instance::evolve,
            )
            .await?;
        Ok(Executed {
            state: done.state,
            events: done.events,
            position: done.position,
        })
    }

    /// The command path for any aggregate stored in one stream: read the stream, `fold`
    /// it into a state and its version (events folded), `decide`, append with that
    /// revision, retry on a concurrency conflict, wait for the read models.
    pub async fn run<S, E>(
        &self,
        stream: &str,
        fold: impl Fn(&[RecordedEvent]) -> Result<S, CommandError>,
        decide: impl Fn(&S) -> Result<Vec<E>, CommandError>,
        encode: impl Fn(&E) -> NewEvent,
        evolve: impl Fn(S, &E) -> S,
    ) -> Result<Ran<S, E>, CommandError> {
        for _ in 0..MAX_ATTEMPTS {
            let records = self.store.read_stream(stream).await?;
            let state = fold(&records)?;
            let events = decide(&state)?;
            if events.is_empty() {
                return Ok(Ran {
                    state,
                    events,
                    position: None,
                });
            }
            let expected = match records.last() {
                None => ExpectedRevision::NoStream,
                Some(r) => ExpectedRevision::Exact(r.revision),
            };
            let batch = events.iter().map(&encode).collect();
            match self.store.append(stream, expected, batch).await {
                Ok(outcome) => {
                    self.wait_applied(outcome.position).await;
                    let state = events.iter().fold(state, &evolve);
                    return Ok(Ran {
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
        Err(CommandError::Conflict(stream.to_string()))
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

/// Folds an instance stream.
pub fn fold_instance(records: &[RecordedEvent]) -> Result<Instance, CommandError> {
    let mut state = Instance::default();
    for r in records {
        let (event, _) = codec::decode(r)?;
        state = instance::evolve(state, &event);
    }
    Ok(state)
}
