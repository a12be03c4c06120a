//! The event store port over EventStoreDB / KurrentDB, through the `eventstore` gRPC
//! client (`--event-store esdb://HOST:2113?tls=false`, or any connection string the
//! client accepts: clusters with `esdb+discover://`, TLS, credentials).
//!
//! What the port promises and how it is kept here (docs/event-stores.md):
//! - **Expected revision** maps one to one (`NoStream`, `Exact`, `Any`); the server
//!   decides, so several troved processes on one database still get optimistic
//!   concurrency per stream.
//! - **Idempotent appends.** Event ids are kept. The server treats a retry that carries
//!   the original expected revision as a no-op; a retry whose expected revision has gone
//!   stale comes back as a wrong expected version, and the adapter then looks for the ids
//!   in the stream: all there, in order, is the original append's outcome; some there is
//!   [`StoreError::DuplicateEventId`]. Unlike the embedded store, the server compares
//!   ids only (not content) and ids are unique per stream, not across streams.
//! - **Positions** are the server's (commit, prepare) pairs, read from each event; on the
//!   server both are the event's own offset. The position an append reports is its last
//!   event's, which is what the server answers (an answer without a position reads the
//!   stream's last event back).
//! - **`$all`** hides system events (types and streams starting with `$`): reads skip
//!   them, subscriptions filter them on the server. Reads from a position are inclusive
//!   on the server and made exclusive here.
//! - **Subscriptions** resubscribe on their own after a dropped connection or a server
//!   restart, from the last position they delivered (so no gap and no duplicate), with
//!   backoff, until the store is shut down. The client's own retry is not used.
//! - **Errors:** an unreachable server, a timeout, a leader change are
//!   [`StoreError::Unavailable`] (the API answers 503 with `Retry-After`); a deleted
//!   stream is [`StoreError::StreamDeleted`] (404). NotLeader (nothing written, the
//!   leader named) is made again first: the client has switched to the leader. An
//!   append over the server's size limit is [`StoreError::TooLarge`] (400); access
//!   denied is [`StoreError::Denied`] (503), and ends a subscription for good.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, SubscribeToAllOptions, SubscriptionFilter,
};
use tokio::sync::watch;

use super::{
    AppendOutcome, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError,
    Subscription,
};
use crate::retry::Backoff;

/// How long one append or read may take before it counts as unavailable.
const DEADLINE: Duration = Duration::from_secs(10);
/// Pauses before resubscribing after a dropped subscription: 50 ms doubling to 5 s,
/// until the store shuts down; a delivered event starts over.
const RESUBSCRIBE: Backoff = Backoff::doubling(Duration::from_millis(50), Duration::from_secs(5));
/// Events per page when `head` walks back over system events.
const HEAD_PAGE: usize = 64;
/// A call that failed to reach the server is made again up to three times, after 50 ms
/// times the retry's number: the client only notices a lost connection when its next
/// call fails, and reconnects for the one after.
const CALL_RETRY: Backoff =
    Backoff::linear(Duration::from_millis(50), Duration::MAX).with_retries(3);

/// After a server-side timeout, an append is sent again (when repeatable) after 250 ms,
/// 500 ms, 1 s. The server answers a timeout only after its own (2 s by default), and a
/// retry that reaches the leader before the original is replicated is dropped and times
/// out again, so the pauses leave replication time to finish.
const SERVER_TIMEOUT_RETRY: Backoff =
    Backoff::doubling(Duration::from_millis(250), Duration::from_secs(1)).with_retries(3);

/// gRPC's ABORTED status code (10), a fixed number of the protocol.
const GRPC_ABORTED: i32 = 10;
/// gRPC's INVALID_ARGUMENT status code (3).
const GRPC_INVALID_ARGUMENT: i32 = 3;

