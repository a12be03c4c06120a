//! Prometheus metrics of this process: a small hand-written registry of counters and
//! histograms, rendered in the text exposition format 0.0.4 at `GET /metrics`.
//!
//! What is counted, and where (docs/operations.md, "Metrics", has the list):
//! - events appended, by stream category: the command bus, after each acknowledged append;
//! - commands by type and outcome: the command bus (instance commands) and the
//!   configuration handlers;
//! - saga steps by step and outcome: the lifecycle driver;
//! - events the projector processed, and its anomalies (undecodable events, gaps);
//! - HTTP latency by method, matched route template and status class: a middleware.
//!
//! The projection gauges (applied position, store head, lag) are not kept here: they are
//! read from the read models and the store when scraped ([`Gauges`]), so they
//! are never stale.
//!
//! Why hand-written and not the `prometheus` crate: four counter families and one
//! histogram need a few atomics and one renderer; the crate would bring protobuf
//! support, its own global registry and lazy statics for nothing we use.
//!
//! Why one registry per process ([`global`]): one troved process serves one data
//! directory (the `LOCK`), so the process is the server, which is also what Prometheus
//! scrapes. The counters are bumped deep inside the command bus, the saga and the
//! projector; threading a handle through every constructor would buy nothing. Tests
//! that need isolation build their own [`Metrics`].
//!
//! Must not: do I/O, block (an update is a map lookup and an atomic add), or take label
//! values from client input that could grow without bound: unknown HTTP methods become
//! `other`, requests no route matched `unmatched`, and every other label comes from a
//! fixed set in the code (stream categories, command, step and fault names).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dashmap::DashMap;

use crate::runtime::commands::CommandError;
use crate::store::{Position, StoreError};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the HTTP latency buckets: from a read served from memory
/// (well under a millisecond) to a create waiting for its read-your-writes bound (5 s).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The registry of this process.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::default)
}

/// Label names and values of one series, in the order they are rendered.
type Labels = Vec<(&'static str, String)>;

/// Counters of one family, by label values.
#[derive(Debug, Default)]
struct Counters {
    series: DashMap<Labels, AtomicU64>,
}

impl Counters {
    fn add(&self, labels: Labels, n: u64) {
        // The common case (the series exists) takes a shared guard only.
        if let Some(c) = self.series.get(&labels) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.series
            .entry(labels)
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, labels: &Labels) -> u64 {
        self.series
            .get(labels)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every series, sorted by labels (stable output).
    fn sorted(&self) -> Vec<(Labels, u64)> {
        let mut all: Vec<(Labels, u64)> = self
            .series
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }
}

/// One latency histogram. Buckets are stored non-cumulative (one add per observation)
/// and summed when rendered; the last slot counts observations above every bound.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Nanoseconds: an integer sum needs no compare-and-swap loop.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// How a command ended, for `troved_commands_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Decided and appended (or a no-op).
    Ok,
    /// Refused by a business rule: the Trove fault name (`unprocessableEntity`, ...).
    Refused(&'static str),
    /// Still conflicting after every retry (409).
    Conflict,
    /// The store or the codec failed (5xx).
    Error,
}

impl CommandOutcome {
    /// The outcome of a command path's result.
    pub fn of<T>(result: &Result<T, CommandError>) -> CommandOutcome {
        match result {
            Ok(_) => CommandOutcome::Ok,
            Err(CommandError::Domain(d)) => CommandOutcome::Refused(d.fault().name()),
            Err(CommandError::Rejected(fault, _)) => CommandOutcome::Refused(fault.name()),
            Err(CommandError::Conflict(_))
            | Err(CommandError::Store(StoreError::WrongExpectedVersion { .. })) => {
                CommandOutcome::Conflict
            }
            Err(CommandError::Store(_)) | Err(CommandError::Codec(_)) => CommandOutcome::Error,
        }
    }

    fn labels(self, command: &str) -> Labels {
        let (outcome, fault) = match self {
            CommandOutcome::Ok => ("ok", None),
            CommandOutcome::Refused(fault) => ("refused", Some(fault)),
            CommandOutcome::Conflict => ("conflict", None),
            CommandOutcome::Error => ("error", None),
        };
        let mut labels = vec![
            ("command", command.to_string()),
            ("outcome", outcome.to_string()),
        ];
        // Only refusals have a fault; an empty label would mean the same as none.
        if let Some(fault) = fault {
            labels.push(("fault", fault.to_string()));
        }
        labels
    }
}

/// How one saga step ended, for `troved_saga_steps_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Performed, and its report recorded as events.
    Recorded,
    /// The provider is still working on it; the step is asked again later.
    Waiting,
    /// Failed transiently (provider, store or vault); retried with backoff.
    Retried,
    /// Failed for good: the workflow's failure was recorded.
    Failed,
}

impl StepOutcome {
    fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Recorded => "recorded",
            StepOutcome::Waiting => "waiting",
            StepOutcome::Retried => "retried",
            StepOutcome::Failed => "failed",
        }
    }
}

