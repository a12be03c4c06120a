//! Documentation-only response types for the OpenAPI document: never built, only their
//! schemas are used (the handlers build their JSON with `serde_json`, or the views of
//! `projections`). See the rules in [`super`]: required only when always emitted,
//! nullable wherever `null` can be. Fields are public so that nothing here counts as
//! unused: only utoipa's derive reads them.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

// ---- errors ----------------------------------------------------------------------

/// The body of every error: one key, the fault name (`badRequest`, `unauthorized`,
/// `forbidden`, `itemNotFound`, `conflict`, `overLimit`, `badMediaType`,
/// `unprocessableEntity`, `instanceFault`, `notImplemented`, `serviceUnavailable`).
#[derive(ToSchema)]
pub struct ErrorBody(pub BTreeMap<String, Fault>);

/// One error.
#[derive(ToSchema)]
pub struct Fault {
    /// The HTTP status.
    pub code: u16,
    pub message: String,
}

// ---- common ----------------------------------------------------------------------

/// A link: `self`/`bookmark` of a resource, or `next` of a list page.
#[derive(ToSchema)]
pub struct Link {
    pub href: String,
    pub rel: String,
}

// ---- versions --------------------------------------------------------------------

/// An API version.
#[derive(ToSchema)]
pub struct ApiVersion {
    pub id: String,
    pub status: String,
    pub updated: String,
    pub links: Vec<Link>,
}

/// `GET /`.
#[derive(ToSchema)]
pub struct VersionList {
    pub versions: Vec<ApiVersion>,
}

/// `GET /v1.0`.
#[derive(ToSchema)]
pub struct VersionShow {
    pub version: ApiVersion,
}

// ---- instances -------------------------------------------------------------------

/// The flavor of an instance.
#[derive(ToSchema)]
pub struct InstanceFlavor {
    pub id: String,
    pub links: Vec<Link>,
}

/// The datastore of an instance (nulls when its version is unknown).
#[derive(ToSchema)]
pub struct InstanceDatastore {
    #[schema(required = true)]
    pub r#type: Option<String>,
    #[schema(required = true)]
    pub version: Option<String>,
    /// Detail views only.
    #[schema(nullable = false)]
    pub version_number: Option<String>,
}

/// The volume of an instance.
#[derive(ToSchema)]
pub struct InstanceVolume {
    pub size: u64,
}

/// An address of an instance.
#[derive(ToSchema)]
pub struct InstanceAddress {
    pub address: String,
    pub r#type: String,
    #[schema(nullable = false)]
    pub network: Option<String>,
    /// The database's TCP port, when it is not the datastore's default (the local
    /// provider: many servers on one host).
    #[schema(nullable = false)]
    pub port: Option<u16>,
}

/// A reference to another instance (`replica_of`, `replicas`).
#[derive(ToSchema)]
pub struct InstanceRef {
    pub id: String,
    pub links: Vec<Link>,
}

/// The fault of a failed instance (`details` for admins only).
#[derive(ToSchema)]
pub struct InstanceFault {
    pub message: String,
    pub created: String,
    #[schema(required = true)]
    pub details: Option<String>,
}

/// The configuration group attached to an instance.
#[derive(ToSchema)]
pub struct InstanceConfigurationRef {
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub links: Vec<Link>,
}

/// An instance in a list (basic view).
#[derive(ToSchema)]
pub struct InstanceBasic {
    pub id: String,
    pub name: String,
    pub status: String,
    pub operating_status: String,
    pub links: Vec<Link>,
    pub flavor: InstanceFlavor,
    pub datastore: InstanceDatastore,
    pub region: String,
    /// `is_public` and `allowed_cidrs` when set; may be empty.
    pub access: BTreeMap<String, Value>,
    /// Admins only.
    #[schema(nullable = false)]
    pub tenant_id: Option<String>,
    #[schema(nullable = false)]
    pub volume: Option<InstanceVolume>,
    #[schema(nullable = false)]
    pub addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    pub ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    pub replicas: Option<Vec<InstanceRef>>,
}

/// An instance in the detail list, show and create answers.
#[derive(ToSchema)]
pub struct InstanceDetail {
    pub id: String,
    pub name: String,
    pub status: String,
    pub operating_status: String,
    pub links: Vec<Link>,
    pub flavor: InstanceFlavor,
    pub datastore: InstanceDatastore,
    pub region: String,
    /// `is_public` and `allowed_cidrs` when set; may be empty.
    pub access: BTreeMap<String, Value>,
    pub created: String,
    pub updated: String,
    pub service_status_updated: String,
    /// Admins only.
    #[schema(nullable = false)]
    pub tenant_id: Option<String>,
    #[schema(nullable = false)]
    pub volume: Option<InstanceVolume>,
    #[schema(nullable = false)]
    pub addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    pub ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    pub replicas: Option<Vec<InstanceRef>>,
    #[schema(nullable = false)]
    pub fault: Option<InstanceFault>,
    #[schema(nullable = false)]
    pub configuration: Option<InstanceConfigurationRef>,
    #[schema(nullable = false)]
    pub locality: Option<String>,
    /// Admins only.
    pub server_id: Option<String>,
    /// Admins only.
    pub volume_id: Option<String>,
    /// Admins only.
    #[schema(nullable = false)]
    pub encrypted_rpc_messaging: Option<bool>,
}