/// The server gave up waiting for a write's prepare or commit phase (`Aborted`,
/// "Operation timed out: ..."): the write may have landed or may still land
/// (`RpcExceptions.Timeout`; also a retry the leader dropped as too early).
fn server_timeout(e: &eventstore::Error) -> bool {
    matches!(e, eventstore::Error::Grpc { code, .. } if i32::from(*code) == GRPC_ABORTED)
}

/// A write's outcome is unknown: the server timed it out ([`server_timeout`]), or the
/// call's deadline ([`DEADLINE`]) passed before an answer came (`DeadlineExceeded`: the
/// request may have reached the server and landed, or may still land). Either way a
/// repeatable append is looked for before it is answered `Unavailable`; only the
/// server's timeout is sent again first (a passed deadline already took [`DEADLINE`]).
fn unknown_outcome(e: &eventstore::Error) -> bool {
    server_timeout(e) || matches!(e, eventstore::Error::DeadlineExceeded)
}

/// Whether a call failed for want of a connection or of the leader (and may simply be
/// made again).
fn transient(e: &eventstore::Error) -> bool {
    matches!(
        e,
        eventstore::Error::ServerError(_)
            | eventstore::Error::GrpcConnectionError(_)
            | eventstore::Error::ConnectionClosed
    ) || not_leader(e)
}

/// The node is not (or no longer) the leader and named the one that is: the server
/// refused the request before doing anything (`ClusterVNodeController`
/// `DenyRequestBecauseNotLeader`), so making it again cannot duplicate it, whatever the
/// expectation, and the client has already switched to that leader for the next call.
fn not_leader(e: &eventstore::Error) -> bool {
    matches!(e, eventstore::Error::NotLeaderException(_))
}

/// The client, and its replacement once it has given up: after failing to reach the
/// server on its first call, or running out of discovery attempts, an `eventstore`
/// client answers `ConnectionClosed` to every later call, even once the server is back.
struct Connection {
    settings: ClientSettings,
    /// (generation, client): a failure replaces only the client that failed.
    current: std::sync::Mutex<(u64, Client)>,
}

impl Connection {
    fn get(&self) -> (u64, Client) {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// Maps a client error to the port's, replacing the client if it gave up for good.
    fn error(&self, generation: u64, e: eventstore::Error) -> StoreError {
        if matches!(e, eventstore::Error::ConnectionClosed) {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.0 == generation {
                match Client::new(self.settings.clone()) {
                    Ok(client) => {
                        *current = (generation + 1, client);
                        tracing::warn!("the EventStoreDB client gave up; a new one takes over");
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "cannot make a new EventStoreDB client")
                    }
                }
            }
        }
        store_error(e)
    }

    /// A missing stream reads as empty; a deleted one is an error.
    fn missing_is_empty<T: Default>(
        &self,
        generation: u64,
        stream: &str,
        e: eventstore::Error,
    ) -> Result<T, StoreError> {
        match e {
            eventstore::Error::ResourceNotFound => Ok(T::default()),
            eventstore::Error::ResourceDeleted => {
                Err(StoreError::StreamDeleted(stream.to_string()))
            }
            other => Err(self.error(generation, other)),
        }
    }
}

/// The event store port over an EventStoreDB node or cluster.
#[derive(Clone)]
pub struct EsdbStore {
    conn: Arc<Connection>,
    stopped: watch::Sender<bool>,
    /// Resubscriptions after a dropped subscription, for `/metrics` and the logs.
    resubscriptions: Arc<AtomicU64>,
}

