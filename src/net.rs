//! The HTTP listener: our own accept loop around hyper's HTTP/1 connections, serving the
//! router it is given with timeouts, a connection limit and a bounded drain.
//!
//! `axum::serve` had none of these (issue #12): a client that said nothing, or sent its
//! headers a byte a second, was held forever; such a client kept a SIGTERM'd process
//! alive forever; and idle sockets exhausted the descriptors until `accept` failed with
//! `EMFILE` and every new request timed out. Here:
//!
//! - **Per-connection watchdog.** Each connection has a [`Phase`]: *busy* while a
//!   request is in flight (from its parsed head until its response is handed to hyper),
//!   otherwise *waiting*. A waiting connection has one deadline: its head must be
//!   complete within the header timeout of the connection opening (a fresh connection)
//!   or of the first byte after an idle period; a kept-alive connection with no byte at
//!   all is closed after the idle timeout. Bytes are seen by an IO wrapper
//!   ([`Watched`]). hyper 1.x's own `header_read_timeout` is not used: its timer starts
//!   whenever hyper waits for a head, idle time included (`proto/h1/conn.rs`,
//!   `poll_read_head`; `State::idle` re-arms it right after each response), so it cannot
//!   keep a connection idle longer than the header timeout. Bodies are bounded by the
//!   router (`http::limit_body`: 408 `requestTimeout`, then close), which knows when a
//!   body is read.
//! - **Connection limit.** At most `max_connections` client connections (capped below
//!   the open-files limit: [`connection_cap`]). At the limit, the connection that has
//!   waited longest without saying anything (idle keep-alive, or opened and silent) is
//!   closed to make room, as nginx reuses keep-alive connections; if every connection is
//!   busy or in the middle of a head, the newcomer is answered 503 `serviceUnavailable`
//!   with `Retry-After: 1` and `Connection: close` (at most [`MAX_REFUSING`] such answers
//!   at once; beyond that it is closed unanswered). `accept` failing with `EMFILE` or
//!   `ENFILE` anyway (files opened elsewhere) closes an idle connection and pauses
//!   accepting for [`ACCEPT_BACKOFF`]; it is logged once per episode, never in a loop.
//! - **Bounded drain.** When `shutdown` resolves the listener is closed at once (new
//!   connections are refused by the kernel), idle connections are closed, requests in
//!   flight finish and get `Connection: close`; after the grace period every connection
//!   still open is closed, and [`serve`] returns.
//!
//! Must not: know about routes, identity or the Trove API (it serves any router).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::{self, ConnectionClosed};

/// How the listener treats its clients (`troved serve` flags; docs/operations.md).
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// A request's head must be complete within this long of the connection opening, or
    /// of its first byte after an idle period.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// How long requests in flight may take to finish after the shutdown signal.
    pub shutdown_grace: Duration,
    /// Most client connections open at once (before [`connection_cap`]).
    pub max_connections: usize,
}

/// Descriptors kept for everything but client connections: the event store's files and
/// read pool, the vault, the simulated cloud, the runtime's own, the refusals
/// ([`MAX_REFUSING`]).
const RESERVED_FILES: u64 = 256;

/// Connections being answered 503 at once, beyond the limit; more are closed unanswered.
const MAX_REFUSING: usize = 64;

/// How long a refused connection may take to send its head and read the 503.
const REFUSAL_BOUND: Duration = Duration::from_secs(2);

/// Pause of the accept loop after `EMFILE`/`ENFILE` (or any error that is not the
/// client's), so that a full descriptor table never turns into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Raises the soft limit of open files to the hard limit (a service facing many clients
/// needs more than the usual soft 1,024; the hard limit is what the operator allowed).
/// Returns the soft limit now in force (`None`: unlimited, or unknown off Unix).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let before = limit.current;
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::warn!(error = %e, soft = ?before, "could not raise the soft limit of open files to the hard limit");
            }
        }
        let now = getrlimit(Resource::Nofile);
        let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        tracing::info!(
            soft = %show(now.current),
            hard = %show(now.maximum),
            was = %show(before),
            "limit of open files"
        );
        now.current
    }
    #[cfg(not(unix))]
    None
}

/// The soft limit of open files now in force (`None`: unlimited or unknown).
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}

/// The connection limit in force: `requested`, but below the open-files limit with room
/// for everything else ([`RESERVED_FILES`], or half the limit when it is small), so that
/// `accept` never fails for want of a descriptor.
pub fn connection_cap(requested: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return requested.max(1);
    };
    let room = limit.saturating_sub(RESERVED_FILES).max(limit / 2);
    requested
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Where a connection is in its life (see the module docs).
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No request in flight. `since`: when it started waiting (accept, or the end of its
    /// last request); `head_from`: when its head deadline counts from (accept for a
    /// fresh connection, else the first byte after `since`; `None` while idle);
    /// `spoke`: a byte arrived since `since`.
    Waiting {
        since: Instant,
        head_from: Option<Instant>,
        spoke: bool,
    },
    /// This many requests in flight (more than one only if hyper pipelines).
    Busy(usize),
}

