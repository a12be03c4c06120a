//! Prometheus metrics of this process: counter families and one histogram kept in a
//! [`prometheus_client`] registry, rendered in the text exposition format 0.0.4 at
//! `GET /metrics`.
//!
//! What is counted, and where (docs/operations.md, "Metrics", has the list):
//! - events appended, by stream category: the command bus, after each acknowledged append;
//! - commands by type and outcome: the command bus (instance commands) and the
//!   configuration handlers;
//! - saga steps by step and outcome: the saga runner;
//! - events the projector processed, and its anomalies (undecodable events, gaps), and
//!   how many unreadable events the log is known to hold (a gauge, set by
//!   `runtime::unreadable`);
//! - HTTP latency by method, matched route template and status class: a middleware;
//! - open client connections, and connections the server closed or refused, by reason:
//!   the listener (`crate::net`) and the body limit (`http::limit_body`);
//! - calls to Keystone by kind and outcome, and token cache hits and misses
//!   (`--auth keystone`): `http::keystone`.
//!
//! The projection gauges (applied position, store head, lag) are not kept here: they are
//! read from the read models and the store when scraped ([`Gauges`]), so they
//! are never stale.
//!
//! Why `prometheus-client` (the Prometheus project's Rust client) and not `metrics` +
//! `metrics-exporter-prometheus`: its registry is a value we own rather than a global
//! recorder, it brings no protobuf unless asked, and it writes the 0.0.4 text format
//! itself (`encoding::prometheus_text`: `_total` names, label escaping, Go-style `le`
//! bounds). Two of its defaults differ from what `/metrics` has always shown, and are
//! undone here: it leaves a family with no series out of the scrape (we declare every
//! family from the start: [`Declared`]), and it ends every help text with a `.` (ours are
//! sentences already: [`help`]).
//!
//! Why one registry per process ([`global`]): one troved process serves one data
//! directory (its lock), so the process is the server, which is also what Prometheus
//! scrapes. The counters are bumped deep inside the command bus, the saga and the
//! projector; threading a handle through every constructor would buy nothing. Tests
//! that need isolation build their own [`Metrics`].
//!
//! Must not: do I/O, block (an update is a map lookup under a shared lock, then an atomic
//! add or, for the histogram, a short uncontended lock), or take label values from client
//! input that could grow without bound: unknown HTTP methods become `other`, requests no
//! route matched `unmatched`, and every other label comes from a fixed set in the code
//! (stream categories, command, step and fault names).

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::encoding::{
    prometheus_text, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::store::Position;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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

/// How a command ended, for `troved_commands_total`. The command path says which outcome
/// its result is (`From<&Result<_, CommandError>>` in `runtime::commands`): this module
/// depends on nothing above the store.
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
    fn labels(self, command: &'static str) -> CommandLabels {
        let (outcome, fault) = match self {
            CommandOutcome::Ok => ("ok", None),
            CommandOutcome::Refused(fault) => ("refused", Some(fault)),
            CommandOutcome::Conflict => ("conflict", None),
            CommandOutcome::Error => ("error", None),
        };
        CommandLabels {
            command,
            outcome,
            fault,
        }
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

impl ProjectionAnomaly {
    fn labels(self) -> AnomalyLabels {
        let kind = match self {
            ProjectionAnomaly::Undecodable => "undecodable",
            ProjectionAnomaly::Gap => "gap",
        };
        AnomalyLabels { kind }
    }
}

/// Why the server closed or refused a client connection, for
/// `troved_http_connections_closed_total` (docs/operations.md, "Slow, idle and excess
/// clients").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// Its request head did not arrive within the header timeout.
    HeaderTimeout,
    /// Its request body did not arrive within the body timeout (408).
    BodyTimeout,
    /// Kept alive without a request for the idle timeout.
    IdleTimeout,
    /// Closed while silent to make room for a new connection at the limit.
    Evicted,
    /// Over the limit with every connection busy: answered 503.
    Refused,
    /// Over the limit with too many refusals under way already: closed unanswered.
    Dropped,
    /// Still open at the end of the shutdown grace period.
    Shutdown,
}

impl ConnectionClosed {
    fn labels(self) -> ReasonLabels {
        let reason = match self {
            ConnectionClosed::HeaderTimeout => "header_timeout",
            ConnectionClosed::BodyTimeout => "body_timeout",
            ConnectionClosed::IdleTimeout => "idle_timeout",
            ConnectionClosed::Evicted => "evicted",
            ConnectionClosed::Refused => "refused",
            ConnectionClosed::Dropped => "dropped",
            ConnectionClosed::Shutdown => "shutdown",
        };
        ReasonLabels { reason }
    }
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
    /// Events appended but not applied yet, counted by the store
    /// (`EventStore::events_after`; positions are byte offsets on EventStoreDB, so their
    /// difference is no count); `None` if the store could not be asked.
    pub lag_events: Option<u64>,
}

impl Gauges {
    /// Events appended but not applied yet (exact; on EventStoreDB counted up to
    /// `store::METRICS_LAG_MAX`).
    pub fn lag(&self) -> Option<u64> {
        self.lag_events
    }
}

/// `troved_events_appended_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

/// `troved_commands_total`'s labels: `fault` only for refusals (an empty label would mean
/// the same as none, so it is left out rather than written empty).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CommandLabels {
    command: &'static str,
    outcome: &'static str,
    fault: Option<&'static str>,
}

