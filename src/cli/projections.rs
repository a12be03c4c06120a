//! `troved projections rebuild` and `troved projections verify`: replay the log into
//! fresh read models, and check them against a second, independent fold of the log.
//!
//! Read models live in memory only, so "rebuild" is replay-and-report: it applies every
//! event with the projector's own [`apply_recorded`] (what `troved serve` does before its
//! first request), shows progress, and reports what the models hold and how fast the log
//! replays: how long a restart will take, and whether the log replays cleanly.
//!
//! `verify` rebuilds the same way into scratch models, then folds every `instance-*` and
//! `configuration-*` stream on its own (one stream at a time, in stream order rather than
//! `$all` order) and derives the indexes (per-project lists, quota usage, replicas, the
//! admin order, configuration usage) from the folded states with plain loops. Every
//! disagreement is reported with the instance (or project, group) and the field. Both
//! sides fold with the same `evolve`; what is checked is the projection machinery
//! around it: ordering across streams, idempotence, gap handling, and every index's
//! incremental bookkeeping.
//!
//! Both only read the store, through a `query_only` connection ([`Log`]): no lock, no
//! writer, no WAL checkpoint, nothing created. So they also run beside a live server,
//! on a consistent prefix of the log: everything up to the head seen at start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{IsTerminal as _, Write as _};

use std::time::{Duration, Instant};

use aggregates::configuration::{configuration_id_of_stream, Configuration};
use aggregates::instance::{instance_id_of_stream, Instance};
use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use projections::{QuotaInUse, Snapshot, LIST_PAGE_MAX};
use serde_json::Value;
use uuid::Uuid;

use super::log::{StreamReader, PAGE};
use crate::config::{ProjectionsCommand, StoreUrlArg};
use crate::metrics::{self, ProjectionAnomaly};
use crate::runtime::commands::fold_instance;
use crate::runtime::configurations::fold_configuration;
use crate::runtime::projector::{apply_page, decode, Decoded, ReadModels};
use crate::store::{Position, RecordedEvent};

