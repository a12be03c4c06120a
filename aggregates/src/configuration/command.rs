//! Configuration group commands: imperative requests, already checked against the JSON
//! schema by the shell (types and lengths); `decide` enforces every rule that needs the
//! state or the catalog (datastore resolution, the parameter catalogue, visibility).

use serde::{Deserialize, Serialize};

use super::event::Values;
use crate::instance::DatastoreRequest;

/// `POST /configurations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateConfiguration {
    pub name: String,
    pub description: Option<String>,
    /// Key → value as the client sent them (JSON scalars expected; checked by `decide`).
    pub values: Values,
    /// `datastore` of the body (`type`, `version`, `version_number`); an absent object
    /// is the default (operator's default datastore, its default version).
    pub datastore: DatastoreRequest,
}

/// How an update treats the group's existing values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateMode {
    /// PUT: the given values replace all existing ones (absent `values` = none left,
    /// as upstream: it removes every item, then saves the given ones).
    Replace,
    /// PATCH: the given values are merged into the existing ones.
    Merge,
}

/// Everything one can ask of a configuration group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConfigurationCommand {
    /// `POST /configurations`.
    CreateConfiguration(Box<CreateConfiguration>),
    /// `PUT` (mode `Replace`; may rename and re-describe) or `PATCH` (mode `Merge`;
    /// values only) `/configurations/{id}`.
    UpdateConfiguration {
        name: Option<String>,
        description: Option<String>,
        values: Option<Values>,
        mode: UpdateMode,
    },
    /// `DELETE /configurations/{id}`.
    DeleteConfiguration,
}

impl ConfigurationCommand {
    /// Stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigurationCommand::CreateConfiguration(_) => "CreateConfiguration",
            ConfigurationCommand::UpdateConfiguration { .. } => "UpdateConfiguration",
            ConfigurationCommand::DeleteConfiguration => "DeleteConfiguration",
        }
    }
}
