//! The per-project quota overrides (streams `quota-<project>`): what an admin set with
//! `PUT /mgmt/quotas/{project}`. The operator's flags are the defaults; a resource
//! without an override here uses them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

use aggregates::quota::{self, Quota, QuotaEvent};

/// The overrides of every project that has any. Cheap reads, one lock.
#[derive(Debug, Default)]
pub struct QuotaModels {
    by_project: RwLock<HashMap<String, Quota>>,
}

impl QuotaModels {
    /// Folds one event of project `project`'s stream.
    pub fn apply(&self, project: &str, event: &QuotaEvent) {
        let mut map = self
            .by_project
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let held = map.remove(project).unwrap_or_default();
        map.insert(project.to_string(), quota::evolve(held, event));
    }

    /// The limit an admin set for `resource` of `project`, if any.
    pub fn limit(&self, project: &str, resource: &str) -> Option<i64> {
        self.by_project
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(project)
            .and_then(|q| q.limits.get(resource).copied())
    }

    /// `resource`'s limit for `project`: the override, else `default`.
    pub fn limit_or(&self, project: &str, resource: &str, default: i64) -> i64 {
        self.limit(project, resource).unwrap_or(default)
    }

    /// Every project's overrides, for a snapshot.
    pub fn image(&self) -> BTreeMap<String, Quota> {
        self.by_project
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replaces the models with a snapshot's.
    pub fn restore(&self, image: BTreeMap<String, Quota>) {
        *self
            .by_project
            .write()
            .unwrap_or_else(PoisonError::into_inner) = image.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn overrides_fold_per_project_and_survive_an_image() {
        let m = QuotaModels::default();
        let ev = |limits: &[(&str, i64)]| QuotaEvent::QuotaLimitsUpdated {
            project_id: "p1".into(),
            limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            at: Utc::now(),
        };
        m.apply("p1", &ev(&[("instances", 2), ("backups", 0)]));
        m.apply("p1", &ev(&[("instances", 4)]));
        assert_eq!(m.limit_or("p1", "instances", 10), 4);
        assert_eq!(m.limit_or("p1", "backups", 50), 0);
        assert_eq!(m.limit_or("p1", "ram", -1), -1);
        assert_eq!(m.limit_or("p2", "instances", 10), 10);
        let copy = QuotaModels::default();
        copy.restore(m.image());
        assert_eq!(copy.image(), m.image());
    }
}
