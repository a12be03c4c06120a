//! In-process EventStoreDB (KurrentDB) gRPC test double.
//!
//! A tonic server speaking the protocol of the `eventstore` crate (generated from the very
//! `.proto` files that crate ships, see `codegen.sh` and `src/generated/`), so that the real
//! `eventstore::Client` can be exercised where no EventStoreDB can be installed. It runs on its
//! own tokio runtime (two worker threads), so it keeps serving whatever the test does with its
//! own runtime (a `current_thread` test, a blocking wait on a child process that is the client,
//! ...). A dev-only workspace crate (`publish = false`), so it and its generated code are
//! compiled once for every test binary that uses it: `use esdb_double::EsdbDouble;`.
//!
//! # What it implements
//!
//! * `event_store.client.server_features.ServerFeatures/GetSupportedMethods`: advertises
//!   `streams.read` (features `position`, `events`), `streams.append` and itself, server version
//!   [`SERVER_VERSION`] (24.10.0). BatchAppend and the persistent-subscription methods are *not*
//!   advertised, so the client's `batch_append()` answers `UnsupportedFeature` and
//!   `append_to_stream` uses `Streams/Append` (the only path it has anyway).
//! * `event_store.client.streams.Streams/Append`: options first, then proposed messages. Each
//!   proposed message needs the `type` and `content-type` metadata entries (else
//!   `INVALID_ARGUMENT`, like the server) and an id.
//! * `event_store.client.streams.Streams/Read`, all of:
//!   - a stream, forwards/backwards, from start/end/revision, with a count. Forwards from a
//!     revision is inclusive; backwards from a revision starts at `min(revision, last)` and is
//!     inclusive; backwards from start returns event 0; forwards from end returns nothing. A
//!     successful read ends with `last_stream_position` when the client asks for
//!     `control_option.compatibility >= 1` (the Rust client does; it ignores it).
//!   - `$all`, forwards/backwards, from start/end/position, with a count and an optional filter.
//!     Forwards from a position returns the events at positions `>= position` (inclusive, like
//!     the transaction-file read it mimics); backwards from a position returns the events at
//!     positions `< position` (exclusive). From start: everything, system events included.
//!   - a subscription to `$all` from start/end/position, optionally filtered on event type or
//!     stream name (regex, else prefixes; an empty filter matches nothing, as on the server),
//!     and a subscription to a stream from start/end/revision.
//!
//! Everything else (Delete, Tombstone, BatchAppend, other services) is `UNIMPLEMENTED`, which
//! the client maps to `Error::UnsupportedFeature`.
//!
//! # Storage model
//!
//! * One global log (`$all`) of records, and per stream the list of its events; revisions are
//!   dense from 0.
//! * Positions are byte-offset-like, not counters: the first record is at [`FIRST_RECORD`] and
//!   each record advances the log by [`RECORD_OVERHEAD`] bytes plus the lengths of its stream
//!   name, event type, data and custom metadata. As on the server (each event is a
//!   self-committed prepare record, `StorageWriterService.WritePrepares`; `AllReader` gives it
//!   `TFPos(LogPosition, LogPosition)`), every event's `commit` and `prepare` are both its own
//!   offset, so `commit` alone is unique per event; the append's success carries the position
//!   of its **last** event (the commit acknowledgement is sent for the `TransactionEnd` record,
//!   `StorageChaser`). `$all` reads and subscriptions carry both positions on each event (and
//!   the commit position in `ReadEvent.position`, for stream reads too). `(commit, prepare)`
//!   pairs strictly increase along the log.
//! * At start-up two system events are written, as a fresh server does on its own:
//!   `$epoch-information` in stream `$epoch-information`, and `$metadata` in `$$$scavenges`.
//!   [`EsdbDouble::append_system_event`] adds a `$statsCollected` event to
//!   `$stats-127.0.0.1:PORT` (the server writes those periodically).
//! * Event data: `data`, `custom_metadata` and the id are kept byte for byte. The metadata map
//!   read back is what the server returns: `type` and `content-type` as proposed, plus `created`
//!   (100 ns ticks since the Unix epoch, set at append time). Other proposed metadata keys are
//!   dropped, as the server does. Ids come back in the format asked for (string or structured).
//!
//! # Appends: expected revision and idempotence (as `IndexWriter.CheckCommit` does)
//!
//! * Tombstoned stream: any append fails like the server: gRPC `FAILED_PRECONDITION` with
//!   metadata `exception: stream-deleted` and `stream-name` (client: `Error::ResourceDeleted`).
//! * `stream_exists` on a stream without events: wrong expected version.
//! * `any` / `stream_exists`: if the first proposed id is not in this stream, the events are
//!   written. If it is, and so are all the others, the append is idempotent (nothing written;
//!   success with the revision of the last of those events); if only some are, wrong expected
//!   version. (Like the server, consecutiveness is not checked.)
//! * exact revision / `no_stream` (= -1): expected == current: written. Expected > current:
//!   wrong expected version. Expected < current: if the proposed ids are exactly the events at
//!   `expected+1 ..`, idempotent (success, revision of the last of them); otherwise (first id
//!   differs, only a prefix matches, or the batch runs past the end of the stream) wrong expected
//!   version.
//! * Idempotent success carries the position the server returns for it: `(p, p)` where `p` is
//!   the prepare position of the last matched event (for a single-event append, the same
//!   position as the original append).
//! * Wrong expected version is the `wrong_expected_version` response (not a gRPC error), with
//!   the current revision (or `current_no_stream`) and the expected one as sent, and the legacy
//!   `_20_6_0` fields filled as the server does.
//! * Event ids are not globally unique: the same id in another stream is simply written.
//! * An empty append that passes the check writes nothing and answers success with the current
//!   revision (or `no_stream`) and `no_position`.
//! * All of it happens under one lock: among concurrent appends with the same expected
//!   revision exactly one wins.
//!
//! # Tombstones
//!
//! [`EsdbDouble::tombstone`] hard-deletes a stream the way the server records it: a
//! `$streamDeleted` record (revision `i64::MAX`) in that stream is written to `$all` (so `$all`
//! readers and unfiltered subscribers see it; the "exclude system events" filter drops it), and
//! from then on reads, subscriptions and appends of that stream fail with `stream-deleted`.
//!
//! # Subscriptions
//!
//! The `confirmation` first, then the catch-up history, then `caught_up` (once, when the
//! subscriber first reaches the end of the log; the Rust client understands it), then live
//! events as they are appended: in log order, no gap, no duplicate. Live delivery is push-based
//! (a `tokio::sync::watch` bumped by every write); every subscriber reads the log itself through
//! its own cursor and hands messages to a bounded channel, so a slow subscriber is only slowed
//! down (back-pressure), it never loses events.
//! * From a position: strictly after it (the client resubscribes from the last event it saw).
//!   From start: everything. From end: only what is appended after the subscription.
//! * Filtered `$all` subscriptions get `checkpoint` messages: every `window × multiplier`
//!   *considered* records (window = the filter's `max`, or [`DEFAULT_CHECKPOINT_WINDOW`] = 32
//!   when the client sends `count`), at the position of the last considered record, and one at
//!   the end of the catch-up (before `caught_up`) if anything was considered. No duplicate
//!   checkpoints. Unfiltered and stream subscriptions get none.
//! * Stream subscriptions: from a revision means after it; a tombstoned stream fails with
//!   `stream-deleted` (at subscription time, or while live).
//!
//! # Failures
//!
//! [`EsdbDouble::stop`] closes the listening socket and shuts down every accepted TCP
//! connection (`shutdown(Both)` on the socket), so the client sees the connection drop: open
//! subscriptions and calls end with a transport error, later calls fail to connect. Data is
//! kept; [`EsdbDouble::restart`] binds the same port again (`SO_REUSEADDR`).
//! [`EsdbDouble::drop_connections`] does the same to the connections but keeps listening.
//!
//! # Simplifications
//!
//! No TLS, no authentication/ACLs (but see [`EsdbDouble::deny_all`]), no stream metadata
//! semantics (`$maxAge`, `$tb`, soft delete), no link resolution (`resolve_links` is ignored,
//! nothing is a link), no `first_stream_position`, no deadlines, no max append size unless a
//! test sets one, no `fell_behind` (a subscriber never falls behind), the `$all` positions are
//! made-up offsets (stable within one double). The idempotence of exact expectations looks at
//! the whole stream (as the server's index does); `any` ids are remembered for ever unless
//! [`EsdbDouble::forget_ids_on_restart`] is on (the server's cache is bounded, 8 MiB).
//!
//! # Failure switches
//!
//! Each off until a test turns it on, answered as the server answers (see each method):
//! [`EsdbDouble::fail_reads`] ("Server Is Not Ready"), [`EsdbDouble::time_out_after_write`]
//! (commit timeout after the write landed), [`EsdbDouble::drop_early_retries`] (that write
//! pending replication: unreadable, and its retries dropped with a prepare timeout, until
//! [`EsdbDouble::replicate`] or the last drop), [`EsdbDouble::demote`] with a second node
//! from [`EsdbDouble::start_node_of`] (NotLeader naming it; the nodes share their data, so
//! replication is instantaneous), [`EsdbDouble::max_append_size`],
//! [`EsdbDouble::deny_all`], [`EsdbDouble::forget_ids_on_restart`]. Unlike the server, the
//! timeouts are answered at once, not after its 2 s.
//!
//! The regex of filters is a small backtracking engine (literals, `.`, classes, anchors,
//! groups, alternation, `* + ? {n,m}`, `\d \w \s`); an unsupported pattern is answered with
//! `INVALID_ARGUMENT`.
// gRPC handlers return `tonic::Status` (large) by the signature tonic imposes; so do helpers.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::codegen::BoxStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::Connected;
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;

