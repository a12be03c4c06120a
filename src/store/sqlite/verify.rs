//! Checking a store file's hash chains ([`super::chain`]): what `troved audit verify`
//! runs, and what an admin endpoint can run later (on `spawn_blocking`: it is one long
//! synchronous scan).
//!
//! It opens the file read-only and changes nothing, so it can run beside a live troved
//! and on an auditor's copy. It recomputes every link from the rows alone, in `$all`
//! order, keeping each stream's last link, so one pass checks the `$all` chain and every
//! stream chain. It trusts no stored hash but the one it compares against, and stops at
//! the first row that is wrong: everything after it would fail too, and the first bad
//! position is what an investigation starts from.
//!
//! It must not repair anything: a finding is evidence, not an error to recover from.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::Row;

use super::chain::{self, Digest, EventFields, GENESIS};
use super::schema::{open_audit, stored_version, SCHEMA_VERSION};
use super::sql::sql_err;
use crate::store::StoreError;

/// What a verification found: how far the chains are intact and, if they break, where
/// first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked and found intact: all of them when `finding` is `None`, else those
    /// before the first bad position.
    pub events: u64,
    /// Streams those events belong to.
    pub streams: u64,
    /// Position of the last intact event (0 when there is none).
    pub last_position: u64,
    /// The `$all` digest at `last_position` ([`GENESIS`] when there is no event). Keep it
    /// somewhere else: a later verification whose chain passes through the same digest
    /// at the same position proves nothing up to there changed since, even against
    /// someone who rewrote every hash.
    pub digest: Digest,
    /// The first bad position, if any.
    pub finding: Option<Finding>,
}

impl VerifyReport {
    /// No tampering found.
    pub fn is_intact(&self) -> bool {
        self.finding.is_none()
    }
}

/// The first position where the chains break, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub position: u64,
    /// Stream of the event stored at `position`; `None` when there is none or it cannot
    /// be read.
    pub stream: Option<String>,
    /// Its revision, likewise.
    pub revision: Option<u64>,
    pub problem: Problem,
}

/// How a chain breaks at a position. Each says what the rows show; what an attacker did
/// is the likeliest explanation, given in the `Display` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No event is stored at the position; the next one is at `next`.
    Missing { next: u64 },
    /// A column of the row does not have the type the store writes.
    Unreadable(String),
    /// The event's revision is not the one after its stream's previous event.
    RevisionOutOfOrder { expected: u64, found: u64 },
    /// A hash column is NULL or not 32 bytes.
    NoHash,
    /// The event's content, chained on its stream predecessor, does not give its stored
    /// stream hash.
    StreamHashMismatch,
    /// The previous `$all` digest, this event's stream hash and its position do not give
    /// its stored `$all` hash.
    AllHashMismatch,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { next } => write!(
                f,
                "no event at this position (the next stored one is at {next}): \
                 an event was removed"
            ),
            Problem::Unreadable(why) => {
                write!(
                    f,
                    "the row cannot be read as an event ({why}): it was edited"
                )
            }
            Problem::RevisionOutOfOrder { expected, found } => write!(
                f,
                "revision {found} where the stream continues with {expected}: an event of \
                 the stream was removed, or events were reordered"
            ),
            Problem::NoHash => write!(
                f,
                "the event has no valid hash (NULL or not 32 bytes): the hash was edited"
            ),
            Problem::StreamHashMismatch => write!(
                f,
                "hash mismatch: the event does not match its stream hash, so its content \
                 or its hash was edited, or it was swapped with another event"
            ),
            Problem::AllHashMismatch => write!(
                f,
                "$all chain mismatch: the event was moved to this position, or a hash at \
                 or just before it was rewritten"
            ),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "position {}", self.position)?;
        match (&self.stream, self.revision) {
            (Some(stream), Some(revision)) => write!(f, " ({stream}, revision {revision})")?,
            (Some(stream), None) => write!(f, " ({stream})")?,
            _ => {}
        }
        write!(f, ": {}", self.problem)
    }
}

const SELECT_ALL: &str = "SELECT position, stream, revision, id, event_type, data, metadata, \
     recorded_at, stream_hash, all_hash FROM events ORDER BY position";

/// Recomputes every hash chain of the store file at `path` and reports the first bad
/// position, if any.
///
/// `Err` means the file could not be checked at all (missing, not a troved store, a
/// schema without chains or newer than this binary, I/O); tampering is an `Ok` report
/// with a [`Finding`]. Blocking; reads the whole log once, in one SQLite snapshot.
pub fn verify(path: &Path) -> Result<VerifyReport, StoreError> {
    let conn = open_audit(path)?;
    let version = stored_version(&conn).map_err(|e| {
        StoreError::Io(format!(
            "{} is not a troved event store: {e}",
            path.display()
        ))
    })?;
    match version {
        Some(SCHEMA_VERSION) => {}
        Some(1) => {
            return Err(StoreError::Io(format!(
                "{} has schema version 1, from before tamper evidence: open it once with \
                 this troved (e.g. `troved serve`) to compute its hash chains",
                path.display()
            )))
        }
        Some(v) => {
            return Err(StoreError::Io(format!(
                "{} has schema version {v}; this binary verifies version {SCHEMA_VERSION}",
                path.display()
            )))
        }
        None => {
            return Err(StoreError::Io(format!(
                "{} is not a troved event store (no schema version)",
                path.display()
            )))
        }
    }
    let mut stmt = conn.prepare(SELECT_ALL).map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    let mut chains = Chains::default();
    let mut finding = None;
    while let Some(row) = rows.next().map_err(sql_err)? {
        if let Err(f) = chains.check(row) {
            finding = Some(f);
            break;
        }
    }
    Ok(VerifyReport {
        events: chains.events,
        streams: chains.streams.len() as u64,
        last_position: chains.next_position - 1,
        digest: chains.all,
        finding,
    })
}

