//! `troved migrate --from URL --to URL`: copies every event of one event store into
//! another (the embedded SQLite store to EventStoreDB, back, or SQLite to SQLite), in
//! `$all` order, with ids, streams, revisions, types, data and metadata intact; then
//! verifies the copy. Positions are the target's own.
//!
//! Only the [`EventStore`] port is used, so every adapter pair works the same way.
//!
//! * **Resumable.** The target's user events must be a prefix of the source's (same
//!   events, same order); anything else is refused before anything is written. A run
//!   first walks that prefix on both sides, then appends the rest of the source. Appends
//!   go per run of consecutive same-stream events, with the expected revision the
//!   source implies (`NoStream` for revision 0, else `Exact(first - 1)`) and the original
//!   event ids: an append retried after a lost answer is deduplicated by the store, and
//!   another writer on the target is detected instead of interleaved.
//! * **User events only.** Events whose stream or type starts with `$` (EventStoreDB's
//!   system streams, stream metadata `$$…`, statistics, link events) are neither copied,
//!   nor compared, nor counted ([`RecordedEvent::is_system`]).
//! * **Verification.** Both sides are read again in `$all` order and reduced to an event
//!   count and a SHA-256 digest over every field but the position ([`Tally`]).

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest as _, Sha256};

use crate::config::MigrateArgs;
use crate::retry::Backoff;
use crate::server::{lock_dir, ServerError};
use crate::store::StoreUrl;
use crate::store::{EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError};

/// Events read from the source per request by default (`--batch-size`).
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// Largest append, counted in bytes of event type, data and metadata. EventStoreDB
/// refuses appends larger than its `MaxAppendSize` (1 MiB by default); an event larger
/// than this on its own is still appended, alone.
pub const MAX_APPEND_BYTES: usize = 512 * 1024;

/// How often a call that failed with `Unavailable` is tried again before giving up.
const RETRIES: u32 = 6;

/// Longest wait between two tries (the delay doubles from [`CopyOptions::retry_delay`]).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How a copy or a verification runs.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Events per `read_all`, and at most that many per append.
    pub batch_size: usize,
    /// Stop after copying this many events (tests; an interrupted copy on purpose).
    pub limit: Option<u64>,
    /// Show progress on stderr: a bar on a terminal, a line per tenth otherwise.
    pub progress: bool,
    /// First wait before retrying a call that failed with `Unavailable`.
    pub retry_delay: Duration,
    /// Set from outside (Ctrl-C) to stop after the append in flight.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            limit: None,
            progress: false,
            retry_delay: Duration::from_millis(200),
            stop: None,
        }
    }
}

impl CopyOptions {
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// User events appended to the target by this run.
    pub copied: u64,
    /// User events the target already held (a resumed copy).
    pub skipped: u64,
    /// Source system events (stream or type `$…`), not copied.
    pub system: u64,
    /// Append calls made.
    pub appends: u64,
    pub elapsed: Duration,
}

impl CopyReport {
    /// Events copied per second of this run.
    pub fn rate(&self) -> u64 {
        per_second(self.copied, self.elapsed)
    }

    /// `copied 2000 event(s), skipped 1000 already present, 1.52 s, 1316 events/s`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "copied {} event(s), skipped {} already present, {:.2} s, {} events/s",
            self.copied,
            self.skipped,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if self.system > 0 {
            s.push_str(&format!(" ({} system event(s) not copied)", self.system));
        }
        s
    }
}

