//! Read models of configuration groups (being written).

/// Configuration group read models.
#[derive(Debug, Default)]
pub struct ConfigurationModels {}
