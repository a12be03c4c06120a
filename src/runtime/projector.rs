//! The projector: feeds every event of `$all` to the read models, in order, and
//! publishes the position applied so command answers can wait for it.
//!
//! Applying an event is two halves: [`decode`] (JSON to a typed event: most of the
//! cost, and independent of every other event) and [`apply_decoded`] (the fold into the
//! models, strictly in log order). The live projector does both per event; the replay at
//! start-up ([`catch_up`]) runs them as a pipeline on separate threads (read a page,
//! decode it, apply it) so a 2-core machine replays at the speed of the slowest stage
//! rather than of their sum.

use std::sync::{Arc, Mutex, PoisonError};

use aggregates::backup::backup_id_of_stream;
use aggregates::configuration::configuration_id_of_stream;
use aggregates::instance::{instance_id_of_stream, InstanceEvent};
use projections::backups::{BackupModels, ProjectedBackupEvent};
use projections::configurations::{ConfigurationModels, ProjectedConfigurationEvent};
use projections::quotas::QuotaModels;
use projections::{ApplyOutcome, InstanceModels, ProjectedEvent};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::codec;
use super::unreadable::{UnreadableEvent, UnreadableEvents};
use crate::metrics::{self, ProjectionAnomaly};
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

/// Events read per page while replaying.
pub const REPLAY_PAGE: usize = 4096;

/// Decoded pages queued between the decoding and the applying stage of a replay: enough
/// to ride out scheduling hiccups, few enough to bound memory (a page is ~1-2 MB).
const REPLAY_QUEUE: usize = 4;

/// Every read model the projector maintains. Cheap to clone.
#[derive(Clone, Default)]
pub struct ReadModels {
    /// Instance records, lists, admin list, replicas, quota usage.
    pub instances: Arc<InstanceModels>,
    /// Configuration groups.
    pub configurations: Arc<ConfigurationModels>,
    /// Backups.
    pub backups: Arc<BackupModels>,
    /// Per-project quota overrides.
    pub quotas: Arc<QuotaModels>,
    /// Where in the log the models are: what a read-model snapshot records.
    pub applied: Arc<Applied>,
    /// The events the projector (or the scan after a start from a snapshot) could not
    /// decode: commands, show and history name them.
    pub unreadable: Arc<UnreadableEvents>,
}

/// The last event applied to the models, and the one before it: a snapshot taken now
/// reflects the log up to `position`, and a later start checks that the log still holds
/// event `id` there (reading after `before`, a position every adapter knows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Position of the last event applied ([`Position::START`]: none yet).
    pub position: Position,
    /// That event's id (nil for none).
    pub id: Uuid,
    /// Position of the event before it in `$all` ([`Position::START`] for the first).
    pub before: Position,
}

/// The models' [`Cursor`], and how many events this process applied (a snapshot writer
/// compares it with the count at its last snapshot).
#[derive(Debug, Default)]
pub struct Applied {
    inner: Mutex<(Cursor, u64)>,
}

impl Applied {
    /// The cursor now, and the events applied so far by this process.
    pub fn get(&self) -> (Cursor, u64) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts from `cursor` (the models were restored from a snapshot taken there).
    pub fn set(&self, cursor: Cursor) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0 = cursor;
    }

    /// Records that `count` events were applied, the last of which are `last` (in
    /// order; the last two are enough to know the cursor).
    fn advance(&self, last: &[(Position, Uuid)], count: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (cursor, applied) = &mut *guard;
        for &(position, id) in last {
            *cursor = Cursor {
                position,
                id,
                before: cursor.position,
            };
        }
        *applied += count;
    }
}

/// A stored event decoded for the read models ([`decode`]), ready for
/// [`apply_decoded`]. `Send`: a replay decodes on one thread and applies on another.
pub struct Decoded {
    position: Position,
    id: Uuid,
    target: Target,
}

enum Target {
    Instance(Result<ProjectedEvent, Undecodable>),
    Configuration(Result<ProjectedConfigurationEvent, Undecodable>),
    Backup(Result<ProjectedBackupEvent, Undecodable>),
    /// A project's quota change (its project, the event).
    Quota(Result<(String, aggregates::quota::QuotaEvent), Undecodable>),
    /// Another category: the models only move their position.
    Other,
}

/// What the anomaly report of an undecodable event needs (boxed: rare, and it would
/// make every decoded event larger).
struct Undecodable(Box<UnreadableEvent>);

impl Decoded {
    /// The event's position in `$all`.
    pub fn position(&self) -> Position {
        self.position
    }
}