/// Why a copy or verification stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("reading the source: {0}")]
    Source(StoreError),
    #[error("the target: {0}")]
    Target(StoreError),
    /// The target holds something that is not a prefix of the source. Nothing was
    /// written.
    #[error(
        "the target is not an earlier, partial copy of the source, so nothing was written: \
         {0}"
    )]
    Diverged(String),
    /// An append met a stream that is not where the source says it must be.
    #[error(
        "the target's stream {stream} is at revision {actual} where the source needs {expected}: \
         another process is writing to the target, or the source's stream does not start at \
         revision 0 (truncated or scavenged); nothing after the events already copied was \
         written"
    )]
    Conflict {
        stream: String,
        expected: String,
        actual: String,
    },
    /// An event id the target already holds in another place.
    #[error(
        "event {id} of {stream} cannot be appended: the target already holds that id in \
         another place (the source holds the id twice, or another process is writing to \
         the target); the events before it were copied"
    )]
    DuplicateId { id: uuid::Uuid, stream: String },
    /// Ctrl-C (or [`CopyOptions::stop`]): everything appended so far stands.
    #[error("interrupted after copying {copied} event(s); run the same command again to resume")]
    Interrupted { copied: u64 },
    /// Ctrl-C during a verification, which writes nothing.
    #[error("interrupted during the verification (which writes nothing)")]
    VerifyInterrupted,
}

/// One side's user events reduced to a count and a digest.
///
/// The digest is SHA-256 over every user event in `$all` order, each as six
/// length-prefixed fields (the length a big-endian u64, then the bytes): the id's 16
/// bytes, the stream name (UTF-8), the revision (8 bytes, big-endian), the event type
/// (UTF-8), the data and the metadata. Positions are left out: they are each store's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub events: u64,
    pub digest: [u8; 32],
}

impl Tally {
    /// The digest in lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.digest)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} event(s), sha256 {}", self.events, self.hex())
    }
}

/// Both sides of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub source: Tally,
    pub target: Tally,
    /// The first event (1-based, in `$all` order of user events) where the sides differ,
    /// described, when they do.
    pub first_difference: Option<String>,
    /// The target holds a strict prefix of the source's events: an unfinished copy.
    pub incomplete: bool,
}

impl Verification {
    /// The target holds exactly the source's user events, in order.
    pub fn matches(&self) -> bool {
        self.source == self.target && self.first_difference.is_none()
    }
}

/// Copies the user events of `source` that `target` lacks; see the module doc.
///
/// Refuses (writing nothing) when the target is not a prefix of the source. With
/// [`CopyOptions::limit`] it stops after that many appended events, like an interrupted
/// run would.
pub async fn copy(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    opts: &CopyOptions,
) -> Result<CopyReport, MigrateError> {
    let started = Instant::now();
    let batch = opts.batch_size.max(1);
    let head = retry(opts, || source.head())
        .await
        .map_err(MigrateError::Source)?;
    let mut progress = Progress::new(opts.progress, "migrate", head.commit);
    let mut src = Cursor::new(source.as_ref(), batch, opts);
    let mut tgt = Cursor::new(target.as_ref(), batch, opts);
    let mut report = CopyReport::default();

    // 1. The target must hold a prefix of the source: walk it on both sides.
    while let Some(t) = tgt.next().await.map_err(MigrateError::Target)? {
        let n = report.skipped + 1;
        match src.next().await.map_err(MigrateError::Source)? {
            None => {
                return Err(MigrateError::Diverged(format!(
                    "the target holds more events than the source: its event #{n} is {}, \
                     the source has no event #{n}",
                    describe(&t)
                )))
            }
            Some(s) if !same_event(&s, &t) => {
                return Err(MigrateError::Diverged(difference(n, Some(&s), Some(&t))))
            }
            Some(s) => {
                report.skipped = n;
                progress.update(s.position.commit, report.skipped, || status(&report));
            }
        }
        if opts.stopped() {
            return Err(MigrateError::Interrupted { copied: 0 });
        }
    }

    // 2. Append the rest, one run of consecutive same-stream events at a time.
    let mut run: Vec<RecordedEvent> = Vec::new();
    let mut run_bytes = 0usize;
    loop {
        let room = opts.limit.map_or(u64::MAX, |l| {
            l.saturating_sub(report.copied + run.len() as u64)
        });
        let next = if room == 0 {
            None
        } else {
            src.next().await.map_err(MigrateError::Source)?
        };
        let flush = match &next {
            None => !run.is_empty(),
            Some(e) => {
                !run.is_empty()
                    && (run[0].stream != e.stream
                        || run.len() >= batch
                        || run_bytes + event_bytes(e) > MAX_APPEND_BYTES)
            }
        };
        if flush {
            if opts.stopped() {
                return Err(MigrateError::Interrupted {
                    copied: report.copied,
                });
            }
            append_run(target.as_ref(), &run, opts).await?;
            report.copied += run.len() as u64;
            report.appends += 1;
            let position = run[run.len() - 1].position.commit;
            progress.update(position, report.skipped + report.copied, || status(&report));
            run.clear();
            run_bytes = 0;
        }
        match next {
            Some(e) => {
                run_bytes += event_bytes(&e);
                run.push(e);
            }
            None => break,
        }
    }
    report.system = src.system;
    report.elapsed = started.elapsed();
    progress.finish(report.skipped + report.copied, || status(&report));
    Ok(report)
}