/// Code generated by `codegen.sh` (tonic-build, server side only), in the module tree of the
/// protobuf packages so that its relative `super::` paths resolve.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    unused_variables,
    unused_imports,
    unreachable_pub,
    missing_docs
)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            include!("generated/event_store.client.rs");
            pub mod streams {
                include!("generated/event_store.client.streams.rs");
            }
            pub mod server_features {
                include!("generated/event_store.client.server_features.rs");
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!("generated/google.rpc.rs");
        }
    }
}

use proto::event_store::client as shared;
use proto::event_store::client::server_features::server_features_server::{
    ServerFeatures, ServerFeaturesServer,
};
use proto::event_store::client::server_features::{SupportedMethod, SupportedMethods};
use proto::event_store::client::streams::streams_server::{Streams, StreamsServer};
use proto::event_store::client::streams::{
    append_req, append_resp, read_req, read_resp, AppendReq, AppendResp, ReadReq, ReadResp,
};

/// Version the double claims in `GetSupportedMethods`.
pub const SERVER_VERSION: &str = "24.10.0";
/// Position of the first record of the log.
pub const FIRST_RECORD: u64 = 128;
/// Fixed size of a record in the log, on top of its variable-length parts.
pub const RECORD_OVERHEAD: u64 = 118;
/// Checkpoint window when the filter says `count` (the server's default read batch).
pub const DEFAULT_CHECKPOINT_WINDOW: u64 = 32;
/// How many records a reader takes per lock acquisition.
const BATCH: usize = 256;
/// Bound of the per-subscription channel towards the connection.
const SUBSCRIPTION_BUFFER: usize = 64;

// ----------------------------------------------------------------------------------------------
// Public handle
// ----------------------------------------------------------------------------------------------