impl EsdbStore {
    /// Prepares a client for `url` (any connection string the `eventstore` client
    /// accepts). Connecting is lazy: an unreachable server shows as `Unavailable` on the
    /// first call, not here. The error never repeats the URL (it may hold credentials).
    pub async fn connect(url: &str) -> Result<EsdbStore, StoreError> {
        let settings: ClientSettings =
            url.parse()
                .map_err(|e: eventstore::ClientSettingsParseError| {
                    StoreError::Io(format!(
                        "invalid EventStoreDB connection string{}",
                        e.error().map(|k| format!(" ({k})")).unwrap_or_default()
                    ))
                })?;
        let client = Client::new(settings.clone())
            .map_err(|e| StoreError::Io(format!("EventStoreDB client: {e}")))?;
        Ok(EsdbStore {
            conn: Arc::new(Connection {
                settings,
                current: std::sync::Mutex::new((0, client)),
            }),
            stopped: watch::channel(false).0,
            resubscriptions: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many times subscriptions had to resubscribe since the start.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscriptions.load(Ordering::Relaxed)
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if *self.stopped.borrow() {
            return Err(StoreError::Unavailable(
                "the event store is shut down".into(),
            ));
        }
        Ok(())
    }

    /// Reads the stream's events (all of them); a missing stream is empty.
    async fn read_stream_events(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Start)
            .deadline(DEADLINE);
        self.read_stream_with(stream, &options).await
    }

    /// One read of a stream, whole, made again when it failed for want of a connection or
    /// of the leader ([`CALL_RETRY`]); a missing stream is empty.
    async fn read_stream_with(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut attempt = 0;
        'read: loop {
            let (generation, client) = self.conn.get();
            let mut failed = |e: eventstore::Error| {
                if transient(&e) && CALL_RETRY.allows(attempt + 1) {
                    let _ = self.conn.error(generation, e);
                    attempt += 1;
                    None
                } else {
                    Some(self.conn.missing_is_empty(generation, stream, e))
                }
            };
            let mut read = match client.read_stream(stream, options).await {
                Ok(read) => read,
                Err(e) => match failed(e) {
                    Some(result) => return result,
                    None => {
                        tokio::time::sleep(CALL_RETRY.delay(attempt)).await;
                        continue 'read;
                    }
                },
            };
            let mut out = Vec::new();
            loop {
                match read.next().await {
                    Ok(Some(event)) => out.push(recorded(&event)),
                    Ok(None) => return Ok(out),
                    Err(e) => match failed(e) {
                        Some(result) => return result,
                        None => {
                            tokio::time::sleep(CALL_RETRY.delay(attempt)).await;
                            continue 'read;
                        }
                    },
                }
            }
        }
    }

    /// The stream's event at `revision` (`None`: its last), if any; made again like the
    /// other reads.
    async fn event_at(
        &self,
        stream: &str,
        revision: Option<u64>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .backwards()
            .position(revision.map_or(StreamPosition::End, StreamPosition::Position))
            .max_count(1)
            .deadline(DEADLINE);
        Ok(self
            .read_stream_with(stream, &options)
            .await?
            .into_iter()
            .next())
    }

    /// After a wrong expected version: were these events appended already (a retry whose
    /// expected revision went stale)? All of them in order: the original outcome. Some of
    /// them: a duplicate. None: the wrong expected version stands.
    async fn earlier_append(
        &self,
        stream: &str,
        events: &[NewEvent],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let stored = self.read_stream_events(stream).await?;
        let Some(start) = stored.iter().position(|e| e.id == events[0].id) else {
            if let Some(dup) = events.iter().find(|n| stored.iter().any(|e| e.id == n.id)) {
                return Err(StoreError::DuplicateEventId(dup.id));
            }
            return Ok(None);
        };
        let run = &stored[start..];
        let matches = run.len() >= events.len()
            && run.iter().zip(events).all(|(e, n)| {
                e.id == n.id
                    && e.event_type == n.event_type
                    && e.data == n.data
                    && e.metadata == n.metadata
            });
        if !matches {
            let dup = events
                .iter()
                .find(|n| stored.iter().any(|e| e.id == n.id))
                .map_or(events[0].id, |n| n.id);
            return Err(StoreError::DuplicateEventId(dup));
        }
        let last = &run[events.len() - 1];
        Ok(Some(AppendOutcome {
            next_revision: last.revision,
            position: last.position,
        }))
    }