impl EncodeLabelSet for CommandLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        ("command", self.command).encode(encoder.encode_label())?;
        ("outcome", self.outcome).encode(encoder.encode_label())?;
        if let Some(fault) = self.fault {
            ("fault", fault).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// `troved_saga_steps_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
    outcome: &'static str,
}

/// `troved_projection_anomalies_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnomalyLabels {
    kind: &'static str,
}

/// `troved_http_connections_closed_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `troved_keystone_calls_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeystoneLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// `troved_token_cache_lookups_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

/// `troved_http_request_duration_seconds`'s labels. Only the route is owned: a matched
/// template (bounded by the router) or `unmatched`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

/// The counters of `--auth keystone` (`http::keystone`).
fn register_identity(
    counters: &mut Registry,
    keystone_calls: &Family<KeystoneLabels, Counter>,
    token_cache: &Family<CacheLabels, Counter>,
) {
    counters.register(
        "troved_keystone_calls",
        help("Calls to Keystone (--auth keystone), by kind (authenticate: troved's service token; validate: a user's token) and outcome (ok, valid, invalid, service_token_rejected, credentials_refused, forbidden, unreachable, error)."),
        Declared(Family::clone(keystone_calls)),
    );
    counters.register(
        "troved_token_cache_lookups",
        help("Token validations answered by the cache or by a validation already in flight (hit), or by a call to Keystone (miss), with --auth keystone."),
        Declared(Family::clone(token_cache)),
    );
}

