//! Which instances have a backup running: written by the backup read models
//! ([`crate::backups`]), read by the views (their status is `BACKUP`). Its own module so
//! that neither of those two imports the other.

use std::collections::BTreeSet;
use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

/// The instances that have a backup running (`NEW`, `BUILDING`, `SAVING`): their status
/// is `BACKUP`. Shared between the backup models and every [`crate::ViewCtx`].
#[derive(Clone, Default)]
pub struct RunningBackups(Arc<DashMap<Uuid, BTreeSet<Uuid>>>);

impl RunningBackups {
    /// Whether instance `id` has a backup running.
    pub fn any(&self, id: Uuid) -> bool {
        self.0.get(&id).is_some_and(|s| !s.is_empty())
    }

    pub(crate) fn clear(&self) {
        self.0.clear();
    }

    pub(crate) fn set(&self, instance: Uuid, backup: Uuid, running: bool) {
        if running {
            self.0.entry(instance).or_default().insert(backup);
        } else {
            self.0.remove_if_mut(&instance, |_, s| {
                s.remove(&backup);
                s.is_empty()
            });
        }
    }
}

impl std::fmt::Debug for RunningBackups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunningBackups({} instances)", self.0.len())
    }
}

/// Two handles are equal when they share the same map (it is live data).
impl PartialEq for RunningBackups {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
