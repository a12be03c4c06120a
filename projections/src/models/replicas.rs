//! The replicas index: primary id → ids of its live (not soft-deleted) replicas.
//!
//! Feeds the `replicas` field of the primary's views, the delete refusal "Detach
//! replicas before deleting replica source." and the catalog's `live_replicas`. A
//! replica leaves the index when it is detached (`replica_of` cleared) or soft-deleted;
//! while it is only being deleted (task DELETING) it still counts, as upstream counts
//! every non-deleted row with `slave_of_id` = primary.

use std::collections::BTreeSet;

use dashmap::DashMap;
use uuid::Uuid;

use super::footprint::Footprint;
use super::id_hash::IdHashBuilder;

/// Primary → replicas, ascending ids; primaries without live replicas have no entry.
#[derive(Debug, Default)]
pub(crate) struct ReplicaIndex {
    by_primary: DashMap<Uuid, BTreeSet<Uuid>, IdHashBuilder>,
}

impl ReplicaIndex {
    /// Moves the replica from its old primary's entry to its new one.
    pub fn update(&self, id: Uuid, old: Option<&Footprint>, new: Option<&Footprint>) {
        let primary = |f: Option<&Footprint>| f.and_then(|f| f.replica_of);
        let (old, new) = (primary(old), primary(new));
        if old == new {
            return;
        }
        if let Some(p) = old {
            let now_empty = self.by_primary.get_mut(&p).is_some_and(|mut set| {
                set.remove(&id);
                set.is_empty()
            });
            if now_empty {
                self.by_primary.remove_if(&p, |_, set| set.is_empty());
            }
        }
        if let Some(p) = new {
            self.by_primary.entry(p).or_default().insert(id);
        }
    }

    /// The live replicas of `primary`, ascending.
    pub fn of(&self, primary: Uuid) -> Vec<Uuid> {
        self.by_primary
            .get(&primary)
            .map_or_else(Vec::new, |set| set.iter().copied().collect())
    }

    /// How many live replicas `primary` has.
    pub fn count(&self, primary: Uuid) -> usize {
        self.by_primary.get(&primary).map_or(0, |set| set.len())
    }

    /// Every entry, for snapshots.
    pub fn entries(&self) -> Vec<(Uuid, Vec<Uuid>)> {
        self.by_primary
            .iter()
            .map(|e| (*e.key(), e.value().iter().copied().collect()))
            .collect()
    }
}