/// Reads both stores to the end and compares their user events: counts, digests and
/// the first difference.
pub async fn verify(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    opts: &CopyOptions,
) -> Result<Verification, MigrateError> {
    let batch = opts.batch_size.max(1);
    let head = retry(opts, || source.head())
        .await
        .map_err(MigrateError::Source)?;
    let mut progress = Progress::new(opts.progress, "verify", head.commit);
    let mut src = Cursor::new(source.as_ref(), batch, opts);
    let mut tgt = Cursor::new(target.as_ref(), batch, opts);
    let (mut sd, mut td) = (Digester::default(), Digester::default());
    let mut first_difference = None;
    let mut incomplete = false;
    loop {
        let s = src.next().await.map_err(MigrateError::Source)?;
        let t = tgt.next().await.map_err(MigrateError::Target)?;
        if s.is_none() && t.is_none() {
            break;
        }
        let n = sd.events.max(td.events) + 1;
        if first_difference.is_none() {
            incomplete = t.is_none();
            first_difference = match (&s, &t) {
                (Some(s), Some(t)) if same_event(s, t) => None,
                (s, t) => Some(difference(n, s.as_ref(), t.as_ref())),
            };
        }
        if let Some(s) = &s {
            sd.add(s);
            progress.update(s.position.commit, sd.events, || {
                format!("{} events compared", sd.events)
            });
        }
        if let Some(t) = &t {
            td.add(t);
        }
        if opts.stopped() {
            return Err(MigrateError::VerifyInterrupted);
        }
    }
    let compared = sd.events.max(td.events);
    progress.finish(compared, || format!("{compared} events compared"));
    Ok(Verification {
        source: sd.finish(),
        target: td.finish(),
        first_difference,
        incomplete,
    })
}

/// One store's user events reduced to a count and a digest ([`Tally`]).
pub async fn tally(store: &Arc<dyn EventStore>, opts: &CopyOptions) -> Result<Tally, StoreError> {
    let mut cursor = Cursor::new(store.as_ref(), opts.batch_size.max(1), opts);
    let mut digest = Digester::default();
    while let Some(e) = cursor.next().await? {
        digest.add(&e);
    }
    Ok(digest.finish())
}

/// Appends one run (non-empty, one stream, consecutive revisions) at the revision the
/// source gives it, retrying while the target is unavailable: the same ids make a retry
/// of an append that did land a no-op.
async fn append_run(
    target: &dyn EventStore,
    run: &[RecordedEvent],
    opts: &CopyOptions,
) -> Result<(), MigrateError> {
    let (first, last) = (&run[0], &run[run.len() - 1]);
    let expected = match first.revision {
        0 => ExpectedRevision::NoStream,
        r => ExpectedRevision::Exact(r - 1),
    };
    let events: Vec<NewEvent> = run
        .iter()
        .map(|e| NewEvent {
            id: e.id,
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        })
        .collect();
    let outcome = retry(opts, || {
        target.append(&first.stream, expected, events.clone())
    })
    .await
    .map_err(|e| match e {
        StoreError::WrongExpectedVersion { actual, .. } => MigrateError::Conflict {
            stream: first.stream.clone(),
            expected: match expected {
                ExpectedRevision::Exact(r) => r.to_string(),
                _ => "none (a new stream)".into(),
            },
            actual: actual.map_or("none (no such stream)".into(), |r| r.to_string()),
        },
        StoreError::DuplicateEventId(id) => MigrateError::DuplicateId {
            id,
            stream: first.stream.clone(),
        },
        other => MigrateError::Target(other),
    })?;
    if outcome.next_revision != last.revision {
        return Err(MigrateError::Target(StoreError::Corrupt(format!(
            "appending {} up to revision {} left the stream at revision {}",
            first.stream, last.revision, outcome.next_revision
        ))));
    }
    Ok(())
}