/// Something the projector met that needs an operator (both are logged as errors too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionAnomaly {
    /// An event that does not decode was skipped.
    Undecodable,
    /// Events of a stream were skipped (revision gap): rebuild and verify the models.
    Gap,
}

/// The gauges read when scraped: the projection's, and the command path's cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauges {
    /// The position every read model has applied.
    pub applied: Position,
    /// The store's last position; `None` if the store could not be asked (the gauges
    /// that need it are then left out of the scrape rather than reported as 0).
    pub head: Option<Position>,
    /// Instance streams the command path keeps folded (`runtime::commands`).
    pub cached_streams: u64,
}

impl Gauges {
    /// Events appended but not applied yet. Exact for the embedded store, whose
    /// positions are dense (1, 2, 3, …); for a store with gaps in its positions
    /// (EventStoreDB) the difference of commit positions is only an upper estimate.
    pub fn lag(&self) -> Option<u64> {
        self.head
            .map(|h| h.commit.saturating_sub(self.applied.commit))
    }
}

/// The registry: every family troved exports, except the projection gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    events_appended: Counters,
    commands: Counters,
    saga_steps: Counters,
    projected: Counters,
    projection_anomalies: Counters,
    http: DashMap<Labels, Histogram>,
}

impl Metrics {
    /// Counts `n` events appended to `stream` (labelled by its category, the part before
    /// the first `-`: `instance`, `configuration`, ...).
    pub fn events_appended(&self, stream: &str, n: usize) {
        let category = stream.split_once('-').map_or(stream, |(c, _)| c);
        self.events_appended.add(
            vec![("category", category.to_string())],
            u64::try_from(n).unwrap_or(u64::MAX),
        );
    }