/// The running double. See the module documentation for the semantics.
pub struct EsdbDouble {
    port: u16,
    shared: Arc<Shared>,
    /// This node's failure switches (see [`Faults`]).
    faults: Arc<Faults>,
    conns: Arc<ConnRegistry>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
    server: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl EsdbDouble {
    /// Starts serving on 127.0.0.1 with an OS-chosen port (h2c, no TLS).
    pub async fn start() -> EsdbDouble {
        EsdbDouble::start_on(Arc::new(Shared::new()))
    }

    /// Another node of this one's cluster: its own port, switches and connections, the same
    /// data (as if replication were instantaneous), so that one node can be the leader the
    /// other names in its `NotLeader` answers ([`EsdbDouble::demote`]).
    pub async fn start_node_of(other: &EsdbDouble) -> EsdbDouble {
        EsdbDouble::start_on(other.shared.clone())
    }

    fn start_on(shared: Arc<Shared>) -> EsdbDouble {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("esdb-double")
            .enable_all()
            .build()
            .expect("esdb double: build runtime");
        let handle = runtime.handle().clone();
        let listener = {
            let _guard = handle.enter();
            bind(0).expect("esdb double: bind 127.0.0.1:0")
        };
        let port = listener.local_addr().expect("local addr").port();
        let faults = Arc::new(Faults::default());
        let conns = Arc::new(ConnRegistry::default());
        let server = handle.spawn(serve(
            listener,
            shared.clone(),
            faults.clone(),
            conns.clone(),
        ));
        EsdbDouble {
            port,
            shared,
            faults,
            conns,
            handle,
            runtime: Some(runtime),
            server: tokio::sync::Mutex::new(Some(server)),
        }
    }

    /// `esdb://127.0.0.1:PORT?tls=false`
    pub fn url(&self) -> String {
        format!("esdb://127.0.0.1:{}?tls=false", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Server unavailable: stops accepting, drops every open connection and stream (open
    /// subscriptions end with an error on the client side). Data is kept.
    pub async fn stop(&self) {
        let mut server = self.server.lock().await;
        if let Some(task) = server.take() {
            task.abort();
            // Awaiting the aborted task guarantees the listener has been dropped (port closed).
            let _ = task.await;
        }
        self.conns.kill_all();
    }

    /// Serves again on the same port with the same data (no-op when serving).
    pub async fn restart(&self) {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return;
        }
        if self.faults.forget_ids_on_restart.load(Ordering::SeqCst) {
            self.shared
                .write(|store| store.id_cache_from = store.next_pos);
        }
        let mut attempt = 0;
        let listener = loop {
            let bound = {
                let _guard = self.handle.enter();
                bind(self.port)
            };
            match bound {
                Ok(listener) => break listener,
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!(
                    "esdb double: cannot bind 127.0.0.1:{} again: {e}",
                    self.port
                ),
            }
        };
        *server = Some(self.handle.spawn(serve(
            listener,
            self.shared.clone(),
            self.faults.clone(),
            self.conns.clone(),
        )));
    }

    /// Cuts every open connection/stream but keeps serving (a network blip). Open calls and
    /// subscriptions fail; the client reconnects by itself on its next call, but a call issued
    /// right after this may still be sent on the dead connection before the client has noticed
    /// it is gone, and fail too (the client does not retry).
    pub async fn drop_connections(&self) {
        self.conns.kill_all();
    }

    /// Tombstones a stream (hard delete): reads and appends then fail with `stream-deleted`.
    pub fn tombstone(&self, stream: &str) {
        self.shared.write(|store| store.tombstone(stream));
    }

    /// Appends a system event (`$statsCollected` in `$stats-127.0.0.1:PORT`), as a real server
    /// does on its own.
    pub fn append_system_event(&self) {
        let port = self.port;
        self.shared.write(|store| {
            let data = format!("{{\"proc-startTime\":\"{}\",\"sys-cpu\":1.5}}", now_ticks());
            let outcome = store.append(
                &format!("$stats-127.0.0.1:{port}"),
                Expected::Any,
                vec![Proposed {
                    id: Uuid::new_v4(),
                    event_type: "$statsCollected".into(),
                    content_type: "application/json".into(),
                    custom_metadata: Bytes::new(),
                    data: Bytes::from(data),
                }],
            );
            debug_assert!(matches!(outcome, AppendOutcome::Success { .. }));
        });
    }

    /// While on, reads (of a stream or of `$all`, not subscriptions) answer `UNAVAILABLE`
    /// "Server Is Not Ready", as a node does that is not ready (`RpcExceptions.ServerNotReady`).
    pub fn fail_reads(&self, on: bool) {
        self.faults.fail_reads.store(on, Ordering::SeqCst);
    }

    /// Demotes this node (`Some(leader)`): from now on it answers appends, and reads and
    /// subscriptions that require the leader (the client's default `nodePreference=leader`
    /// sends `requires-leader: true`), with NotLeader, as the server does
    /// (`ClusterVNodeController.DenyRequestBecauseNotLeader` → `RpcExceptions.LeaderInfo`):
    /// gRPC `NOT_FOUND` "Leader info available" with the metadata `exception: not-leader`,
    /// `leader-endpoint-host` and `leader-endpoint-port` naming `leader`. Subscriptions
    /// already open stay open and live (the server's `SubscriptionsService` drops
    /// subscribers only at shutdown; a follower's log keeps growing by replication, here by
    /// sharing the data with the leader). `None` makes it the leader again.
    pub fn demote(&self, leader: Option<&EsdbDouble>) {
        *lock(&self.faults.leader) = leader.map(|l| l.port);
    }

    /// The next `n` appends that write answer gRPC `ABORTED` "Operation timed out: Commit
    /// phase timeout." although their events landed, as the server does when the commit
    /// (replication to a quorum) outlasts its commit timeout (`RequestManagerBase` →
    /// `Streams.Append` → `RpcExceptions.Timeout`; 2 s by default). The events stay written.
    pub fn time_out_after_write(&self, n: u32) {
        self.faults.timeouts_after_write.store(n, Ordering::SeqCst);
    }

    /// The next write answered with a commit timeout ([`EsdbDouble::time_out_after_write`])
    /// while this is on is not yet replicated: it is *pending*, and the next `n` idempotent
    /// retries of it (the same ids again) are dropped without an answer, as the server drops
    /// a retry that reaches it before the original is replicated (`IndexWriter.CheckCommit`
    /// → `IdempotentNotReady`, `StorageWriterService.ActOnCommitCheckFailure`); the request
    /// then times out on the server: gRPC `ABORTED` "Operation timed out: Prepare phase
    /// timeout.". The double answers at once instead of after the server's 2 s.
    ///
    /// While a write is pending, readers do not see it, nor anything written after it (the
    /// server serves reads up to its replication checkpoint, and `IdempotentNotReady` means
    /// the original is not in the index yet): stream and `$all` reads and subscriptions stop
    /// before it, and every retry of it is dropped. It is replicated (and readable, and its
    /// retries idempotent) at the last of the `n` dropped retries, or at
    /// [`EsdbDouble::replicate`]; setting `n` to 0 does not replicate it. Appends still see it (their expected revision is checked against it, as the
    /// server's index writer does with the prepares it has written). A retry of a write
    /// that is not pending is answered as usual.
    pub fn drop_early_retries(&self, n: u32) {
        self.faults.early_retries_dropped.store(n, Ordering::SeqCst);
    }

    /// Replicates the pending write, if any ([`EsdbDouble::drop_early_retries`]): readers
    /// see it and what was written after it, open subscriptions receive them, and retries
    /// of it are idempotent.
    pub fn replicate(&self) {
        self.shared.write(|store| store.pending = None);
    }

    /// Whether a write is pending replication ([`EsdbDouble::drop_early_retries`]).
    pub fn is_replicating(&self) -> bool {
        self.shared.lock().pending.is_some()
    }

    /// While on, a restart ([`EsdbDouble::restart`]) forgets the ids of the events written
    /// before it for the idempotence of `any` / `stream_exists` appends, as the server
    /// does: it checks those against an in-memory cache of committed ids only
    /// (`IndexWriter.CheckCommit`, `_committedEvents`, `ESConsts.CommitedEventsMemCacheLimit`
    /// = 8 MiB), so after a restart (or once the cache has turned over) the same ids with
    /// `any` are written again. Exact and `no_stream` retries read the index and stay
    /// idempotent.
    pub fn forget_ids_on_restart(&self, on: bool) {
        self.faults
            .forget_ids_on_restart
            .store(on, Ordering::SeqCst);
    }

    /// Refuses appends larger than `limit` bytes (`None`: no limit, the double's default) as
    /// the server does with its `MaxAppendSize` (1 MiB by default up to 25.0):
    /// `INVALID_ARGUMENT` "Maximum Append Size of N Exceeded." with `exception:
    /// maximum-append-size-exceeded` and `maximum-append-size` (`RpcExceptions`). The size is
    /// counted as the server's `Event.SizeOnDisk` does as written (C# precedence makes it the
    /// data's length alone), summed over the append.
    pub fn max_append_size(&self, limit: Option<u32>) {
        *lock(&self.faults.max_append_size) = limit;
    }

    /// While on, reads of `$all` and subscriptions to it answer `PERMISSION_DENIED` "Access
    /// Denied" with `exception: access-denied` (`RpcExceptions.AccessDenied`), as for a user
    /// the `$all` ACL does not admit; open subscriptions to `$all` end the same way. Stream
    /// reads and appends are unaffected.
    pub fn deny_all(&self, on: bool) {
        self.faults.deny_all.send_replace(on);
    }

    /// Number of user events stored: events whose stream and type do not start with `$`.
    pub fn user_event_count(&self) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| !r.stream.starts_with('$') && !r.event_type.starts_with('$'))
            .count()
    }

    /// Number of records in `$all` (system events and tombstones included).
    pub fn all_event_count(&self) -> usize {
        self.shared.lock().log.len()
    }
}

impl Drop for EsdbDouble {
    fn drop(&mut self) {
        if let Some(task) = self.server.get_mut().take() {
            task.abort();
        }
        self.conns.kill_all();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn bind(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    faults: Arc<Faults>,
    conns: Arc<ConnRegistry>,
) {
    let incoming = async_stream::stream! {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => match conns.register(tcp) {
                    Ok(conn) => yield Ok::<_, io::Error>(conn),
                    Err(_) => continue,
                },
                // e.g. EMFILE: back off a little instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    let result = tonic::transport::Server::builder()
        .add_service(StreamsServer::new(StreamsService {
            shared: shared.clone(),
            faults,
        }))
        .add_service(ServerFeaturesServer::new(FeaturesService))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = result {
        eprintln!("esdb double: server error: {e}");
    }
}

// ----------------------------------------------------------------------------------------------
// Connections that can be cut from the outside
// ----------------------------------------------------------------------------------------------

/// Every accepted connection, by a duplicate of its socket: `shutdown(Both)` on it makes the
/// connection's pending reads see EOF and its writes fail, so hyper drops the connection and
/// the client sees it go away.
#[derive(Default)]
struct ConnRegistry {
    next_id: AtomicU64,
    sockets: Mutex<HashMap<u64, std::net::TcpStream>>,
}

impl ConnRegistry {
    fn register(self: &Arc<Self>, tcp: TcpStream) -> io::Result<Conn> {
        tcp.set_nodelay(true)?;
        let std_stream = tcp.into_std()?;
        let dup = std_stream.try_clone()?;
        #[cfg(target_os = "linux")]
        let quickack = std_stream.try_clone()?;
        let io = TcpStream::from_std(std_stream)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.sockets).insert(id, dup);
        Ok(Conn {
            io,
            id,
            registry: self.clone(),
            #[cfg(target_os = "linux")]
            quickack,
        })
    }

    fn kill_all(&self) {
        let sockets: Vec<_> = lock(&self.sockets).drain().map(|(_, s)| s).collect();
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

struct Conn {
    io: TcpStream,
    id: u64,
    registry: Arc<ConnRegistry>,
    /// The `eventstore` client connects without TCP_NODELAY, so after its first small write
    /// (HTTP/2 HEADERS) Nagle holds the next one (DATA) until that segment is acknowledged; with
    /// Linux's delayed ACK that costs ~40 ms per call. The double acknowledges at once
    /// (TCP_QUICKACK, re-armed after every read since the kernel clears it).
    #[cfg(target_os = "linux")]
    quickack: std::net::TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        lock(&self.registry.sockets).remove(&self.id);
    }
}

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        #[cfg(target_os = "linux")]
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            use std::os::linux::net::TcpStreamExt;
            let _ = this.quickack.set_quickack(true);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = before;
        poll
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

// ----------------------------------------------------------------------------------------------
// Storage
// ----------------------------------------------------------------------------------------------

struct Shared {
    store: Mutex<Store>,
    /// Number of records in the log; bumped after every write (live delivery).
    written: watch::Sender<usize>,
}

impl Shared {
    fn new() -> Shared {
        let mut store = Store {
            log: Vec::new(),
            streams: HashMap::new(),
            next_pos: FIRST_RECORD,
            id_cache_from: 0,
            pending: None,
        };
        store.startup();
        let len = store.log.len();
        Shared {
            store: Mutex::new(store),
            written: watch::channel(len).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Runs a mutation and wakes the subscribers.
    fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.lock();
        let result = f(&mut store);
        let len = store.log.len();
        drop(store);
        self.written.send_replace(len);
        result
    }
}

struct Record {
    stream: String,
    revision: u64,
    id: Uuid,
    event_type: String,
    content_type: String,
    /// 100 ns ticks since the Unix epoch.
    created: i64,
    custom_metadata: Bytes,
    data: Bytes,
    commit: u64,
    prepare: u64,
}

impl Record {
    fn pos(&self) -> (u64, u64) {
        (self.commit, self.prepare)
    }
}

#[derive(Default)]
struct StreamState {
    events: Vec<Arc<Record>>,
    /// Latest revision of each event id in this stream.
    ids: HashMap<Uuid, u64>,
    tombstoned: bool,
}

struct Store {
    log: Vec<Arc<Record>>,
    streams: HashMap<String, StreamState>,
    next_pos: u64,
    /// The idempotence of `any` / `stream_exists` appends only knows events at or after
    /// this position: the server checks them against an in-memory cache of committed ids
    /// (`IndexWriter._committedEvents`, 8 MiB), empty after a restart
    /// ([`EsdbDouble::forget_ids_on_restart`]). Exact expectations read the index instead
    /// and always find them.
    id_cache_from: u64,
    /// Index in `log` of the first record not yet replicated
    /// ([`EsdbDouble::drop_early_retries`]): readers see the log up to it.
    pending: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

struct Proposed {
    id: Uuid,
    event_type: String,
    content_type: String,
    custom_metadata: Bytes,
    data: Bytes,
}

#[derive(Debug)]
enum AppendOutcome {
    Success {
        revision: Option<u64>,
        position: Option<(u64, u64)>,
    },
    WrongExpectedVersion {
        current: Option<u64>,
    },
    Deleted,
}

enum Decision {
    Write,
    Idempotent(u64),
    Wrong,
}

fn now_ticks() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_nanos() / 100) as i64
}

impl Store {
    fn startup(&mut self) {
        let epoch = format!(
            "{{\"epochNumber\":0,\"epochPosition\":0,\"epochId\":\"{}\",\"leaderInstanceId\":\"{}\",\"time\":{}}}",
            Uuid::new_v4(),
            Uuid::new_v4(),
            now_ticks()
        );
        for (stream, event_type, data) in [
            ("$epoch-information", "$epoch-information", epoch),
            (
                "$$$scavenges",
                "$metadata",
                "{\"$maxAge\":2592000}".to_string(),
            ),
        ] {
            self.append(
                stream,
                Expected::Any,
                vec![Proposed {
                    id: Uuid::new_v4(),
                    event_type: event_type.into(),
                    content_type: "application/json".into(),
                    custom_metadata: Bytes::new(),
                    data: Bytes::from(data),
                }],
            );
        }
    }

    fn current(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|s| s.events.len().checked_sub(1))
            .map(|r| r as u64)
    }

    fn is_tombstoned(&self, stream: &str) -> bool {
        self.streams.get(stream).is_some_and(|s| s.tombstoned)
    }

    fn append(&mut self, stream: &str, expected: Expected, events: Vec<Proposed>) -> AppendOutcome {
        if self.is_tombstoned(stream) {
            return AppendOutcome::Deleted;
        }
        let current = self.current(stream);
        match self.decide(stream, expected, &events, current) {
            Decision::Wrong => AppendOutcome::WrongExpectedVersion { current },
            Decision::Idempotent(last) => {
                let prepare = self.streams[stream].events[last as usize].prepare;
                AppendOutcome::Success {
                    revision: Some(last),
                    position: Some((prepare, prepare)),
                }
            }
            Decision::Write if events.is_empty() => AppendOutcome::Success {
                revision: current,
                position: None,
            },
            Decision::Write => self.write(stream, events),
        }
    }

    fn decide(
        &self,
        stream: &str,
        expected: Expected,
        events: &[Proposed],
        current: Option<u64>,
    ) -> Decision {
        let state = self.streams.get(stream);
        // `any` / `stream_exists`: only the ids the server's cache still holds.
        let revision_of = |id: &Uuid| {
            let state = state?;
            let revision = state.ids.get(id).copied()?;
            let record = state.events.get(revision as usize)?;
            (record.prepare >= self.id_cache_from).then_some(revision)
        };
        let id_at = |revision: u64| {
            state
                .and_then(|s| s.events.get(revision as usize))
                .map(|r| r.id)
        };
        match expected {
            Expected::StreamExists if current.is_none() => Decision::Wrong,
            Expected::Any | Expected::StreamExists => {
                let Some(first) = events.first() else {
                    return Decision::Write;
                };
                let Some(mut last) = revision_of(&first.id) else {
                    return Decision::Write;
                };
                for event in &events[1..] {
                    match revision_of(&event.id) {
                        Some(revision) => last = revision,
                        // Corrupted idempotency: reported as wrong expected version.
                        None => return Decision::Wrong,
                    }
                }
                Decision::Idempotent(last)
            }
            Expected::NoStream | Expected::Exact(_) => {
                let expected = match expected {
                    Expected::Exact(revision) => revision as i64,
                    _ => -1,
                };
                let current = current.map_or(-1, |c| c as i64);
                if expected < current {
                    if events.is_empty() {
                        return Decision::Wrong;
                    }
                    for (i, event) in events.iter().enumerate() {
                        let revision = (expected + 1) as u64 + i as u64;
                        if id_at(revision) != Some(event.id) {
                            return Decision::Wrong;
                        }
                    }
                    Decision::Idempotent((expected + events.len() as i64) as u64)
                } else if expected > current {
                    Decision::Wrong
                } else {
                    Decision::Write
                }
            }
        }
    }

    fn write(&mut self, stream: &str, events: Vec<Proposed>) -> AppendOutcome {
        let Store {
            log,
            streams,
            next_pos,
            ..
        } = self;
        let created = now_ticks();
        let state = streams.entry(stream.to_string()).or_default();
        let mut last = 0;
        let mut last_position = *next_pos;
        for event in events {
            let revision = state.events.len() as u64;
            // The server writes each event as a self-committed prepare (`IsCommitted`): its
            // commit and prepare positions are both its own offset.
            let prepare = *next_pos;
            last_position = prepare;
            *next_pos += RECORD_OVERHEAD
                + (stream.len()
                    + event.event_type.len()
                    + event.data.len()
                    + event.custom_metadata.len()) as u64;
            let record = Arc::new(Record {
                stream: stream.to_string(),
                revision,
                id: event.id,
                event_type: event.event_type,
                content_type: event.content_type,
                created,
                custom_metadata: event.custom_metadata,
                data: event.data,
                commit: prepare,
                prepare,
            });
            state.ids.insert(record.id, revision);
            state.events.push(record.clone());
            log.push(record);
            last = revision;
        }
        // The answer is the commit acknowledgement of the transaction's last record.
        AppendOutcome::Success {
            revision: Some(last),
            position: Some((last_position, last_position)),
        }
    }

    /// The timeout a successful append is answered with instead, if any: a commit timeout
    /// for a write (`wrote`, its records from log index `first`) while
    /// [`EsdbDouble::time_out_after_write`] is on, the write then pending while
    /// [`EsdbDouble::drop_early_retries`] is on; a prepare timeout for a retry of a pending
    /// write (the last dropped retry replicates it).
    fn timeout_after(
        &mut self,
        faults: &Faults,
        wrote: bool,
        first: usize,
        position: Option<(u64, u64)>,
    ) -> Option<&'static str> {
        if wrote {
            if !take_one(&faults.timeouts_after_write) {
                return None;
            }
            if faults.early_retries_dropped.load(Ordering::SeqCst) > 0 && self.pending.is_none() {
                self.pending = Some(first);
            }
            return Some("Commit");
        }
        if !position.is_some_and(|p| self.is_pending(p)) {
            return None;
        }
        // Dropped while pending, whatever the count; the last of the `n` replicates it.
        let left =
            faults
                .early_retries_dropped
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left == Ok(1) {
            self.pending = None;
        }
        Some("Prepare")
    }

    fn tombstone(&mut self, stream: &str) {
        let state = self.streams.entry(stream.to_string()).or_default();
        if state.tombstoned {
            return;
        }
        state.tombstoned = true;
        let position = self.next_pos;
        let event_type = "$streamDeleted";
        self.next_pos += RECORD_OVERHEAD + (stream.len() + event_type.len()) as u64;
        self.log.push(Arc::new(Record {
            stream: stream.to_string(),
            revision: i64::MAX as u64,
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            content_type: "application/octet-stream".into(),
            created: now_ticks(),
            custom_metadata: Bytes::new(),
            data: Bytes::new(),
            commit: position,
            prepare: position,
        }));
    }

    /// Index of the first visible record at or after `position`.
    fn index_at_or_after(&self, position: (u64, u64)) -> usize {
        self.visible_log().partition_point(|r| r.pos() < position)
    }

    /// Index of the first visible record strictly after `position`.
    fn index_after(&self, position: (u64, u64)) -> usize {
        self.visible_log().partition_point(|r| r.pos() <= position)
    }

    /// The log as readers see it: up to the first write not yet replicated.
    fn visible_log(&self) -> &[Arc<Record>] {
        &self.log[..self.pending.unwrap_or(self.log.len()).min(self.log.len())]
    }

    /// A stream's events as readers see them (see [`Store::visible_log`]).
    fn visible_events<'a>(&self, state: &'a StreamState) -> &'a [Arc<Record>] {
        match self.pending.and_then(|i| self.log.get(i)) {
            Some(first) => {
                let seen = state.events.partition_point(|r| r.pos() < first.pos());
                &state.events[..seen]
            }
            None => &state.events,
        }
    }

