//! The projector: feeds every event of `$all` to the read models, in order, and
//! publishes the position applied so command answers can wait for it.

use std::sync::Arc;

use aggregates::configuration::{self, configuration_id_of_stream};
use aggregates::instance::instance_id_of_stream;
use projections::backups::BackupModels;
use projections::configurations::{ConfigurationModels, ProjectedConfigurationEvent};
use projections::{ApplyOutcome, ProjectedEvent, ReadModels};
use tokio::sync::watch;

use super::codec;
use crate::metrics::{self, ProjectionAnomaly};
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

/// Every read model the projector maintains. Cheap to clone.
#[derive(Clone, Default)]
pub struct Models {
    /// Instance records, lists, admin list, replicas, quota usage.
    pub instances: Arc<ReadModels>,
    /// Configuration groups.
    pub configurations: Arc<ConfigurationModels>,
    /// Backups.
    pub backups: Arc<BackupModels>,
}

/// Applies one stored event to the models it concerns, by stream category. An event
/// that does not decode is logged and skipped (the position still advances, so one bad
/// record cannot stop every read).
pub fn apply_recorded(models: &Models, r: &RecordedEvent) {
    metrics::global().event_projected();
    if let Some(instance_id) = instance_id_of_stream(&r.stream) {
        apply_instance(&models.instances, instance_id, r);
        if CONFIGURATION_USAGE_EVENTS.contains(&r.event_type.as_str()) {
            sync_configuration_usage(models, instance_id);
        }
        return;
    }
    if let Some(configuration_id) = configuration_id_of_stream(&r.stream) {
        apply_configuration(&models.configurations, configuration_id, r);
    }
    // Other categories: the instance models only move their position.
    models.instances.advance_to(r.position);
}

/// Applies one stored event to the instance read models only (a live rebuild builds
/// those beside the served ones): instance events are folded, others only advance the
/// position. Anomalies (gaps, undecodable events) are not counted or logged again: the
/// serving projector already reported them.
pub fn apply_to_instances(models: &ReadModels, r: &RecordedEvent) {
    match instance_id_of_stream(&r.stream) {
        Some(instance_id) => fold_instance_event(models, instance_id, r, Report::Quiet),
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

fn apply_instance(models: &ReadModels, instance_id: uuid::Uuid, r: &RecordedEvent) {
    fold_instance_event(models, instance_id, r, Report::Anomalies)
}

fn fold_instance_event(
    models: &ReadModels,
    instance_id: uuid::Uuid,
    r: &RecordedEvent,
    report: Report,
) {
    let report = report == Report::Anomalies;
    match codec::decode(r) {
        Ok((event, _)) => {
            let outcome = models.apply(&ProjectedEvent {
                position: r.position,
                instance_id,
                revision: r.revision,
                event,
            });
            if let (true, ApplyOutcome::AppliedAfterGap { expected, actual }) = (report, outcome) {
                metrics::global().projection_anomaly(ProjectionAnomaly::Gap);
                tracing::error!(stream = %r.stream, expected, actual, "projection skipped events of a stream; rebuild the read models");
            }
        }
        Err(e) => {
            if report {
                metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
                tracing::error!(position = %r.position, stream = %r.stream, error = %e, "undecodable event skipped");
            }
            models.advance_to(r.position);
        }
    }
}

/// Instance event types that can change which configuration group an instance uses
/// (attach, detach, create with a group, deletion clears it). Only these cost a read of
/// the instance's record; heartbeats and other reports do not.
const CONFIGURATION_USAGE_EVENTS: [&str; 5] = [
    "InstanceCreated",
    "ConfigurationAttached",
    "ConfigurationDetached",
    "InstanceDeletionRequested",
    "InstanceDeleted",
];

/// Copies the instance's current group (none once deleted or being deleted) into the
/// configuration models' usage index. A state, not a delta: redelivery is harmless.
fn sync_configuration_usage(models: &Models, instance_id: uuid::Uuid) {
    if let Some(i) = models.instances.instance(instance_id) {
        let group = i.configuration_id.filter(|_| i.is_live());
        models
            .configurations
            .instance_changed(instance_id, &i.project_id, group);
    }
}

fn apply_configuration(
    models: &ConfigurationModels,
    configuration_id: uuid::Uuid,
    r: &RecordedEvent,
) {
    let decoded = codec::decode_parts(r).and_then(|(data, meta)| {
        configuration::decode(&r.event_type, meta.schema_version, data).map_err(Into::into)
    });
    match decoded {
        Ok(event) => {
            let outcome = models.apply(&ProjectedConfigurationEvent {
                position: r.position,
                configuration_id,
                revision: r.revision,
                event,
            });
            if let ApplyOutcome::AppliedAfterGap { expected, actual } = outcome {
                metrics::global().projection_anomaly(ProjectionAnomaly::Gap);
                tracing::error!(stream = %r.stream, expected, actual, "projection skipped events of a stream; rebuild the read models");
            }
        }
        Err(e) => {
            metrics::global().projection_anomaly(ProjectionAnomaly::Undecodable);
            tracing::error!(position = %r.position, stream = %r.stream, error = %e, "undecodable event skipped");
        }
    }
}

/// Replays the log into `models` from `from` up to the store's head; returns the
/// position reached.
pub async fn catch_up(
    store: &dyn EventStore,
    models: &Models,
    from: Position,
) -> Result<Position, StoreError> {
    let head = store.head().await?;
    let mut pos = from;
    while pos < head {
        let batch = store.read_all(pos, 4096).await?;
        let Some(last) = batch.last() else { break };
        let last = last.position;
        for r in &batch {
            apply_recorded(models, r);
        }
        pos = last;
    }
    Ok(pos)
}

/// Runs the live projector until the store closes or `stop` turns true: subscribes
/// after `from` and publishes each applied position on `applied`. Each event is applied
/// under `gate`, which a live rebuild takes to hold the projector still for its last
/// catch-up and the swap.
pub async fn run(
    store: Arc<dyn EventStore>,
    models: Models,
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