/// One client connection, as the accept loop and its watchdog see it.
struct Conn {
    id: u64,
    phase: Mutex<Phase>,
    /// The phase changed: the watchdog recomputes its deadline.
    changed: Notify,
    /// Close at once (evicted).
    close: Notify,
}

impl Conn {
    fn new(id: u64) -> Conn {
        let now = Instant::now();
        Conn {
            id,
            phase: Mutex::new(Phase::Waiting {
                since: now,
                head_from: Some(now),
                spoke: false,
            }),
            changed: Notify::new(),
            close: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // A panic while holding this lock cannot leave the phase half-written (it is
        // Copy and assigned whole), so a poisoned lock is still right to use.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived from the client.
    fn heard(&self) {
        let mut phase = self.phase();
        if let Phase::Waiting {
            head_from, spoke, ..
        } = &mut *phase
        {
            *spoke = true;
            if head_from.is_none() {
                *head_from = Some(Instant::now());
                self.changed.notify_one();
            }
        }
    }

    /// A request's head was parsed: busy until the returned guard is dropped.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Waiting { .. } => Phase::Busy(1),
        };
        InFlight(self.clone())
    }

    /// When the watchdog must close the connection, and why; `None` while busy.
    fn deadline(&self, cfg: &NetConfig) -> Option<(Instant, ConnectionClosed)> {
        match *self.phase() {
            Phase::Busy(_) => None,
            Phase::Waiting {
                head_from: Some(from),
                ..
            } => Some((
                from + cfg.header_read_timeout,
                ConnectionClosed::HeaderTimeout,
            )),
            Phase::Waiting { since, .. } => {
                Some((since + cfg.idle_timeout, ConnectionClosed::IdleTimeout))
            }
        }
    }

    /// Since when it has been waiting without a byte from the client (idle keep-alive,
    /// or opened and silent); `None` if busy or in the middle of a head.
    fn silent_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting {
                since,
                spoke: false,
                ..
            } => Some(since),
            _ => None,
        }
    }
}

/// A request in flight on a connection; dropping it (response handed to hyper, or the
/// request abandoned) ends it.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Waiting {
                since: Instant::now(),
                head_from: None,
                spoke: false,
            },
        };
        self.0.changed.notify_one();
    }
}