/// Decodes a stored event for the read models: its category and id from the stream
/// name, and the typed event. Pure: any number may run at once, in any order.
pub fn decode(r: &RecordedEvent) -> Decoded {
    let undecodable = |error| Undecodable(Box::new(UnreadableEvent::new(r, &error)));
    let target = if let Some(instance_id) = instance_id_of_stream(&r.stream) {
        Target::Instance(
            codec::decode_event(r)
                .map(|event| ProjectedEvent {
                    position: r.position,
                    instance_id,
                    revision: r.revision,
                    event,
                })
                .map_err(undecodable),
        )
    } else if let Some(configuration_id) = configuration_id_of_stream(&r.stream) {
        Target::Configuration(
            codec::decode_configuration_event(r)
                .map(|event| ProjectedConfigurationEvent {
                    position: r.position,
                    configuration_id,
                    revision: r.revision,
                    event,
                })
                .map_err(undecodable),
        )
    } else if let Some(backup_id) = backup_id_of_stream(&r.stream) {
        Target::Backup(
            codec::decode_backup_event(r)
                .map(|event| ProjectedBackupEvent {
                    position: r.position,
                    backup_id,
                    event,
                })
                .map_err(undecodable),
        )
    } else if let Some(project) = aggregates::quota::project_of_stream(&r.stream) {
        Target::Quota(
            codec::decode_quota_event(r)
                .map(|event| (project.to_string(), event))
                .map_err(undecodable),
        )
    } else {
        Target::Other
    };
    Decoded {
        position: r.position,
        id: r.id,
        target,
    }
}

/// Applies one stored event to the models it concerns, by stream category. An event
/// that does not decode is logged and skipped (the position still advances, so one bad
/// record cannot stop every read).
pub fn apply_recorded(models: &ReadModels, r: &RecordedEvent) {
    metrics::global().event_projected();
    apply_decoded(models, &decode(r));
    models.applied.advance(&[(r.position, r.id)], 1);
}

/// Applies a decoded event (see [`apply_recorded`]); events must come in log order.
/// Does not count it in the metrics nor move [`ReadModels::applied`] (the caller does, per
/// event or per page).
pub fn apply_decoded(models: &ReadModels, d: &Decoded) {
    match &d.target {
        Target::Instance(event) => {
            fold_instance_event(
                &models.instances,
                d.position,
                event.as_ref(),
                Report::Anomalies,
            );
            if let Err(Undecodable(bad)) = event {
                models.unreadable.record(UnreadableEvent::clone(bad));
            }
            if let Ok(e) = event {
                if changes_configuration_usage(&e.event) {
                    sync_configuration_usage(models, e.instance_id);
                }
            }
        }
        Target::Configuration(event) => {
            apply_configuration(&models.configurations, event.as_ref());
            if let Err(Undecodable(bad)) = event {
                models.unreadable.record(UnreadableEvent::clone(bad));
            }
            models.instances.advance_to(d.position);
        }
        Target::Backup(event) => {
            match event {
                Ok(e) => models.backups.apply(e),
                Err(Undecodable(bad)) => {
                    metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
                    models.unreadable.record(UnreadableEvent::clone(bad));
                }
            }
            models.instances.advance_to(d.position);
        }
        Target::Quota(event) => {
            match event {
                Ok((project, e)) => models.quotas.apply(project, e),
                Err(Undecodable(bad)) => {
                    metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
                    models.unreadable.record(UnreadableEvent::clone(bad));
                }
            }
            models.instances.advance_to(d.position);
        }
        Target::Other => models.instances.advance_to(d.position),
    }
}

/// Applies one stored event to the instance read models only (a live rebuild builds
/// those beside the served ones): instance events are folded, others only advance the
/// position. Anomalies (gaps, undecodable events) are not counted or logged again: the
/// serving projector already reported them.
pub fn apply_to_instances(models: &InstanceModels, r: &RecordedEvent) {
    match instance_id_of_stream(&r.stream) {
        Some(instance_id) => {
            let event = codec::decode_event(r)
                .map(|event| ProjectedEvent {
                    position: r.position,
                    instance_id,
                    revision: r.revision,
                    event,
                })
                .map_err(|error| Undecodable(Box::new(UnreadableEvent::new(r, &error))));
            fold_instance_event(models, r.position, event.as_ref(), Report::Quiet)
        }
        None => models.advance_to(r.position),
    }
}

/// Whether anomalies met while applying are counted and logged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    /// The serving projector: count and log each anomaly once.
    Anomalies,
    /// A replay of what the serving projector already reported.
    Quiet,
}

fn fold_instance_event(
    models: &InstanceModels,
    position: Position,
    event: Result<&ProjectedEvent, &Undecodable>,
    report: Report,
) {
    let report = report == Report::Anomalies;
    match event {
        Ok(event) => {
            let outcome = models.apply(event);
            if let (true, ApplyOutcome::AppliedAfterGap { expected, actual }) = (report, outcome) {
                let instance_id = event.instance_id;
                metrics::global().projection_anomaly(ProjectionAnomaly::Gap);
                tracing::error!(stream = %format!("instance-{instance_id}"), expected, actual, "projection skipped events of a stream; rebuild the read models");
            }
        }
        Err(Undecodable(_)) => {
            // Logged once by `UnreadableEvents::record` (the caller records it).
            if report {
                metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
            }
            models.advance_to(position);
        }
    }
}

