//! Per-project quota usage of the instance resources: what `decide` compares against
//! the limits at create (spec `instances-api.md` §8.8).
//!
//! An instance is charged from its creation until its deletion is *requested* (§12
//! step 4: the quota is released synchronously by DELETE, not when teardown ends).

use dashmap::DashMap;
use uuid::Uuid;

use super::footprint::{Charge, Footprint};

/// Resources in use by one project's charged instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaInUse {
    /// Instances created and not yet deletion-requested.
    pub instances: i64,
    /// Sum of their flavor RAM, MB.
    pub ram: i64,
    /// Sum of their volume sizes, GB.
    pub volumes: i64,
}

impl QuotaInUse {
    fn is_zero(&self) -> bool {
        *self == QuotaInUse::default()
    }
}

/// Usage per project; projects at zero usage are removed (equal to a rebuild, no
/// memory for projects that emptied).
#[derive(Debug, Default)]
pub(crate) struct QuotaModel {
    by_project: DashMap<String, QuotaInUse>,
}

impl QuotaModel {
    /// Subtracts the old charge and adds the new one.
    pub fn update(&self, _id: Uuid, old: Option<&Footprint>, new: Option<&Footprint>) {
        fn charge(f: Option<&Footprint>) -> Option<(&str, Charge)> {
            f.and_then(|f| f.charge.map(|c| (f.project.as_str(), c)))
        }
        let (old, new) = (charge(old), charge(new));
        if old == new {
            return;
        }
        if let Some((project, c)) = old {
            self.add(project, -1, -c.ram, -c.volumes);
        }
        if let Some((project, c)) = new {
            self.add(project, 1, c.ram, c.volumes);
        }
    }

    fn add(&self, project: &str, instances: i64, ram: i64, volumes: i64) {
        let now_zero = {
            let mut u = self.by_project.entry(project.to_string()).or_default();
            u.instances += instances;
            u.ram += ram;
            u.volumes += volumes;
            u.is_zero()
        };
        if now_zero {
            self.by_project.remove_if(project, |_, u| u.is_zero());
        }
    }

    /// A project's usage (zero when it has no charged instance).
    pub fn usage(&self, project: &str) -> QuotaInUse {
        self.by_project
            .get(project)
            .map_or_else(QuotaInUse::default, |u| *u)
    }

    /// Every project's usage, for snapshots.
    pub fn entries(&self) -> Vec<(String, QuotaInUse)> {
        self.by_project
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }
}