/// The compute server of an instance (admin views; only `id` once it is gone).
#[derive(ToSchema)]
pub struct MgmtServer {
    pub id: String,
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub status: Option<String>,
    #[schema(nullable = false)]
    pub tenant_id: Option<String>,
    #[schema(nullable = false)]
    pub host: Option<String>,
    /// Show only: addresses by network.
    #[schema(nullable = false)]
    pub addresses: Option<BTreeMap<String, Value>>,
}

/// An instance in the admin views.
#[derive(ToSchema)]
pub struct MgmtInstance {
    pub id: String,
    pub name: String,
    pub status: String,
    pub operating_status: String,
    pub links: Vec<Link>,
    pub flavor: InstanceFlavor,
    pub datastore: InstanceDatastore,
    pub region: String,
    pub access: BTreeMap<String, Value>,
    pub created: String,
    pub updated: String,
    pub service_status_updated: String,
    pub tenant_id: String,
    pub service_status: String,
    pub deleted: bool,
    #[schema(required = true)]
    pub deleted_at: Option<String>,
    pub task_description: String,
    #[schema(required = true)]
    pub server: Option<MgmtServer>,
    #[schema(required = true)]
    pub server_id: Option<String>,
    #[schema(required = true)]
    pub volume_id: Option<String>,
    pub encrypted_rpc_messaging: bool,
    /// `{size}` in the list; in the show the storage volume (`null` without one,
    /// only `id` once deleted).
    #[schema(value_type = Option<Object>)]
    pub volume: Option<Value>,
    /// Show only.
    #[schema(nullable = false)]
    pub guest_status: Option<BTreeMap<String, Value>>,
    #[schema(nullable = false)]
    pub addresses: Option<Vec<InstanceAddress>>,
    #[schema(nullable = false)]
    pub ip: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub replica_of: Option<InstanceRef>,
    #[schema(nullable = false)]
    pub replicas: Option<Vec<InstanceRef>>,
    #[schema(nullable = false)]
    pub fault: Option<InstanceFault>,
    #[schema(nullable = false)]
    pub configuration: Option<InstanceConfigurationRef>,
}

