//! The folded state of one configuration group. `Configuration::default()` means "does
//! not exist".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::Values;
use super::parameters;
use crate::instance::DatastoreRef;

/// The state of one configuration group, folded from its stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Configuration {
    /// `None` until `ConfigurationCreated`: the group does not exist.
    pub id: Option<Uuid>,
    /// The owner (upstream's `tenant_id`).
    pub project_id: String,
    /// Who created it.
    pub user_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The datastore version the group is bound to (names as of its creation).
    pub datastore: DatastoreRef,
    pub values: Values,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Number of events folded: the group's revision.
    pub version: u64,
    /// The revision of the last update that changed a key needing a database restart
    /// (0: none). Instances attached at an older revision must restart to apply it.
    pub restart_required_since: u64,
}

impl Configuration {
    /// True once created, deleted or not.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// True when created and not deleted.
    pub fn is_live(&self) -> bool {
        self.exists() && !self.deleted
    }

    /// Whether applying this group needs a database restart (any key flagged so in the
    /// catalogue of the group's manager).
    pub fn restart_required(&self) -> bool {
        parameters::restart_required(
            &self.datastore.manager,
            self.values.keys().map(String::as_str),
        )
    }
}