/// Calls `f` until it succeeds or fails with something else than `Unavailable`, at most
/// [`RETRIES`] more times, waiting longer each time (doubling from
/// [`CopyOptions::retry_delay`] up to [`MAX_RETRY_DELAY`]), unless stopped.
async fn retry<T, F, Fut>(opts: &CopyOptions, f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    Backoff::doubling(opts.retry_delay, MAX_RETRY_DELAY)
        .with_retries(RETRIES)
        .retry(f, |e, attempt| match e {
            StoreError::Unavailable(why) if !opts.stopped() => {
                tracing::warn!(%why, attempt, "event store unavailable; trying again");
                true
            }
            _ => false,
        })
        .await
}

/// The user events of one store in `$all` order, read a page at a time.
struct Cursor<'a> {
    store: &'a dyn EventStore,
    opts: &'a CopyOptions,
    batch: usize,
    after: Position,
    buffer: VecDeque<RecordedEvent>,
    done: bool,
    /// System events passed over.
    system: u64,
}

impl<'a> Cursor<'a> {
    fn new(store: &'a dyn EventStore, batch: usize, opts: &'a CopyOptions) -> Cursor<'a> {
        Cursor {
            store,
            opts,
            batch,
            after: Position::START,
            buffer: VecDeque::new(),
            done: false,
            system: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                if e.is_system() {
                    self.system += 1;
                    continue;
                }
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            let (store, after, batch) = (self.store, self.after, self.batch);
            let page = retry(self.opts, || store.read_all(after, batch)).await?;
            let Some(last) = page.last() else {
                self.done = true;
                return Ok(None);
            };
            // Positions are opaque, but `$all` only moves forward; a page that does not
            // would make this loop forever.
            if page[0].position <= self.after || last.position < page[0].position {
                return Err(StoreError::Corrupt(format!(
                    "reading $all after position {} returned positions {}..{}",
                    self.after, page[0].position, last.position
                )));
            }
            self.after = last.position;
            self.buffer.extend(page);
        }
    }
}

/// Everything but the position.
fn same_event(a: &RecordedEvent, b: &RecordedEvent) -> bool {
    a.id == b.id
        && a.stream == b.stream
        && a.revision == b.revision
        && a.event_type == b.event_type
        && a.data == b.data
        && a.metadata == b.metadata
}

/// `event #12 differs: the source has 5b1e… (…), the target has 9a0c… (…)`, or, for
/// the same event with other contents, `event #12, 5b1e… (…), differs in its data`.
fn difference(n: u64, s: Option<&RecordedEvent>, t: Option<&RecordedEvent>) -> String {
    if let (Some(s), Some(t)) = (s, t) {
        if (s.id, &s.stream, s.revision) == (t.id, &t.stream, t.revision) {
            let fields: Vec<&str> = [
                ("type", s.event_type != t.event_type),
                ("data", s.data != t.data),
                ("metadata", s.metadata != t.metadata),
            ]
            .into_iter()
            .filter_map(|(name, differs)| differs.then_some(name))
            .collect();
            return format!(
                "event #{n}, {}, differs in its {}",
                describe(s),
                fields.join(" and ")
            );
        }
    }
    format!(
        "event #{n} differs: the source has {}, the target has {}",
        s.map_or("none".into(), describe),
        t.map_or("none".into(), describe)
    )
}