    /// An append of no events: only checks the expected revision against the stream's
    /// last event, and answers with that event's place.
    async fn check_expectation(
        &self,
        stream: &str,
        expected_revision: ExpectedRevision,
    ) -> Result<AppendOutcome, StoreError> {
        let last = self.event_at(stream, None).await?;
        let actual = last.as_ref().map(|e| e.revision);
        let holds = match expected_revision {
            ExpectedRevision::NoStream => actual.is_none(),
            ExpectedRevision::Exact(r) => actual == Some(r),
            ExpectedRevision::Any => actual.is_some(),
        };
        match last {
            Some(last) if holds => Ok(AppendOutcome {
                next_revision: last.revision,
                position: last.position,
            }),
            _ => Err(StoreError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected: expected_revision,
                actual,
            }),
        }
    }

    /// Sends an append, and sends it again when that cannot duplicate it (`repeatable`: the
    /// same ids with an exact or "no stream" expectation; any append after NotLeader):
    /// after a lost connection ([`CALL_RETRY`]) and after a server-side timeout
    /// ([`SERVER_TIMEOUT_RETRY`]). The last answer, with the client generation it came from.
    async fn send_append(
        &self,
        stream: &str,
        expected_revision: ExpectedRevision,
        events: &[NewEvent],
        repeatable: bool,
    ) -> (u64, Result<eventstore::WriteResult, eventstore::Error>) {
        let options = AppendToStreamOptions::default()
            .expected_revision(expected(expected_revision))
            .deadline(DEADLINE);
        let (mut attempt, mut timeouts) = (0, 0);
        loop {
            let wire: Vec<EventData> = events.iter().map(event_data).collect();
            let (generation, client) = self.conn.get();
            match client.append_to_stream(stream, &options, wire).await {
                Err(e)
                    if (repeatable || not_leader(&e))
                        && transient(&e)
                        && CALL_RETRY.allows(attempt + 1) =>
                {
                    let _ = self.conn.error(generation, e);
                    attempt += 1;
                    tokio::time::sleep(CALL_RETRY.delay(attempt)).await;
                }
                // Only the server's own timeout (answered after ~2 s) is sent again; a
                // passed client deadline already cost DEADLINE and goes straight to the
                // lookup below, so that a request never waits several deadlines.
                Err(e)
                    if repeatable
                        && server_timeout(&e)
                        && SERVER_TIMEOUT_RETRY.allows(timeouts + 1) =>
                {
                    timeouts += 1;
                    let wait = SERVER_TIMEOUT_RETRY.delay(timeouts);
                    tracing::warn!(error = %e, stream, retry_in_ms = wait.as_millis() as u64, "EventStoreDB timed out an append; sending it again");
                    tokio::time::sleep(wait).await;
                }
                written => return (generation, written),
            }
        }
    }

    /// The outcome of an append the server accepted: its last event's revision and
    /// position. The server answers with the commit acknowledgement of the append's last
    /// event, whose position is that event's own (commit == prepare == its offset), so
    /// the answer is trusted as it is; only an answer without a position (an idempotent
    /// write whose original can no longer be read) reads the last event back.
    async fn appended(
        &self,
        stream: &str,
        events: &[NewEvent],
        written: &eventstore::WriteResult,
    ) -> Result<AppendOutcome, StoreError> {
        let position = Position {
            commit: written.position.commit,
            prepare: written.position.prepare,
        };
        if position != Position::START {
            return Ok(AppendOutcome {
                next_revision: written.next_expected_version,
                position,
            });
        }
        // No position: the last event's own, read back.
        let want = events[events.len() - 1].id;
        let last = match self
            .event_at(stream, Some(written.next_expected_version))
            .await?
        {
            Some(e) if e.id == want => e,
            _ => self
                .read_stream_events(stream)
                .await?
                .into_iter()
                .find(|e| e.id == want)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "{stream}: event {want} not found right after its append"
                    ))
                })?,
        };
        Ok(AppendOutcome {
            next_revision: last.revision,
            position: last.position,
        })
    }

    /// One read of `$all`, whole, made again (like the other reads) when it failed for want
    /// of a connection or of the leader.
    async fn read_all_page(
        &self,
        options: &ReadAllOptions,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut attempt = 0;
        loop {
            let (generation, client) = self.conn.get();
            let page = async {
                let mut read = client.read_all(options).await?;
                let mut out = Vec::new();
                while let Some(event) = read.next().await? {
                    out.push(recorded(&event));
                }
                Ok::<_, eventstore::Error>(out)
            };
            match page.await {
                Ok(out) => return Ok(out),
                Err(e) if transient(&e) && CALL_RETRY.allows(attempt + 1) => {
                    let _ = self.conn.error(generation, e);
                    attempt += 1;
                    tokio::time::sleep(CALL_RETRY.delay(attempt)).await;
                }
                Err(e) => return Err(self.conn.error(generation, e)),
            }
        }
    }

    /// Up to `max` user events of `$all` strictly after `from`, skipping system events.
    async fn read_all_after(
        &self,
        from: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = from;
        while out.len() < max {
            // The server's read is inclusive of `cursor`: one more than needed.
            let want = (max - out.len()).saturating_add(1);
            let start = if cursor == Position::START {
                StreamPosition::Start
            } else {
                StreamPosition::Position(to_esdb(cursor))
            };
            let options = ReadAllOptions::default()
                .forwards()
                .position(start)
                .max_count(want)
                .deadline(DEADLINE);
            let page = self.read_all_page(&options).await?;
            let seen = page.len();
            for event in page {
                if event.position <= cursor {
                    continue;
                }
                cursor = event.position;
                if event.is_system() {
                    continue;
                }
                out.push(event);
                if out.len() == max {
                    break;
                }
            }
            if seen < want {
                break;
            }
        }
        Ok(out)
    }
}