/// A new series of the latency histogram.
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The registry: every family troved exports, except the projection gauges.
#[derive(Debug)]
pub struct Metrics {
    events_appended: Family<CategoryLabels, Counter>,
    commands: Family<CommandLabels, Counter>,
    saga_steps: Family<StepLabels, Counter>,
    projected: Counter,
    projection_anomalies: Family<AnomalyLabels, Counter>,
    /// Unreadable events known in the log (`runtime::unreadable`): a gauge, not a
    /// counter, so a start from a snapshot shows the ones found before it too.
    unreadable: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
    connections_open: Gauge,
    keystone_calls: Family<KeystoneLabels, Counter>,
    token_cache: Family<CacheLabels, Counter>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// The counter families above, in the order they are rendered (before the gauges).
    counters: Registry,
    /// The latency histogram, rendered last.
    latency: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let events_appended = Family::default();
        let commands = Family::default();
        let saga_steps = Family::default();
        let projected = Counter::default();
        let projection_anomalies = Family::default();
        let unreadable = Gauge::default();
        let connections_closed = Family::default();
        let connections_open = Gauge::default();
        let keystone_calls = Family::default();
        let token_cache = Family::default();
        let http = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        // The registries hold clones: handles to the same series.
        let mut counters = Registry::default();
        counters.register(
            "troved_events_appended",
            help("Events appended to the event store by this process, by stream category (a retried append deduplicated by the store counts again)."),
            Declared(Family::clone(&events_appended)),
        );
        counters.register(
            "troved_commands",
            help("Commands decided, by command type and outcome (ok, refused with the Trove fault name, conflict after every retry, error)."),
            Declared(Family::clone(&commands)),
        );
        counters.register(
            "troved_saga_steps",
            help("Saga runner steps, by step and outcome (recorded, waiting, retried, failed)."),
            Declared(Family::clone(&saga_steps)),
        );
        counters.register(
            "troved_projection_events",
            help("Events of $all processed by the projector since the process started (the replay at start included)."),
            Counter::clone(&projected),
        );
        counters.register(
            "troved_projection_anomalies",
            help("Events the projector skipped: undecodable, or after a revision gap in their stream (rebuild and verify the read models)."),
            Declared(Family::clone(&projection_anomalies)),
        );
        counters.register(
            "troved_unreadable_events",
            help("Events of the log that do not decode, found since the process started, those before a read-model snapshot's position included (run `troved audit verify`)."),
            Gauge::clone(&unreadable),
        );
        counters.register(
            "troved_http_connections_closed",
            help("Client connections the server closed or refused itself, by reason (header_timeout, body_timeout, idle_timeout, evicted, refused, dropped, shutdown)."),
            Declared(Family::clone(&connections_closed)),
        );
        counters.register(
            "troved_http_connections_open",
            help("Client connections open now (at most the connection limit)."),
            Gauge::clone(&connections_open),
        );
        register_identity(&mut counters, &keystone_calls, &token_cache);
        let mut latency = Registry::default();
        latency.register(
            "troved_http_request_duration_seconds",
            help("HTTP request latency, by method, matched route template and status class."),
            Declared(Family::clone(&http)),
        );
        Metrics {
            events_appended,
            commands,
            saga_steps,
            projected,
            projection_anomalies,
            unreadable,
            connections_closed,
            connections_open,
            keystone_calls,
            token_cache,
            http,
            counters,
            latency,
        }
    }
}