    /// Whether the record at `position` is not yet replicated.
    fn is_pending(&self, position: (u64, u64)) -> bool {
        self.pending
            .and_then(|i| self.log.get(i))
            .is_some_and(|first| position >= first.pos())
    }
}

// ----------------------------------------------------------------------------------------------
// Filters (with a small regex engine)
// ----------------------------------------------------------------------------------------------

struct Filter {
    on_stream: bool,
    matcher: Matcher,
    /// Checkpoint every this many considered records.
    checkpoint_interval: u64,
}

enum Matcher {
    Regex(Regex),
    Prefixes(Vec<String>),
}

impl Filter {
    fn from_proto(options: &read_req::options::FilterOptions) -> Result<Filter, Status> {
        use read_req::options::filter_options::{Filter as F, Window};
        let (on_stream, expression) = match &options.filter {
            Some(F::StreamIdentifier(e)) => (true, e),
            Some(F::EventType(e)) => (false, e),
            None => return Err(Status::invalid_argument("filter without stream/event type")),
        };
        let matcher = if expression.regex.is_empty() {
            Matcher::Prefixes(expression.prefix.clone())
        } else {
            Matcher::Regex(Regex::new(&expression.regex).map_err(|e| {
                Status::invalid_argument(format!(
                    "esdb double: unsupported filter regex {:?}: {e}",
                    expression.regex
                ))
            })?)
        };
        let window = match options.window {
            Some(Window::Max(max)) if max > 0 => u64::from(max),
            _ => DEFAULT_CHECKPOINT_WINDOW,
        };
        let multiplier = u64::from(options.checkpoint_interval_multiplier.max(1));
        Ok(Filter {
            on_stream,
            matcher,
            checkpoint_interval: window * multiplier,
        })
    }

