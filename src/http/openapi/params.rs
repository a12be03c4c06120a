//! Documentation-only path and query parameters for the OpenAPI document: handlers read
//! them with axum's extractors and [`crate::http::request`]; these types only describe
//! them. Fields are public so that nothing here counts as unused: only utoipa's derive
//! reads them.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::IntoParams;

/// The project of the URL: must be the caller's (403 otherwise).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
}

/// A resource below the project, by id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// The resource's id (a UUID, except flavors); any other string is 404.
    pub id: String,
}

/// A datastore by id or name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DatastorePath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    pub ds: String,
}

/// A datastore version inside a datastore, each by id or name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DatastoreVersionPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    pub ds: String,
    /// Version id or name.
    #[param(example = "8.0")]
    pub version: String,
}

/// A datastore version by id alone.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// Version id (UUID); anything else is 400.
    #[param(example = "a6c53a4f-e7f0-5718-99c5-967acf357e5c")]
    pub version: String,
}

/// A configuration parameter of a datastore version.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ParameterPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    pub ds: String,
    /// Version id or name.
    #[param(example = "8.0")]
    pub version: String,
    /// Parameter name.
    #[param(example = "max_connections")]
    pub name: String,
}

/// A configuration parameter of a datastore version given by id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionParameterPath {
    /// The caller's project id.
    #[param(example = "p1")]
    pub project_id: String,
    /// Version id (UUID); anything else is 400.
    #[param(example = "a6c53a4f-e7f0-5718-99c5-967acf357e5c")]
    pub version: String,
    /// Parameter name.
    #[param(example = "max_connections")]
    pub name: String,
}

/// Keyset paging (instance and configuration lists).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysetPaging {
    /// Page size; at most 20 items are returned whatever the value.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    pub limit: Option<i64>,
    /// The last id of the previous page (from the `next` link).
    #[param(nullable = false)]
    pub marker: Option<String>,
}

/// Paging of the instance lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceListQuery {
    /// Page size; at most 20 items are returned whatever the value.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    pub limit: Option<i64>,
    /// The last id of the previous page (from the `next` link).
    #[param(nullable = false)]
    pub marker: Option<String>,
    /// Accepted and ignored: no clusters exist.
    #[param(nullable = false)]
    pub include_clustered: Option<String>,
}

/// Offset paging (admin list, backups): `marker` is an offset.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetPaging {
    /// Page size (not capped).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    pub limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    pub marker: Option<u64>,
}

/// Filters of the admin instance list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MgmtListQuery {
    /// Page size (not capped; default 20).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    pub limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    pub marker: Option<u64>,
    /// `true`: only soft-deleted instances, `false`: only live ones; any other
    /// value (or none): both.
    #[param(nullable = false)]
    pub deleted: Option<String>,
    /// Only this project's instances.
    #[param(nullable = false)]
    pub project_id: Option<String>,
}

/// Whether the admin show may show a soft-deleted instance.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MgmtShowQuery {
    /// `true` (any case) also shows a soft-deleted instance; any other value: no.
    #[param(nullable = false)]
    pub deleted: Option<String>,
}

/// Filters of the backup list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupListQuery {
    /// Page size (not capped; default 20).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    pub limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    pub marker: Option<u64>,
    /// Another project's backups (admin only, else 403); empty = absent.
    #[param(nullable = false)]
    pub project_id: Option<String>,
    /// `1`, `t`, `true`, `on`, `y`, `yes` (any case): every project's backups
    /// (admin only, else 403); any other value: no.
    #[param(nullable = false)]
    pub all_projects: Option<String>,
    /// Only this instance's backups.
    #[param(nullable = false)]
    pub instance_id: Option<String>,
    /// Only this datastore's (id or name; unknown is 404); empty = absent.
    #[param(nullable = false)]
    pub datastore: Option<String>,
}

/// An offset (`marker` of the offset-paged lists): the server reads a `u64`. No
/// `format`: `int64` would refuse the upper half of the range.
fn offset() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .description(Some("Offset of the first row."))
        .build()
        .into()
}
