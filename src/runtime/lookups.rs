//! What `decide` consults: the static catalog plus the live read models. Reads only.

use std::sync::Arc;

use aggregates::backup::Backup;
use aggregates::catalog::{Datastore, Flavor};
use uuid::Uuid;

use crate::catalog::StaticCatalog;

/// What `decide` consults: the static catalog plus the live read models (other
/// instances, replicas, quota usage). Reads only; cheap to clone.
#[derive(Clone)]
pub struct Lookups {
    pub catalog: Arc<StaticCatalog>,
    pub models: Arc<projections::InstanceModels>,
    /// Configuration groups (their own streams and read models).
    pub configurations: Arc<projections::configurations::ConfigurationModels>,
    /// Backups (their own streams and read models).
    pub backups: Arc<projections::backups::BackupModels>,
    /// Per-project quota overrides (the catalog's limits are the defaults).
    pub quotas: Arc<projections::quotas::QuotaModels>,
}

impl aggregates::catalog::Catalog for Lookups {
    fn region(&self) -> &str {
        &self.catalog.limits.region
    }

    fn max_volume_size(&self) -> u64 {
        self.catalog.limits.max_volume_size
    }

    fn flavor(&self, id: &str) -> Option<Flavor> {
        self.catalog.flavor(id).cloned()
    }

    fn datastore(&self, id_or_name: &str) -> Option<Datastore> {
        self.catalog.datastore(id_or_name).cloned()
    }

    fn default_datastore(&self) -> Option<String> {
        self.catalog.default_datastore.clone()
    }

    fn configuration_group(&self, id: Uuid) -> Option<aggregates::catalog::ConfigurationGroup> {
        // Live groups only: a deleted group can be neither attached nor given at create.
        let group = self
            .configurations
            .configuration(id)
            .filter(|g| g.is_live())?;
        Some(aggregates::catalog::ConfigurationGroup {
            id,
            restart_required: group.restart_required(),
            revision: group.version,
            restart_required_since: group.restart_required_since,
            datastore_version_id: group.datastore.version_id,
            name: group.name,
            project_id: group.project_id,
        })
    }

    fn instance(&self, id: Uuid) -> Option<aggregates::instance::Instance> {
        self.models.instance(id)
    }

    fn live_replicas(&self, id: Uuid) -> usize {
        self.models.live_replica_count(id)
    }

    fn backup(&self, id: Uuid) -> Option<aggregates::catalog::Backup> {
        let b = self.backups.state(id).filter(|b| b.is_live())?;
        // A restore of an increment writes its whole chain.
        let size = self
            .backups
            .chain(id)
            .iter()
            .map(Backup::size_gb)
            .sum::<Option<f64>>();
        Some(aggregates::catalog::Backup {
            id,
            project_id: b.project_id.clone(),
            state: b.status.as_str().into(),
            size,
            datastore_name: Some(b.datastore.datastore_name.clone()),
            datastore_version: Some((b.datastore.version_id, b.datastore.version_name.clone())),
        })
    }

    fn backup_running(&self, id: Uuid) -> bool {
        self.backups.running().any(id)
    }

    fn replica_ids(&self, id: Uuid) -> Vec<Uuid> {
        self.models.live_replicas(id)
    }

    fn quota(&self, project_id: &str) -> aggregates::catalog::QuotaUsage {
        let used = self.models.quota_usage(project_id);
        let l = &self.catalog.limits;
        let q = &self.quotas;
        aggregates::catalog::QuotaUsage {
            instances: used.instances,
            instances_limit: q.limit_or(project_id, "instances", l.quota_instances),
            ram: used.ram,
            ram_limit: q.limit_or(project_id, "ram", l.quota_ram),
            volumes: used.volumes,
            volumes_limit: q.limit_or(project_id, "volumes", l.quota_volumes),
        }
    }
}