    fn matches(&self, record: &Record) -> bool {
        let subject = if self.on_stream {
            &record.stream
        } else {
            &record.event_type
        };
        match &self.matcher {
            Matcher::Regex(re) => re.is_match(subject),
            Matcher::Prefixes(prefixes) => prefixes.iter().any(|p| subject.starts_with(p.as_str())),
        }
    }
}

/// A backtracking regex supporting what event filters use in practice: literals, `.`,
/// classes `[a-z]`/`[^$]`, `^`/`$`, groups `( )`/`(?: )`, `|`, `* + ? {n} {n,} {n,m}` (lazy
/// variants accepted), escapes `\d \D \w \W \s \S \t \n \r` and escaped literals. `is_match`
/// searches anywhere in the input, like .NET `Regex.IsMatch`.
struct Regex {
    alternatives: Vec<Vec<Piece>>,
}

struct Piece {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

enum Atom {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Group(Vec<Vec<Piece>>),
}

struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl ClassItem {
    fn matches(&self, c: char) -> bool {
        match *self {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Digit(positive) => c.is_ascii_digit() == positive,
            ClassItem::Word(positive) => (c.is_alphanumeric() || c == '_') == positive,
            ClassItem::Space(positive) => c.is_whitespace() == positive,
        }
    }
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.items.iter().any(|i| i.matches(c)) != self.negated
    }
}

impl Regex {
    fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let alternatives = parse_alternatives(&chars, &mut pos)?;
        if pos != chars.len() {
            return Err(format!("unexpected {:?} at {pos}", chars[pos]));
        }
        Ok(Regex { alternatives })
    }

    fn is_match(&self, input: &str) -> bool {
        let chars: Vec<char> = input.chars().collect();
        (0..=chars.len())
            .any(|start| match_alternatives(&self.alternatives, &chars, start, &mut |_| true))
    }
}

fn parse_alternatives(p: &[char], pos: &mut usize) -> Result<Vec<Vec<Piece>>, String> {
    let mut alternatives = vec![parse_sequence(p, pos)?];
    while *pos < p.len() && p[*pos] == '|' {
        *pos += 1;
        alternatives.push(parse_sequence(p, pos)?);
    }
    Ok(alternatives)
}

fn parse_sequence(p: &[char], pos: &mut usize) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    while *pos < p.len() && p[*pos] != '|' && p[*pos] != ')' {
        let atom = parse_atom(p, pos)?;
        let (min, max) = parse_quantifier(p, pos)?;
        if (min, max) != (1, Some(1)) && matches!(atom, Atom::Start | Atom::End) {
            return Err("quantified anchor".into());
        }
        pieces.push(Piece { atom, min, max });
    }
    Ok(pieces)
}

fn parse_atom(p: &[char], pos: &mut usize) -> Result<Atom, String> {
    let c = p[*pos];
    *pos += 1;
    Ok(match c {
        '.' => Atom::Any,
        '^' => Atom::Start,
        '$' => Atom::End,
        '(' => {
            if p.get(*pos) == Some(&'?') {
                if p.get(*pos + 1) == Some(&':') {
                    *pos += 2;
                } else {
                    return Err("only (?: ) groups are supported".into());
                }
            }
            let inner = parse_alternatives(p, pos)?;
            if p.get(*pos) != Some(&')') {
                return Err("unclosed group".into());
            }
            *pos += 1;
            Atom::Group(inner)
        }
        '[' => Atom::Class(parse_class(p, pos)?),
        '\\' => match parse_escape(p, pos)? {
            ClassItem::Range(lo, hi) if lo == hi => Atom::Char(lo),
            item => Atom::Class(Class {
                negated: false,
                items: vec![item],
            }),
        },
        '*' | '+' | '?' | '{' => return Err(format!("nothing to repeat before {c:?}")),
        ')' | ']' => return Err(format!("unbalanced {c:?}")),
        c => Atom::Char(c),
    })
}

fn parse_escape(p: &[char], pos: &mut usize) -> Result<ClassItem, String> {
    let Some(&c) = p.get(*pos) else {
        return Err("trailing backslash".into());
    };
    *pos += 1;
    Ok(match c {
        'd' => ClassItem::Digit(true),
        'D' => ClassItem::Digit(false),
        'w' => ClassItem::Word(true),
        'W' => ClassItem::Word(false),
        's' => ClassItem::Space(true),
        'S' => ClassItem::Space(false),
        't' => ClassItem::Range('\t', '\t'),
        'n' => ClassItem::Range('\n', '\n'),
        'r' => ClassItem::Range('\r', '\r'),
        c if c.is_ascii_alphanumeric() => return Err(format!("unsupported escape \\{c}")),
        c => ClassItem::Range(c, c),
    })
}

fn parse_class(p: &[char], pos: &mut usize) -> Result<Class, String> {
    let mut negated = false;
    if p.get(*pos) == Some(&'^') {
        negated = true;
        *pos += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = p.get(*pos) else {
            return Err("unclosed class".into());
        };
        if c == ']' && !first {
            *pos += 1;
            break;
        }
        first = false;
        *pos += 1;
        let item = if c == '\\' {
            parse_escape(p, pos)?
        } else {
            ClassItem::Range(c, c)
        };
        // A range `a-z` (a `-` before `]` is literal).
        if let ClassItem::Range(lo, _) = item {
            if p.get(*pos) == Some(&'-') && p.get(*pos + 1).is_some_and(|&n| n != ']') {
                *pos += 1;
                let hi_char = p[*pos];
                *pos += 1;
                let hi = if hi_char == '\\' {
                    match parse_escape(p, pos)? {
                        ClassItem::Range(h, _) => h,
                        _ => return Err("bad class range".into()),
                    }
                } else {
                    hi_char
                };
                if hi < lo {
                    return Err("reversed class range".into());
                }
                items.push(ClassItem::Range(lo, hi));
                continue;
            }
        }
        items.push(item);
    }
    Ok(Class { negated, items })
}