/// `5b1e… (instance-…, revision 3, InstanceRenamed)`.
fn describe(e: &RecordedEvent) -> String {
    format!(
        "{} ({}, revision {}, {})",
        e.id, e.stream, e.revision, e.event_type
    )
}

fn event_bytes(e: &RecordedEvent) -> usize {
    e.event_type.len() + e.data.len() + e.metadata.len()
}

/// The running [`Tally`].
#[derive(Default)]
struct Digester {
    hasher: Sha256,
    events: u64,
}

impl Digester {
    fn add(&mut self, e: &RecordedEvent) {
        self.field(e.id.as_bytes());
        self.field(e.stream.as_bytes());
        self.field(&e.revision.to_be_bytes());
        self.field(e.event_type.as_bytes());
        self.field(&e.data);
        self.field(&e.metadata);
        self.events += 1;
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
    }

    fn finish(self) -> Tally {
        Tally {
            events: self.events,
            digest: self.hasher.finalize().into(),
        }
    }
}

fn status(report: &CopyReport) -> String {
    format!(
        "{} copied, {} already present",
        report.copied, report.skipped
    )
}

fn per_second(events: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (events as f64 / secs).round() as u64
    } else {
        events
    }
}

// ---- progress ------------------------------------------------------------------------------

/// Redraws (bar) at most this often.
const REDRAW: Duration = Duration::from_millis(100);

/// Plain progress lines (stderr not a terminal): one per tenth of the log, and at least
/// one per this interval on a slow copy.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// Progress on stderr, as `projections rebuild` shows it: a bar (share of the source's
/// positions, status, events/s, ETA) on a terminal, a line per tenth otherwise.
/// Positions only feed the estimate: EventStoreDB's have gaps, so it is rough there.
struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    last_draw: Option<Instant>,
    shown: Shown,
}

enum Shown {
    Hidden,
    Bar(ProgressBar),
    Lines { last_tenth: u64 },
}

impl Progress {
    fn new(visible: bool, what: &'static str, total: u64) -> Progress {
        let shown = if !visible {
            Shown::Hidden
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {bar:30} {percent:>3}% {msg}, ETA {eta}",
            );
            // A constant template that parses; never fail a migration over its looks.
            bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_prefix(what);
            Shown::Bar(bar)
        } else {
            Shown::Lines { last_tenth: 0 }
        };
        Progress {
            what,
            total,
            started: Instant::now(),
            last_draw: None,
            shown,
        }
    }

    /// `position`: the source position reached (reads start at the beginning of `$all`);
    /// `events`: source events read so far; `status` is only called when shown.
    fn update(&mut self, position: u64, events: u64, status: impl FnOnce() -> String) {
        if position > self.total {
            // The source grew (a live EventStoreDB): the estimate follows.
            self.total = position;
            if let Shown::Bar(bar) = &self.shown {
                bar.set_length(position);
            }
        }
        if matches!(self.shown, Shown::Hidden) {
            return;
        }
        let since_draw = self.last_draw.map(|t| t.elapsed());
        match &mut self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => {
                if since_draw.is_none_or(|d| d >= REDRAW) {
                    self.last_draw = Some(Instant::now());
                    let rate = per_second(events, self.started.elapsed());
                    bar.set_position(position);
                    bar.set_message(format!("{}, {rate} events/s", status()));
                }
            }
            Shown::Lines { last_tenth } => {
                let tenth = (position * 10).checked_div(self.total).unwrap_or(10);
                if tenth > *last_tenth || since_draw.is_some_and(|d| d >= LINE_INTERVAL) {
                    *last_tenth = tenth;
                    self.last_draw = Some(Instant::now());
                    let line = progress_line(
                        self.what,
                        position,
                        self.total,
                        events,
                        self.started.elapsed(),
                        &status(),
                    );
                    eprintln!("{line}");
                }
            }
        }
    }

    fn finish(&mut self, events: u64, status: impl FnOnce() -> String) {
        if let Shown::Bar(bar) = &self.shown {
            let rate = per_second(events, self.started.elapsed());
            bar.set_position(self.total);
            bar.set_message(format!("{}, {rate} events/s", status()));
            bar.finish();
            // The bar leaves the cursor on its line; what follows starts below it.
            eprintln!();
        }
    }
}