/// `GET /instances`.
#[derive(ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceBasic>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// `GET /instances/detail`.
#[derive(ToSchema)]
pub struct InstanceDetailList {
    pub instances: Vec<InstanceDetail>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// `GET /instances/{id}`, `POST /instances`.
#[derive(ToSchema)]
pub struct InstanceShow {
    pub instance: InstanceDetail,
}

/// `GET /mgmt/instances`.
#[derive(ToSchema)]
pub struct MgmtInstanceList {
    pub instances: Vec<MgmtInstance>,
    /// `rel=next` when the page is full.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// `GET /mgmt/instances/{id}`.
#[derive(ToSchema)]
pub struct MgmtInstanceShow {
    pub instance: MgmtInstance,
}

/// The default configuration of an instance.
#[derive(ToSchema)]
pub struct DefaultConfiguration {
    /// Parameter name → value.
    pub configuration: BTreeMap<String, Value>,
}

/// `GET /instances/{id}/configuration`.
#[derive(ToSchema)]
pub struct DefaultConfigurationShow {
    pub instance: DefaultConfiguration,
}

// ---- flavors ---------------------------------------------------------------------

/// A flavor.
#[derive(ToSchema)]
pub struct Flavor {
    /// The id as an integer when it is one, else `null` (use `str_id`).
    #[schema(required = true)]
    pub id: Option<u64>,
    pub str_id: String,
    pub name: String,
    pub ram: u32,
    pub vcpus: u32,
    pub disk: u32,
    pub ephemeral: u32,
    pub local_storage: u32,
    pub links: Vec<Link>,
}

/// `GET /flavors`.
#[derive(ToSchema)]
pub struct FlavorList {
    pub flavors: Vec<Flavor>,
}

/// `GET /flavors/{id}`.
#[derive(ToSchema)]
pub struct FlavorShow {
    pub flavor: Flavor,
}

// ---- datastores ------------------------------------------------------------------

/// A datastore version; admins also get the admin fields.
#[derive(ToSchema)]
pub struct DatastoreVersion {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    pub version: String,
    pub links: Vec<Link>,
    /// The datastore's id (not inside a datastore's `versions`).
    #[schema(format = Uuid, nullable = false)]
    pub datastore: Option<String>,
    #[schema(nullable = false)]
    pub active: Option<bool>,
    #[schema(nullable = false)]
    pub packages: Option<String>,
    pub image: Option<String>,
    #[schema(nullable = false)]
    pub registry_ext: Option<String>,
    pub repl_strategy: Option<String>,
    #[schema(nullable = false)]
    pub image_tags: Option<Vec<String>>,
}

/// A datastore with its (visible) versions.
#[derive(ToSchema)]
pub struct Datastore {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    pub links: Vec<Link>,
    pub versions: Vec<DatastoreVersion>,
    /// Only when it is one of `versions`.
    #[schema(format = Uuid, nullable = false)]
    pub default_version: Option<String>,
}

/// `GET /datastores`.
#[derive(ToSchema)]
pub struct DatastoreList {
    pub datastores: Vec<Datastore>,
}

/// `GET /datastores/{ds}`.
#[derive(ToSchema)]
pub struct DatastoreShow {
    pub datastore: Datastore,
}

/// `GET /datastores/{ds}/versions`.
#[derive(ToSchema)]
pub struct DatastoreVersionList {
    pub versions: Vec<DatastoreVersion>,
}

/// `GET /datastores/{ds}/versions/{version}`.
#[derive(ToSchema)]
pub struct DatastoreVersionShow {
    pub version: DatastoreVersion,
}

// ---- backups ---------------------------------------------------------------------

/// The datastore a backup was taken from.
#[derive(ToSchema)]
pub struct BackupDatastore {
    pub r#type: String,
    pub version: String,
    #[schema(format = Uuid)]
    pub version_id: String,
}

/// A backup.
#[derive(ToSchema)]
pub struct Backup {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(rename = "locationRef", required = true)]
    pub location_ref: Option<String>,
    #[schema(required = true)]
    pub instance_id: Option<String>,
    pub created: String,
    pub updated: String,
    /// GB.
    #[schema(required = true)]
    pub size: Option<f64>,
    pub status: String,
    #[schema(required = true)]
    pub parent_id: Option<String>,
    pub project_id: String,
    #[schema(nullable = false)]
    pub datastore: Option<BackupDatastore>,
}

/// `GET /backups`, `GET /instances/{id}/backups`.
#[derive(ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
    /// `rel=next` when the page is full.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// `GET /backups/{id}`.
#[derive(ToSchema)]
pub struct BackupShow {
    pub backup: Backup,
}

// ---- configuration groups --------------------------------------------------------

/// A configuration group in a list.
#[derive(ToSchema)]
pub struct ConfigurationSummary {
    #[schema(required = true)]
    pub id: Option<String>,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub created: String,
    pub updated: String,
    pub datastore_version_id: String,
    pub datastore_name: String,
    pub datastore_version_name: String,
}

/// A configuration group with its values.
#[derive(ToSchema)]
pub struct ConfigurationDetail {
    #[schema(required = true)]
    pub id: Option<String>,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub created: String,
    pub updated: String,
    pub datastore_version_id: String,
    pub datastore_name: String,
    pub datastore_version_name: String,
    pub datastore_version_number: String,
    /// Parameter name → value.
    pub values: BTreeMap<String, Value>,
    pub instance_count: u64,
}

/// `GET /configurations`.
#[derive(ToSchema)]
pub struct ConfigurationList {
    pub configurations: Vec<ConfigurationSummary>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// `GET /configurations/{id}`, `POST /configurations`.
#[derive(ToSchema)]
pub struct ConfigurationShow {
    pub configuration: ConfigurationDetail,
}

/// An instance using a configuration group.
#[derive(ToSchema)]
pub struct ConfigurationInstance {
    #[schema(required = true)]
    pub id: Option<String>,
    pub name: String,
}

/// `GET /configurations/{id}/instances`.
#[derive(ToSchema)]
pub struct ConfigurationInstanceList {
    pub instances: Vec<ConfigurationInstance>,
    /// `rel=next` when more exist.
    #[schema(nullable = false)]
    pub links: Option<Vec<Link>>,
}

/// A parameter of a datastore version's catalogue.
#[derive(ToSchema)]
pub struct ConfigurationParameter {
    pub name: String,
    pub datastore_version_id: String,
    pub restart_required: bool,
    /// `integer`, `string`, `boolean` or `float`.
    pub r#type: String,
    /// Numeric parameters only.
    #[schema(nullable = false)]
    pub min: Option<i64>,
    /// Numeric parameters only.
    #[schema(nullable = false)]
    pub max: Option<i64>,
}

/// `GET /datastores/.../parameters`.
#[derive(ToSchema)]
pub struct ConfigurationParameterList {
    #[schema(rename = "configuration-parameters")]
    pub configuration_parameters: Vec<ConfigurationParameter>,
}
