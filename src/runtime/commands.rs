//! The command path: load the stream, fold, decide, append with the revision read; on a
//! concurrency conflict reload and decide again (bounded), then wait until the read
//! models show the change (read your writes).
//!
//! Instance streams this process is working on (a command, a saga step) are kept folded
//! in a small cache of [`FoldedStream`]s, so the next command or step on the same instance
//! neither reads nor folds its stream again. The cache is only a hint: every append
//! still carries the revision its state was folded at, so an entry made stale by a write
//! this process did not see fails the append with `WrongExpectedVersion`, and the
//! command is decided again on the stream as read.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
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
use super::unreadable::UnreadableEvent;
use crate::metrics::CommandOutcome;
use crate::retry::Backoff;
use crate::store::{EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError};

/// How many times a command is re-decided after losing an optimistic-concurrency race.
/// 200 concurrent renames of one instance must all land: each retry is cheap (one stream
/// read), and a loser only loses to a writer that made progress, so this bounds latency,
/// not correctness.
const MAX_ATTEMPTS: usize = 64;

/// The pause before deciding again after a lost race: short (the winner made progress),
/// doubling, and jittered so that retries do not collide again in lock step.
const CONFLICT_RETRY: Backoff =
    Backoff::doubling(Duration::from_millis(2), Duration::from_millis(32))
        .with_jitter(Duration::from_millis(8));

/// Instance streams kept folded (see the module documentation). The saga forgets an
/// instance once it has nothing left to do for it, so this holds mostly instances with
/// work in flight; an idle instance stays when a command on it caches its result after
/// the saga already looked (the saga reacts to the event before the command's
/// read-your-writes wait ends), or when a refused command read it. Beyond the bound the
/// oldest entries go (first in, first out), which costs their next command one stream
/// read. At most ~10 MiB.
const CACHED_STREAMS_MAX: usize = 4096;

/// The user id of the saga's commands (`saga::saga_caller`).
pub const SAGA_USER: &str = "troved-saga";

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
    /// An event of the stream the command needs does not decode: the log is damaged
    /// there (or was edited); nothing can be decided on that stream until it is
    /// restored.
    #[error(transparent)]
    Unreadable(Box<UnreadableEvent>),
}

impl CommandError {
    /// `r` failed to decode with `error`, while folding its stream.
    pub fn unreadable(r: &RecordedEvent, error: CodecError) -> CommandError {
        CommandError::Unreadable(Box::new(UnreadableEvent::new(r, &error)))
    }
}

/// How a command path's result counts in `troved_commands_total`.
impl<T> From<&Result<T, CommandError>> for CommandOutcome {
    fn from(result: &Result<T, CommandError>) -> CommandOutcome {
        match result {
            Ok(_) => CommandOutcome::Ok,
            Err(CommandError::Domain(d)) => CommandOutcome::Refused(d.fault().name()),
            Err(CommandError::Rejected(fault, _)) => CommandOutcome::Refused(fault.name()),
            Err(CommandError::Conflict(_))
            | Err(CommandError::Store(StoreError::WrongExpectedVersion { .. })) => {
                CommandOutcome::Conflict
            }
            Err(CommandError::Store(_))
            | Err(CommandError::Codec(_))
            | Err(CommandError::Unreadable(_)) => CommandOutcome::Error,
        }
    }
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
    /// The stream's last revision and last event id after the command (`None` for a
    /// no-op on a stream that does not exist).
    pub last: Option<(u64, Uuid)>,
    /// Whether the state was decided on a re-read after a concurrency conflict (the
    /// caller's starting state was stale).
    pub reread: bool,
}

/// An instance stream, folded: what the command path and the saga need of it.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedStream {
    /// The folded state.
    pub state: Instance,
    /// Revision of the stream's last event.
    pub revision: u64,
    /// Id of the stream's last event.
    pub last_id: Uuid,
    /// The correlation id of the newest event a user (not the saga) caused: the
    /// workflow the saga's steps continue.
    pub workflow: Option<Uuid>,
}

