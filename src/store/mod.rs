//! The event store port: the one interface every store adapter implements.
//!
//! The store knows nothing about instances: it keeps streams of opaque, typed JSON events
//! and one global order over all of them (`$all`). Adapters: [`sqlite`] (the embedded
//! default, one file) and [`esdb`] (EventStoreDB/KurrentDB over gRPC). Both pass the
//! contract suite in `tests/store_contract.rs`; [`StoreUrl`] says which one a URL means.
//!
//! Positions are opaque and ordered; callers never do arithmetic on them (EventStoreDB
//! positions are byte offsets with gaps). Revisions are per stream and dense from 0.

pub mod esdb;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use aggregates::Position;

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

impl RecordedEvent {
    /// A store's own event, not troved's: EventStoreDB's system and metadata streams,
    /// statistics and link events (stream or type starting with `$`). Adapters hide
    /// them; `troved migrate` neither copies nor counts them.
    pub fn is_system(&self) -> bool {
        self.stream.starts_with('$') || self.event_type.starts_with('$')
    }
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
    /// The disk holding the store is full (SQLite's "database or disk is full"): the
    /// write was rolled back, nothing of it is stored, and the store goes on. The caller
    /// may retry once space is freed (answered 503 with `Retry-After`, like
    /// `Unavailable`). Not an I/O error on commit: those stop the writer (fsyncgate).
    #[error("event store full: {0}")]
    Full(String),
    /// The store refused the append as too large (EventStoreDB's maximum append size):
    /// nothing was written, and the same append will never fit.
    #[error("too large for the event store: {0}")]
    TooLarge(String),
    /// The store refused troved's credentials or its ACLs deny troved a read it needs
    /// (EventStoreDB's `$all`): nothing will work until an operator fixes them.
    #[error("event store access denied: {0}")]
    Denied(String),
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

/// The most events `/mgmt/projections` counts with [`EventStore::events_after`] (reads of
/// up to that many events per request while the projection is that far behind; never
/// with the embedded store, whose positions are dense).
pub const EVENTS_AFTER_MAX: u64 = 10_000;
/// The most events a scrape of `/metrics` counts: one read of at most this many events
/// per scrape while the projection lags (scrapes come every few seconds).
pub const METRICS_LAG_MAX: u64 = 1_000;
/// Events per read while counting.
const EVENTS_AFTER_PAGE: usize = 1_000;

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

    /// How many events `$all` holds strictly after `from` up to `head` (the store's head,
    /// read by the caller: the projection's lag, in events), counting at most `max`: a
    /// larger lag reads as that. Nothing is read when `head <= from` (no lag). Positions
    /// are not counters in every store (EventStoreDB's are byte offsets), so this counts;
    /// a store with dense positions may subtract instead.
    async fn events_after(
        &self,
        from: Position,
        head: Position,
        max: u64,
    ) -> Result<u64, StoreError> {
        if head <= from {
            return Ok(0);
        }
        let mut count = 0u64;
        let mut cursor = from;
        while count < max {
            let want = usize::try_from(max - count)
                .map_or(EVENTS_AFTER_PAGE, |left| left.min(EVENTS_AFTER_PAGE));
            let page = self.read_all(cursor, want).await?;
            let Some(last) = page.last() else { break };
            cursor = last.position;
            count = count.saturating_add(page.len() as u64);
            if page.len() < want {
                break;
            }
        }
        Ok(count.min(max))
    }

    /// Finishes pending writes and releases the store; subscriptions then end with
    /// `Unavailable`. Appends after it fail with `Unavailable`.
    async fn shutdown(&self) {}
}

/// Which event store, from `--event-store` (and `troved migrate --from/--to`). Its
/// `Debug` is [`StoreUrl::redacted`]: an EventStoreDB URL may hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: the embedded store's file (`sqlite:///abs/events.db`,
    /// `sqlite://data/events.db`).
    Sqlite(PathBuf),
    /// `esdb://...`, `esdb+discover://...` (or the `kurrentdb` spellings): any connection
    /// string the `eventstore` client accepts, passed on as given.
    Esdb(String),
}

impl StoreUrl {
    /// Parses a store URL. The error never repeats the URL, which may hold credentials.
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            "an event store URL looks like sqlite://PATH or esdb://HOST:2113?tls=false".to_string()
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" if rest.is_empty() => Err("sqlite://: no path".into()),
            "sqlite" => Ok(StoreUrl::Sqlite(PathBuf::from(rest))),
            "esdb" | "esdb+discover" => Ok(StoreUrl::Esdb(url.to_string())),
            "kurrentdb" | "kurrent" => Ok(StoreUrl::Esdb(format!("esdb://{rest}"))),
            "kurrentdb+discover" | "kurrent+discover" => {
                Ok(StoreUrl::Esdb(format!("esdb+discover://{rest}")))
            }
            other => Err(format!(
                "unknown event store scheme {other:?}: use sqlite://PATH or esdb://HOST:PORT"
            )),
        }
    }

    /// The URL for logs and messages: an EventStoreDB URL without its user info.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            StoreUrl::Esdb(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("esdb", url));
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{rest}")
            }
        }
    }

    /// Opens (creating if need be) the store.
    pub async fn open(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        Ok(match self {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Io(format!("creating {}: {e}", dir.display())))?;
                }
                Arc::new(sqlite::SqliteStore::open(path)?)
            }
            StoreUrl::Esdb(url) => Arc::new(esdb::EsdbStore::connect(url).await?),
        })
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({:?})", self.redacted())
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/troved/events.db").unwrap(),
            StoreUrl::Sqlite(PathBuf::from("/var/lib/troved/events.db"))
        );
        assert_eq!(
            StoreUrl::parse("sqlite://data/events.db").unwrap(),
            StoreUrl::Sqlite(PathBuf::from("data/events.db"))
        );
        assert_eq!(
            StoreUrl::parse("esdb://localhost:2113?tls=false").unwrap(),
            StoreUrl::Esdb("esdb://localhost:2113?tls=false".into())
        );
        assert_eq!(
            StoreUrl::parse("kurrentdb+discover://a:2113,b:2113").unwrap(),
            StoreUrl::Esdb("esdb+discover://a:2113,b:2113".into())
        );
        assert!(StoreUrl::parse("sqlite://").is_err());
        assert!(StoreUrl::parse("postgres://u:secret@h/db")
            .unwrap_err()
            .contains("postgres"));
        assert!(!StoreUrl::parse("nothing").unwrap_err().contains("nothing"));
        assert_eq!(
            StoreUrl::parse("esdb://admin:changeit@node1:2113?tls=true")
                .unwrap()
                .redacted(),
            "esdb://node1:2113?tls=true"
        );
    }
}