fn parse_quantifier(p: &[char], pos: &mut usize) -> Result<(usize, Option<usize>), String> {
    let quantifier = match p.get(*pos) {
        Some('*') => {
            *pos += 1;
            (0, None)
        }
        Some('+') => {
            *pos += 1;
            (1, None)
        }
        Some('?') => {
            *pos += 1;
            (0, Some(1))
        }
        Some('{') => {
            let close = p[*pos..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unclosed {")?;
            let body: String = p[*pos + 1..*pos + close].iter().collect();
            *pos += close + 1;
            let number = |s: &str| s.trim().parse::<usize>().map_err(|e| e.to_string());
            match body.split_once(',') {
                None => {
                    let n = number(&body)?;
                    (n, Some(n))
                }
                Some((lo, "")) => (number(lo)?, None),
                Some((lo, hi)) => (number(lo)?, Some(number(hi)?)),
            }
        }
        _ => return Ok((1, Some(1))),
    };
    // Lazy quantifiers match the same set of strings.
    if p.get(*pos) == Some(&'?') {
        *pos += 1;
    }
    Ok(quantifier)
}

fn match_alternatives(
    alternatives: &[Vec<Piece>],
    s: &[char],
    pos: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    alternatives
        .iter()
        .any(|sequence| match_sequence(sequence, s, pos, &mut *k))
}

fn match_sequence(
    pieces: &[Piece],
    s: &[char],
    pos: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    match pieces.split_first() {
        None => k(pos),
        Some((piece, rest)) => match_repeat(piece, 0, s, pos, &mut |next| {
            match_sequence(rest, s, next, &mut *k)
        }),
    }
}

fn match_repeat(
    piece: &Piece,
    count: usize,
    s: &[char],
    pos: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if piece.max.is_none_or(|max| count < max)
        && match_atom(&piece.atom, s, pos, &mut |next| {
            // An empty iteration only counts towards the minimum (no infinite loops).
            (next != pos || count < piece.min) && match_repeat(piece, count + 1, s, next, &mut *k)
        })
    {
        return true;
    }
    count >= piece.min && k(pos)
}

fn match_atom(atom: &Atom, s: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match atom {
        Atom::Char(c) => pos < s.len() && s[pos] == *c && k(pos + 1),
        Atom::Any => pos < s.len() && s[pos] != '\n' && k(pos + 1),
        Atom::Class(class) => pos < s.len() && class.matches(s[pos]) && k(pos + 1),
        Atom::Start => pos == 0 && k(pos),
        Atom::End => (pos == s.len() || (pos + 1 == s.len() && s[pos] == '\n')) && k(pos),
        Atom::Group(alternatives) => match_alternatives(alternatives, s, pos, k),
    }
}

// ----------------------------------------------------------------------------------------------
// gRPC services
// ----------------------------------------------------------------------------------------------

struct FeaturesService;

#[tonic::async_trait]
impl ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<()>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let method = |name: &str, service: &str, features: &[&str]| SupportedMethod {
            method_name: name.into(),
            service_name: service.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
        };
        Ok(Response::new(SupportedMethods {
            methods: vec![
                method(
                    "read",
                    "event_store.client.streams.streams",
                    &["position", "events"],
                ),
                method("append", "event_store.client.streams.streams", &[]),
                method(
                    "getsupportedmethods",
                    "event_store.client.server_features.serverfeatures",
                    &[],
                ),
            ],
            event_store_server_version: SERVER_VERSION.into(),
        }))
    }
}

struct StreamsService {
    shared: Arc<Shared>,
    faults: Arc<Faults>,
}

/// Failure switches of one node, each off until a test turns it on.
struct Faults {
    /// Reads answer `UNAVAILABLE` ([`EsdbDouble::fail_reads`]).
    fail_reads: std::sync::atomic::AtomicBool,
    /// The leader's port while this node is demoted ([`EsdbDouble::demote`]).
    leader: Mutex<Option<u16>>,
    /// Writes left to answer with a commit timeout ([`EsdbDouble::time_out_after_write`]).
    timeouts_after_write: std::sync::atomic::AtomicU32,
    /// Idempotent retries left to drop ([`EsdbDouble::drop_early_retries`]).
    early_retries_dropped: std::sync::atomic::AtomicU32,
    /// The largest append accepted, in bytes ([`EsdbDouble::max_append_size`]).
    max_append_size: Mutex<Option<u32>>,
    /// `$all` denied ([`EsdbDouble::deny_all`]); a watch so open subscriptions end.
    deny_all: watch::Sender<bool>,
    /// A restart empties the id cache ([`EsdbDouble::forget_ids_on_restart`]).
    forget_ids_on_restart: std::sync::atomic::AtomicBool,
}

/// The server's answer to a request its ACLs refuse.
fn access_denied() -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("exception", MetadataValue::from_static("access-denied"));
    Status::with_metadata(Code::PermissionDenied, "Access Denied", metadata)
}

/// The server's answer to an append over its `MaxAppendSize`.
fn append_too_large(limit: u32) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "exception",
        MetadataValue::from_static("maximum-append-size-exceeded"),
    );
    metadata.insert("maximum-append-size", MetadataValue::from(limit));
    Status::with_metadata(
        Code::InvalidArgument,
        format!("Maximum Append Size of {limit} Exceeded."),
        metadata,
    )
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            fail_reads: Default::default(),
            leader: Default::default(),
            timeouts_after_write: Default::default(),
            early_retries_dropped: Default::default(),
            max_append_size: Default::default(),
            deny_all: watch::channel(false).0,
            forget_ids_on_restart: Default::default(),
        }
    }
}

/// Takes one from a switch's count; whether there was one.
fn take_one(count: &std::sync::atomic::AtomicU32) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The server's answer when a write's prepare or commit phase outlasted its timeout.
fn timed_out(phase: &str) -> Status {
    Status::aborted(format!("Operation timed out: {phase} phase timeout."))
}

impl Faults {
    /// NotLeader for a request that needs the leader, while this node is demoted.
    fn not_leader(&self, requires_leader: bool) -> Result<(), Status> {
        match *lock(&self.leader) {
            Some(port) if requires_leader => {
                let mut metadata = MetadataMap::new();
                metadata.insert("exception", MetadataValue::from_static("not-leader"));
                metadata.insert(
                    "leader-endpoint-host",
                    MetadataValue::from_static("127.0.0.1"),
                );
                metadata.insert("leader-endpoint-port", MetadataValue::from(port));
                Err(Status::with_metadata(
                    Code::NotFound,
                    "Leader info available",
                    metadata,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Whether a request carries `requires-leader: true` (the client's `nodePreference=leader`).
fn requires_leader(metadata: &MetadataMap) -> bool {
    metadata
        .get("requires-leader")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn stream_deleted(stream: &str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("exception", MetadataValue::from_static("stream-deleted"));
    if let Ok(value) = MetadataValue::try_from(stream) {
        metadata.insert("stream-name", value);
    }
    Status::with_metadata(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        metadata,
    )
}

fn missing_metadata(property: &str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "exception",
        MetadataValue::from_static("missing-required-metadata-property"),
    );
    metadata.insert(
        "required-metadata-properties",
        MetadataValue::from_static("type,content-type"),
    );
    Status::with_metadata(
        Code::InvalidArgument,
        format!("Required Metadata Property '{property}' is missing"),
        metadata,
    )
}

fn stream_name(identifier: Option<&shared::StreamIdentifier>) -> Result<String, Status> {
    let name = identifier
        .map(|i| String::from_utf8_lossy(&i.stream_name).into_owned())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Status::invalid_argument("stream name is required"));
    }
    Ok(name)
}

fn parse_uuid(id: Option<&shared::Uuid>) -> Result<Uuid, Status> {
    use shared::uuid::Value;
    match id.and_then(|u| u.value.as_ref()) {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|e| Status::invalid_argument(format!("invalid event id {s:?}: {e}"))),
        Some(Value::Structured(s)) => Ok(Uuid::from_u128(
            (u128::from(s.most_significant_bits as u64) << 64)
                | u128::from(s.least_significant_bits as u64),
        )),
        None => Err(Status::invalid_argument("event id is required")),
    }
}

fn uuid_to_proto(id: Uuid, structured: bool) -> shared::Uuid {
    use shared::uuid::{Structured, Value};
    let value = if structured {
        let n = id.as_u128();
        Value::Structured(Structured {
            most_significant_bits: (n >> 64) as u64 as i64,
            least_significant_bits: n as u64 as i64,
        })
    } else {
        Value::String(id.to_string())
    };
    shared::Uuid { value: Some(value) }
}

fn event_message(record: &Record, structured_ids: bool) -> ReadResp {
    use read_resp::read_event::{Position, RecordedEvent};
    let metadata = HashMap::from([
        ("type".to_string(), record.event_type.clone()),
        ("content-type".to_string(), record.content_type.clone()),
        ("created".to_string(), record.created.to_string()),
    ]);
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(RecordedEvent {
                id: Some(uuid_to_proto(record.id, structured_ids)),
                stream_identifier: Some(shared::StreamIdentifier {
                    stream_name: Bytes::from(record.stream.clone()),
                }),
                stream_revision: record.revision,
                prepare_position: record.prepare,
                commit_position: record.commit,
                metadata,
                custom_metadata: record.custom_metadata.clone(),
                data: record.data.clone(),
            }),
            link: None,
            position: Some(Position::CommitPosition(record.commit)),
        })),
    }
}

