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
use dashmap::DashMap;
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

/// Executes commands against instance streams. Cheap to clone: one reference count
/// (every HTTP request clones the handlers' state, the bus included, several times).
#[derive(Clone)]
pub struct CommandBus {
    inner: Arc<Bus>,
}

struct Bus {
    store: Arc<dyn EventStore>,
    lookups: Lookups,
    /// The read models' applied position, published by the projector.
    applied: watch::Receiver<Position>,
    /// Bound on the read-your-writes wait.
    ryw_timeout: Duration,
    /// Keyed locks serializing related commands (see [`CommandBus::execute`]).
    locks: KeyedLocks,
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
            inner: Arc::new(Bus {
                store,
                lookups,
                applied,
                ryw_timeout,
                locks: KeyedLocks::default(),
            }),
        }
    }

    /// Position of the last event in the store (projection lag, `/metrics`).
    pub async fn head(&self) -> Result<Position, CommandError> {
        Ok(self.inner.store.head().await?)
    }

    /// Reads a whole stream.
    pub async fn read(&self, stream: &str) -> Result<Vec<RecordedEvent>, CommandError> {
        Ok(self.inner.store.read_stream(stream).await?)
    }

    /// Loads an instance's state from its stream (the source of truth).
    pub async fn load(&self, id: Uuid) -> Result<Instance, CommandError> {
        let records = self
            .inner
            .store
            .read_stream(&instance::stream_name(id))
            .await?;
        fold_instance(&records)
    }

    /// Decides `cmds` (all or nothing) for instance `id` and appends the events.
    ///
    /// Commands are serialized in this process by keyed locks held until the read models
    /// show the result, so decisions that read other aggregates through the read models
    /// see every earlier decision: per instance (no optimistic-concurrency storms on a
    /// hot instance; a replica create and its primary's DELETE exclude each other) and
    /// per project for creates (the quota). One process per data directory makes this
    /// exact for the embedded store.
    pub async fn execute(
        &self,
        id: Uuid,
        cmds: &[InstanceCommand],
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError> {
        let mut keys = vec![format!("instance:{id}")];
        for cmd in cmds {
            if let InstanceCommand::CreateInstance(c) = cmd {
                keys.push(format!("quota:{}", caller.project_id));
                if let Some(primary) = c.replica_of {
                    keys.push(format!("instance:{primary}"));
                }
            }
        }
        let _guards = self.inner.locks.lock_all(keys).await;
        let done = self
            .run(
                &instance::stream_name(id),
                fold_instance,
                |state: &Instance| {
                    let ctx = DecideCtx {
                        now: Utc::now(),
                        instance_id: id,
                        caller,
                        catalog: &self.inner.lookups,
                    };
                    decide_all(state, cmds, &ctx).map_err(CommandError::from)
                },
                |e: &InstanceEvent, n| codec::encode(e, meta, n),
                instance::evolve,
            )
            .await;
        crate::metrics::global().commands(cmds.iter().map(InstanceCommand::name), &done);
        let done = done?;
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
        encode: impl Fn(&E, usize) -> NewEvent,
        evolve: impl Fn(S, &E) -> S,
    ) -> Result<Ran<S, E>, CommandError> {
        let mut attempt = 0u32;
        for _ in 0..MAX_ATTEMPTS {
            let records = self.inner.store.read_stream(stream).await?;
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
            let batch = events
                .iter()
                .enumerate()
                .map(|(n, e)| encode(e, n))
                .collect();
            match self.inner.store.append(stream, expected, batch).await {
                Ok(outcome) => {
                    crate::metrics::global().events_appended(stream, events.len());
                    self.wait_applied(outcome.position).await?;
                    let state = events.iter().fold(state, &evolve);
                    return Ok(Ran {
                        state,
                        events,
                        position: Some(outcome.position),
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    // Lost a race with another writer (in this process only a saga
                    // step or a configuration command can race: instance commands are
                    // serialized per instance). Back off a little, with jitter, so
                    // retries do not collide again in lock step.
                    attempt += 1;
                    let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 8;
                    let ms = (1u64 << attempt.min(5)) + jitter;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict(stream.to_string()))
    }

    /// Waits (bounded) until the read models applied `position`, so the client's next
    /// read sees its change. On timeout the command still succeeded (it is durable) and
    /// the wait is logged; if the projector is gone, reads can never catch up, and the
    /// caller is told the service is unavailable (the server is stopping).
    pub async fn wait_applied(&self, position: Position) -> Result<(), CommandError> {
        let mut rx = self.inner.applied.clone();
        let waited = tokio::time::timeout(self.inner.ryw_timeout, rx.wait_for(|p| *p >= position))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Unavailable("the projector stopped".into()).into()),
            Err(_) => {
                tracing::warn!(%position, "read models did not catch up within the read-your-writes bound");
                Ok(())
            }
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

/// Async mutexes by name, created on demand and dropped when no one holds or waits for
/// them.
#[derive(Clone, Default)]
pub struct KeyedLocks {
    map: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds some keyed locks; releases them (and forgets idle ones) on drop.
pub struct KeyedGuards {
    locks: KeyedLocks,
    held: Vec<(String, tokio::sync::OwnedMutexGuard<()>)>,
}

impl KeyedLocks {
    /// Takes every lock in `keys`, in sorted order (so two callers never deadlock).
    pub async fn lock_all(&self, mut keys: Vec<String>) -> KeyedGuards {
        keys.sort();
        keys.dedup();
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            let mutex = self.map.entry(key.clone()).or_default().clone();
            held.push((key, mutex.lock_owned().await));
        }
        KeyedGuards {
            locks: self.clone(),
            held,
        }
    }
}

impl Drop for KeyedGuards {
    fn drop(&mut self) {
        for (key, guard) in self.held.drain(..) {
            drop(guard);
            // Only the map's own reference left: nobody holds or waits; forget it.
            self.locks
                .map
                .remove_if(&key, |_, m| Arc::strong_count(m) == 1);
        }
    }
}