impl Drop for Progress {
    /// An error or Ctrl-C: leave the bar where it stopped and the cursor below it, so
    /// the message that follows gets its own line.
    fn drop(&mut self) {
        if let Shown::Bar(bar) = &self.shown {
            if !bar.is_finished() {
                bar.abandon();
                eprintln!();
            }
        }
    }
}

/// `migrate: 40% (position 1200 of 3000), 1100 copied, 100 already present, 1200
/// events/s, ETA 2s` (the ETA from the positions still ahead).
fn progress_line(
    what: &str,
    position: u64,
    total: u64,
    events: u64,
    elapsed: Duration,
    status: &str,
) -> String {
    let percent = (position * 100).checked_div(total).unwrap_or(100);
    let left = total.saturating_sub(position);
    let eta = match per_second(position, elapsed) {
        0 => "?".to_string(),
        rate => format!("{}s", left.div_ceil(rate)),
    };
    let rate = per_second(events, elapsed);
    format!(
        "{what}: {percent}% (position {position} of {total}), {status}, {rate} events/s, ETA {eta}"
    )
}

// ---- the command ---------------------------------------------------------------------------

/// Runs `troved migrate`.
///
/// stdout: the summary and the verification (both counts and digests); stderr:
/// progress. Fails (exit code 1) on any error and when the verification finds a
/// difference. Messages name stores by [`StoreUrl::redacted`] only.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let from = args.from.parse().map_err(|e| anyhow!("--from: {e}"))?;
    let to = args.to.parse().map_err(|e| anyhow!("--to: {e}"))?;
    let secrets = Secrets::of(&[&from, &to]);
    let result = migrate(&from, &to, &args).await;
    result.map_err(|e| anyhow!(secrets.scrub(&e.to_string())))
}

async fn migrate(from: &StoreUrl, to: &StoreUrl, args: &MigrateArgs) -> anyhow::Result<()> {
    let (from_name, to_name) = (from.redacted(), to.redacted());
    if from == to || (matches!(from, StoreUrl::Esdb(_)) && from_name == to_name) {
        bail!("--from and --to are the same store ({from_name})");
    }
    let _locks = lock_stores(from, to, args.verify_only)?;

    let stop = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(watch_interrupts(Arc::clone(&stop)));
    let opts = CopyOptions {
        batch_size: usize::try_from(args.batch_size).unwrap_or(DEFAULT_BATCH_SIZE),
        progress: true,
        retry_delay: Duration::from_millis(args.retry_delay_ms),
        stop: Some(stop),
        ..CopyOptions::default()
    };
    let result = async {
        let source = open(from, "--from").await?;
        let result = match open(to, "--to").await {
            Ok(target) => {
                let r = copy_and_verify(
                    &source,
                    &target,
                    &opts,
                    args.verify_only,
                    (&from_name, &to_name),
                )
                .await;
                target.shutdown().await;
                r
            }
            Err(e) => Err(e),
        };
        source.shutdown().await;
        result
    }
    .await;
    signals.abort();
    result
}