fn content(content: read_resp::Content) -> ReadResp {
    ReadResp {
        content: Some(content),
    }
}

fn checkpoint_message((commit, prepare): (u64, u64)) -> ReadResp {
    content(read_resp::Content::Checkpoint(read_resp::Checkpoint {
        commit_position: commit,
        prepare_position: prepare,
    }))
}

fn confirmation_message() -> ReadResp {
    content(read_resp::Content::Confirmation(
        read_resp::SubscriptionConfirmation {
            subscription_id: Uuid::new_v4().to_string(),
        },
    ))
}

fn caught_up_message() -> ReadResp {
    content(read_resp::Content::CaughtUp(read_resp::CaughtUp {}))
}

#[derive(Clone, Copy)]
enum Origin<T> {
    Start,
    End,
    At(T),
}

type Sender = mpsc::Sender<Result<ReadResp, Status>>;

fn finished(messages: Vec<ReadResp>) -> Response<BoxStream<ReadResp>> {
    Response::new(Box::pin(tokio_stream::iter(messages.into_iter().map(Ok))))
}

fn spawn_subscription<F>(run: impl FnOnce(Sender) -> F) -> Response<BoxStream<ReadResp>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(run(tx));
    Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl Streams for StreamsService {
    async fn read(
        &self,
        request: Request<ReadReq>,
    ) -> Result<Response<BoxStream<ReadResp>>, Status> {
        use read_req::options::{
            all_options::AllOption, stream_options::RevisionOption, uuid_option, CountOption,
            FilterOption, StreamOption,
        };
        self.faults
            .not_leader(requires_leader(request.metadata()))?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("options are required"))?;
        let structured_ids = matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(uuid_option::Content::Structured(()))
        );
        let forwards = options.read_direction == 0;
        let compatibility = options.control_option.map_or(0, |c| c.compatibility);
        let filter = match &options.filter_option {
            Some(FilterOption::Filter(f)) => Some(Filter::from_proto(f)?),
            _ => None,
        };
        // `None`: a subscription.
        let count = match options.count_option {
            Some(CountOption::Subscription(_)) => None,
            Some(CountOption::Count(count)) => Some(count),
            None => {
                return Err(Status::invalid_argument(
                    "count or subscription is required",
                ))
            }
        };
        if count.is_some() && self.faults.fail_reads.load(Ordering::SeqCst) {
            return Err(Status::unavailable("Server Is Not Ready"));
        }
        match options.stream_option {
            Some(StreamOption::Stream(stream_options)) => {
                let stream = stream_name(stream_options.stream_identifier.as_ref())?;
                if filter.is_some() {
                    return Err(Status::invalid_argument(
                        "a filter is only valid when reading $all",
                    ));
                }
                let from = match stream_options.revision_option {
                    Some(RevisionOption::Start(())) | None => Origin::Start,
                    Some(RevisionOption::End(())) => Origin::End,
                    Some(RevisionOption::Revision(r)) => Origin::At(r),
                };
                match count {
                    Some(count) => self.read_stream(
                        &stream,
                        forwards,
                        from,
                        count,
                        compatibility,
                        structured_ids,
                    ),
                    None if !forwards => {
                        Err(Status::invalid_argument("subscriptions only go forwards"))
                    }
                    None => {
                        if self.shared.lock().is_tombstoned(&stream) {
                            return Err(stream_deleted(&stream));
                        }
                        let shared = self.shared.clone();
                        Ok(spawn_subscription(move |tx| {
                            stream_subscription(shared, stream, from, structured_ids, tx)
                        }))
                    }
                }
            }
            Some(StreamOption::All(all_options)) => {
                if *self.faults.deny_all.borrow() {
                    return Err(access_denied());
                }
                let from = match all_options.all_option {
                    Some(AllOption::Start(())) | None => Origin::Start,
                    Some(AllOption::End(())) => Origin::End,
                    Some(AllOption::Position(p)) => {
                        Origin::At((p.commit_position, p.prepare_position))
                    }
                };
                match count {
                    Some(count) => {
                        Ok(self.read_all(forwards, from, count, filter.as_ref(), structured_ids))
                    }
                    None if !forwards => {
                        Err(Status::invalid_argument("subscriptions only go forwards"))
                    }
                    None => {
                        let shared = self.shared.clone();
                        let denied = self.faults.deny_all.subscribe();
                        Ok(spawn_subscription(move |tx| {
                            all_subscription(shared, from, filter, structured_ids, denied, tx)
                        }))
                    }
                }
            }
            None => Err(Status::invalid_argument("stream or $all is required")),
        }
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        use append_req::options::ExpectedStreamRevision as E;
        let mut requests = request.into_inner();
        let options = match requests.message().await? {
            Some(AppendReq {
                content: Some(append_req::Content::Options(options)),
            }) => options,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the options",
                ))
            }
        };
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(r)) => Expected::Exact(r),
            Some(E::NoStream(())) => Expected::NoStream,
            Some(E::Any(())) => Expected::Any,
            Some(E::StreamExists(())) => Expected::StreamExists,
            None => return Err(Status::invalid_argument("expected revision is required")),
        };
        let mut events = Vec::new();
        let limit = *lock(&self.faults.max_append_size);
        let mut size: u64 = 0;
        while let Some(message) = requests.message().await? {
            let Some(append_req::Content::ProposedMessage(mut proposed)) = message.content else {
                return Err(Status::invalid_argument("expected a proposed message"));
            };
            let event_type = proposed
                .metadata
                .remove("type")
                .ok_or_else(|| missing_metadata("type"))?;
            let content_type = proposed
                .metadata
                .remove("content-type")
                .ok_or_else(|| missing_metadata("content-type"))?;
            size += proposed.data.len() as u64;
            if let Some(limit) = limit.filter(|&l| size > u64::from(l)) {
                return Err(append_too_large(limit));
            }
            events.push(Proposed {
                id: parse_uuid(proposed.id.as_ref())?,
                event_type,
                content_type,
                custom_metadata: proposed.custom_metadata,
                data: proposed.data,
            });
        }
        // Writes always need the leader, whatever the request says; the server answers once
        // it has read the whole request (`Streams.Append`, then `WriteEvents` is denied).
        self.faults.not_leader(true)?;
        let proposed = events.len();
        let faults = &self.faults;
        let (outcome, timeout) = self.shared.write(|store| {
            let before = store.log.len();
            let outcome = store.append(&stream, expected, events);
            let wrote = store.log.len() > before;
            let timeout = match outcome {
                AppendOutcome::Success { position, .. } if proposed > 0 => {
                    store.timeout_after(faults, wrote, before, position)
                }
                _ => None,
            };
            (outcome, timeout)
        });
        if let Some(phase) = timeout {
            return Err(timed_out(phase));
        }
        let result = match outcome {
            AppendOutcome::Deleted => return Err(stream_deleted(&stream)),
            AppendOutcome::Success { revision, position } => {
                use append_resp::success::{CurrentRevisionOption, PositionOption};
                append_resp::Result::Success(append_resp::Success {
                    current_revision_option: Some(match revision {
                        Some(r) => CurrentRevisionOption::CurrentRevision(r),
                        None => CurrentRevisionOption::NoStream(()),
                    }),
                    position_option: Some(match position {
                        Some((commit, prepare)) => {
                            PositionOption::Position(append_resp::Position {
                                commit_position: commit,
                                prepare_position: prepare,
                            })
                        }
                        None => PositionOption::NoPosition(()),
                    }),
                })
            }
            AppendOutcome::WrongExpectedVersion { current } => {
                append_resp::Result::WrongExpectedVersion(wrong_expected_version(current, expected))
            }
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }
}