    /// Counts each of `commands` (decided together, all or nothing) with the outcome of
    /// `result`.
    pub fn commands<'a, T>(
        &self,
        commands: impl IntoIterator<Item = &'a str>,
        result: &Result<T, CommandError>,
    ) {
        let outcome = CommandOutcome::of(result);
        for command in commands {
            self.commands.add(outcome.labels(command), 1);
        }
    }

    /// Counts one saga step.
    pub fn saga_step(&self, step: &str, outcome: StepOutcome) {
        self.saga_steps.add(
            vec![
                ("step", step.to_string()),
                ("outcome", outcome.as_str().to_string()),
            ],
            1,
        );
    }

    /// Counts one event processed by the projector (applied, or skipped by a model that
    /// has no use for it).
    pub fn event_projected(&self) {
        self.projected.add(Vec::new(), 1);
    }

    /// Counts `n` events applied by the projector at once (a replayed page).
    pub fn events_projected(&self, n: u64) {
        self.projected.add(Vec::new(), n);
    }

    /// Counts a projection anomaly.
    pub fn projection_anomaly(&self, anomaly: ProjectionAnomaly) {
        self.projection_anomalies
            .add(vec![("kind", anomaly_kind(anomaly).to_string())], 1);
    }

    /// Observes one HTTP request. `route` is the matched route template
    /// (`/v1.0/{project_id}/instances/{id}`), `None` when no route matched.
    pub fn http_request(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let method = match *method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS => method.as_str(),
            _ => "other",
        };
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = vec![
            ("method", method.to_string()),
            ("route", route.unwrap_or("unmatched").to_string()),
            ("status", class.to_string()),
        ];
        if let Some(h) = self.http.get(&labels) {
            h.observe(elapsed);
            return;
        }
        self.http.entry(labels).or_default().observe(elapsed);
    }

    /// How many events of `category` were counted as appended (tests, diagnostics).
    pub fn appended(&self, category: &str) -> u64 {
        self.events_appended
            .get(&vec![("category", category.to_string())])
    }

    /// How many `anomaly`s the projector met in this process.
    pub fn projection_anomalies(&self, anomaly: ProjectionAnomaly) -> u64 {
        self.projection_anomalies
            .get(&vec![("kind", anomaly_kind(anomaly).to_string())])
    }

    /// Every family in the text format 0.0.4, projection gauges included.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        counter_family(
            &mut out,
            "troved_events_appended_total",
            "Events appended to the event store by this process, by stream category (a retried append deduplicated by the store counts again).",
            &self.events_appended,
        );
        counter_family(
            &mut out,
            "troved_commands_total",
            "Commands decided, by command type and outcome (ok, refused with the Trove fault name, conflict after every retry, error).",
            &self.commands,
        );
        counter_family(
            &mut out,
            "troved_saga_steps_total",
            "Lifecycle driver steps, by step and outcome (recorded, waiting, retried, failed).",
            &self.saga_steps,
        );
        counter_family(
            &mut out,
            "troved_projection_events_total",
            "Events of $all processed by the projector since the process started (the replay at start included).",
            &self.projected,
        );
        counter_family(
            &mut out,
            "troved_projection_anomalies_total",
            "Events the projector skipped: undecodable, or after a revision gap in their stream (rebuild and verify the read models).",
            &self.projection_anomalies,
        );
        gauge(
            &mut out,
            "troved_projection_position",
            "Last position of $all that every read model has applied.",
            Some(gauges.applied.commit),
        );
        gauge(
            &mut out,
            "troved_store_head_position",
            "Position of the last event in the event store.",
            gauges.head.map(|h| h.commit),
        );
        gauge(
            &mut out,
            "troved_projection_lag_events",
            "Events appended but not yet applied to the read models (store head minus applied position; exact for the embedded store, an estimate for stores whose positions have gaps).",
            gauges.lag(),
        );
        gauge(
            &mut out,
            "troved_command_cached_streams",
            "Instance streams kept folded by the command path (mostly instances with a command or a workflow step in flight; at most 4096).",
            Some(gauges.cached_streams),
        );
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "troved_http_request_duration_seconds";
        header(
            out,
            name,
            "HTTP request latency, by method, matched route template and status class.",
            "histogram",
        );
        let mut series: Vec<(Labels, Vec<u64>, u64)> = self
            .http
            .iter()
            .map(|e| {
                let h = e.value();
                let counts = h
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect();
                (e.key().clone(), counts, h.sum_nanos.load(Ordering::Relaxed))
            })
            .collect();
        series.sort();
        for (labels, counts, sum_nanos) in series {
            let base = label_text(&labels);
            let mut cumulative = 0u64;
            for (le, count) in LATENCY_BUCKETS.iter().zip(&counts) {
                cumulative += count;
                let _ = writeln!(out, "{name}_bucket{{{base},le=\"{le}\"}} {cumulative}");
            }
            // The +Inf bucket and the count are the same number by construction, even
            // while other requests are being observed during this render.
            let total = cumulative + counts.last().copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{base},le=\"+Inf\"}} {total}");
            let sum = Duration::from_nanos(sum_nanos).as_secs_f64();
            let _ = writeln!(out, "{name}_sum{{{base}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{base}}} {total}");
        }
    }
}

fn anomaly_kind(anomaly: ProjectionAnomaly) -> &'static str {
    match anomaly {
        ProjectionAnomaly::Undecodable => "undecodable",
        ProjectionAnomaly::Gap => "gap",
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter_family(out: &mut String, name: &str, help: &str, counters: &Counters) {
    header(out, name, help, "counter");
    for (labels, value) in counters.sorted() {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{}}} {value}", label_text(&labels));
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: Option<u64>) {
    header(out, name, help, "gauge");
    if let Some(v) = value {
        let _ = writeln!(out, "{name} {v}");
    }
}

/// `a="x",b="y"`, values escaped as the format requires.
fn label_text(labels: &Labels) -> String {
    let mut s = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{name}=\"{}\"", escape_label(value));
    }
    s
}