/// The open client connections, for the limit and for eviction.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // Inserts and removes are single map operations: a poisoned map is still whole.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection that has waited longest without a byte from its client;
    /// false if there is none (every connection busy, or in the middle of a head).
    fn evict_oldest_silent(&self) -> bool {
        let mut conns = self.conns();
        let oldest = conns
            .values()
            .filter_map(|c| c.silent_since().map(|since| (since, c.id)))
            .min();
        match oldest.and_then(|(_, id)| conns.remove(&id)) {
            Some(victim) => {
                victim.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered(Arc<Registry>, u64);

impl Registered {
    fn new(registry: Arc<Registry>, id: u64) -> Registered {
        metrics::global().connections_open(1);
        Registered(registry, id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.conns().remove(&self.1);
        metrics::global().connections_open(-1);
    }
}

/// The client's socket, telling its connection when bytes arrive.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.heard();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Resolves when the connection's deadline passes (see [`Conn::deadline`]).
async fn watchdog(conn: &Conn, cfg: &NetConfig) -> ConnectionClosed {
    loop {
        // A change after the phase is read leaves a permit (`notify_one`): not missed.
        let changed = conn.changed.notified();
        match conn.deadline(cfg) {
            Some((at, why)) if at <= Instant::now() => return why,
            Some((at, _)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = changed => {}
                }
            }
            None => changed.await,
        }
    }
}

/// Everything the accept loop shares with its connection tasks.
struct Listener {
    app: axum::Router,
    cfg: NetConfig,
    /// The limit in force ([`connection_cap`]).
    cap: usize,
    registry: Arc<Registry>,
    /// Connections being answered 503.
    refusing: Arc<AtomicUsize>,
    /// `true` once the shutdown signal came: connections finish their request and close.
    draining: watch::Receiver<bool>,
    next_id: u64,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module
/// docs) and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    cfg: NetConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cap = connection_cap(cfg.max_connections, open_files_limit());
    tracing::info!(
        max_connections = cap,
        header_read_timeout_secs = cfg.header_read_timeout.as_secs(),
        idle_timeout_secs = cfg.idle_timeout.as_secs(),
        "accepting connections"
    );
    let (drain_tx, draining) = watch::channel(false);
    let mut state = Listener {
        app,
        cfg,
        cap,
        registry: Arc::default(),
        refusing: Arc::default(),
        draining,
        next_id: 0,
    };
    let mut tasks = JoinSet::new();
    let mut short_of_files = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                short_of_files = false;
                state.admit(stream, &mut tasks);
            }
            Err(e) => accept_failed(&e, &state.registry, &mut short_of_files).await,
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    drain(tasks, cfg.shutdown_grace).await;
    Ok(())
}

impl Listener {
    /// A new connection: served, after making room if at the limit, or refused.
    fn admit(&mut self, stream: TcpStream, tasks: &mut JoinSet<()>) {
        if self.registry.conns().len() >= self.cap && !self.registry.evict_oldest_silent() {
            refuse(stream, &self.refusing, tasks);
            return;
        }
        self.next_id += 1;
        let conn = Arc::new(Conn::new(self.next_id));
        self.registry.conns().insert(conn.id, conn.clone());
        let registered = Registered::new(self.registry.clone(), conn.id);
        tasks.spawn(serve_connection(
            stream,
            conn,
            registered,
            self.app.clone(),
            self.cfg,
            self.draining.clone(),
        ));
    }
}

/// `accept` failed. A client's own failure (it reset before we accepted) is ignored;
/// anything else (`EMFILE`, `ENFILE`, out of memory) closes a silent connection to free
/// a descriptor and pauses accepting briefly, and is logged once until an accept works.
async fn accept_failed(e: &io::Error, registry: &Registry, short_of_files: &mut bool) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) {
        return;
    }
    if !*short_of_files {
        *short_of_files = true;
        tracing::warn!(error = %e, "accept failed; closing an idle connection and pausing accepts (logged once until an accept succeeds)");
    }
    registry.evict_oldest_silent();
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Serves one connection until it ends, its watchdog fires, it is evicted, or (during a
/// drain) its request is done.
async fn serve_connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    _registered: Registered,
    app: axum::Router,
    cfg: NetConfig,
    mut draining: watch::Receiver<bool>,
) {
    // Responses are written whole; do not hold their last segment back (Nagle).
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
    });
    let service = TowerToHyperService::new(app);
    let tracked = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = conn.begin_request();
            let answer = service.call(req);
            async move {
                let resp = answer.await;
                drop(in_flight);
                resp
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Ours is the watchdog (module docs): hyper's would also cut idle connections.
    builder.header_read_timeout(None);
    let http = builder.serve_connection(io, tracked);
    tokio::pin!(http);
    let mut drained = false;
    let closed = loop {
        if !drained && *draining.borrow_and_update() {
            drained = true;
            // Closes it now if no request is under way; else after its response.
            http.as_mut().graceful_shutdown();
        }
        tokio::select! {
            served = http.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Evicted while silent; unless a request came in the meantime (it was taken
            // out of the registry all the same: the limit is exceeded by one, briefly).
            () = conn.close.notified() => if conn.silent_since().is_some() {
                break ConnectionClosed::Evicted;
            },
            why = watchdog(&conn, &cfg) => break why,
            _ = draining.changed(), if !drained => {}
        }
    };
    metrics::global().connection_closed(closed);
    tracing::debug!(reason = ?closed, "connection closed by the server");
}

/// Answers a connection over the limit 503 (in Trove's format, `Retry-After: 1`,
/// `Connection: close`) once it has sent its head, or closes it at once when
/// [`MAX_REFUSING`] others are being answered already.
fn refuse(stream: TcpStream, refusing: &Arc<AtomicUsize>, tasks: &mut JoinSet<()>) {
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        metrics::global().connection_closed(ConnectionClosed::Dropped);
        drop(stream);
        return;
    }
    metrics::global().connection_closed(ConnectionClosed::Refused);
    let refusing = refusing.clone();
    tasks.spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(false).header_read_timeout(None);
        let service = hyper::service::service_fn(|_req: hyper::Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(crate::http::too_many_connections().into_response())
        });
        let answered = tokio::time::timeout(
            REFUSAL_BOUND,
            builder.serve_connection(TokioIo::new(stream), service),
        );
        let _ = answered.await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// After the shutdown signal: waits for the connections to finish (idle ones close at
/// once, busy ones after their response), at most `grace`; then closes the rest.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        connections = tasks.len(),
        grace_secs = grace.as_secs(),
        "not accepting connections; waiting for requests in flight"
    );
    let finished = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace period over: closing the connections still open"
        );
        for _ in 0..tasks.len() {
            metrics::global().connection_closed(ConnectionClosed::Shutdown);
        }
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_below_the_open_files_limit() {
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 768);
        assert_eq!(connection_cap(4096, Some(256)), 128);
        assert_eq!(connection_cap(100, Some(256)), 100);
        assert_eq!(connection_cap(4096, Some(0)), 1);
    }
}