impl FoldedStream {
    /// Folds a stream; `None` when it is empty.
    pub fn of(records: &[RecordedEvent]) -> Result<Option<FoldedStream>, CommandError> {
        let Some(last) = records.last() else {
            return Ok(None);
        };
        let mut state = Instance::default();
        let mut workflow = None;
        for r in records {
            let (event, meta) = codec::decode(r).map_err(|e| CommandError::unreadable(r, e))?;
            instance::evolve_in_place(&mut state, &event);
            if meta.actor.user_id != SAGA_USER {
                workflow = Some(meta.correlation_id);
            }
        }
        Ok(Some(FoldedStream {
            state,
            revision: last.revision,
            last_id: last.id,
            workflow,
        }))
    }
}

/// The bounded cache of [`FoldedStream`]s by instance id.
#[derive(Default)]
struct StreamCache {
    inner: Mutex<StreamCacheInner>,
}

#[derive(Default)]
struct StreamCacheInner {
    /// Boxed: an entry is ~1 KiB and the table keeps its capacity after a burst.
    map: HashMap<Uuid, Box<FoldedStream>>,
    /// Insertion order, for eviction; may hold ids already forgotten.
    order: VecDeque<Uuid>,
}

impl StreamCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamCacheInner> {
        // Every mutation below leaves the map valid, so a panic elsewhere while holding
        // the lock does not make it unusable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: Uuid) -> Option<FoldedStream> {
        self.lock().map.get(&id).map(|v| FoldedStream::clone(v))
    }

    /// Keeps the newer of `view` and the one held: a read that started before a
    /// command's append may finish after the command cached its result.
    fn put(&self, id: Uuid, view: FoldedStream) {
        let mut v = self.lock();
        match v.map.get_mut(&id) {
            Some(held) if held.revision > view.revision => {}
            Some(held) => **held = view,
            None => {
                v.map.insert(id, Box::new(view));
                v.order.push_back(id);
            }
        }
        while v.map.len() > CACHED_STREAMS_MAX {
            let Some(old) = v.order.pop_front() else {
                break;
            };
            v.map.remove(&old);
        }
        if v.order.len() > 2 * CACHED_STREAMS_MAX {
            let StreamCacheInner { map, order } = &mut *v;
            order.retain(|id| map.contains_key(id));
        }
    }

    fn forget(&self, id: Uuid) {
        self.lock().map.remove(&id);
    }

    fn len(&self) -> usize {
        self.lock().map.len()
    }
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
    /// Instance streams kept folded.
    streams: StreamCache,
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
                streams: StreamCache::default(),
            }),
        }
    }

    /// Position of the last event in the store (projection lag, `/metrics`).
    pub async fn head(&self) -> Result<Position, CommandError> {
        Ok(self.inner.store.head().await?)
    }

    /// Events in the store after `from` up to `head`, counted up to `max` (projection
    /// lag; see `EventStore::events_after`).
    pub async fn events_after(
        &self,
        from: Position,
        head: Position,
        max: u64,
    ) -> Result<u64, CommandError> {
        Ok(self.inner.store.events_after(from, head, max).await?)
    }

    /// Reads a whole stream.
    pub async fn read(&self, stream: &str) -> Result<Vec<RecordedEvent>, CommandError> {
        Ok(self.inner.store.read_stream(stream).await?)
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
        self.execute_locked(id, cmds, caller, meta).await
    }

    /// [`CommandBus::execute`] for a caller that holds the keyed locks already (a
    /// command path that spans several instances: `super::replica_actions`).
    pub async fn execute_locked(
        &self,
        id: Uuid,
        cmds: &[InstanceCommand],
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError> {
        // The stream as this process last saw it; a create of a fresh id needs no read
        // (if the stream exists after all, the append fails and the retry reads it).
        let creates_only = cmds
            .iter()
            .all(|c| matches!(c, InstanceCommand::CreateInstance(_)));
        let cached = self.inner.streams.get(id);
        let cached_revision = cached.as_ref().map(|v| v.revision);
        let known = match cached {
            Some(folded) => Ok(Some(folded)),
            None if creates_only => Ok(None),
            None => self.read_folded(id).await,
        };
        let mut done = match known {
            Ok(known) => self.execute_from(id, known, cmds, caller, meta).await,
            Err(e) => Err(e),
        };
        // An append checks the revision its state was folded at; a refusal or a no-op
        // appends nothing, so when decided on a cached folded it is confirmed against
        // the stream: a write this process did not make must not change the answer.
        let unappended = match &done {
            Ok(ran) => ran.events.is_empty(),
            Err(e) => matches!(e, CommandError::Domain(_) | CommandError::Rejected(..)),
        };
        if let (Some(revision), true) = (cached_revision, unappended) {
            done = match self.read_folded(id).await {
                Ok(fresh) if fresh.as_ref().map(|v| v.revision) != Some(revision) => {
                    self.execute_from(id, fresh, cmds, caller, meta).await
                }
                Ok(_) => done,
                Err(e) => Err(e),
            };
        }
        crate::metrics::global().commands(
            cmds.iter().map(InstanceCommand::name),
            CommandOutcome::from(&done),
        );
        let done = done?;
        Ok(Executed {
            state: done.state,
            events: done.events,
            position: done.position,
        })
    }

    async fn execute_from(
        &self,
        id: Uuid,
        known: Option<FoldedStream>,
        cmds: &[InstanceCommand],
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Ran<Instance, InstanceEvent>, CommandError> {
        let workflow = known.as_ref().and_then(|v| v.workflow);
        let start = match known {
            Some(v) => (v.state, ExpectedRevision::Exact(v.revision)),
            None => (Instance::default(), ExpectedRevision::NoStream),
        };
        let command = InstanceCommands {
            id,
            cmds,
            caller,
            meta,
            lookups: &self.inner.lookups,
        };
        let done = self
            .run(&instance::stream_name(id), Some(start), &command)
            .await;
        let streams = &self.inner.streams;
        match &done {
            Ok(ran) if ran.reread => streams.forget(id),
            Ok(ran) => {
                if let Some((revision, last_id)) = ran.last {
                    let workflow = if caller.user_id == SAGA_USER {
                        workflow
                    } else {
                        Some(meta.correlation_id)
                    };
                    let state = ran.state.clone();
                    streams.put(
                        id,
                        FoldedStream {
                            state,
                            revision,
                            last_id,
                            workflow,
                        },
                    );
                }
            }
            // Refused: nothing was appended, the folded still holds.
            Err(CommandError::Domain(_) | CommandError::Rejected(..)) => {}
            // The append's outcome may be unknown (the store went away mid-call).
            Err(_) => streams.forget(id),
        }
        done
    }

    /// The instance's stream, folded: from the cache if it holds the stream up to
    /// revision `at_least` (the newest event the caller knows of), else read (and
    /// then cached). `None` when the stream is empty.
    pub async fn folded(
        &self,
        id: Uuid,
        at_least: Option<u64>,
    ) -> Result<Option<FoldedStream>, CommandError> {
        match self.inner.streams.get(id) {
            Some(folded) if at_least.is_none_or(|r| folded.revision >= r) => Ok(Some(folded)),
            _ => self.read_folded(id).await,
        }
    }

    async fn read_folded(&self, id: Uuid) -> Result<Option<FoldedStream>, CommandError> {
        let records = self
            .inner
            .store
            .read_stream(&instance::stream_name(id))
            .await?;
        let folded = FoldedStream::of(&records)?;
        if let Some(v) = &folded {
            self.inner.streams.put(id, v.clone());
        }
        Ok(folded)
    }

    /// Drops the instance's cached folded (the saga has nothing left to do for it).
    pub fn forget(&self, id: Uuid) {
        self.inner.streams.forget(id);
    }

    /// How many instance streams are kept folded.
    pub fn cached_streams(&self) -> usize {
        self.inner.streams.len()
    }

    /// The command path for any aggregate stored in one stream: read the stream, fold
    /// it into a state, decide, append with the revision the state was folded at, retry
    /// on a concurrency conflict, wait for the read models. `command` says how to do
    /// each step for its aggregate ([`StreamCommand`]).
    ///
    /// `start`: a state the caller already holds and the revision it was folded at,
    /// decided on without reading the stream first (a conflict reads it as usual).
    pub async fn run<C: StreamCommand>(
        &self,
        stream: &str,
        start: Option<(C::State, ExpectedRevision)>,
        command: &C,
    ) -> Result<Ran<C::State, C::Event>, CommandError> {
        let mut attempt = 0u32;
        let mut start = start;
        for _ in 0..MAX_ATTEMPTS {
            let (state, expected) = match start.take() {
                Some(known) => known,
                None => {
                    let records = self.inner.store.read_stream(stream).await?;
                    let expected = match records.last() {
                        None => ExpectedRevision::NoStream,
                        Some(r) => ExpectedRevision::Exact(r.revision),
                    };
                    (command.fold(&records)?, expected)
                }
            };
            let reread = attempt > 0;
            let events = command.decide(&state)?;
            if events.is_empty() {
                return Ok(Ran {
                    state,
                    events,
                    position: None,
                    last: None,
                    reread,
                });
            }
            let batch: Vec<NewEvent> = events
                .iter()
                .enumerate()
                .map(|(n, e)| command.encode(e, n))
                .collect();
            let last_id = batch.last().map_or(Uuid::nil(), |e| e.id);
            match self.inner.store.append(stream, expected, batch).await {
                Ok(outcome) => {
                    crate::metrics::global().events_appended(stream, events.len());
                    self.wait_applied(outcome.position).await?;
                    let state = events.iter().fold(state, |s, e| command.evolve(s, e));
                    return Ok(Ran {
                        state,
                        events,
                        position: Some(outcome.position),
                        last: Some((outcome.next_revision, last_id)),
                        reread,
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    // Lost a race with another writer (in this process only a saga
                    // step or a configuration command can race: instance commands are
                    // serialized per instance).
                    attempt += 1;
                    tokio::time::sleep(CONFLICT_RETRY.delay(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict(stream.to_string()))
    }

    /// The lookups commands are decided with (the catalog and the live read models).
    pub fn lookups(&self) -> &Lookups {
        &self.inner.lookups
    }

    /// The event store the bus appends to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// Takes the keyed locks `keys` (see [`CommandBus::execute`]), for the command paths
    /// of other aggregates whose rules read an instance's read models.
    pub async fn lock_keys(&self, keys: Vec<String>) -> KeyedGuards {
        self.inner.locks.lock_all(keys).await
    }

    /// Whether the read models have applied `position`, waiting at most `within` for
    /// them to get there (the readiness probe); with the position they have applied.
    pub async fn applied_within(&self, position: Position, within: Duration) -> (bool, Position) {
        let mut rx = self.inner.applied.clone();
        let reached = tokio::time::timeout(within, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok());
        let applied = *rx.borrow();
        (reached, applied)
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

/// One command on an aggregate kept in one stream, as [`CommandBus::run`] performs it.
/// The implementor holds the command and everything deciding it needs (caller, clock
/// reading, lookups, metadata for the events).
pub trait StreamCommand {
    /// The aggregate's folded state.
    type State;
    /// The aggregate's events.
    type Event;
    /// Folds the stream as read.
    fn fold(&self, records: &[RecordedEvent]) -> Result<Self::State, CommandError>;
    /// Decides the command on `state`: the events to append, or a refusal.
    fn decide(&self, state: &Self::State) -> Result<Vec<Self::Event>, CommandError>;
    /// Encodes the `index`-th event of the batch for the store.
    fn encode(&self, event: &Self::Event, index: usize) -> NewEvent;
    /// Applies an appended event to the state.
    fn evolve(&self, state: Self::State, event: &Self::Event) -> Self::State;
}

/// Commands on one instance, decided together (all or nothing).
struct InstanceCommands<'a> {
    id: Uuid,
    cmds: &'a [InstanceCommand],
    caller: &'a Caller,
    meta: &'a CommandMeta,
    lookups: &'a Lookups,
}

impl StreamCommand for InstanceCommands<'_> {
    type State = Instance;
    type Event = InstanceEvent;

    fn fold(&self, records: &[RecordedEvent]) -> Result<Instance, CommandError> {
        fold_instance(records)
    }

    fn decide(&self, state: &Instance) -> Result<Vec<InstanceEvent>, CommandError> {
        let ctx = DecideCtx {
            now: Utc::now(),
            instance_id: self.id,
            caller: self.caller,
            catalog: self.lookups,
        };
        decide_all(state, self.cmds, &ctx).map_err(CommandError::from)
    }

    fn encode(&self, event: &InstanceEvent, index: usize) -> NewEvent {
        codec::encode(event, self.meta, index)
    }

    fn evolve(&self, state: Instance, event: &InstanceEvent) -> Instance {
        instance::evolve(state, event)
    }
}

/// Folds an instance stream.
pub fn fold_instance(records: &[RecordedEvent]) -> Result<Instance, CommandError> {
    let mut state = Instance::default();
    for r in records {
        let (event, _) = codec::decode(r).map_err(|e| CommandError::unreadable(r, e))?;
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

#[cfg(test)]
mod tests {
    use aggregates::instance::{CreateInstance, DatastoreRequest, VolumeRequest};

    use super::*;
    use crate::catalog::{Limits, StaticCatalog};
    use crate::store::sqlite::SqliteStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn EventStore>,
        bus: CommandBus,
        caller: Caller,
        /// Kept so read-your-writes waits see a live projector that is always ahead.
        _applied: watch::Sender<Position>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let lookups = Lookups {
            catalog: Arc::new(StaticCatalog::builtin(Limits::default())),
            models: Arc::default(),
            configurations: Arc::default(),
            backups: Arc::default(),
            quotas: Arc::default(),
        };
        let ahead = Position {
            commit: u64::MAX,
            prepare: u64::MAX,
        };
        let (applied, rx) = watch::channel(ahead);
        Fixture {
            _dir: dir,
            bus: CommandBus::new(store.clone(), lookups, rx, Duration::from_secs(1)),
            store,
            caller: Caller {
                user_id: "alice".into(),
                project_id: "p1".into(),
                roles: vec!["member".into()],
            },
            _applied: applied,
        }
    }

    fn create(id: Uuid) -> InstanceCommand {
        InstanceCommand::CreateInstance(Box::new(CreateInstance {
            instance_id: id,
            name: "db1".into(),
            flavor_ref: Some("2".into()),
            volume: Some(VolumeRequest {
                size: 1,
                volume_type: None,
            }),
            datastore: Some(DatastoreRequest {
                datastore_type: Some("mysql".into()),
                version: Some("8.0".into()),
                version_number: None,
            }),
            databases: vec![],
            users: vec![],
            nics: vec![],
            availability_zone: None,
            region_name: None,
            modules: vec![],
            restore_backup_id: None,
            replica_of: None,
            replica_count: None,
            locality: None,
            configuration: None,
            access: None,
            root_password: None,
        }))
    }

    impl Fixture {
        async fn run(&self, id: Uuid, cmd: InstanceCommand) -> Result<Executed, CommandError> {
            let meta = CommandMeta::for_request(&self.caller, "req-test");
            self.bus.execute(id, &[cmd], &self.caller, &meta).await
        }

        /// A saga report, as the saga records it.
        async fn report(&self, id: Uuid, cmd: InstanceCommand) -> Executed {
            let saga = crate::saga::saga_caller();
            let meta = CommandMeta::for_request(&saga, "saga:test");
            self.bus.execute(id, &[cmd], &saga, &meta).await.unwrap()
        }

        /// Another writer's event, appended behind the bus's back.
        async fn append_elsewhere(&self, id: Uuid, revision: u64, event: InstanceEvent) {
            let meta = CommandMeta::for_request(&self.caller, "req-elsewhere");
            self.store
                .append(
                    &instance::stream_name(id),
                    ExpectedRevision::Exact(revision),
                    vec![codec::encode(&event, &meta, 0)],
                )
                .await
                .unwrap();
        }

        /// The stream as stored, folded from scratch.
        async fn stored(&self, id: Uuid) -> FoldedStream {
            let records = self
                .store
                .read_stream(&instance::stream_name(id))
                .await
                .unwrap();
            FoldedStream::of(&records).unwrap().unwrap()
        }
    }

    #[tokio::test]
    async fn the_cached_view_is_the_stream_folded_after_every_command() {
        let f = fixture();
        let id = Uuid::new_v4();
        f.run(id, create(id)).await.unwrap();
        let create_workflow = f.stored(id).await.workflow;
        assert!(create_workflow.is_some());
        let reports = [
            InstanceCommand::RecordVolumeCreated {
                volume_id: "vol-1".into(),
                size: 1,
                volume_type: None,
            },
            InstanceCommand::RecordServerCreated {
                server_id: "srv-1".into(),
            },
        ];
        for report in reports {
            assert_eq!(f.bus.cached_streams(), 1, "the last command left its view");
            let cached = f.bus.folded(id, None).await.unwrap().unwrap();
            assert_eq!(cached, f.stored(id).await);
            assert_eq!(f.report(id, report).await.events.len(), 1);
        }
        let cached = f.bus.folded(id, None).await.unwrap().unwrap();
        let stored = f.stored(id).await;
        assert_eq!(cached, stored);
        assert_eq!(stored.revision, 2);
        assert_eq!(stored.state.server_id.as_deref(), Some("srv-1"));
        // The saga's reports continue the create's workflow.
        assert_eq!(stored.workflow, create_workflow);
        f.bus.forget(id);
        assert_eq!(f.bus.cached_streams(), 0);
        assert_eq!(f.bus.folded(id, None).await.unwrap().unwrap(), stored);
    }

    #[tokio::test]
    async fn a_write_the_bus_did_not_see_is_never_decided_over() {
        let f = fixture();
        let id = Uuid::new_v4();
        f.run(id, create(id)).await.unwrap();
        // Another writer records the volume behind the bus's back: the bus's cached
        // view (revision 0) is now stale.
        let volume = InstanceEvent::VolumeCreated {
            volume_id: "vol-elsewhere".into(),
            size: 1,
            volume_type: None,
            at: Utc::now(),
        };
        f.append_elsewhere(id, 0, volume).await;
        // Decided on the stale view, the same report would append a second volume; the
        // append carries the view's revision, fails, and the report is decided again
        // on the stream as stored, where it changes nothing.
        let again = InstanceCommand::RecordVolumeCreated {
            volume_id: "vol-elsewhere".into(),
            size: 1,
            volume_type: None,
        };
        assert!(f.report(id, again).await.events.is_empty());
        let stored = f.stored(id).await;
        assert_eq!(stored.revision, 1, "nothing appended after the other write");
        assert_eq!(f.bus.folded(id, None).await.unwrap().unwrap(), stored);
    }

    #[tokio::test]
    async fn a_refusal_decided_on_a_stale_view_is_confirmed_on_the_stream() {
        let f = fixture();
        let id = Uuid::new_v4();
        f.run(id, create(id)).await.unwrap();
        // The bus holds the instance building; another writer takes it to ACTIVE.
        let at = Utc::now();
        let to_active = [
            InstanceEvent::VolumeCreated {
                volume_id: "vol-1".into(),
                size: 1,
                volume_type: None,
                at,
            },
            InstanceEvent::ServerCreated {
                server_id: "srv-1".into(),
                at,
            },
            InstanceEvent::ComputeStatusChanged {
                status: aggregates::instance::ComputeStatus::Active,
                at,
            },
            InstanceEvent::GuestStatusReported {
                status: aggregates::instance::ServiceStatus::Healthy,
                at,
            },
            InstanceEvent::ProvisioningCompleted { at },
        ];
        for (n, event) in to_active.into_iter().enumerate() {
            f.append_elsewhere(id, n as u64, event).await;
        }
        // On the stale view a rename is refused (not ready); nothing would be appended,
        // so no revision check would catch it. The refusal is confirmed on the stream,
        // where the instance is ACTIVE, and the rename goes through.
        let done = f
            .run(id, InstanceCommand::RenameInstance { name: "x".into() })
            .await
            .unwrap();
        assert_eq!(done.events.len(), 1);
        let stored = f.stored(id).await;
        assert_eq!((stored.revision, stored.state.name.as_str()), (6, "x"));
        assert_eq!(f.bus.folded(id, None).await.unwrap().unwrap(), stored);
    }

    #[tokio::test]
    async fn a_view_older_than_the_newest_event_the_caller_knows_is_read_again() {
        let f = fixture();
        let id = Uuid::new_v4();
        f.run(id, create(id)).await.unwrap();
        let renamed = InstanceEvent::InstanceRenamed {
            name: "elsewhere".into(),
            at: Utc::now(),
        };
        f.append_elsewhere(id, 0, renamed).await;
        // Without a bound the cached (stale) view is what the bus holds.
        let cached = f.bus.folded(id, None).await.unwrap().unwrap();
        assert_eq!((cached.revision, cached.state.name.as_str()), (0, "db1"));
        // The saga knows revision 1 was delivered: that view is not good enough.
        let fresh = f.bus.folded(id, Some(1)).await.unwrap().unwrap();
        assert_eq!(fresh, f.stored(id).await);
        assert_eq!(fresh.state.name, "elsewhere");
        assert_eq!(f.bus.folded(id, None).await.unwrap().unwrap(), fresh);
    }

    #[test]
    fn the_cache_keeps_the_newer_view_and_evicts_the_oldest_entries() {
        let cache = StreamCache::default();
        let view = |revision| FoldedStream {
            state: Instance::default(),
            revision,
            last_id: Uuid::nil(),
            workflow: None,
        };
        let id = Uuid::new_v4();
        cache.put(id, view(3));
        cache.put(id, view(2));
        assert_eq!(cache.get(id).map(|v| v.revision), Some(3));
        cache.put(id, view(4));
        assert_eq!(cache.get(id).map(|v| v.revision), Some(4));
        let more: Vec<Uuid> = (0..CACHED_STREAMS_MAX).map(|_| Uuid::new_v4()).collect();
        for other in &more {
            cache.put(*other, view(0));
        }
        assert_eq!(cache.len(), CACHED_STREAMS_MAX);
        assert!(cache.get(id).is_none(), "the oldest entry made room");
        assert!(cache.get(more[0]).is_some());
        for other in &more {
            cache.forget(*other);
        }
        assert_eq!(cache.len(), 0);
        assert!(cache.lock().order.len() <= 2 * CACHED_STREAMS_MAX);
    }

    #[tokio::test]
    async fn a_create_of_an_existing_stream_is_refused_without_a_cached_view() {
        let f = fixture();
        let id = Uuid::new_v4();
        f.run(id, create(id)).await.unwrap();
        f.bus.forget(id);
        // No view: the create is appended as the stream's first event, conflicts, and is
        // decided again on the stored stream.
        let again = f.run(id, create(id)).await;
        assert!(matches!(again, Err(CommandError::Domain(_))), "{again:?}");
        assert_eq!(f.stored(id).await.revision, 0);
    }

    #[test]
    fn command_results_count_as_their_outcome() {
        let outcome = |r: Result<(), CommandError>| CommandOutcome::from(&r);
        assert_eq!(outcome(Ok(())), CommandOutcome::Ok);
        assert_eq!(
            outcome(Err(CommandError::Rejected(
                Fault::UnprocessableEntity,
                "not ready".into()
            ))),
            CommandOutcome::Refused("unprocessableEntity")
        );
        assert_eq!(
            outcome(Err(CommandError::Conflict("instance-1".into()))),
            CommandOutcome::Conflict
        );
        assert_eq!(
            outcome(Err(CommandError::Store(StoreError::WrongExpectedVersion {
                stream: "instance-1".into(),
                expected: ExpectedRevision::NoStream,
                actual: Some(0),
            }))),
            CommandOutcome::Conflict
        );
    }
}