async fn copy_and_verify(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    opts: &CopyOptions,
    verify_only: bool,
    (from_name, to_name): (&str, &str),
) -> anyhow::Result<()> {
    // Name the side a store error came from (redacted, as everywhere).
    let named = |e: MigrateError| match e {
        MigrateError::Source(e) => anyhow!("--from {from_name}: {e}"),
        MigrateError::Target(e) => anyhow!("--to {to_name}: {e}"),
        other => anyhow!(other),
    };
    if !verify_only {
        let report = copy(source, target, opts).await.map_err(named)?;
        if report.copied == 0 && report.skipped == 0 {
            println!("migrate: nothing to copy: {from_name} holds no events");
            return Ok(());
        }
        println!("migrate: {}", report.summary());
    }
    let v = verify(source, target, opts).await.map_err(named)?;
    println!("verify: source {from_name}: {}", v.source);
    println!("verify: target {to_name}: {}", v.target);
    if let Some(d) = &v.first_difference {
        println!("verify: first difference: {d}");
    }
    if !v.matches() {
        bail!(
            "the target differs from the source ({} vs {} event(s), digests {}){}",
            v.source.events,
            v.target.events,
            if v.source.digest == v.target.digest {
                "equal"
            } else {
                "differ"
            },
            match (v.incomplete, verify_only) {
                (false, _) => "",
                (true, true) => {
                    ": it holds the start of the source only, an unfinished copy; run the \
                     same command without --verify-only to finish it"
                }
                (true, false) => {
                    ": the source grew during the copy (is something still writing to \
                     it?); run the same command again to copy the rest"
                }
            }
        );
    }
    println!(
        "verify: OK: the target holds the source's {} event(s), identical and in the same order",
        v.source.events
    );
    Ok(())
}

/// Opens a store; an embedded one must exist unless it is the target of a copy (the
/// caller checked that before taking the lock).
async fn open(url: &StoreUrl, flag: &str) -> anyhow::Result<Arc<dyn EventStore>> {
    url.open()
        .await
        .map_err(|e| anyhow!("{flag} {}: {e}", url.redacted()))
}

/// For every embedded store, the exclusive lock a running server holds on its data
/// directory (each directory once), so nothing is copied from or into a live store.
/// The source must exist, and the target too for `--verify-only`.
fn lock_stores(from: &StoreUrl, to: &StoreUrl, verify_only: bool) -> anyhow::Result<Vec<File>> {
    let mut locks = Vec::new();
    // (canonical directory, file name) of the stores locked so far.
    let mut locked: Vec<(PathBuf, Option<&std::ffi::OsStr>)> = Vec::new();
    for (flag, url, must_exist) in [("--from", from, true), ("--to", to, verify_only)] {
        let StoreUrl::Sqlite(path) = url else {
            continue;
        };
        if path.is_dir() {
            bail!(
                "{flag} {}: a directory; name the store's file (…/events.db)",
                url.redacted()
            );
        }
        if must_exist && !path.is_file() {
            bail!(
                "{flag} {}: no event store there (no such file)",
                url.redacted()
            );
        }
        let dir = store_dir(path);
        if let Ok(canonical) = dir.canonicalize() {
            if let Some((_, name)) = locked.iter().find(|(d, _)| *d == canonical) {
                if *name == path.file_name() {
                    bail!("--from and --to are the same store ({})", url.redacted());
                }
                // Two stores in one directory: one lock covers both.
                continue;
            }
        }
        let lock = lock_dir(&dir).map_err(|e| match e {
            ServerError::Locked(d) => anyhow!(
                "{flag} {}: the data directory {} is in use by a running troved; stop it \
                 first (migrate never copies from or into a store in use)",
                url.redacted(),
                d.display()
            ),
            other => anyhow!("{flag} {}: {other}", url.redacted()),
        })?;
        locked.push((dir.canonicalize().unwrap_or(dir), path.file_name()));
        locks.push(lock);
    }
    Ok(locks)
}