fn wrong_expected_version(
    current: Option<u64>,
    expected: Expected,
) -> append_resp::WrongExpectedVersion {
    use append_resp::wrong_expected_version::{
        CurrentRevisionOption as C, CurrentRevisionOption2060 as C2060,
        ExpectedRevisionOption as X, ExpectedRevisionOption2060 as X2060,
    };
    let (current_option, current_2060) = match current {
        Some(r) => (C::CurrentRevision(r), C2060::CurrentRevision2060(r)),
        None => (C::CurrentNoStream(()), C2060::NoStream2060(())),
    };
    let (expected_option, expected_2060) = match expected {
        Expected::Any => (X::ExpectedAny(()), X2060::Any2060(())),
        Expected::StreamExists => (X::ExpectedStreamExists(()), X2060::StreamExists2060(())),
        Expected::NoStream => (
            X::ExpectedNoStream(()),
            X2060::ExpectedRevision2060(u64::MAX),
        ),
        Expected::Exact(r) => (X::ExpectedRevision(r), X2060::ExpectedRevision2060(r)),
    };
    append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(current_2060),
        expected_revision_option_20_6_0: Some(expected_2060),
        current_revision_option: Some(current_option),
        expected_revision_option: Some(expected_option),
    }
}

impl StreamsService {
    fn read_stream(
        &self,
        stream: &str,
        forwards: bool,
        from: Origin<u64>,
        count: u64,
        compatibility: u32,
        structured_ids: bool,
    ) -> Result<Response<BoxStream<ReadResp>>, Status> {
        let store = self.shared.lock();
        let state = match store.streams.get(stream) {
            Some(state) if state.tombstoned => return Err(stream_deleted(stream)),
            Some(state) if !store.visible_events(state).is_empty() => state,
            _ => {
                return Ok(finished(vec![content(read_resp::Content::StreamNotFound(
                    read_resp::StreamNotFound {
                        stream_identifier: Some(shared::StreamIdentifier {
                            stream_name: Bytes::from(stream.to_string()),
                        }),
                    },
                ))]))
            }
        };
        let events = store.visible_events(state);
        let last = events.len() as u64 - 1;
        let take = usize::try_from(count).unwrap_or(usize::MAX);
        let selected: Vec<&Arc<Record>> = if forwards {
            let start = match from {
                Origin::Start => 0,
                Origin::End => events.len(),
                Origin::At(r) => usize::try_from(r).unwrap_or(usize::MAX).min(events.len()),
            };
            events[start..].iter().take(take).collect()
        } else {
            let start = match from {
                Origin::Start => 0,
                Origin::End => last,
                Origin::At(r) => r.min(last),
            };
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            events[..=start].iter().rev().take(take).collect()
        };
        let mut messages: Vec<ReadResp> = selected
            .into_iter()
            .map(|r| event_message(r, structured_ids))
            .collect();
        if compatibility >= 1 {
            messages.push(content(read_resp::Content::LastStreamPosition(last)));
        }
        Ok(finished(messages))
    }

    fn read_all(
        &self,
        forwards: bool,
        from: Origin<(u64, u64)>,
        count: u64,
        filter: Option<&Filter>,
        structured_ids: bool,
    ) -> Response<BoxStream<ReadResp>> {
        let store = self.shared.lock();
        let log = store.visible_log();
        let take = usize::try_from(count).unwrap_or(usize::MAX);
        let keep = |r: &&Arc<Record>| filter.is_none_or(|f| f.matches(r));
        let selected: Vec<&Arc<Record>> = if forwards {
            let start = match from {
                Origin::Start => 0,
                Origin::End => log.len(),
                Origin::At(p) => store.index_at_or_after(p),
            };
            log[start..].iter().filter(keep).take(take).collect()
        } else {
            let end = match from {
                Origin::Start => 0,
                Origin::End => log.len(),
                Origin::At(p) => store.index_at_or_after(p),
            };
            log[..end].iter().rev().filter(keep).take(take).collect()
        };
        finished(
            selected
                .into_iter()
                .map(|r| event_message(r, structured_ids))
                .collect(),
        )
    }
}

/// Waits until something is written or the client goes away; false when it went away.
async fn wait_for_writes(changes: &mut watch::Receiver<usize>, tx: &Sender) -> bool {
    tokio::select! {
        changed = changes.changed() => changed.is_ok(),
        _ = tx.closed() => false,
    }
}

async fn all_subscription(
    shared: Arc<Shared>,
    from: Origin<(u64, u64)>,
    filter: Option<Filter>,
    structured_ids: bool,
    mut denied: watch::Receiver<bool>,
    tx: Sender,
) {
    // Access withdrawn while the subscription is open ends it as the server does.
    let withdrawn = async {
        loop {
            if *denied.borrow_and_update() {
                return;
            }
            if denied.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let ended_by_denial = tokio::select! {
        _ = all_subscription_events(shared, from, filter, structured_ids, &tx) => false,
        _ = withdrawn => true,
    };
    if ended_by_denial {
        let _ = tx.send(Err(access_denied())).await;
    }
}

async fn all_subscription_events(
    shared: Arc<Shared>,
    from: Origin<(u64, u64)>,
    filter: Option<Filter>,
    structured_ids: bool,
    tx: &Sender,
) {
    let mut changes = shared.written.subscribe();
    if tx.send(Ok(confirmation_message())).await.is_err() {
        return;
    }
    let mut cursor = {
        let store = shared.lock();
        match from {
            Origin::Start => 0,
            Origin::End => store.visible_log().len(),
            Origin::At(p) => store.index_after(p),
        }
    };
    let mut caught_up = false;
    let mut considered: u64 = 0;
    let mut last_considered: Option<(u64, u64)> = None;
    let mut last_checkpoint: Option<(u64, u64)> = None;
    loop {
        changes.borrow_and_update();
        let batch: Vec<Arc<Record>> = {
            let store = shared.lock();
            let log = store.visible_log();
            log[cursor.min(log.len())..]
                .iter()
                .take(BATCH)
                .cloned()
                .collect()
        };
        if batch.is_empty() {
            if !caught_up {
                caught_up = true;
                if let (Some(_), Some(position)) = (&filter, last_considered) {
                    if last_checkpoint != Some(position) {
                        last_checkpoint = Some(position);
                        if tx.send(Ok(checkpoint_message(position))).await.is_err() {
                            return;
                        }
                    }
                }
                if tx.send(Ok(caught_up_message())).await.is_err() {
                    return;
                }
            }
            if !wait_for_writes(&mut changes, tx).await {
                return;
            }
            continue;
        }
        cursor += batch.len();
        for record in batch {
            last_considered = Some(record.pos());
            if filter.as_ref().is_none_or(|f| f.matches(&record))
                && tx
                    .send(Ok(event_message(&record, structured_ids)))
                    .await
                    .is_err()
            {
                return;
            }
            if let Some(filter) = &filter {
                considered += 1;
                if considered >= filter.checkpoint_interval {
                    considered = 0;
                    last_checkpoint = Some(record.pos());
                    if tx.send(Ok(checkpoint_message(record.pos()))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn stream_subscription(
    shared: Arc<Shared>,
    stream: String,
    from: Origin<u64>,
    structured_ids: bool,
    tx: Sender,
) {
    let mut changes = shared.written.subscribe();
    if tx.send(Ok(confirmation_message())).await.is_err() {
        return;
    }
    let mut cursor = match from {
        Origin::Start => 0,
        Origin::At(r) => usize::try_from(r).unwrap_or(usize::MAX - 1) + 1,
        Origin::End => {
            let store = shared.lock();
            store
                .streams
                .get(&stream)
                .map_or(0, |s| store.visible_events(s).len())
        }
    };
    let mut caught_up = false;
    loop {
        changes.borrow_and_update();
        let (batch, tombstoned) = {
            let store = shared.lock();
            match store.streams.get(&stream) {
                None => (Vec::new(), false),
                Some(state) => (
                    store.visible_events(state)[cursor.min(store.visible_events(state).len())..]
                        .iter()
                        .take(BATCH)
                        .cloned()
                        .collect::<Vec<_>>(),
                    state.tombstoned,
                ),
            }
        };
        if tombstoned {
            let _ = tx.send(Err(stream_deleted(&stream))).await;
            return;
        }
        if batch.is_empty() {
            if !caught_up {
                caught_up = true;
                if tx.send(Ok(caught_up_message())).await.is_err() {
                    return;
                }
            }
            if !wait_for_writes(&mut changes, &tx).await {
                return;
            }
            continue;
        }
        cursor += batch.len();
        for record in batch {
            if tx
                .send(Ok(event_message(&record, structured_ids)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// The filter regex engine, exposed for its unit test: does `pattern` match `subject`
/// (searching anywhere, like .NET `Regex.IsMatch`)? `Err` for an unsupported pattern.
pub fn filter_regex_matches(pattern: &str, subject: &str) -> Result<bool, String> {
    Ok(Regex::new(pattern)?.is_match(subject))
}