/// The client's errors as the port's. Anything about reaching the server is
/// `Unavailable`, which the API answers with 503 and `Retry-After`.
fn store_error(e: eventstore::Error) -> StoreError {
    use eventstore::Error as E;
    match e {
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::ServerError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_) => StoreError::Unavailable(e.to_string()),
        E::AccessDenied => StoreError::Denied(
            "EventStoreDB denied access: check the connection string's credentials and \
             the ACLs (troved reads $all and its own streams, and writes its streams)"
                .into(),
        ),
        // `RpcExceptions.MaxAppendSizeExceeded`: the append is over the server's limit.
        E::Grpc { code, message }
            if i32::from(code) == GRPC_INVALID_ARGUMENT
                && message.starts_with("Maximum Append Size") =>
        {
            StoreError::TooLarge(message)
        }
        // A server-side timeout: the outcome of a write is unknown; try again later.
        ref e if server_timeout(e) => StoreError::Unavailable(format!(
            "EventStoreDB timed out; a write may still land: {e}"
        )),
        other => StoreError::Io(other.to_string()),
    }
}

/// An append whose outcome stayed unknown ([`unknown_outcome`]): `Unavailable`, saying
/// that it may still land.
fn unknown_outcome_error(e: eventstore::Error) -> StoreError {
    match e {
        eventstore::Error::DeadlineExceeded => StoreError::Unavailable(format!(
            "EventStoreDB did not answer in time; a write may still land: {e}"
        )),
        other => store_error(other),
    }
}

