//! Documentation-only types for the OpenAPI document: never built, only their schemas
//! are used (the handlers build their JSON with `serde_json`). See the rules in
//! [`super`]: required only when always emitted, nullable wherever `null` can be.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

/// Upstream's `non_empty_string` pattern (Python's `re` semantics, as the server).
const NAME_PATTERN: &str = "^.*[0-9a-zA-Z]+.*$";

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

// ---- instance request bodies ----------------------------------------------------

fn flavor_ref() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(i64::MIN))
                .maximum(Some(u64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some(NAME_PATTERN)),
        )
        .description(Some(
            "Flavor id: an integer, or a string (an id or a link; its last path \
             segment is the id).",
        ))
        .build()
        .into()
}

fn volume_size() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(u64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(40))
                .pattern(Some("^0*[1-9]+[0-9]*$")),
        )
        .description(Some("GB: an integer or a string of digits."))
        .build()
        .into()
}

/// `instance.volume`.
#[derive(ToSchema)]
pub struct VolumeRequest {
    #[schema(schema_with = volume_size)]
    size: Value,
    /// Volume type (`null` = none).
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    r#type: Option<String>,
}

/// `instance.datastore` (and a configuration group's): by id or name.
#[derive(ToSchema)]
pub struct DatastoreRequest {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    r#type: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    version: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    version_number: Option<String>,
}

/// A database to create.
#[derive(ToSchema)]
pub struct DatabaseRequest {
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    name: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    character_set: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    collate: Option<String>,
}

/// A database a user gets access to.
#[derive(ToSchema)]
pub struct UserDatabaseRequest {
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    name: String,
}

/// A user to create.
#[derive(ToSchema)]
pub struct UserRequest {
    /// No maximum length, as upstream.
    #[schema(min_length = 1, pattern = "^.*[0-9a-zA-Z]+.*$")]
    name: String,
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    password: String,
    /// Host pattern (`%` wildcards at either end); `null` = any.
    #[schema(min_length = 1)]
    host: Option<String>,
    #[schema(nullable = false)]
    databases: Option<Vec<UserDatabaseRequest>>,
}

/// A network interface.
#[derive(ToSchema)]
pub struct NicRequest {
    #[schema(format = Uuid, nullable = false)]
    network_id: Option<String>,
    /// Alias of `network_id`.
    #[schema(rename = "net-id", format = Uuid, nullable = false)]
    net_id: Option<String>,
    #[schema(format = Uuid, nullable = false)]
    subnet_id: Option<String>,
    #[schema(format = Ipv4, nullable = false)]
    ip_address: Option<String>,
}

/// A backup to restore from.
#[derive(ToSchema)]
pub struct RestorePoint {
    #[schema(rename = "backupRef", format = Uuid)]
    backup_ref: String,
}

/// A module to apply.
#[derive(ToSchema)]
pub struct ModuleRef {
    #[schema(format = Uuid)]
    id: String,
}

/// Who may reach the database.
#[derive(ToSchema)]
pub struct AccessRequest {
    #[schema(nullable = false)]
    is_public: Option<bool>,
    /// IPv4 CIDRs.
    #[schema(nullable = false)]
    allowed_cidrs: Option<Vec<String>>,
}

/// The `instance` object of a create.
#[derive(ToSchema)]
pub struct InstanceCreate {
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    name: String,
    #[schema(rename = "flavorRef", schema_with = flavor_ref, required = false)]
    flavor_ref: Option<Value>,
    #[schema(nullable = false)]
    volume: Option<VolumeRequest>,
    #[schema(nullable = false)]
    datastore: Option<DatastoreRequest>,
    #[schema(nullable = false)]
    databases: Option<Vec<DatabaseRequest>>,
    #[schema(nullable = false)]
    users: Option<Vec<UserRequest>>,
    #[schema(rename = "restorePoint", nullable = false)]
    restore_point: Option<RestorePoint>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    availability_zone: Option<String>,
    #[schema(max_items = 1, nullable = false)]
    nics: Option<Vec<NicRequest>>,
    /// Configuration group id (or a link to it); `null` or empty = none.
    configuration: Option<String>,
    /// Create a replica of this instance.
    #[schema(format = Uuid, nullable = false)]
    replica_of: Option<String>,
    /// With `replica_of`: how many replicas.
    #[schema(minimum = 1, maximum = 3, nullable = false)]
    replica_count: Option<u32>,
    /// `affinity` or `anti-affinity`.
    #[schema(min_length = 1, nullable = false)]
    locality: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    region_name: Option<String>,
    #[schema(nullable = false)]
    modules: Option<Vec<ModuleRef>>,
    #[schema(nullable = false)]
    access: Option<AccessRequest>,
}