/// The chains as recomputed up to the last intact row.
struct Chains {
    next_position: u64,
    all: Digest,
    /// Per stream: last revision and its stream hash.
    streams: HashMap<String, (u64, Digest)>,
    events: u64,
}

impl Default for Chains {
    fn default() -> Self {
        Chains {
            next_position: 1,
            all: GENESIS,
            streams: HashMap::new(),
            events: 0,
        }
    }
}

impl Chains {
    /// Checks one row (the next in `$all` order) and, if it is intact, extends the
    /// chains with it.
    fn check(&mut self, row: &Row<'_>) -> Result<(), Finding> {
        let at = |position: u64, stream: Option<&str>, revision: Option<u64>, problem| Finding {
            position,
            stream: stream.map(str::to_string),
            revision,
            problem,
        };
        let position = match row.get::<_, i64>(0).map(u64::try_from) {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                let why = "position is not a positive integer".to_string();
                return Err(at(self.next_position, None, None, Problem::Unreadable(why)));
            }
        };
        if position != self.next_position {
            let problem = Problem::Missing { next: position };
            return Err(at(self.next_position, None, None, problem));
        }
        let fields = match Columns::read(row) {
            Ok(fields) => fields,
            Err(why) => return Err(at(position, None, None, Problem::Unreadable(why))),
        };
        let event = fields.event();
        let (stream, revision) = (Some(event.stream), Some(event.revision));
        let (prev_revision, prev_hash) = match self.streams.get(event.stream) {
            Some((r, h)) => (Some(*r), *h),
            None => (None, GENESIS),
        };
        let expected = prev_revision.map_or(0, |r| r + 1);
        if event.revision != expected {
            let problem = Problem::RevisionOutOfOrder {
                expected,
                found: event.revision,
            };
            return Err(at(position, stream, revision, problem));
        }
        let (Some(stored_stream), Some(stored_all)) = (fields.stream_hash, fields.all_hash) else {
            return Err(at(position, stream, revision, Problem::NoHash));
        };
        let stream_hash = chain::stream_hash(&prev_hash, &event);
        if stream_hash != stored_stream {
            return Err(at(position, stream, revision, Problem::StreamHashMismatch));
        }
        let all = chain::all_hash(&self.all, &stream_hash, position);
        if all != stored_all {
            return Err(at(position, stream, revision, Problem::AllHashMismatch));
        }
        self.all = all;
        self.next_position += 1;
        self.events += 1;
        match self.streams.get_mut(event.stream) {
            Some(tip) => *tip = (event.revision, stream_hash),
            None => {
                self.streams
                    .insert(event.stream.to_string(), (event.revision, stream_hash));
            }
        }
        Ok(())
    }
}

/// One row's columns, typed strictly as the writer stores them: a value of another type
/// is a finding, not something to coerce.
struct Columns {
    stream: String,
    revision: u64,
    id: Vec<u8>,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    recorded_at: i64,
    stream_hash: Option<Digest>,
    all_hash: Option<Digest>,
}

impl Columns {
    fn read(row: &Row<'_>) -> Result<Columns, String> {
        let text = |i: usize, name: &str| match row.get_ref(i) {
            Ok(ValueRef::Text(t)) => {
                String::from_utf8(t.to_vec()).map_err(|_| format!("{name} is not UTF-8 text"))
            }
            _ => Err(format!("{name} is not text")),
        };
        let blob = |i: usize, name: &str| match row.get_ref(i) {
            Ok(ValueRef::Blob(b)) => Ok(b.to_vec()),
            _ => Err(format!("{name} is not a blob")),
        };
        let int = |i: usize, name: &str| match row.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Ok(n),
            _ => Err(format!("{name} is not an integer")),
        };
        let hash = |i: usize| match row.get_ref(i) {
            Ok(ValueRef::Blob(b)) => Digest::try_from(b).ok(),
            _ => None,
        };
        let revision = int(2, "revision")?;
        Ok(Columns {
            stream: text(1, "stream")?,
            revision: u64::try_from(revision).map_err(|_| format!("revision {revision}"))?,
            id: blob(3, "id")?,
            event_type: text(4, "event_type")?,
            data: blob(5, "data")?,
            metadata: blob(6, "metadata")?,
            recorded_at: int(7, "recorded_at")?,
            stream_hash: hash(8),
            all_hash: hash(9),
        })
    }

    fn event(&self) -> EventFields<'_> {
        EventFields {
            stream: &self.stream,
            revision: self.revision,
            id: &self.id,
            event_type: &self.event_type,
            data: &self.data,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}
