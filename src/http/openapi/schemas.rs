//! Documentation-only types for the OpenAPI document: never built, only their schemas
//! are used (the handlers build their JSON with `serde_json`). See the rules in
//! [`super`]: required only when always emitted, nullable wherever `null` can be.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

// ---- errors ----------------------------------------------------------------------

/// The body of every error: one key, the fault name (`badRequest`, `unauthorized`,
/// `forbidden`, `itemNotFound`, `conflict`, `overLimit`, `badMediaType`,
/// `unprocessableEntity`, `instanceFault`, `notImplemented`, `serviceUnavailable`).
#[derive(ToSchema)]
pub struct ErrorBody(BTreeMap<String, Fault>);

/// One error.
#[derive(ToSchema)]
pub struct Fault {
    /// The HTTP status.
    code: u16,
    message: String,
}

// ---- parameters ------------------------------------------------------------------

/// The project of the URL: must be the caller's (403 otherwise).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
}

/// A resource below the project, by id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// The resource's id (a UUID, except flavors); any other string is 404.
    id: String,
}

/// A datastore by id or name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DatastorePath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    ds: String,
}

/// A datastore version inside a datastore, each by id or name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DatastoreVersionPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    ds: String,
    /// Version id or name.
    #[param(example = "8.0")]
    version: String,
}

/// A datastore version by id alone.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// Version id (UUID); anything else is 400.
    #[param(example = "a6c53a4f-e7f0-5718-99c5-967acf357e5c")]
    version: String,
}

/// A configuration parameter of a datastore version.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ParameterPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// Datastore id or name.
    #[param(example = "mysql")]
    ds: String,
    /// Version id or name.
    #[param(example = "8.0")]
    version: String,
    /// Parameter name.
    #[param(example = "max_connections")]
    name: String,
}

/// A configuration parameter of a datastore version given by id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionParameterPath {
    /// The caller's project id.
    #[param(example = "p1")]
    project_id: String,
    /// Version id (UUID); anything else is 400.
    #[param(example = "a6c53a4f-e7f0-5718-99c5-967acf357e5c")]
    version: String,
    /// Parameter name.
    #[param(example = "max_connections")]
    name: String,
}

/// Keyset paging (instance and configuration lists).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysetPaging {
    /// Page size; at most 20 items are returned whatever the value.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// The last id of the previous page (from the `next` link).
    #[param(nullable = false)]
    marker: Option<String>,
}

/// Paging of the instance lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceListQuery {
    /// Page size; at most 20 items are returned whatever the value.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// The last id of the previous page (from the `next` link).
    #[param(nullable = false)]
    marker: Option<String>,
    /// Accepted and ignored: no clusters exist.
    #[param(nullable = false)]
    include_clustered: Option<String>,
}

/// Offset paging (admin list, backups): `marker` is an offset.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetPaging {
    /// Page size (not capped).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    marker: Option<u64>,
}

/// Filters of the admin instance list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MgmtListQuery {
    /// Page size (not capped; default 20).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    marker: Option<u64>,
    /// `true`: only soft-deleted instances, `false`: only live ones; any other
    /// value (or none): both.
    #[param(nullable = false)]
    deleted: Option<String>,
    /// Only this project's instances.
    #[param(nullable = false)]
    project_id: Option<String>,
}

/// Whether the admin show may show a soft-deleted instance.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MgmtShowQuery {
    /// `true` (any case) also shows a soft-deleted instance; any other value: no.
    #[param(nullable = false)]
    deleted: Option<String>,
}

/// Filters of the backup list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupListQuery {
    /// Page size (not capped; default 20).
    #[param(minimum = 1, maximum = 9223372036854775807_i64, nullable = false)]
    limit: Option<i64>,
    /// Offset of the first row.
    #[param(schema_with = offset)]
    marker: Option<u64>,
    /// Another project's backups (admin only, else 403); empty = absent.
    #[param(nullable = false)]
    project_id: Option<String>,
    /// `1`, `t`, `true`, `on`, `y`, `yes` (any case): every project's backups
    /// (admin only, else 403); any other value: no.
    #[param(nullable = false)]
    all_projects: Option<String>,
    /// Only this instance's backups.
    #[param(nullable = false)]
    instance_id: Option<String>,
    /// Only this datastore's (id or name; unknown is 404); empty = absent.
    #[param(nullable = false)]
    datastore: Option<String>,
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