fn to_esdb(p: Position) -> eventstore::Position {
    eventstore::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn recorded(event: &eventstore::ResolvedEvent) -> RecordedEvent {
    let e = event.get_original_event();
    RecordedEvent {
        id: e.id,
        stream: e.stream_id.clone(),
        revision: e.revision,
        position: Position {
            commit: e.position.commit,
            prepare: e.position.prepare,
        },
        event_type: e.event_type.clone(),
        data: e.data.to_vec(),
        metadata: e.custom_metadata.to_vec(),
    }
}

/// An event for the wire: JSON bodies are marked JSON (so the server's UI and
/// projections can read them) when that keeps their bytes exactly; others go binary.
fn event_data(e: &NewEvent) -> EventData {
    let json = std::str::from_utf8(&e.data)
        .ok()
        .and_then(|s| serde_json::value::RawValue::from_string(s.to_string()).ok())
        .and_then(|raw| EventData::json(e.event_type.as_str(), &raw).ok());
    let data = match json {
        Some(data) => data,
        None => EventData::binary(e.event_type.as_str(), Bytes::copy_from_slice(&e.data)),
    };
    data.id(e.id).metadata(Bytes::copy_from_slice(&e.metadata))
}

fn expected(e: ExpectedRevision) -> eventstore::ExpectedRevision {
    match e {
        ExpectedRevision::NoStream => eventstore::ExpectedRevision::NoStream,
        ExpectedRevision::Exact(r) => eventstore::ExpectedRevision::Exact(r),
        ExpectedRevision::Any => eventstore::ExpectedRevision::Any,
    }
}

#[async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        stream: &str,
        expected_revision: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.check_open()?;
        if events.is_empty() {
            // A check of the expectation only, as on the embedded store.
            return self.check_expectation(stream, expected_revision).await;
        }
        // Made again only when it cannot duplicate: with an exact or "no stream"
        // expectation and the same event ids, an append that did land the first time
        // answers "wrong expected version" (or the original's outcome) and is recognised
        // below; after NotLeader, nothing was written.
        let repeatable = !matches!(expected_revision, ExpectedRevision::Any);
        let (generation, written) = self
            .send_append(stream, expected_revision, &events, repeatable)
            .await;
        match written {
            Ok(written) => self.appended(stream, &events, &written).await,
            Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                if let Some(outcome) = self.earlier_append(stream, &events).await? {
                    return Ok(outcome);
                }
                Err(StoreError::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected: expected_revision,
                    actual: match current {
                        eventstore::CurrentRevision::Current(r) => Some(r),
                        eventstore::CurrentRevision::NoStream => None,
                    },
                })
            }
            Err(eventstore::Error::ResourceDeleted) => {
                Err(StoreError::StreamDeleted(stream.to_string()))
            }
            Err(e) if repeatable && unknown_outcome(&e) => {
                // Every try timed out (on the server, or its deadline passed): the events
                // may have landed all the same. Look, as after a stale expectation.
                match self.earlier_append(stream, &events).await? {
                    Some(outcome) => Ok(outcome),
                    None => Err(unknown_outcome_error(e)),
                }
            }
            Err(e) => Err(self.conn.error(generation, e)),
        }
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_open()?;
        self.read_stream_events(stream).await
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        self.read_all_after(from, max).await
    }

    async fn subscribe_all(&self, from: Position) -> Result<Box<dyn Subscription>, StoreError> {
        self.check_open()?;
        Ok(Box::new(EsdbSubscription {
            conn: self.conn.clone(),
            generation: 0,
            last: from,
            inner: None,
            stopped: self.stopped.subscribe(),
            failures: 0,
            resubscriptions: self.resubscriptions.clone(),
        }))
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.check_open()?;
        let mut cursor = StreamPosition::End;
        loop {
            let options = ReadAllOptions::default()
                .backwards()
                .position(cursor)
                .max_count(HEAD_PAGE)
                .deadline(DEADLINE);
            let page = self.read_all_page(&options).await?;
            let seen = page.len();
            let mut oldest = None;
            for event in page {
                if !event.is_system() {
                    return Ok(event.position);
                }
                oldest = Some(event.position);
            }
            match oldest {
                Some(p) if seen == HEAD_PAGE => cursor = StreamPosition::Position(to_esdb(p)),
                _ => return Ok(Position::START),
            }
        }
    }

    async fn shutdown(&self) {
        let _ = self.stopped.send(true);
    }
}