/// Plain progress lines (stderr not a terminal): at most one per this interval, plus
/// one at every tenth of the log.
const LINE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `troved projections ...`.
pub async fn run(cmd: ProjectionsCommand) -> anyhow::Result<()> {
    let output = tokio::task::spawn_blocking(move || match cmd {
        ProjectionsCommand::Rebuild {
            data_dir,
            event_store,
        } => {
            let (log, name) =
                StreamReader::open(event_store.as_ref().map(StoreUrlArg::as_str), &data_dir)?;
            rebuild(&log, &name)
        }
        ProjectionsCommand::Verify {
            data_dir,
            event_store,
        } => {
            let (log, name) =
                StreamReader::open(event_store.as_ref().map(StoreUrlArg::as_str), &data_dir)?;
            verify(&log, &name)
        }
    })
    .await
    .context("the projections task failed")?;
    let (text, differences) = match output {
        Ok(Outcome::Report(text)) => (text, 0),
        Ok(Outcome::Differences { text, count }) => (text, count),
        Err(e) => return Err(e),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `troved projections verify | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    if differences > 0 {
        bail!(
            "{differences} difference(s) between the read models and an independent fold of the log"
        );
    }
    Ok(())
}

/// What a command prints on stdout.
enum Outcome {
    Report(String),
    /// `verify` found differences: listed in `text`; the command fails.
    Differences {
        text: String,
        count: usize,
    },
}

/// Replays the whole log into `models` (read only, with the progress lines of
/// `rebuild`): for other commands that need the read models of a data directory.
pub fn replay_all(log: &StreamReader, models: &ReadModels, what: &str) -> anyhow::Result<()> {
    let head = log.head()?;
    replay(log, models, head, what).map(|_| ())
}

// ---- rebuild -------------------------------------------------------------------------------

fn rebuild(log: &StreamReader, name: &str) -> anyhow::Result<Outcome> {
    let head = log.head()?;
    let models = ReadModels::default();
    let replay = replay(log, &models, head, "rebuild")?;
    let snap = models.instances.snapshot();
    let listed: usize = snap.lists.values().map(Vec::len).sum();
    let deleted = snap.records.values().filter(|r| r.instance.deleted).count();
    let groups = models.configurations.snapshot();
    let mut out = String::new();
    let w = &mut out;
    line(
        w,
        format!("rebuilt every read model from {name} (read only: nothing was written)"),
    );
    line(
        w,
        format!(
            "  events          {} up to position {} of {} ({})",
            replay.events,
            models.instances.position(),
            head,
            replay.by_category()
        ),
    );
    line(
        w,
        format!(
            "  instances       {} ({listed} listed in {} project(s), {deleted} deleted)",
            snap.records.len(),
            snap.lists.len()
        ),
    );
    line(
        w,
        format!(
            "  configurations  {} ({} live)",
            groups.records.len(),
            groups.all.len()
        ),
    );
    line(w, format!("  backups         {}", models.backups.len()));
    line(
        w,
        format!(
            "  skipped         {} undecodable event(s), {} after a revision gap",
            replay.undecodable, replay.gaps
        ),
    );
    line(
        w,
        format!(
            "  elapsed         {:.2} s ({} events/s)",
            replay.elapsed.as_secs_f64(),
            replay.rate()
        ),
    );
    Ok(Outcome::Report(out))
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

/// What a replay did.
struct Replay {
    events: u64,
    by_category: BTreeMap<String, u64>,
    undecodable: u64,
    gaps: u64,
    elapsed: Duration,
}

impl Replay {
    fn rate(&self) -> u64 {
        per_second(self.events, self.elapsed)
    }

    fn by_category(&self) -> String {
        if self.by_category.is_empty() {
            return "empty log".into();
        }
        self.by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn per_second(events: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (events as f64 / secs).round() as u64
    } else {
        events
    }
}

/// Decoding threads of a replay.
const DECODERS: usize = 2;

/// Applies every event up to `head` to `models` with the projector's own apply, showing
/// progress on stderr.
fn replay(
    log: &StreamReader,
    models: &ReadModels,
    head: Position,
    what: &str,
) -> anyhow::Result<Replay> {
    // The projector counts what it skips in the process's metrics; this process is
    // fresh, so the difference is this replay's.
    let anomalies = |a| metrics::global().projection_anomalies(a);
    let (undecodable0, gaps0) = (
        anomalies(ProjectionAnomaly::Undecodable),
        anomalies(ProjectionAnomaly::Gap),
    );
    let started = Instant::now();
    let mut progress = Progress::new(what, head.commit);
    let mut pos = Position::START;
    let mut events = 0u64;
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    // The projector's replay pipeline, on threads: this one reads pages, two decode
    // them (page n goes to decoder n % 2: decoding is the longest stage), one applies
    // them in the order they were read (see `runtime::projector`).
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Decoded pages come back to be read into again (`ReadOnlyLog::read_page`), and
        // applied ones to be freed and refilled by the decoder that allocated them.
        let (give_back, returned) = std::sync::mpsc::channel::<Vec<RecordedEvent>>();
        let mut to_decode = Vec::with_capacity(DECODERS);
        let mut decoded = Vec::with_capacity(DECODERS);
        let mut applied_back = Vec::with_capacity(DECODERS);
        for _ in 0..DECODERS {
            let (to_decoder, pages) = std::sync::mpsc::sync_channel::<Vec<RecordedEvent>>(1);
            let (to_apply, from_decoder) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(1);
            let (back, applied) = std::sync::mpsc::channel::<Vec<Decoded>>();
            let give_back = give_back.clone();
            scope.spawn(move || {
                for page in pages {
                    let mut out = reuse(&applied);
                    out.extend(page.iter().map(decode));
                    let _ = give_back.send(page);
                    if to_apply.send(out).is_err() {
                        break;
                    }
                }
            });
            to_decode.push(to_decoder);
            decoded.push(from_decoder);
            applied_back.push(back);
        }
        scope.spawn(move || {
            // Page n comes from decoder n % DECODERS; the first decoder to run out
            // (its sender dropped after the last page) ends the replay.
            for n in 0.. {
                let Ok(page) = decoded[n % DECODERS].recv() else {
                    break;
                };
                apply_page(models, &page);
                let _ = applied_back[n % DECODERS].send(page);
            }
        });
        let mut sent = 0usize;
        while pos < head {
            let mut batch = returned.try_recv().unwrap_or_default();
            log.read_page(pos, head, PAGE, &mut batch)?;
            let Some(last) = batch.last() else { break };
            pos = last.position;
            for r in &batch {
                let category = r.stream.split_once('-').map_or(r.stream.as_str(), |c| c.0);
                match by_category.get_mut(category) {
                    Some(n) => *n += 1,
                    None => {
                        by_category.insert(category.to_string(), 1);
                    }
                }
            }
            events += batch.len() as u64;
            if to_decode[sent % DECODERS].send(batch).is_err() {
                bail!("the replay's decoding thread stopped");
            }
            sent += 1;
            progress.update(pos.commit, events);
        }
        // Dropping the senders ends the decoders, then the applier; the scope joins them.
        Ok(())
    })?;
    progress.finish(pos.commit, events);
    Ok(Replay {
        events,
        by_category,
        undecodable: anomalies(ProjectionAnomaly::Undecodable) - undecodable0,
        gaps: anomalies(ProjectionAnomaly::Gap) - gaps0,
        elapsed: started.elapsed(),
    })
}

/// An applied page back from the applier, emptied here (its events freed on the thread
/// that decoded them), or a new one.
fn reuse(applied: &std::sync::mpsc::Receiver<Vec<Decoded>>) -> Vec<Decoded> {
    let mut spare = Vec::new();
    while let Ok(mut page) = applied.try_recv() {
        page.clear();
        spare = page;
    }
    spare
}

/// Progress on stderr: a bar (position, events/s, ETA) on a terminal, plain lines
/// otherwise (logs, CI, pipes).
enum Progress {
    Bar(ProgressBar),
    Lines {
        what: String,
        total: u64,
        started: Instant,
        last_line: Instant,
        last_tenth: u64,
    },
}

impl Progress {
    fn new(what: &str, total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} position {pos}/{len} {rate} ETA {eta}",
            )
            .map(|s| {
                s.with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn fmt::Write| {
                        let _ = write!(w, "{:.0} events/s", s.per_sec());
                    },
                )
            });
            // The template is a constant that parses; fall back to the default style
            // rather than fail a rebuild over its looks.
            bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_prefix(what.to_string());
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Lines {
                what: what.to_string(),
                total,
                started: now,
                last_line: now,
                last_tenth: 0,
            }
        }
    }

    fn update(&mut self, position: u64, events: u64) {
        match self {
            Progress::Bar(bar) => bar.set_position(position),
            Progress::Lines {
                what,
                total,
                started,
                last_line,
                last_tenth,
            } => {
                let tenth = (position * 10).checked_div(*total).unwrap_or(10);
                if tenth > *last_tenth || last_line.elapsed() >= LINE_INTERVAL {
                    *last_tenth = tenth;
                    *last_line = Instant::now();
                    eprintln!(
                        "{}",
                        progress_line(what, position, *total, events, *started)
                    );
                }
            }
        }
    }

    fn finish(&mut self, position: u64, events: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(position);
                bar.finish();
                // The bar leaves the cursor on its line; the report starts below it.
                eprintln!();
            }
            Progress::Lines {
                what,
                total,
                started,
                last_tenth,
                ..
            } => {
                // The last update printed the end already, unless the log was empty.
                if *last_tenth < 10 {
                    eprintln!(
                        "{}",
                        progress_line(what, position, *total, events, *started)
                    );
                }
            }
        }
    }
}

/// `rebuild: position 1200/5000 (24%), 3400 events/s, ETA 1s`.
fn progress_line(what: &str, position: u64, total: u64, events: u64, started: Instant) -> String {
    let elapsed = started.elapsed();
    let rate = per_second(events, elapsed);
    let percent = (position * 100).checked_div(total).unwrap_or(100);
    let left = total.saturating_sub(position);
    let eta = if rate > 0 {
        format!("{}s", left.div_ceil(rate))
    } else {
        "?".into()
    };
    format!("{what}: position {position}/{total} ({percent}%), {rate} events/s, ETA {eta}")
}

// ---- verify --------------------------------------------------------------------------------

fn verify(log: &StreamReader, name: &str) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let head = log.head()?;
    let models = ReadModels::default();
    let replay = replay(log, &models, head, "verify")?;
    let fold = LogFold::read(log, head)?;
    let differences = compare(&models, &fold);
    let mut out = String::new();
    for d in &differences {
        line(&mut out, d.to_string());
    }
    if !differences.is_empty() {
        return Ok(Outcome::Differences {
            text: out,
            count: differences.len(),
        });
    }
    let live = fold.instances.values().filter(|f| f.is_live()).count();
    let projects: BTreeSet<&str> = fold
        .instances
        .values()
        .filter_map(|f| f.state.as_ref().ok())
        .filter(|i| i.exists())
        .map(|i| i.project_id.as_str())
        .collect();
    let w = &mut out;
    line(
        w,
        format!("read models match an independent fold of the log in {name} (position {head})"),
    );
    line(
        w,
        format!(
            "  instances       {} ({live} live) in {} project(s)",
            fold.instances.len(),
            projects.len()
        ),
    );
    line(
        w,
        format!("  configurations  {}", fold.configurations.len()),
    );
    line(
        w,
        "  checked         instance records, per-project lists (index and pages), admin order, \
         replicas, quota usage, configuration groups, lists and usage"
            .to_string(),
    );
    line(
        w,
        format!(
            "  elapsed         {:.2} s ({} events replayed, {} events/s)",
            started.elapsed().as_secs_f64(),
            replay.events,
            replay.rate()
        ),
    );
    Ok(Outcome::Report(out))
}

/// One disagreement between the read models and the independent fold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What disagrees: `instance <id>`, `project <p>`, `configuration <id>`, ...
    pub subject: String,
    /// The field or index.
    pub field: String,
    /// What the independent fold of the log says.
    pub log: String,
    /// What the read models say.
    pub models: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: log {}, read models {}",
            self.subject, self.field, self.log, self.models
        )
    }
}

/// One instance stream, folded on its own.
#[derive(Debug)]
struct FoldedInstance {
    /// The state, or why the stream does not fold (an event that does not decode).
    state: Result<Instance, String>,
    /// Position of the stream's last event.
    last: Position,
    /// Whether the stream holds an `InstanceDeletionRequested` (the quota is released
    /// from then on, whatever later reports do to the task).
    deletion_requested: bool,
}

impl FoldedInstance {
    fn is_live(&self) -> bool {
        self.state.as_ref().is_ok_and(Instance::is_live)
    }
}

/// Every instance and configuration stream up to a position, each folded on its own.
#[derive(Debug, Default)]
struct LogFold {
    head: Position,
    instances: BTreeMap<Uuid, FoldedInstance>,
    configurations: BTreeMap<Uuid, Result<Configuration, String>>,
}

impl LogFold {
    /// Reads the log stream by stream (ordered by stream and revision, one stream in
    /// memory at a time) and folds each.
    fn read(log: &StreamReader, head: Position) -> anyhow::Result<LogFold> {
        let mut fold = LogFold {
            head,
            ..LogFold::default()
        };
        log.for_each_stream(head, |stream, records| fold.add(stream, records))?;
        Ok(fold)
    }

    /// Folds one whole stream (oldest first).
    fn add(&mut self, stream: &str, records: &[RecordedEvent]) {
        let Some(last) = records.last() else { return };
        if let Some(id) = instance_id_of_stream(stream) {
            let folded = FoldedInstance {
                state: fold_instance(records).map_err(|e| e.to_string()),
                last: last.position,
                // A reset after the DELETE (older logs) brought it back live, charged.
                deletion_requested: records
                    .iter()
                    .rev()
                    .find(|r| {
                        r.event_type == "InstanceDeletionRequested"
                            || r.event_type == "InstanceStatusReset"
                    })
                    .is_some_and(|r| r.event_type == "InstanceDeletionRequested"),
            };
            self.instances.insert(id, folded);
        } else if let Some(id) = configuration_id_of_stream(stream) {
            let folded = fold_configuration(records).map_err(|e| e.to_string());
            self.configurations.insert(id, folded);
        }
    }

    /// The instances that exist (created; deleted or not), by id.
    fn existing(&self) -> impl Iterator<Item = (Uuid, &Instance, &FoldedInstance)> {
        self.instances.iter().filter_map(|(id, f)| match &f.state {
            Ok(i) if i.exists() => Some((*id, i, f)),
            _ => None,
        })
    }
}

/// Every difference between `models` and `fold`.
fn compare(models: &ReadModels, fold: &LogFold) -> Vec<Difference> {
    let mut out = Vec::new();
    let applied = models.instances.position();
    if applied != fold.head {
        out.push(Difference {
            subject: "read models".into(),
            field: "position".into(),
            log: fold.head.to_string(),
            models: applied.to_string(),
        });
    }
    // One copy of the instance models for the raw indexes; the queries are asked too.
    let snap = models.instances.snapshot();
    compare_records(models, &snap, fold, &mut out);
    compare_lists(models, &snap, fold, &mut out);
    compare_quota(models, &snap, fold, &mut out);
    compare_replicas(models, &snap, fold, &mut out);
    compare_mgmt(&snap, fold, &mut out);
    compare_configurations(models, fold, &mut out);
    out
}

fn diff(
    out: &mut Vec<Difference>,
    subject: impl Into<String>,
    field: impl Into<String>,
    log: impl fmt::Display,
    models: impl fmt::Display,
) {
    out.push(Difference {
        subject: subject.into(),
        field: field.into(),
        log: log.to_string(),
        models: models.to_string(),
    });
}

/// Each instance's record: every field of the folded state, its last position and its
/// quota flag.
fn compare_records(
    models: &ReadModels,
    snap: &Snapshot,
    fold: &LogFold,
    out: &mut Vec<Difference>,
) {
    for (id, f) in &fold.instances {
        let subject = format!("instance {id}");
        let model = models.instances.instance(*id);
        let state = match &f.state {
            Err(e) => {
                diff(out, subject, "events", format!("do not fold ({e})"), "-");
                continue;
            }
            Ok(s) => s,
        };
        match (state.exists(), model) {
            (false, None) => {}
            (false, Some(_)) => diff(out, subject, "record", "never created", "has a record"),
            (true, None) => diff(out, subject, "record", "exists", "no record"),
            (true, Some(m)) => {
                field_differences(out, &subject, state, &m);
                if let Some(r) = snap.records.get(id) {
                    if r.position != f.last {
                        diff(out, subject.clone(), "position", f.last, r.position);
                    }
                    if r.quota_released != f.deletion_requested {
                        diff(
                            out,
                            subject,
                            "quota released",
                            f.deletion_requested,
                            r.quota_released,
                        );
                    }
                }
            }
        }
    }
    for id in snap.records.keys() {
        if !fold.instances.contains_key(id) {
            diff(
                out,
                format!("instance {id}"),
                "record",
                "no stream",
                "has a record",
            );
        }
    }
}

/// One difference per top-level field whose JSON differs.
fn field_differences<T: serde::Serialize + PartialEq>(
    out: &mut Vec<Difference>,
    subject: &str,
    log: &T,
    models: &T,
) {
    if log == models {
        return;
    }
    let as_map = |v: &T| match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (l, m) = (as_map(log), as_map(models));
    let keys: BTreeSet<&String> = l.keys().chain(m.keys()).collect();
    let mut any = false;
    for k in keys {
        let (lv, mv) = (l.get(k), m.get(k));
        if lv != mv {
            any = true;
            diff(out, subject, k.as_str(), show(lv), show(mv));
        }
    }
    if !any {
        // Equal as JSON, different in memory (e.g. a float's last bit).
        diff(
            out,
            subject,
            "state",
            "(as JSON: equal)",
            "(in memory: different)",
        );
    }
}

/// A JSON value, shortened for a one-line report.
fn show(v: Option<&Value>) -> String {
    let Some(v) = v else { return "(absent)".into() };
    let text = v.to_string();
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        text
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

fn id_list(ids: &BTreeSet<Uuid>) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per project, the ids `GET /instances` lists (every instance not soft-deleted): the
/// raw index, and the answers of the paging query.
fn compare_lists(models: &ReadModels, snap: &Snapshot, fold: &LogFold, out: &mut Vec<Difference>) {
    let mut expected: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, i, _) in fold.existing() {
        if !i.deleted {
            expected.entry(i.project_id.clone()).or_default().insert(id);
        }
    }
    let index = &snap.lists;
    let projects: BTreeSet<&String> = expected.keys().chain(index.keys()).collect();
    let empty = BTreeSet::new();
    for p in projects {
        let want = expected.get(p).unwrap_or(&empty);
        let indexed: BTreeSet<Uuid> = index.get(p).into_iter().flatten().copied().collect();
        set_differences(out, &format!("project {p}"), "list index", want, &indexed);
        let paged = list_all(models, p);
        set_differences(out, &format!("project {p}"), "GET /instances", want, &paged);
    }
}

/// Every id `GET /instances` returns for `project`, page by page.
fn list_all(models: &ReadModels, project: &str) -> BTreeSet<Uuid> {
    let mut ids = BTreeSet::new();
    let mut marker: Option<String> = None;
    loop {
        let page = models
            .instances
            .list_page(project, marker.as_deref(), LIST_PAGE_MAX);
        ids.extend(page.instances.iter().filter_map(|i| i.id));
        match page.next_marker {
            // A marker that does not move would loop forever; the difference shows.
            Some(m) if marker.as_deref() != Some(m.to_string().as_str()) => {
                marker = Some(m.to_string());
            }
            _ => return ids,
        }
    }
}

fn set_differences(
    out: &mut Vec<Difference>,
    subject: &str,
    field: &str,
    want: &BTreeSet<Uuid>,
    got: &BTreeSet<Uuid>,
) {
    let missing: BTreeSet<Uuid> = want.difference(got).copied().collect();
    let extra: BTreeSet<Uuid> = got.difference(want).copied().collect();
    if !missing.is_empty() {
        diff(
            out,
            subject,
            field,
            format!("has {}", id_list(&missing)),
            "does not",
        );
    }
    if !extra.is_empty() {
        diff(
            out,
            subject,
            field,
            "does not",
            format!("has {}", id_list(&extra)),
        );
    }
}

/// Per project, what its instances charge: every live instance whose deletion was not
/// requested.
fn compare_quota(models: &ReadModels, snap: &Snapshot, fold: &LogFold, out: &mut Vec<Difference>) {
    let mut expected: BTreeMap<String, QuotaInUse> = BTreeMap::new();
    for (_, i, f) in fold.existing() {
        if i.deleted || f.deletion_requested {
            continue;
        }
        let u = expected.entry(i.project_id.clone()).or_default();
        u.instances += 1;
        u.ram += i.quota_ram();
        u.volumes += i.quota_volume();
    }
    let indexed = &snap.quota;
    let projects: BTreeSet<&String> = expected.keys().chain(indexed.keys()).collect();
    for p in projects {
        let want = expected.get(p).copied().unwrap_or_default();
        let got = models.instances.quota_usage(p);
        let subject = format!("project {p}");
        for (field, w, g) in [
            ("quota instances", want.instances, got.instances),
            ("quota ram", want.ram, got.ram),
            ("quota volumes", want.volumes, got.volumes),
        ] {
            if w != g {
                diff(out, subject.clone(), field, w, g);
            }
        }
    }
}

/// Per primary, its live replicas.
fn compare_replicas(
    models: &ReadModels,
    snap: &Snapshot,
    fold: &LogFold,
    out: &mut Vec<Difference>,
) {
    let mut expected: BTreeMap<Uuid, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, i, _) in fold.existing() {
        if let (false, Some(primary)) = (i.deleted, i.replica_of) {
            expected.entry(primary).or_default().insert(id);
        }
    }
    let indexed = &snap.replicas;
    let primaries: BTreeSet<&Uuid> = expected.keys().chain(indexed.keys()).collect();
    let empty = BTreeSet::new();
    for p in primaries {
        let want = expected.get(p).unwrap_or(&empty);
        let got: BTreeSet<Uuid> = models.instances.live_replicas(*p).into_iter().collect();
        set_differences(out, &format!("instance {p}"), "replicas", want, &got);
    }
}

/// The admin list: every instance, soft-deleted included, newest `updated` first, as a
/// whole and per project.
fn compare_mgmt(snap: &Snapshot, fold: &LogFold, out: &mut Vec<Difference>) {
    type Entry = (DateTime<Utc>, Uuid, bool);
    let mut all: BTreeSet<Entry> = BTreeSet::new();
    let mut by_project: BTreeMap<String, BTreeSet<Entry>> = BTreeMap::new();
    for (id, i, _) in fold.existing() {
        let e = (i.updated, id, i.deleted);
        all.insert(e);
        by_project
            .entry(i.project_id.clone())
            .or_default()
            .insert(e);
    }
    let check =
        |out: &mut Vec<Difference>, subject: &str, want: &BTreeSet<Entry>, got: &[Entry]| {
            let got_set: BTreeSet<Entry> = got.iter().copied().collect();
            let show = |entries: Vec<&Entry>| {
                entries
                    .iter()
                    .map(|(u, id, d)| format!("{id} (updated {u}, deleted {d})"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let missing: Vec<&Entry> = want.difference(&got_set).collect();
            if !missing.is_empty() {
                diff(
                    out,
                    subject,
                    "admin list",
                    format!("has {}", show(missing)),
                    "does not",
                );
            }
            let extra: Vec<&Entry> = got_set.difference(want).collect();
            if !extra.is_empty() {
                diff(
                    out,
                    subject,
                    "admin list",
                    "does not",
                    format!("has {}", show(extra)),
                );
            }
            if got.windows(2).any(|w| w[0].0 < w[1].0) {
                diff(
                    out,
                    subject,
                    "admin list order",
                    "newest updated first",
                    "out of order",
                );
            }
        };
    check(out, "all projects", &all, &snap.mgmt);
    let empty = BTreeSet::new();
    let projects: BTreeSet<&String> = by_project
        .keys()
        .chain(snap.mgmt_by_project.keys())
        .collect();
    for p in projects {
        let want = by_project.get(p).unwrap_or(&empty);
        let got = snap.mgmt_by_project.get(p).map_or(&[][..], Vec::as_slice);
        check(out, &format!("project {p}"), want, got);
    }
}

/// Configuration groups: each record, the per-project and admin lists of live groups,
/// and which live instances use each group.
fn compare_configurations(models: &ReadModels, fold: &LogFold, out: &mut Vec<Difference>) {
    let snap = models.configurations.snapshot();
    let mut lists: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for (id, folded) in &fold.configurations {
        let subject = format!("configuration {id}");
        let state = match folded {
            Err(e) => {
                diff(out, subject, "events", format!("do not fold ({e})"), "-");
                continue;
            }
            Ok(s) => s,
        };
        match (state.exists(), models.configurations.configuration(*id)) {
            (false, None) => {}
            (false, Some(_)) => diff(out, subject, "record", "never created", "has a record"),
            (true, None) => diff(out, subject, "record", "exists", "no record"),
            (true, Some(m)) => field_differences(out, &subject, state, &m),
        }
        if state.is_live() {
            lists
                .entry(state.project_id.clone())
                .or_default()
                .insert(*id);
            all.insert(*id);
        }
    }
    for id in snap.records.keys() {
        if !fold.configurations.contains_key(id) {
            diff(
                out,
                format!("configuration {id}"),
                "record",
                "no stream",
                "has a record",
            );
        }
    }
    let projects: BTreeSet<&String> = lists.keys().chain(snap.lists.keys()).collect();
    let empty = BTreeSet::new();
    for p in projects {
        let want = lists.get(p).unwrap_or(&empty);
        let got: BTreeSet<Uuid> = snap.lists.get(p).into_iter().flatten().copied().collect();
        set_differences(
            out,
            &format!("project {p}"),
            "configuration list",
            want,
            &got,
        );
    }
    let got_all: BTreeSet<Uuid> = snap.all.iter().copied().collect();
    set_differences(out, "all projects", "configuration list", &all, &got_all);

    let mut usage: BTreeMap<Uuid, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, i, _) in fold.existing() {
        if let (true, Some(group)) = (i.is_live(), i.configuration_id) {
            usage.entry(group).or_default().insert(id);
        }
    }
    let groups: BTreeSet<&Uuid> = usage.keys().chain(snap.usage.keys()).collect();
    for g in groups {
        let want = usage.get(g).unwrap_or(&empty);
        let got: BTreeSet<Uuid> = snap
            .usage
            .get(g)
            .into_iter()
            .flatten()
            .map(|(i, _)| *i)
            .collect();
        set_differences(
            out,
            &format!("configuration {g}"),
            "instances using it",
            want,
            &got,
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::projector::apply_recorded;

    const P1: &str = "02363685-de1a-4274-aa7b-e3e07a715b9d";
    const P2: &str = "6f0b1f0e-2d55-4c1e-9d0a-53a4a8f0c001";

    fn meta() -> Vec<u8> {
        json!({
            "schema_version": 1,
            "causation_id": "219f1246-01a4-4720-b29d-642f01bf0a4b",
            "correlation_id": "219f1246-01a4-4720-b29d-642f01bf0a4b",
            "actor": {"user_id": "alice", "project_id": "p1", "roles": ["member"]},
            "request_id": "req-fef55a0a-b080-48c6-a1df-ce52e6722451",
            "time": "2026-11-26T19:40:19Z"
        })
        .to_string()
        .into_bytes()
    }

    fn created(id: &str, project: &str, name: &str) -> Value {
        json!({
            "access": null, "at": "2026-11-26T19:40:19Z", "availability_zone": null,
            "configuration_id": null, "configuration_revision": 0, "databases": [],
            "datastore": {
                "datastore_id": "c1c2d803-764f-5091-92c4-2dd30361b9b7",
                "datastore_name": "mysql", "manager": "mysql",
                "version_id": "a6c53a4f-e7f0-5718-99c5-967acf357e5c",
                "version_name": "8.0", "version_number": "8.0.36"
            },
            "flavor": {"id": "2", "ram": 2048}, "instance_id": id, "locality": null,
            "modules": [], "name": name, "nics": [], "project_id": project,
            "region": "RegionOne", "replica_of": null, "restore_backup_id": null,
            "root_password": null, "user_id": "alice", "users": [],
            "volume": {"size": 1, "volume_type": null}
        })
    }

    fn at(n: u64) -> Position {
        Position {
            commit: n,
            prepare: n,
        }
    }

    /// A small log: two instances in two projects; the first renamed, the second's
    /// deletion requested.
    fn log() -> Vec<RecordedEvent> {
        let rows: [(&str, u64, &str, Value); 4] = [
            (P1, 0, "InstanceCreated", created(P1, "p1", "a")),
            (P2, 0, "InstanceCreated", created(P2, "p2", "b")),
            (
                P1,
                1,
                "InstanceRenamed",
                json!({"name": "a2", "at": "2026-11-26T19:41:00Z"}),
            ),
            (
                P2,
                1,
                "InstanceDeletionRequested",
                json!({"at": "2026-11-26T19:42:00Z"}),
            ),
        ];
        rows.into_iter()
            .enumerate()
            .map(|(n, (id, revision, event_type, data))| RecordedEvent {
                id: Uuid::new_v4(),
                stream: format!("instance-{id}"),
                revision,
                position: at(n as u64 + 1),
                event_type: event_type.into(),
                data: data.to_string().into_bytes(),
                metadata: meta(),
            })
            .collect()
    }

    fn fold_of(events: &[RecordedEvent]) -> LogFold {
        let mut fold = LogFold {
            head: events.last().map_or(Position::START, |e| e.position),
            ..LogFold::default()
        };
        let mut streams: BTreeMap<&str, Vec<RecordedEvent>> = BTreeMap::new();
        for e in events {
            streams.entry(&e.stream).or_default().push(e.clone());
        }
        for (s, records) in streams {
            fold.add(s, &records);
        }
        fold
    }

    fn models_of(events: &[RecordedEvent]) -> ReadModels {
        let models = ReadModels::default();
        for e in events {
            apply_recorded(&models, e);
        }
        models
    }

    #[test]
    fn models_replayed_from_the_log_match_its_independent_fold() {
        let events = log();
        let fold = fold_of(&events);
        assert!(fold.instances.values().all(|f| f.state.is_ok()));
        assert_eq!(compare(&models_of(&events), &fold), vec![]);
    }

    #[test]
    fn models_that_missed_an_event_differ_by_instance_and_field() {
        let events = log();
        let fold = fold_of(&events);
        // A projector that skipped the rename (position 3) but applied the rest.
        let mut skipped = events.clone();
        skipped.remove(2);
        let found = compare(&models_of(&skipped), &fold);
        let fields: BTreeSet<(&str, &str)> = found
            .iter()
            .map(|d| (d.subject.as_str(), d.field.as_str()))
            .collect();
        let subject = format!("instance {P1}");
        for field in ["name", "updated", "version", "position"] {
            assert!(
                fields.contains(&(subject.as_str(), field)),
                "{field} not reported: {found:#?}"
            );
        }
        let name = found
            .iter()
            .find(|d| d.field == "name")
            .map(ToString::to_string);
        assert_eq!(
            name.as_deref(),
            Some(format!("instance {P1}: name: log \"a2\", read models \"a\"").as_str())
        );
        // The admin order is derived from `updated`, so it differs too.
        assert!(
            fields.contains(&("all projects", "admin list")),
            "{found:#?}"
        );
    }

    #[test]
    fn models_that_missed_a_deletion_differ_in_quota() {
        let events = log();
        let fold = fold_of(&events);
        let found = compare(&models_of(&events[..3]), &fold);
        let quota: Vec<String> = found
            .iter()
            .filter(|d| d.field.starts_with("quota"))
            .map(ToString::to_string)
            .collect();
        assert!(
            quota.contains(&"project p2: quota instances: log 0, read models 1".to_string()),
            "{found:#?}"
        );
        assert!(found
            .iter()
            .any(|d| d.subject == "read models" && d.field == "position"));
    }

    #[test]
    fn an_undecodable_event_is_a_difference() {
        let mut events = log();
        events[2].data = b"{\"nme\": 1}".to_vec();
        let fold = fold_of(&events);
        let found = compare(&models_of(&events), &fold);
        assert!(
            found
                .iter()
                .any(|d| d.subject == format!("instance {P1}") && d.field == "events"),
            "{found:#?}"
        );
    }

    #[test]
    fn plain_progress_lines_show_position_rate_and_eta() {
        let line = progress_line("rebuild", 50, 200, 50, Instant::now());
        assert!(
            line.starts_with("rebuild: position 50/200 (25%), "),
            "{line}"
        );
        assert!(line.contains(" events/s, ETA "), "{line}");
        assert_eq!(
            progress_line("verify", 0, 0, 0, Instant::now()),
            "verify: position 0/0 (100%), 0 events/s, ETA ?"
        );
    }

    /// A log of two pages per decoding thread, three streams interleaved in runs:
    /// the replay applies the pages in read order whichever thread decoded them (out of
    /// order, each stream would show revision gaps and end on an older name).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_over_many_pages_applies_them_in_log_order() {
        use crate::store::sqlite::SqliteStore;
        use crate::store::{EventStore, ExpectedRevision, NewEvent};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        let ids = [P1, P2, "7a3c1e55-0b2d-4f6e-8a9c-1d2e3f4a5b6c"];
        let event = |event_type: &str, data: Value| NewEvent {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data: data.to_string().into_bytes(),
            metadata: meta(),
        };
        for (n, id) in ids.iter().enumerate() {
            let body = created(id, &format!("p{n}"), "r0");
            store
                .append(
                    &format!("instance-{id}"),
                    ExpectedRevision::NoStream,
                    vec![event("InstanceCreated", body)],
                )
                .await
                .unwrap();
        }
        // 3 streams x 90 runs of 50 renames: 13,500 events, 4 pages.
        const RUN: u64 = 50;
        for run in 0..90u64 {
            for id in ids {
                let renames = (0..RUN)
                    .map(|k| {
                        let name = format!("r{}", run * RUN + k + 1);
                        event(
                            "InstanceRenamed",
                            json!({"name": name, "at": "2026-11-26T19:41:00Z"}),
                        )
                    })
                    .collect();
                store
                    .append(
                        &format!("instance-{id}"),
                        ExpectedRevision::Exact(run * RUN),
                        renames,
                    )
                    .await
                    .unwrap();
            }
        }
        store.shutdown().await;
        let outcome = tokio::task::spawn_blocking(move || {
            let log = StreamReader::File(super::super::log::ReadOnlyLog::open(&path).unwrap());
            let head = log.head().unwrap();
            let models = ReadModels::default();
            let replay = replay(&log, &models, head, "test").unwrap();
            let names: Vec<String> = ids
                .iter()
                .map(|id| {
                    let id = Uuid::parse_str(id).unwrap();
                    models.instances.instance(id).unwrap().name
                })
                .collect();
            let verified = verify(&log, "test").unwrap();
            (replay.events, replay.gaps, names, verified)
        })
        .await
        .unwrap();
        let (events, gaps, names, verified) = outcome;
        assert!(
            events > 3 * PAGE as u64,
            "{events} events: two pages per decoder"
        );
        assert_eq!(gaps, 0);
        assert_eq!(names, ["r4500", "r4500", "r4500"]);
        assert!(matches!(verified, Outcome::Report(_)));
    }
}