/// The directory of an embedded store's file (`.` for a bare file name).
fn store_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Ctrl-C or SIGTERM: stop after the append in flight (everything appended stands, and
/// a second run resumes); a second one quits at once, which is just as safe.
async fn watch_interrupts(stop: Arc<AtomicBool>) {
    interrupted().await;
    stop.store(true, Ordering::SeqCst);
    eprintln!("\nmigrate: stopping after the append in flight (again to quit at once)");
    interrupted().await;
    std::process::exit(130);
}

async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// What must never appear in a message: the URLs as given (with their user info) and
/// the user info itself, in case an adapter's error repeats them.
struct Secrets {
    replacements: Vec<(String, String)>,
}

impl Secrets {
    fn of(urls: &[&StoreUrl]) -> Secrets {
        let mut replacements = Vec::new();
        for url in urls {
            let StoreUrl::Esdb(raw) = url else { continue };
            let rest = raw.split_once("://").map_or(raw.as_str(), |(_, r)| r);
            let Some((userinfo, _)) = rest.rsplit_once('@') else {
                continue;
            };
            replacements.push((raw.clone(), url.redacted()));
            replacements.push((format!("{userinfo}@"), String::new()));
            if let Some((_, password)) = userinfo.split_once(':') {
                if password.len() >= 4 {
                    replacements.push((password.to_string(), "***".into()));
                }
            }
        }
        Secrets { replacements }
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (secret, shown) in &self.replacements {
            if !secret.is_empty() {
                text = text.replace(secret.as_str(), shown);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(stream: &str, revision: u64, data: &[u8]) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::from_u128(7),
            stream: stream.into(),
            revision,
            position: Position {
                commit: 1,
                prepare: 1,
            },
            event_type: "T".into(),
            data: data.to_vec(),
            metadata: b"{}".to_vec(),
        }
    }

    fn digest(events: &[RecordedEvent]) -> Tally {
        let mut d = Digester::default();
        events.iter().for_each(|e| d.add(e));
        d.finish()
    }

    #[test]
    fn the_digest_is_over_length_prefixed_fields_and_not_positions() {
        let a = event("ab", 0, b"c");
        let b = event("a", 0, b"bc");
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[b]));
        let mut moved = a.clone();
        moved.position = Position {
            commit: 900,
            prepare: 800,
        };
        assert_eq!(digest(std::slice::from_ref(&a)), digest(&[moved]));
        let mut other_revision = a.clone();
        other_revision.revision = 1;
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[other_revision]));
        // Order matters.
        let c = event("c", 0, b"");
        assert_ne!(
            digest(&[a.clone(), c.clone()]).digest,
            digest(&[c, a]).digest
        );
        let empty = digest(&[]);
        assert_eq!(empty.events, 0);
        assert_eq!(
            empty.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_digest_encoding_is_the_documented_one() {
        let e = event("s", 2, b"d");
        let mut h = Sha256::new();
        for f in [
            &e.id.as_bytes()[..],
            b"s",
            &2u64.to_be_bytes(),
            b"T",
            b"d",
            b"{}",
        ] {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f);
        }
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(digest(&[e]).digest, expected);
    }

    #[test]
    fn system_streams_are_the_dollar_ones() {
        assert!(event("$stats-127.0.0.1:2113", 0, b"").is_system());
        assert!(event("$$instance-1", 0, b"").is_system());
        assert!(!event("instance-$1", 0, b"").is_system());
        let mut link = event("instance-1", 0, b"");
        link.event_type = "$>".into();
        assert!(link.is_system());
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let url = StoreUrl::parse("esdb://admin:changeit@node1:2113?tls=true").unwrap();
        let s = Secrets::of(&[&url, &StoreUrl::Sqlite("x/events.db".into())]);
        assert_eq!(
            s.scrub("cannot reach esdb://admin:changeit@node1:2113?tls=true: refused"),
            "cannot reach esdb://node1:2113?tls=true: refused"
        );
        assert_eq!(
            s.scrub("login admin:changeit@node1 failed"),
            "login node1 failed"
        );
        assert_eq!(s.scrub("password changeit wrong"), "password *** wrong");
        assert_eq!(s.scrub("x/events.db"), "x/events.db");
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(
                "migrate",
                1200,
                3000,
                1100,
                Duration::from_secs(1),
                "1000 copied"
            ),
            "migrate: 40% (position 1200 of 3000), 1000 copied, 1100 events/s, ETA 2s"
        );
        assert_eq!(
            progress_line("verify", 0, 0, 0, Duration::ZERO, "0 events compared"),
            "verify: 100% (position 0 of 0), 0 events compared, 0 events/s, ETA ?"
        );
    }

    #[test]
    fn summary_line() {
        let r = CopyReport {
            copied: 2000,
            skipped: 1000,
            system: 0,
            appends: 700,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            r.summary(),
            "copied 2000 event(s), skipped 1000 already present, 1.50 s, 1333 events/s"
        );
    }
}