/// A catch-up subscription to `$all` that survives dropped connections: it resubscribes
/// from the last position it delivered, with backoff, until the store shuts down.
struct EsdbSubscription {
    conn: Arc<Connection>,
    /// The generation of the client the open subscription runs on.
    generation: u64,
    /// The last position delivered (or the start position).
    last: Position,
    inner: Option<eventstore::Subscription>,
    stopped: watch::Receiver<bool>,
    /// Consecutive drops without a delivered event ([`RESUBSCRIBE`]'s retry number).
    failures: u32,
    resubscriptions: Arc<AtomicU64>,
}

/// A server subscription to `$all` strictly after `last`, without system events.
async fn subscribe_after(client: &Client, last: Position) -> eventstore::Subscription {
    let start = if last == Position::START {
        StreamPosition::Start
    } else {
        StreamPosition::Position(to_esdb(last))
    };
    let options = SubscribeToAllOptions::default()
        .position(start)
        .filter(SubscriptionFilter::on_event_type().exclude_system_events());
    client.subscribe_to_all(&options).await
}

#[async_trait]
impl Subscription for EsdbSubscription {
    async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if *self.stopped.borrow() {
                return Err(StoreError::Unavailable(
                    "the event store is shut down".into(),
                ));
            }
            if self.inner.is_none() {
                let (generation, client) = self.conn.get();
                self.generation = generation;
                self.inner = Some(subscribe_after(&client, self.last).await);
            }
            let sub = self.inner.as_mut().expect("just opened");
            let outcome = tokio::select! {
                _ = self.stopped.changed() => continue,
                outcome = sub.next() => outcome,
            };
            match outcome {
                Ok(event) => {
                    self.failures = 0;
                    let event = recorded(&event);
                    // After a resubscription the server starts strictly after `last`;
                    // the check keeps that promise whatever the server does.
                    if event.position <= self.last || event.is_system() {
                        continue;
                    }
                    self.last = event.position;
                    return Ok(event);
                }
                // Denied: resubscribing cannot help until an operator changes the
                // credentials or the ACL of $all; stop, and say so.
                Err(eventstore::Error::AccessDenied) => {
                    self.inner = None;
                    return Err(StoreError::Denied(
                        "EventStoreDB denied the subscription to $all: troved's user needs \
                         read access to $all (check the credentials and the $all ACL)"
                            .into(),
                    ));
                }
                Err(e) => {
                    self.inner = None;
                    let e = self.conn.error(self.generation, e);
                    self.resubscriptions.fetch_add(1, Ordering::Relaxed);
                    self.failures = self.failures.saturating_add(1);
                    let wait = RESUBSCRIBE.delay(self.failures);
                    tracing::warn!(error = %e, from = %self.last, retry_in_ms = wait.as_millis() as u64, "EventStoreDB subscription dropped; resubscribing");
                    tokio::select! {
                        _ = self.stopped.changed() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_connection_string_is_refused_without_echoing_it() {
        let err = EsdbStore::connect("esdb://admin:s3cret@[bad")
            .await
            .err()
            .expect("refused");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    /// A deadline that passed on an append leaves its outcome unknown, like a server
    /// timeout: sent again when repeatable, then looked for; never a plain failure.
    #[test]
    fn a_passed_deadline_is_an_unknown_outcome() {
        assert!(unknown_outcome(&eventstore::Error::DeadlineExceeded));
        assert!(!unknown_outcome(&eventstore::Error::ConnectionClosed));
        assert!(!unknown_outcome(&eventstore::Error::ResourceNotFound));
        match unknown_outcome_error(eventstore::Error::DeadlineExceeded) {
            StoreError::Unavailable(m) => assert!(m.contains("may still land"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