// ---- common ----------------------------------------------------------------------

/// A link: `self`/`bookmark` of a resource, or `next` of a list page.
#[derive(ToSchema)]
pub struct Link {
    href: String,
    rel: String,
}

// ---- versions --------------------------------------------------------------------

/// An API version.
#[derive(ToSchema)]
pub struct ApiVersion {
    id: String,
    status: String,
    updated: String,
    links: Vec<Link>,
}

/// `GET /`.
#[derive(ToSchema)]
pub struct VersionList {
    versions: Vec<ApiVersion>,
}

/// `GET /v1.0`.
#[derive(ToSchema)]
pub struct VersionShow {
    version: ApiVersion,
}

// ---- instances -------------------------------------------------------------------

/// The flavor of an instance.
#[derive(ToSchema)]
pub struct InstanceFlavor {
    id: String,
    links: Vec<Link>,
}

/// The datastore of an instance (nulls when its version is unknown).
#[derive(ToSchema)]
pub struct InstanceDatastore {
    #[schema(required = true)]
    r#type: Option<String>,
    #[schema(required = true)]
    version: Option<String>,
    /// Detail views only.
    #[schema(nullable = false)]
    version_number: Option<String>,
}

/// The volume of an instance.
#[derive(ToSchema)]
pub struct InstanceVolume {
    size: u64,
}

/// An address of an instance.
#[derive(ToSchema)]
pub struct InstanceAddress {
    address: String,
    r#type: String,
    #[schema(nullable = false)]
    network: Option<String>,
}

/// A reference to another instance (`replica_of`, `replicas`).
#[derive(ToSchema)]
pub struct InstanceRef {
    id: String,
    links: Vec<Link>,
}

/// The fault of a failed instance (`details` for admins only).
#[derive(ToSchema)]
pub struct InstanceFault {
    message: String,
    created: String,
    #[schema(required = true)]
    details: Option<String>,
}

/// The configuration group attached to an instance.
#[derive(ToSchema)]
pub struct InstanceConfigurationRef {
    id: String,
    #[schema(required = true)]
    name: Option<String>,
    links: Vec<Link>,
}

/// An instance in a list (basic view).
#[derive(ToSchema)]
pub struct InstanceBasic {
    id: String,
    name: String,
    status: String,
    operating_status: String,
    links: Vec<Link>,
    flavor: InstanceFlavor,
    datastore: InstanceDatastore,
    region: String,
    /// `is_public` and `allowed_cidrs` when set; may be empty.
    access: BTreeMap<String, Value>,
    /// Admins only.
    #[schema(nullable = false)]
    tenant_id: Option<String>,
    #[schema(nullable = false)]
    volume: Option<InstanceVolume>,
    #[schema(nullable = false)]
    addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    replicas: Option<Vec<InstanceRef>>,
}

/// An instance in the detail list, show and create answers.
#[derive(ToSchema)]
pub struct InstanceDetail {
    id: String,
    name: String,
    status: String,
    operating_status: String,
    links: Vec<Link>,
    flavor: InstanceFlavor,
    datastore: InstanceDatastore,
    region: String,
    /// `is_public` and `allowed_cidrs` when set; may be empty.
    access: BTreeMap<String, Value>,
    created: String,
    updated: String,
    service_status_updated: String,
    /// Admins only.
    #[schema(nullable = false)]
    tenant_id: Option<String>,
    #[schema(nullable = false)]
    volume: Option<InstanceVolume>,
    #[schema(nullable = false)]
    addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    replicas: Option<Vec<InstanceRef>>,
    #[schema(nullable = false)]
    fault: Option<InstanceFault>,
    #[schema(nullable = false)]
    configuration: Option<InstanceConfigurationRef>,
    #[schema(nullable = false)]
    locality: Option<String>,
    /// Admins only.
    server_id: Option<String>,
    /// Admins only.
    volume_id: Option<String>,
    /// Admins only.
    #[schema(nullable = false)]
    encrypted_rpc_messaging: Option<bool>,
}