/// Instance events that can change which configuration group an instance uses
/// (attach, detach, create with a group, deletion clears it). Only these cost a read of
/// the instance's record; heartbeats and other reports do not.
fn changes_configuration_usage(event: &InstanceEvent) -> bool {
    matches!(
        event,
        InstanceEvent::InstanceCreated(_)
            | InstanceEvent::ConfigurationAttached { .. }
            | InstanceEvent::ConfigurationDetached { .. }
            | InstanceEvent::InstanceDeletionRequested { .. }
            | InstanceEvent::InstanceDeleted { .. }
    )
}

/// Copies the instance's current group (none once deleted or being deleted) into the
/// configuration models' usage index. A state, not a delta: redelivery is harmless.
fn sync_configuration_usage(models: &ReadModels, instance_id: Uuid) {
    if let Some((project, group)) = models.instances.configuration_usage(instance_id) {
        models
            .configurations
            .instance_changed(instance_id, &project, group);
    }
}

fn apply_configuration(
    models: &ConfigurationModels,
    event: Result<&ProjectedConfigurationEvent, &Undecodable>,
) {
    match event {
        Ok(event) => {
            let outcome = models.apply(event);
            if let ApplyOutcome::AppliedAfterGap { expected, actual } = outcome {
                let configuration_id = event.configuration_id;
                metrics::global().projection_anomaly(ProjectionAnomaly::Gap);
                tracing::error!(stream = %format!("configuration-{configuration_id}"), expected, actual, "projection skipped events of a stream; rebuild the read models");
            }
        }
        Err(Undecodable(_)) => {
            // Logged once by `UnreadableEvents::record` (the caller records it).
            metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
        }
    }
}

/// Applies a page of decoded events in order, counting them in the metrics and in
/// [`ReadModels::applied`].
/// Applies a page of decoded events in order. The page is only read, so a replay can
/// hand it back to the thread that decoded it: the events' memory is then freed where
/// it was allocated (glibc frees across threads slowly, under its arenas' locks).
pub fn apply_page(models: &ReadModels, page: &[Decoded]) {
    let n = page.len();
    let last: Vec<(Position, Uuid)> = page[n.saturating_sub(2)..]
        .iter()
        .map(|d| (d.position, d.id))
        .collect();
    for d in page {
        apply_decoded(models, d);
    }
    metrics::global().events_projected(n as u64);
    models.applied.advance(&last, n as u64);
}

/// Replays the log into `models` from `from` up to the store's head; returns the
/// position reached.
///
/// A pipeline of three stages on different threads: the store reads the next page
/// (its own blocking thread for the embedded store) while this task decodes the current
/// one and a blocking thread applies the previous ones, in order.
pub async fn catch_up(
    store: &dyn EventStore,
    models: &ReadModels,
    from: Position,
) -> Result<Position, StoreError> {
    let head = store.head().await?;
    if from >= head {
        return Ok(from);
    }
    let (pages, mut queued) = mpsc::channel::<Vec<Decoded>>(REPLAY_QUEUE);
    // Applied pages come back to be freed (and refilled) where they were decoded.
    let (applied_back, mut applied) = mpsc::unbounded_channel::<Vec<Decoded>>();
    let applier = {
        let models = models.clone();
        tokio::task::spawn_blocking(move || {
            while let Some(page) = queued.blocking_recv() {
                apply_page(&models, &page);
                let _ = applied_back.send(page);
            }
        })
    };
    let read = async {
        let mut pos = from;
        let mut page = store.read_all(pos, REPLAY_PAGE).await?;
        while let Some(last) = page.last().map(|r| r.position) {
            pos = last;
            // Ask for the next page before decoding this one: the read runs meanwhile.
            let more = pos < head;
            let (next, decoded) = tokio::join!(
                async {
                    if more {
                        store.read_all(pos, REPLAY_PAGE).await
                    } else {
                        Ok(Vec::new())
                    }
                },
                async {
                    let mut spare = Vec::new();
                    while let Ok(mut used) = applied.try_recv() {
                        used.clear();
                        spare = used;
                    }
                    spare.extend(page.iter().map(decode));
                    spare
                }
            );
            if pages.send(decoded).await.is_err() {
                break; // the applier died; its join below reports it
            }
            page = next?;
        }
        Ok::<Position, StoreError>(pos)
    };
    let read = read.await;
    // Closing the queue lets the applier finish what was read, then stop.
    drop(pages);
    applier.await.map_err(|e| {
        StoreError::Corrupt(format!("applying the log to the read models failed: {e}"))
    })?;
    read
}

/// Runs the live projector until the store closes or `stop` turns true: subscribes
/// after `from` and publishes each applied position on `applied`. Each event is applied
/// under `gate`, which a live rebuild takes to hold the projector still for its last
/// catch-up and the swap.
pub async fn run(
    store: Arc<dyn EventStore>,
    models: ReadModels,
    from: Position,
    applied: watch::Sender<Position>,
    mut stop: watch::Receiver<bool>,
    gate: Arc<tokio::sync::Mutex<()>>,
) -> Result<(), StoreError> {
    let mut sub = store.subscribe_all(from).await?;
    loop {
        tokio::select! {
            r = sub.next() => {
                let r = r?;
                let _held = gate.lock().await;
                apply_recorded(&models, &r);
                applied.send_replace(r.position);
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}