impl Metrics {
    /// Counts `n` events appended to `stream` (labelled by its category, the part before
    /// the first `-`: `instance`, `configuration`, ...).
    pub fn events_appended(&self, stream: &str, n: usize) {
        let category = stream.split_once('-').map_or(stream, |(c, _)| c);
        self.events_appended
            .get_or_create(&CategoryLabels {
                category: category.to_string(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts each of `commands` (decided together, all or nothing) with their
    /// `outcome`.
    pub fn commands(
        &self,
        commands: impl IntoIterator<Item = &'static str>,
        outcome: CommandOutcome,
    ) {
        for command in commands {
            self.commands.get_or_create(&outcome.labels(command)).inc();
        }
    }

    /// Counts one saga step.
    pub fn saga_step(&self, step: &'static str, outcome: StepOutcome) {
        self.saga_steps
            .get_or_create(&StepLabels {
                step,
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts one event processed by the projector (applied, or skipped by a model that
    /// has no use for it).
    pub fn event_projected(&self) {
        self.projected.inc();
    }

    /// Counts `n` events applied by the projector at once (a replayed page).
    pub fn events_projected(&self, n: u64) {
        self.projected.inc_by(n);
    }

    /// Counts a projection anomaly.
    pub fn projection_anomaly(&self, anomaly: ProjectionAnomaly) {
        self.projection_anomalies
            .get_or_create(&anomaly.labels())
            .inc();
    }

    /// Counts a connection the server closed or refused itself.
    pub fn connection_closed(&self, why: ConnectionClosed) {
        self.connections_closed.get_or_create(&why.labels()).inc();
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connections_open(&self, delta: i64) {
        self.connections_open.inc_by(delta);
    }

    /// Counts one call to Keystone.
    pub fn keystone_call(&self, kind: &'static str, outcome: &'static str) {
        self.keystone_calls
            .get_or_create(&KeystoneLabels { kind, outcome })
            .inc();
    }

    /// Counts one token lookup: answered without calling Keystone (`hit`) or not.
    pub fn token_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.token_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// How many connections were closed or refused for `why` (tests, diagnostics).
    pub fn connections_closed(&self, why: ConnectionClosed) -> u64 {
        self.connections_closed
            .get(&why.labels())
            .map_or(0, |c| c.get())
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
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let status = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = HttpLabels {
            method,
            route: route.unwrap_or("unmatched").to_string(),
            status,
        };
        self.http
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// How many events of `category` were counted as appended (tests, diagnostics).
    pub fn appended(&self, category: &str) -> u64 {
        let labels = CategoryLabels {
            category: category.to_string(),
        };
        self.events_appended.get(&labels).map_or(0, |c| c.get())
    }

    /// How many `anomaly`s the projector met in this process.
    pub fn projection_anomalies(&self, anomaly: ProjectionAnomaly) -> u64 {
        self.projection_anomalies
            .get(&anomaly.labels())
            .map_or(0, |c| c.get())
    }

    /// Sets `troved_unreadable_events`.
    pub fn unreadable_events(&self, n: u64) {
        self.unreadable.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Every family in the text format 0.0.4, projection gauges included.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut read = Registry::default();
        read.register(
            "troved_projection_position",
            help("Last position of $all that every read model has applied."),
            Reading(Some(gauges.applied.commit)),
        );
        read.register(
            "troved_store_head_position",
            help("Position of the last event in the event store."),
            Reading(gauges.head.map(|h| h.commit)),
        );
        read.register(
            "troved_projection_lag_events",
            help("Events appended but not yet applied to the read models (counted: exact, on EventStoreDB up to 1000)."),
            Reading(gauges.lag()),
        );
        read.register(
            "troved_command_cached_streams",
            help("Instance streams kept folded by the command path (mostly instances with a command or a workflow step in flight; at most 4096)."),
            Reading(Some(gauges.cached_streams)),
        );
        let mut out = String::with_capacity(8 * 1024);
        for registry in [&self.counters, &read, &self.latency] {
            // Writing into a String cannot fail, and our values (integers, finite sums,
            // fixed bucket bounds) give the encoder no other reason to.
            let _ = prometheus_text::encode(&mut out, registry);
        }
        out
    }
}

/// `prometheus-client` ends every help text with a `.`; ours are sentences already.
fn help(text: &'static str) -> &'static str {
    text.strip_suffix('.').unwrap_or(text)
}

/// A family declared (HELP and TYPE) in every scrape, before its first series too:
/// `prometheus-client`, like Go's client, leaves empty families out, but `/metrics` has
/// always named every family it can export, so a dashboard or an alert can tell "nothing
/// happened yet" from "this troved does not export that".
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// A gauge read at scrape time; `None` (the store could not be asked) declares the
/// family without a sample rather than reporting 0.
#[derive(Debug)]
struct Reading(Option<u64>);

impl EncodeMetric for Reading {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        match self.0 {
            Some(value) => encoder.encode_gauge(&value),
            None => Ok(()),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
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
        m.commands(["RenameInstance"], CommandOutcome::Ok);
        m.commands(
            ["RenameInstance", "AttachConfiguration"],
            CommandOutcome::Refused(Fault::UnprocessableEntity.name()),
        );
        m.commands(["DeleteInstance"], CommandOutcome::Conflict);
        m.saga_step("create_server", StepOutcome::Waiting);
        m.saga_step("create_server", StepOutcome::Waiting);
        m.event_projected();
        m.projection_anomaly(ProjectionAnomaly::Gap);
        let text = m.render(&Gauges {
            applied: at(7),
            head: Some(at(9)),
            cached_streams: 3,
            lag_events: Some(2),
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
            lag_events: Some(2),
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
            lag_events: None,
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
        let m = Metrics::default();
        m.events_appended("a\"b\\c\nd-1", 1);
        let text = m.render(&Gauges {
            applied: at(0),
            head: None,
            cached_streams: 0,
            lag_events: None,
        });
        let line = "troved_events_appended_total{category=\"a\\\"b\\\\c\\nd\"} 1";
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
}