/// The compute server of an instance (admin views; only `id` once it is gone).
#[derive(ToSchema)]
pub struct MgmtServer {
    id: String,
    #[schema(nullable = false)]
    name: Option<String>,
    #[schema(nullable = false)]
    status: Option<String>,
    #[schema(nullable = false)]
    tenant_id: Option<String>,
    #[schema(nullable = false)]
    host: Option<String>,
    /// Show only: addresses by network.
    #[schema(nullable = false)]
    addresses: Option<BTreeMap<String, Value>>,
}

/// An instance in the admin views.
#[derive(ToSchema)]
pub struct MgmtInstance {
    id: String,
    name: String,
    status: String,
    operating_status: String,
    links: Vec<Link>,
    flavor: InstanceFlavor,
    datastore: InstanceDatastore,
    region: String,
    access: BTreeMap<String, Value>,
    created: String,
    updated: String,
    service_status_updated: String,
    tenant_id: String,
    service_status: String,
    deleted: bool,
    #[schema(required = true)]
    deleted_at: Option<String>,
    task_description: String,
    #[schema(required = true)]
    server: Option<MgmtServer>,
    #[schema(required = true)]
    server_id: Option<String>,
    #[schema(required = true)]
    volume_id: Option<String>,
    encrypted_rpc_messaging: bool,
    /// `{size}` in the list; in the show the storage volume (`null` without one,
    /// only `id` once deleted).
    #[schema(value_type = Option<Object>)]
    volume: Option<Value>,
    /// Show only.
    #[schema(nullable = false)]
    guest_status: Option<BTreeMap<String, Value>>,
    #[schema(nullable = false)]
    addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    replicas: Option<Vec<InstanceRef>>,
    #[schema(nullable = false)]
    fault: Option<InstanceFault>,
    #[schema(nullable = false)]
    configuration: Option<InstanceConfigurationRef>,
}

