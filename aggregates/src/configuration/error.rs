//! Refusals of the ConfigurationGroup aggregate with Trove's messages (verbatim where
//! upstream's text is observable) and the fault class each maps to.
//!
//! Upstream raises `UnprocessableEntity` for every value that the parameter catalogue
//! refuses (422); the datastore resolution errors are those of instance create (spec
//! `supporting-resources.md` §2.3); everything unmapped upstream is 400.

use uuid::Uuid;

use crate::fault::Fault;

/// Why `decide` refused a configuration command.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigurationError {
    // ---- not found -------------------------------------------------------------------
    /// Missing, deleted, or another project's group (non-admin): all the same 404.
    #[error("Configuration group with ID {0} could not be found.")]
    NotFound(Uuid),
    #[error("Datastore '{0}' cannot be found.")]
    DatastoreNotFound(String),
    /// A version looked up by UUID that is not in the datastore.
    #[error("DBDatastoreVersion Not Found")]
    DatastoreVersionIdNotFound,

    // ---- bad request -----------------------------------------------------------------
    #[error("Please specify datastore. No default datastore is defined.")]
    NoDefaultDatastore,
    #[error("Please specify datastore. Default datastore '{0}' cannot be found.")]
    DefaultDatastoreNotFound(String),
    #[error("Default version for datastore '{0}' not found.")]
    DefaultVersionNotFound(String),
    #[error("Datastore version '{0}' cannot be found.")]
    DatastoreVersionNotFound(String),
    #[error("Multiple datastore versions found for '{0}', use an UUID or specify both the name and version number to be more specific.")]
    DatastoreVersionAmbiguous(String),
    #[error("Datastore version '{0}' is not active.")]
    DatastoreVersionInactive(String),
    /// Upstream's `InstanceAssignedToConfiguration` (unmapped, so 400).
    #[error("A configuration group cannot be deleted if it is associated with one or more non-terminated instances. Detach the configuration group from all non-terminated instances and please try again.")]
    InUse,

    // ---- unprocessable (the parameter catalogue) -------------------------------------
    #[error("Configuration groups are not supported for this datastore: {datastore} {version}")]
    NotSupported { datastore: String, version: String },
    #[error("The configuration parameter {key} is not supported for this datastore: {datastore} {version}.")]
    UnknownParameter {
        key: String,
        datastore: String,
        version: String,
    },
    #[error("The value provided for the configuration parameter {key} is not of type {kind}.")]
    WrongType { key: String, kind: &'static str },
    #[error(
        "The value for the configuration parameter {key} is less than the minimum allowed: {min}"
    )]
    BelowMinimum { key: String, min: i64 },
    #[error("The value for the configuration parameter {key} is greater than the maximum allowed: {max}")]
    AboveMaximum { key: String, max: i64 },

    // ---- conflict --------------------------------------------------------------------
    /// The group id is taken (the shell picks fresh ids, so only a replayed create).
    #[error("Configuration group {0} already exists.")]
    AlreadyExists(Uuid),
}

impl ConfigurationError {
    /// The Trove fault class (HTTP status and body key) of this refusal.
    pub fn fault(&self) -> Fault {
        use ConfigurationError::*;
        match self {
            NotFound(_) | DatastoreNotFound(_) | DatastoreVersionIdNotFound => Fault::ItemNotFound,
            NotSupported { .. }
            | UnknownParameter { .. }
            | WrongType { .. }
            | BelowMinimum { .. }
            | AboveMaximum { .. } => Fault::UnprocessableEntity,
            AlreadyExists(_) => Fault::Conflict,
            NoDefaultDatastore
            | DefaultDatastoreNotFound(_)
            | DefaultVersionNotFound(_)
            | DatastoreVersionNotFound(_)
            | DatastoreVersionAmbiguous(_)
            | DatastoreVersionInactive(_)
            | InUse => Fault::BadRequest,
        }
    }
}