/// `POST /instances`.
#[derive(ToSchema)]
#[schema(example = json!({"instance": {
    "name": "db1", "flavorRef": "2", "volume": {"size": 1},
    "datastore": {"type": "mysql", "version": "8.0"}
}}))]
pub struct InstanceCreateBody {
    instance: InstanceCreate,
}

/// The `instance` object of a PUT: a rename and at most one other change (`{}`
/// detaches the configuration group); other keys are refused.
#[derive(ToSchema)]
pub struct InstancePut {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    name: Option<String>,
    /// Attach this configuration group (UUID), or detach with `null`.
    #[schema(format = Uuid)]
    configuration: Option<String>,
    /// Any value: detach from the replication source.
    #[schema(value_type = Option<Value>)]
    replica_of: Option<Value>,
    /// Upgrade to this datastore version (id or name).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    datastore_version: Option<String>,
    #[schema(nullable = false)]
    access: Option<AccessRequest>,
}

/// `PUT /instances/{id}`.
#[derive(ToSchema)]
#[schema(example = json!({"instance": {"name": "renamed"}}))]
pub struct InstancePutBody {
    instance: InstancePut,
}

/// The `instance` object of a PATCH: as PUT, with `slave_of` and without `access`.
#[derive(ToSchema)]
pub struct InstancePatch {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    name: Option<String>,
    /// Attach this configuration group (UUID), or detach with `null`.
    #[schema(format = Uuid)]
    configuration: Option<String>,
    /// Any value: detach from the replication source.
    #[schema(value_type = Option<Value>)]
    replica_of: Option<Value>,
    /// As `replica_of`.
    #[schema(value_type = Option<Value>)]
    slave_of: Option<Value>,
    /// Upgrade to this datastore version (id or name).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    datastore_version: Option<String>,
}

/// `PATCH /instances/{id}`.
#[derive(ToSchema)]
#[schema(example = json!({"instance": {"name": "renamed"}}))]
pub struct InstancePatchBody {
    instance: InstancePatch,
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

/// The `configuration` object of a create.
#[derive(ToSchema)]
pub struct ConfigurationCreate {
    #[schema(min_length = 1, max_length = 255, pattern = "^.*[0-9a-zA-Z]+.*$")]
    name: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    description: Option<String>,
    /// Parameter name → value (checked against the version's catalogue).
    values: BTreeMap<String, Value>,
    #[schema(nullable = false)]
    datastore: Option<DatastoreRequest>,
}

/// `POST /configurations`.
#[derive(ToSchema)]
#[schema(example = json!({"configuration": {
    "name": "cfg1", "values": {"max_connections": 100},
    "datastore": {"type": "mysql", "version": "8.0"}
}}))]
pub struct ConfigurationCreateBody {
    configuration: ConfigurationCreate,
}

/// The `configuration` object of a PUT: replaces the values (none when absent) and
/// sets `name`/`description` when given.
#[derive(ToSchema)]
pub struct ConfigurationPut {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^.*[0-9a-zA-Z]+.*$",
        nullable = false
    )]
    description: Option<String>,
    #[schema(nullable = false)]
    values: Option<BTreeMap<String, Value>>,
}

/// `PUT /configurations/{id}`.
#[derive(ToSchema)]
#[schema(example = json!({"configuration": {"values": {"max_connections": 200}}}))]
pub struct ConfigurationPutBody {
    configuration: ConfigurationPut,
}

/// The `configuration` object of a PATCH: `values` are merged into the group's;
/// other keys are ignored.
#[derive(ToSchema)]
pub struct ConfigurationPatch {
    #[schema(nullable = false)]
    values: Option<BTreeMap<String, Value>>,
}

/// `PATCH /configurations/{id}`.
#[derive(ToSchema)]
#[schema(example = json!({"configuration": {"values": {"max_connections": 200}}}))]
pub struct ConfigurationPatchBody {
    configuration: ConfigurationPatch,
}