/// Label values escape backslash, double quote and newline (format 0.0.4).
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use aggregates::fault::Fault;

    use super::*;

    fn at(commit: u64) -> Position {
        Position {
            commit,
            prepare: commit,
        }
    }

    #[test]
    fn counters_render_by_label_in_a_stable_order() {
        let m = Metrics::default();
        m.events_appended("instance-3f2c", 2);
        m.events_appended("configuration-1", 1);
        m.events_appended("instance-9a", 1);
        m.commands(["RenameInstance"], &Ok::<(), CommandError>(()));
        m.commands(
            ["RenameInstance", "AttachConfiguration"],
            &Err::<(), _>(CommandError::Rejected(
                Fault::UnprocessableEntity,
                "not ready".into(),
            )),
        );
        m.commands(
            ["DeleteInstance"],
            &Err::<(), _>(CommandError::Conflict("instance-1".into())),
        );
        m.saga_step("create_server", StepOutcome::Waiting);
        m.saga_step("create_server", StepOutcome::Waiting);
        m.event_projected();
        m.projection_anomaly(ProjectionAnomaly::Gap);
        let text = m.render(&Gauges {
            applied: at(7),
            head: Some(at(9)),
            cached_streams: 3,
        });
        for line in [
            "# TYPE troved_events_appended_total counter",
            "troved_events_appended_total{category=\"configuration\"} 1",
            "troved_events_appended_total{category=\"instance\"} 3",
            "troved_commands_total{command=\"RenameInstance\",outcome=\"ok\"} 1",
            "troved_commands_total{command=\"RenameInstance\",outcome=\"refused\",fault=\"unprocessableEntity\"} 1",
            "troved_commands_total{command=\"AttachConfiguration\",outcome=\"refused\",fault=\"unprocessableEntity\"} 1",
            "troved_commands_total{command=\"DeleteInstance\",outcome=\"conflict\"} 1",
            "troved_saga_steps_total{step=\"create_server\",outcome=\"waiting\"} 2",
            "troved_projection_events_total 1",
            "troved_projection_anomalies_total{kind=\"gap\"} 1",
            "troved_projection_position 7",
            "troved_store_head_position 9",
            "troved_projection_lag_events 2",
            "troved_command_cached_streams 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing in\n{text}");
        }
        assert_eq!(m.appended("instance"), 3);
        // Same registry, same text.
        let again = m.render(&Gauges {
            applied: at(7),
            head: Some(at(9)),
            cached_streams: 3,
        });
        assert_eq!(text, again);
    }

    #[test]
    fn latency_buckets_are_cumulative_and_end_with_the_count() {
        let m = Metrics::default();
        let route = Some("/v1.0/{project_id}/instances");
        for ms in [0, 3, 3, 40, 20_000] {
            m.http_request(
                &Method::GET,
                route,
                StatusCode::OK,
                Duration::from_millis(ms),
            );
        }
        m.http_request(
            &Method::from_bytes(b"BREW").unwrap(),
            None,
            StatusCode::NOT_FOUND,
            Duration::from_millis(1),
        );
        let text = m.render(&Gauges {
            applied: at(0),
            head: None,
            cached_streams: 0,
        });
        let base = "method=\"GET\",route=\"/v1.0/{project_id}/instances\",status=\"2xx\"";
        for line in [
            format!("troved_http_request_duration_seconds_bucket{{{base},le=\"0.0005\"}} 1"),
            format!("troved_http_request_duration_seconds_bucket{{{base},le=\"0.005\"}} 3"),
            format!("troved_http_request_duration_seconds_bucket{{{base},le=\"0.05\"}} 4"),
            format!("troved_http_request_duration_seconds_bucket{{{base},le=\"10\"}} 4"),
            format!("troved_http_request_duration_seconds_bucket{{{base},le=\"+Inf\"}} 5"),
            format!("troved_http_request_duration_seconds_count{{{base}}} 5"),
            format!("troved_http_request_duration_seconds_sum{{{base}}} 20.046"),
            "troved_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"4xx\"} 1".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing in\n{text}");
        }
        // Without a head, the gauges that need it are left out, not reported as 0.
        assert!(text.contains("# TYPE troved_projection_lag_events gauge\n# HELP"));
        assert!(!text
            .lines()
            .any(|l| l.starts_with("troved_store_head_position ")));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
