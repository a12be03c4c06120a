//! The event store port: the one interface every store adapter implements.
//!
//! The store knows nothing about instances: it keeps streams of opaque, typed JSON events
//! and one global order over all of them (`$all`). Adapters: [`sqlite`] (the embedded
//! default, one file) and, later, EventStoreDB. Both must pass the contract suite in
//! `tests/store_contract.rs`.
//!
//! Positions are opaque and ordered; callers never do arithmetic on them (EventStoreDB
//! positions are byte offsets with gaps). Revisions are per stream and dense from 0.

pub mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

pub use projections::Position;

/// What the writer believes about the stream it appends to (optimistic concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The stream must not exist yet (creates).
    NoStream,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
    /// No check (only for idempotent, order-insensitive writes such as checkpoints).
    Any,
}

/// An event to append. The id makes retries idempotent: appending the same ids again
/// to the same stream succeeds once and never duplicates.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: Uuid,
    /// Stable type name, e.g. `InstanceRenamed`.
    pub event_type: String,
    /// The event body, JSON.
    pub data: Vec<u8>,
    /// Envelope: actor, request id, causation/correlation, time, schema version. JSON.
    pub metadata: Vec<u8>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: String,
    /// Revision within the stream, from 0.
    pub revision: u64,
    /// Position in `$all`.
    pub position: Position,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// Result of a successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Revision of the last event of the stream after the append.
    pub next_revision: u64,
    /// Position of the last appended event in `$all`.
    pub position: Position,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: the stream is not where the writer thought it was.
    /// `actual` is `None` when the stream does not exist.
    #[error("wrong expected revision on {stream}: expected {expected:?}, actual {actual:?}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },
    /// The same event id was already appended with different content or to another place.
    #[error("event {0} was already appended with different content")]
    DuplicateEventId(Uuid),
    /// The stream was deleted (EventStoreDB tombstones).
    #[error("stream {0} is deleted")]
    StreamDeleted(String),
    /// The store cannot be reached or is shutting down; the caller may retry later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read back as written.
    #[error("event store corrupt: {0}")]
    Corrupt(String),
    /// Any other I/O failure.
    #[error("event store i/o: {0}")]
    Io(String),
}

/// A catch-up subscription to `$all`: first history after the start position, then live
/// events, in commit order, with no gap and no duplicate.
#[async_trait]
pub trait Subscription: Send {
    /// The next event; waits for one when caught up. `Err(Unavailable)` when the store
    /// closed.
    async fn next(&mut self) -> Result<RecordedEvent, StoreError>;
}

/// The event store port.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` (at least one) to `stream` atomically if `expected` holds.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads a whole stream, oldest first. A missing stream is an empty vector.
    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `max` events of `$all` strictly after `from`, in order.
    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Subscribes to `$all` strictly after `from`.
    async fn subscribe_all(&self, from: Position) -> Result<Box<dyn Subscription>, StoreError>;

    /// Position of the last event in `$all` (`Position::START` when empty).
    async fn head(&self) -> Result<Position, StoreError>;
}
