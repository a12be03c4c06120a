//! What one instance contributes to each secondary model (list, mgmt, replicas, quota).
//!
//! `apply` computes the footprint before and after folding an event and hands the pair
//! to every model, which removes the old contribution and adds the new one. Deriving
//! index entries from state (never from event types) is what keeps the indexes equal to
//! a rebuild whatever the event mix: there is no per-event bookkeeping to get wrong.

use aggregates::instance::Instance;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Quota charged by one instance (spec `instances-api.md` §8.8 and §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Charge {
    /// MB (flavor RAM).
    pub ram: i64,
    /// GB (volume size; 0 without a volume).
    pub volumes: i64,
}

/// The instance's entries in the secondary models. `None` footprint = not created yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub project: String,
    /// Soft-deleted (admin views only).
    pub deleted: bool,
    /// Ordering key of the mgmt list (`updated` desc).
    pub updated: DateTime<Utc>,
    /// The primary, while this live instance replicates from it.
    pub replica_of: Option<Uuid>,
    /// What the instance charges against its project's quota, while it does.
    pub charge: Option<Charge>,
}

impl Footprint {
    /// The footprint of a folded instance; `quota_released` is set once a deletion was
    /// requested (the quota is released at request time, spec §12 step 4, and stays
    /// released even if a late saga report moves the task away from DELETING).
    pub fn of(instance: &Instance, quota_released: bool) -> Option<Footprint> {
        if !instance.exists() {
            return None;
        }
        let live = instance.is_live();
        Some(Footprint {
            project: instance.project_id.clone(),
            deleted: instance.deleted,
            updated: instance.updated,
            replica_of: instance.replica_of.filter(|_| live),
            charge: (live && !quota_released).then(|| Charge {
                ram: instance.quota_ram(),
                volumes: instance.quota_volume(),
            }),
        })
    }

    /// Listed by `GET /instances`: every non-deleted instance (DELETING ones included,
    /// they show `SHUTDOWN` until the teardown finishes).
    pub fn listed(&self) -> bool {
        !self.deleted
    }
}