/// `GET /instances`.
#[derive(ToSchema)]
pub struct InstanceList {
    instances: Vec<InstanceBasic>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// `GET /instances/detail`.
#[derive(ToSchema)]
pub struct InstanceDetailList {
    instances: Vec<InstanceDetail>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// `GET /instances/{id}`, `POST /instances`.
#[derive(ToSchema)]
pub struct InstanceShow {
    instance: InstanceDetail,
}

/// `GET /mgmt/instances`.
#[derive(ToSchema)]
pub struct MgmtInstanceList {
    instances: Vec<MgmtInstance>,
    /// `rel=next` when the page is full.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// `GET /mgmt/instances/{id}`.
#[derive(ToSchema)]
pub struct MgmtInstanceShow {
    instance: MgmtInstance,
}

/// The default configuration of an instance.
#[derive(ToSchema)]
pub struct DefaultConfiguration {
    /// Parameter name → value.
    configuration: BTreeMap<String, Value>,
}

/// `GET /instances/{id}/configuration`.
#[derive(ToSchema)]
pub struct DefaultConfigurationShow {
    instance: DefaultConfiguration,
}

// ---- flavors ---------------------------------------------------------------------

/// A flavor.
#[derive(ToSchema)]
pub struct Flavor {
    /// The id as an integer when it is one, else `null` (use `str_id`).
    #[schema(required = true)]
    id: Option<u64>,
    str_id: String,
    name: String,
    ram: u32,
    vcpus: u32,
    disk: u32,
    ephemeral: u32,
    local_storage: u32,
    links: Vec<Link>,
}

/// `GET /flavors`.
#[derive(ToSchema)]
pub struct FlavorList {
    flavors: Vec<Flavor>,
}

/// `GET /flavors/{id}`.
#[derive(ToSchema)]
pub struct FlavorShow {
    flavor: Flavor,
}

// ---- datastores ------------------------------------------------------------------

/// A datastore version; admins also get the admin fields.
#[derive(ToSchema)]
pub struct DatastoreVersion {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    version: String,
    links: Vec<Link>,
    /// The datastore's id (not inside a datastore's `versions`).
    #[schema(format = Uuid, nullable = false)]
    datastore: Option<String>,
    #[schema(nullable = false)]
    active: Option<bool>,
    #[schema(nullable = false)]
    packages: Option<String>,
    image: Option<String>,
    #[schema(nullable = false)]
    registry_ext: Option<String>,
    repl_strategy: Option<String>,
    #[schema(nullable = false)]
    image_tags: Option<Vec<String>>,
}

/// A datastore with its (visible) versions.
#[derive(ToSchema)]
pub struct Datastore {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    links: Vec<Link>,
    versions: Vec<DatastoreVersion>,
    /// Only when it is one of `versions`.
    #[schema(format = Uuid, nullable = false)]
    default_version: Option<String>,
}

/// `GET /datastores`.
#[derive(ToSchema)]
pub struct DatastoreList {
    datastores: Vec<Datastore>,
}

/// `GET /datastores/{ds}`.
#[derive(ToSchema)]
pub struct DatastoreShow {
    datastore: Datastore,
}

/// `GET /datastores/{ds}/versions`.
#[derive(ToSchema)]
pub struct DatastoreVersionList {
    versions: Vec<DatastoreVersion>,
}

/// `GET /datastores/{ds}/versions/{version}`.
#[derive(ToSchema)]
pub struct DatastoreVersionShow {
    version: DatastoreVersion,
}

// ---- backups ---------------------------------------------------------------------

/// The datastore a backup was taken from.
#[derive(ToSchema)]
pub struct BackupDatastore {
    r#type: String,
    version: String,
    #[schema(format = Uuid)]
    version_id: String,
}

/// A backup.
#[derive(ToSchema)]
pub struct Backup {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    #[schema(rename = "locationRef", required = true)]
    location_ref: Option<String>,
    #[schema(required = true)]
    instance_id: Option<String>,
    created: String,
    updated: String,
    /// GB.
    #[schema(required = true)]
    size: Option<f64>,
    status: String,
    #[schema(required = true)]
    parent_id: Option<String>,
    project_id: String,
    #[schema(nullable = false)]
    datastore: Option<BackupDatastore>,
}

/// `GET /backups`, `GET /instances/{id}/backups`.
#[derive(ToSchema)]
pub struct BackupList {
    backups: Vec<Backup>,
    /// `rel=next` when the page is full.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// `GET /backups/{id}`.
#[derive(ToSchema)]
pub struct BackupShow {
    backup: Backup,
}

// ---- configuration groups --------------------------------------------------------

/// A configuration group in a list.
#[derive(ToSchema)]
pub struct ConfigurationSummary {
    #[schema(required = true)]
    id: Option<String>,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    created: String,
    updated: String,
    datastore_version_id: String,
    datastore_name: String,
    datastore_version_name: String,
}

/// A configuration group with its values.
#[derive(ToSchema)]
pub struct ConfigurationDetail {
    #[schema(required = true)]
    id: Option<String>,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    created: String,
    updated: String,
    datastore_version_id: String,
    datastore_name: String,
    datastore_version_name: String,
    datastore_version_number: String,
    /// Parameter name → value.
    values: BTreeMap<String, Value>,
    instance_count: u64,
}

/// `GET /configurations`.
#[derive(ToSchema)]
pub struct ConfigurationList {
    configurations: Vec<ConfigurationSummary>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// `GET /configurations/{id}`, `POST /configurations`.
#[derive(ToSchema)]
pub struct ConfigurationShow {
    configuration: ConfigurationDetail,
}

/// An instance using a configuration group.
#[derive(ToSchema)]
pub struct ConfigurationInstance {
    #[schema(required = true)]
    id: Option<String>,
    name: String,
}

/// `GET /configurations/{id}/instances`.
#[derive(ToSchema)]
pub struct ConfigurationInstanceList {
    instances: Vec<ConfigurationInstance>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    links: Option<Vec<Link>>,
}

/// A parameter of a datastore version's catalogue.
#[derive(ToSchema)]
pub struct ConfigurationParameter {
    name: String,
    datastore_version_id: String,
    restart_required: bool,
    /// `integer`, `string`, `boolean` or `float`.
    r#type: String,
    /// Numeric parameters only.
    #[schema(nullable = false)]
    min: Option<i64>,
    /// Numeric parameters only.
    #[schema(nullable = false)]
    max: Option<i64>,
}

/// `GET /datastores/.../parameters`.
#[derive(ToSchema)]
pub struct ConfigurationParameterList {
    #[schema(rename = "configuration-parameters")]
    configuration_parameters: Vec<ConfigurationParameter>,
}
