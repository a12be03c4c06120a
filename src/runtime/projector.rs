//! The projector: feeds every event of `$all` to the read models, in order, and
//! publishes the position applied so command answers can wait for it.

use std::sync::Arc;

use aggregates::instance::instance_id_of_stream;
use projections::{ApplyOutcome, ProjectedEvent, ReadModels};
use tokio::sync::watch;

use super::codec;
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

/// Applies one stored event to the models. Events of other streams are skipped; an
/// instance event that does not decode is logged and skipped (the position still
/// advances, so one bad record cannot stop every read).
pub fn apply_recorded(models: &ReadModels, r: &RecordedEvent) {
    let Some(instance_id) = instance_id_of_stream(&r.stream) else {
        models.advance_to(r.position);
        return;
    };
    match codec::decode(r) {
        Ok((event, _)) => {
            let outcome = models.apply(&ProjectedEvent {
                position: r.position,
                instance_id,
                revision: r.revision,
                event,
            });
            if let ApplyOutcome::AppliedAfterGap { expected, actual } = outcome {
                tracing::error!(stream = %r.stream, expected, actual, "projection skipped events of a stream; rebuild the read models");
            }
        }
        Err(e) => {
            tracing::error!(position = %r.position, stream = %r.stream, error = %e, "undecodable event skipped");
            models.advance_to(r.position);
        }
    }
}

/// Replays the log into `models` up to the store's head; returns the position reached.
pub async fn catch_up(store: &dyn EventStore, models: &ReadModels) -> Result<Position, StoreError> {
    let head = store.head().await?;
    let mut pos = models.position();
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

/// Runs the live projector until the store closes: subscribes after the models'
/// position and publishes each applied position on `applied`.
pub async fn run(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    applied: watch::Sender<Position>,
) -> Result<(), StoreError> {
    let mut sub = store.subscribe_all(models.position()).await?;
    loop {
        let r = sub.next().await?;
        apply_recorded(&models, &r);
        applied.send_replace(r.position);
    }
}
