//! The instance bodies: `POST /instances` (spec `instances-api.md` §8.1) and `PUT` /
//! `PATCH /instances/{id}` (§11.1), and the commands they become.

use aggregates::instance::{self as domain, InstanceCommand};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::{
    checked_by, last_segment, non_empty_string, objects_only, present, short, string_schema,
    string_value, Broken, DatastoreRequest, HyphenatedUuid, Name, RequestBody, NAME_PATTERN,
};
use crate::http::error::{ApiError, ApiResult};

objects_only!(
    InstanceCreateBody,
    InstanceCreate,
    VolumeRequest,
    DatabaseRequest,
    UserRequest,
    UserDatabaseRequest,
    NicRequest,
    RestorePoint,
    ModuleRef,
    AccessCreate,
    InstancePutBody,
    InstancePut,
    InstancePatchBody,
    InstancePatch,
    AccessRequest,
);

// ---- POST /instances ------------------------------------------------------------------

/// `POST /instances`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"instance": {
    "name": "db1", "flavorRef": "2", "volume": {"size": 1},
    "datastore": {"type": "mysql", "version": "8.0"}
}}))]
#[serde(remote = "Self")]
pub struct InstanceCreateBody {
    pub instance: InstanceCreate,
}

impl RequestBody for InstanceCreateBody {
    const ROOT: &'static str = "instance";
}

/// The `instance` object of a create. Unknown keys are ignored, as upstream's schema
/// allows.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct InstanceCreate {
    pub name: Name,
    #[serde(rename = "flavorRef", default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub flavor_ref: Option<FlavorRef>,
    /// openstacksdk has no `flavorRef`: it sends `flavor: {"id": ...}` (spec
    /// `clients.md` §3). Read only without `flavorRef`, as an alias of it; anything
    /// else here is ignored.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub flavor: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub volume: Option<VolumeRequest>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub datastore: Option<DatastoreRequest>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub databases: Option<Vec<DatabaseRequest>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub users: Option<Vec<UserRequest>>,
    #[serde(rename = "restorePoint", default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub restore_point: Option<RestorePoint>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub availability_zone: Option<Name>,
    #[serde(default, deserialize_with = "at_most_one_nic")]
    #[schema(max_items = 1, nullable = false)]
    pub nics: Option<Vec<NicRequest>>,
    /// Configuration group id (or a link to it); `null` or empty = none.
    #[serde(default)]
    pub configuration: Option<String>,
    /// Create a replica of this instance.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub replica_of: Option<HyphenatedUuid>,
    /// With `replica_of`: how many replicas.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub replica_count: Option<ReplicaCount>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub locality: Option<Locality>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub region_name: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub modules: Option<Vec<ModuleRef>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub access: Option<AccessCreate>,
}

/// A create as a command, passwords still in plaintext: they are returned apart, in
/// the order of `users`, so the caller can seal them with the instance's key. No
/// `Debug`: it holds the passwords.
#[derive(Clone)]
pub struct CreateRequest {
    pub command: domain::CreateInstance,
    pub passwords: Vec<String>,
}

impl InstanceCreate {
    /// The command for an instance with the given id.
    pub fn into_request(self, instance_id: Uuid) -> ApiResult<CreateRequest> {
        let flavor_ref = match (self.flavor_ref, self.flavor) {
            (Some(f), _) => Some(f.0),
            (None, Some(Value::Object(f))) => f.get("id").map(sdk_flavor_id).transpose()?,
            (None, _) => None,
        };
        let (users, passwords) = self
            .users
            .unwrap_or_default()
            .into_iter()
            .map(UserRequest::into_user)
            .unzip();
        let command = domain::CreateInstance {
            instance_id,
            name: self.name.0,
            flavor_ref,
            volume: self.volume.map(|v| domain::VolumeRequest {
                size: v.size.0,
                volume_type: v.volume_type.map(|t| t.0),
            }),
            datastore: self.datastore.map(Into::into),
            databases: self
                .databases
                .unwrap_or_default()
                .into_iter()
                .map(|d| domain::DatabaseSpec {
                    name: d.name.0,
                    character_set: d.character_set.map(|n| n.0),
                    collate: d.collate.map(|n| n.0),
                })
                .collect(),
            users,
            nics: self
                .nics
                .unwrap_or_default()
                .into_iter()
                .map(NicRequest::into_nic)
                .collect(),
            availability_zone: self.availability_zone.map(|n| n.0),
            region_name: self.region_name.map(|n| n.0),
            modules: self
                .modules
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.id.0)
                .collect(),
            restore_backup_id: self.restore_point.map(|r| r.backup_ref.0),
            replica_of: self.replica_of.map(|u| u.0),
            replica_count: self.replica_count.map(|c| c.0),
            locality: self.locality.map(|l| l.0),
            configuration: self
                .configuration
                .map(|c| last_segment(&c))
                .filter(|c| !c.is_empty()),
            access: self.access.map(AccessCreate::into_value),
            root_password: None,
        };
        Ok(CreateRequest { command, passwords })
    }
}

/// `flavor.id` of openstacksdk's alias, checked as `flavorRef` and reported as it.
fn sdk_flavor_id(v: &Value) -> ApiResult<String> {
    FlavorRef::check(v)
        .map(|f| f.0)
        .map_err(|b| ApiError::Validation(b.message("instance['flavorRef']", &short(v))))
}

/// The flavor id: an integer, or a string whose last path segment is the id.
#[derive(Debug)]
pub struct FlavorRef(pub String);

impl FlavorRef {
    fn check(v: &Value) -> Result<FlavorRef, Broken> {
        match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(FlavorRef(n.to_string())),
            Value::String(_) => Ok(FlavorRef(last_segment(&non_empty_string(v, 255)?))),
            _ => Err(Broken::because(
                "is not valid under any of the given schemas",
            )),
        }
    }
}
checked_by!(FlavorRef);

impl PartialSchema for FlavorRef {
    fn schema() -> RefOr<Schema> {
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
            .into()
    }
}
impl ToSchema for FlavorRef {}

/// `instance.volume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct VolumeRequest {
    pub size: VolumeSize,
    /// Volume type (`null` = none).
    #[serde(rename = "type", default)]
    pub volume_type: Option<Name>,
}

/// GB: an integer or a string of digits.
#[derive(Debug)]
pub struct VolumeSize(pub u64);

impl VolumeSize {
    fn check(v: &Value) -> Result<VolumeSize, Broken> {
        let invalid = |extra: String| {
            Broken::Because(format!(
                "is not valid under any of the given schemas; {extra}"
            ))
        };
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) if i >= 1 => Ok(VolumeSize(i as u64)),
                Some(i) => Err(invalid(format!("{i} is less than the minimum of 1"))),
                None => match n.as_u64() {
                    Some(u) => Ok(VolumeSize(u)),
                    None => Err(invalid(format!("{n} is not of type 'integer'"))),
                },
            },
            Value::String(s) => {
                // Digits, not all zeros (so at least one), as the pattern below says.
                let digits_ok = s.len() <= 40
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && s.bytes().any(|b| b != b'0');
                if !digits_ok {
                    return Err(invalid(format!(
                        "{} does not match '^0*[1-9]+[0-9]*$'",
                        short(v)
                    )));
                }
                // Longer than u64: certainly over any maximum; saturate so the size
                // check answers 413 rather than a parse error.
                Ok(VolumeSize(
                    s.trim_start_matches('0').parse::<u64>().unwrap_or(u64::MAX),
                ))
            }
            _ => Err(invalid(format!(
                "{} is not of type 'integer', 'string'",
                short(v)
            ))),
        }
    }
}
checked_by!(VolumeSize);

impl PartialSchema for VolumeSize {
    fn schema() -> RefOr<Schema> {
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
            .into()
    }
}
impl ToSchema for VolumeSize {}

/// A database to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct DatabaseRequest {
    pub name: Name,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub character_set: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub collate: Option<Name>,
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct UserRequest {
    pub name: UserName,
    pub password: Password,
    /// Host pattern (`%` wildcards at either end); `null` = any.
    #[serde(default)]
    pub host: Option<Host>,
    /// The databases the user gets access to, each once.
    #[serde(default, deserialize_with = "unique_items")]
    #[schema(nullable = false)]
    pub databases: Option<Vec<UserDatabaseRequest>>,
}

impl UserRequest {
    /// The user with a placeholder password (sealed by the caller), and the password.
    fn into_user(self) -> (domain::UserRequest, String) {
        let sealed = domain::SealedSecret {
            key_id: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        };
        let databases = self.databases.unwrap_or_default();
        let user = domain::UserRequest {
            name: self.name.0,
            host: self.host.map(|h| h.0),
            password: sealed,
            databases: databases.into_iter().map(|d| d.name.0).collect(),
        };
        (user, self.password.0)
    }
}

/// A list in which no element appears twice (the schema's `uniqueItems`):
/// `users[].databases` (by name) and `allowed_cidrs`.
fn unique_items<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq,
{
    let list = Vec::<T>::deserialize(d)?;
    for (i, item) in list.iter().enumerate() {
        if list[..i].contains(item) {
            return Err(Broken::because("has non-unique elements").into_de());
        }
    }
    Ok(Some(list))
}

/// A database a user gets access to.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct UserDatabaseRequest {
    pub name: Name,
}

/// A user name: as [`Name`], without a maximum length (as upstream).
#[derive(Debug)]
pub struct UserName(pub String);

impl UserName {
    fn check(v: &Value) -> Result<UserName, Broken> {
        non_empty_string(v, usize::MAX).map(UserName)
    }
}
checked_by!(UserName);

impl PartialSchema for UserName {
    fn schema() -> RefOr<Schema> {
        string_schema("A user name: an ASCII letter or digit on one line; no maximum.")
            .min_length(Some(1))
            .pattern(Some(NAME_PATTERN))
            .into()
    }
}
impl ToSchema for UserName {}

/// A password in plaintext, as [`Name`]; never shown by `Debug`.
pub struct Password(pub String);

impl Password {
    /// As [`Name`]'s rule, but a refusal never shows the value: the message is the
    /// path and the reason only (`users[0]['password'] is too long`), so a password
    /// is not written into a response, a proxy's log or a client's error report.
    fn check(v: &Value) -> Result<Password, Broken> {
        non_empty_string(v, 255)
            .map(Password)
            .map_err(|broken| match broken {
                Broken::Because(reason) => Broken::Whole(reason),
                whole => whole,
            })
    }
}
checked_by!(Password);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl PartialSchema for Password {
    fn schema() -> RefOr<Schema> {
        Name::schema()
    }
}
impl ToSchema for Password {}

/// A user's host: `%` wildcards at either end of word characters, `(`, `)` and `.`.
#[derive(Debug)]
pub struct Host(pub String);

impl Host {
    fn check(v: &Value) -> Result<Host, Broken> {
        let s = string_value(v)?;
        let core = s.strip_prefix('%').unwrap_or(s);
        let core = core.strip_suffix('%').unwrap_or(core);
        let ok = !s.is_empty()
            && core
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '(' | ')' | '.'));
        if !ok {
            return Err(Broken::because("does not match '^[%]?[\\w().]*[%]?$'"));
        }
        Ok(Host(s.to_string()))
    }
}
checked_by!(Host);

impl PartialSchema for Host {
    fn schema() -> RefOr<Schema> {
        string_schema("Host pattern (`%` wildcards at either end).")
            .min_length(Some(1))
            .into()
    }
}
impl ToSchema for Host {}

/// A network interface.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NicRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub network_id: Option<HyphenatedUuid>,
    /// Alias of `network_id` (`network_id` wins when both are given).
    #[serde(rename = "net-id", default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub net_id: Option<HyphenatedUuid>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub subnet_id: Option<HyphenatedUuid>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub ip_address: Option<Ipv4>,
}

impl NicRequest {
    fn into_nic(self) -> domain::Nic {
        domain::Nic {
            network_id: self.network_id.or(self.net_id).map(|u| u.0.to_string()),
            subnet_id: self.subnet_id.map(|u| u.0.to_string()),
            ip_address: self.ip_address.map(|ip| ip.0),
        }
    }
}

/// `nics`: at most one.
fn at_most_one_nic<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<NicRequest>>, D::Error> {
    let list = Vec::<NicRequest>::deserialize(d)?;
    if list.len() > 1 {
        return Err(Broken::because("is too long").into_de());
    }
    Ok(Some(list))
}

/// An IPv4 address, dotted quad.
#[derive(Debug)]
pub struct Ipv4(pub String);

impl Ipv4 {
    fn check(v: &Value) -> Result<Ipv4, Broken> {
        let s = string_value(v)?;
        let is_ipv4 = (7..=15).contains(&s.len())
            && s.split('.').count() == 4
            && s.split('.')
                .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
        if !is_ipv4 {
            return Err(Broken::because("is not a 'ipv4'"));
        }
        Ok(Ipv4(s.to_string()))
    }
}
checked_by!(Ipv4);

impl PartialSchema for Ipv4 {
    fn schema() -> RefOr<Schema> {
        string_schema("An IPv4 address.")
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Ipv4,
            )))
            .into()
    }
}
impl ToSchema for Ipv4 {}

/// A backup to restore from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct RestorePoint {
    #[serde(rename = "backupRef")]
    pub backup_ref: HyphenatedUuid,
}

/// A module to apply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ModuleRef {
    pub id: HyphenatedUuid,
}

/// How many replicas: 1 to 3.
#[derive(Debug)]
pub struct ReplicaCount(pub u32);

impl ReplicaCount {
    fn check(v: &Value) -> Result<ReplicaCount, Broken> {
        match v.as_u64() {
            Some(n @ 1..=3) => Ok(ReplicaCount(n as u32)),
            Some(n) if n > 3 => Err(Broken::because("is greater than the maximum of 3")),
            _ if v.is_i64() => Err(Broken::because("is less than the minimum of 1")),
            _ => Err(Broken::not_of_type("integer")),
        }
    }
}
checked_by!(ReplicaCount);

impl PartialSchema for ReplicaCount {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(3))
            .description(Some("How many replicas."))
            .into()
    }
}
impl ToSchema for ReplicaCount {}

/// `affinity` or `anti-affinity` (which, is `decide`'s rule): a non-empty string.
#[derive(Debug)]
pub struct Locality(pub String);

impl Locality {
    fn check(v: &Value) -> Result<Locality, Broken> {
        match v {
            Value::String(s) if !s.is_empty() => Ok(Locality(s.clone())),
            Value::String(_) => Err(Broken::Whole("'' is too short".into())),
            _ => Err(Broken::not_of_type("string")),
        }
    }
}
checked_by!(Locality);

impl PartialSchema for Locality {
    fn schema() -> RefOr<Schema> {
        string_schema("`affinity` or `anti-affinity`.")
            .min_length(Some(1))
            .into()
    }
}
impl ToSchema for Locality {}

/// An IPv4 CIDR: a dotted quad (octets 0-255, no leading zeros), optional `/0`-`/32`.
/// Upstream's schema regex does not range-check octets; we do, since no provider could
/// apply such a CIDR (the access update would fail after the 202).
#[derive(Debug, PartialEq, Eq)]
pub struct Cidr(pub String);

impl Cidr {
    fn check(v: &Value) -> Result<Cidr, Broken> {
        let s = string_value(v)?;
        if !is_cidr(s) {
            return Err(Broken::because(
                "is not a valid IPv4 CIDR (a.b.c.d or a.b.c.d/n: octets 0-255 without leading zeros, n 0-32)",
            ));
        }
        Ok(Cidr(s.to_string()))
    }
}
checked_by!(Cidr);

impl PartialSchema for Cidr {
    fn schema() -> RefOr<Schema> {
        string_schema("An IPv4 CIDR.").into()
    }
}
impl ToSchema for Cidr {}

fn is_cidr(s: &str) -> bool {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    // The standard parser, as the local provider's `Cidr::parse`: four octets 0-255,
    // no leading zeros (`010` could mean octal to some tools).
    let quad = ip.parse::<std::net::Ipv4Addr>().is_ok();
    let prefix_ok = prefix.is_none_or(|p| {
        (1..=2).contains(&p.len())
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u8>().is_ok_and(|n| n <= 32)
            && !(p.len() == 2 && p.starts_with('0'))
    });
    quad && prefix_ok
}

/// The schema of `allowed_cidrs`.
fn cidr_list() -> Schema {
    ArrayBuilder::new()
        .items(Cidr::schema())
        .unique_items(true)
        .description(Some("IPv4 CIDRs, each once."))
        .build()
        .into()
}

/// `access` of a create: who may reach the database. Other keys are kept verbatim in
/// the command (and so in the event).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct AccessCreate {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub is_public: Option<bool>,
    #[serde(default, deserialize_with = "unique_items")]
    #[schema(schema_with = cidr_list)]
    pub allowed_cidrs: Option<Vec<Cidr>>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

impl AccessCreate {
    /// The object as it was sent.
    fn into_value(self) -> Value {
        let mut o = self.other;
        if let Some(b) = self.is_public {
            o.insert("is_public".into(), Value::Bool(b));
        }
        if let Some(cidrs) = self.allowed_cidrs {
            let cidrs = cidrs.into_iter().map(|c| Value::String(c.0)).collect();
            o.insert("allowed_cidrs".into(), Value::Array(cidrs));
        }
        Value::Object(o)
    }
}

// ---- PUT and PATCH /instances/{id} ----------------------------------------------------

/// `PUT /instances/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"instance": {"name": "renamed"}}))]
#[serde(remote = "Self")]
pub struct InstancePutBody {
    pub instance: InstancePut,
}

impl RequestBody for InstancePutBody {
    const ROOT: &'static str = "instance";
}

/// The `instance` object of a PUT: a rename and at most one other change (`{}`
/// detaches the configuration group); other keys are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct InstancePut {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<Name>,
    /// Attach this configuration group (UUID), or detach with `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HyphenatedUuid>)]
    pub configuration: Option<Option<HyphenatedUuid>>,
    /// Any value: detach from the replication source.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Value>)]
    pub replica_of: Option<Value>,
    /// Upgrade to this datastore version (id or name).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub datastore_version: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub access: Option<AccessRequest>,
}

impl InstancePut {
    /// The commands to decide, in order (rename first), per spec §11.2.
    pub fn commands(self) -> ApiResult<Vec<InstanceCommand>> {
        Update {
            name: self.name,
            configuration: self.configuration,
            replica_keys: usize::from(self.replica_of.is_some()),
            datastore_version: self.datastore_version,
            access: self.access,
        }
        .commands()
    }
}

/// `PATCH /instances/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"instance": {"name": "renamed"}}))]
#[serde(remote = "Self")]
pub struct InstancePatchBody {
    pub instance: InstancePatch,
}

impl RequestBody for InstancePatchBody {
    const ROOT: &'static str = "instance";
}

/// The `instance` object of a PATCH: as PUT, with `slave_of` and without `access`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct InstancePatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<Name>,
    /// Attach this configuration group (UUID), or detach with `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HyphenatedUuid>)]
    pub configuration: Option<Option<HyphenatedUuid>>,
    /// Any value: detach from the replication source.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Value>)]
    pub replica_of: Option<Value>,
    /// As `replica_of`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Value>)]
    pub slave_of: Option<Value>,
    /// Upgrade to this datastore version (id or name).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub datastore_version: Option<Name>,
}

impl InstancePatch {
    /// The commands to decide, in order (rename first), per spec §11.2.
    pub fn commands(self) -> ApiResult<Vec<InstanceCommand>> {
        Update {
            name: self.name,
            configuration: self.configuration,
            replica_keys: usize::from(self.replica_of.is_some())
                + usize::from(self.slave_of.is_some()),
            datastore_version: self.datastore_version,
            access: None,
        }
        .commands()
    }
}

/// `access` of a PUT: only these two keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AccessRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub is_public: Option<bool>,
    #[serde(default, deserialize_with = "unique_items")]
    #[schema(schema_with = cidr_list)]
    pub allowed_cidrs: Option<Vec<Cidr>>,
}

/// What a PUT or PATCH asks for.
struct Update {
    name: Option<Name>,
    configuration: Option<Option<HyphenatedUuid>>,
    /// `replica_of` and `slave_of` given (any value detaches the replica).
    replica_keys: usize,
    datastore_version: Option<Name>,
    access: Option<AccessRequest>,
}

impl Update {
    fn commands(self) -> ApiResult<Vec<InstanceCommand>> {
        let others = usize::from(self.configuration.is_some())
            + self.replica_keys
            + usize::from(self.datastore_version.is_some())
            + usize::from(self.access.is_some());
        // Not a schema rule: upstream's controller refuses it.
        if others > 1 {
            return Err(ApiError::BadRequest(
                "Only one attribute (except 'name') is allowed to update.".into(),
            ));
        }
        let rename = self
            .name
            .map(|n| InstanceCommand::RenameInstance { name: n.0 });
        let second = if self.replica_keys > 0 {
            Some(InstanceCommand::DetachReplica)
        } else if let Some(configuration) = self.configuration {
            Some(match configuration {
                None => InstanceCommand::DetachConfiguration,
                Some(id) => InstanceCommand::AttachConfiguration {
                    configuration_id: id.0.to_string(),
                },
            })
        } else if let Some(v) = self.datastore_version {
            Some(InstanceCommand::UpgradeDatastoreVersion { version: v.0 })
        } else if let Some(a) = self.access {
            Some(InstanceCommand::UpdateAccess {
                access: domain::Access {
                    is_public: a.is_public.unwrap_or(false),
                    allowed_cidrs: a
                        .allowed_cidrs
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| c.0)
                        .collect(),
                },
            })
        } else if rename.is_none() {
            // `{"instance": {}}` means "detach the configuration group" upstream.
            Some(InstanceCommand::DetachConfiguration)
        } else {
            None
        };
        Ok(rename.into_iter().chain(second).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::from_value;
    use super::*;

    fn create(instance: Value) -> ApiResult<CreateRequest> {
        from_value::<InstanceCreateBody>(&json!({ "instance": instance }))?
            .instance
            .into_request(Uuid::new_v4())
    }

    fn message(instance: Value) -> String {
        create(instance).err().expect("refused").to_string()
    }

    fn put(instance: Value) -> ApiResult<Vec<InstanceCommand>> {
        from_value::<InstancePutBody>(&json!({ "instance": instance }))?
            .instance
            .commands()
    }

    fn patch(instance: Value) -> ApiResult<Vec<InstanceCommand>> {
        from_value::<InstancePatchBody>(&json!({ "instance": instance }))?
            .instance
            .commands()
    }

    #[test]
    fn flavor_ref_takes_the_last_path_segment() {
        let flavor = |v: Value| FlavorRef::check(&v).map(|f| f.0);
        assert_eq!(flavor(json!(7)).unwrap(), "7");
        assert_eq!(
            flavor(json!("https://h/v1.0/p/flavors/7?x=1")).unwrap(),
            "7"
        );
        assert!(flavor(json!(1.5)).is_err());
    }

    #[test]
    fn sdk_flavor_object_stands_in_for_flavor_ref() {
        let r = create(json!({"name": "db", "flavor": {"id": "6"}, "volume": {"size": 1}}));
        assert_eq!(r.unwrap().command.flavor_ref.as_deref(), Some("6"));
        let r = create(json!({"name": "db", "flavorRef": 2, "flavor": {"id": "6"}}));
        assert_eq!(r.unwrap().command.flavor_ref.as_deref(), Some("2"));
        // Only an object counts, and only without flavorRef; a bad id is flavorRef's.
        let r = create(json!({"name": "db", "flavorRef": 2, "flavor": {"id": 1.5}}));
        assert_eq!(r.unwrap().command.flavor_ref.as_deref(), Some("2"));
        let r = create(json!({"name": "db", "flavor": 5}));
        assert_eq!(r.unwrap().command.flavor_ref, None);
        assert_eq!(
            message(json!({"name": "db", "flavor": {"id": 1.5}})),
            "Validation error: instance['flavorRef'] 1.5 is not valid under any of the given schemas"
        );
    }

    #[test]
    fn volume_size_accepts_integers_and_digit_strings_only() {
        let size = |v: Value| VolumeSize::check(&v).map(|s| s.0);
        assert_eq!(size(json!(2)).unwrap(), 2);
        assert_eq!(size(json!("007")).unwrap(), 7);
        assert_eq!(size(json!("10")).unwrap(), 10);
        for bad in [
            json!(0),
            json!(-1),
            json!(1.0),
            json!("0"),
            json!("000"),
            json!(""),
            json!("1".repeat(41)),
            json!("1a"),
            json!(true),
        ] {
            assert!(size(bad.clone()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cidrs_follow_the_schema_regex() {
        for ok in ["10.0.0.0/8", "202.78.240.0/24", "1.2.3.4", "0.0.0.0/0"] {
            assert!(is_cidr(ok), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "::1/128",
            "10.0.0/8",
            "a.b.c.d",
            "300.1.1.1/8",
            "010.0.0.0/8",
            "1.2.3.256",
            "10.0.0.0/08",
            "10.0.0.0/+8",
        ] {
            assert!(!is_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn create_messages_follow_upstreams_schema() {
        let ok = json!({"name": "n", "flavorRef": 1, "volume": {"size": 1}});
        let with = |key: &str, v: Value| {
            let mut o = ok.clone();
            o[key] = v;
            message(o)
        };
        for (instance, expected) in [
            (json!({"flavorRef": 1}), "instance 'name' is a required property"),
            (json!({"name": 5}), "instance['name'] 5 is not of type 'string'"),
            (json!({"name": "---"}), "instance['name'] \"---\" does not match '^.*[0-9a-zA-Z]+.*$'"),
            (json!({"name": "n", "volume": 3}), "instance['volume'] 3 is not of type 'object'"),
            (json!({"name": "n", "volume": {}}), "instance['volume'] 'size' is a required property"),
            (
                json!({"name": "n", "volume": {"size": 0}}),
                "instance['volume']['size'] 0 is not valid under any of the given schemas; 0 is less than the minimum of 1",
            ),
            (
                json!({"name": "n", "volume": {"size": "1a"}}),
                "instance['volume']['size'] \"1a\" is not valid under any of the given schemas; \"1a\" does not match '^0*[1-9]+[0-9]*$'",
            ),
        ] {
            assert_eq!(message(instance), format!("Validation error: {expected}"));
        }
        for (key, v, expected) in [
            ("users", json!("u"), "instance['users'] \"u\" is not of type 'array'"),
            ("users", json!([{"name": "u"}]), "instance['users'][0] 'password' is a required property"),
            (
                "users",
                json!([{"name": "u", "password": "p", "host": "a b"}]),
                "instance['users'][0]['host'] \"a b\" does not match '^[%]?[\\w().]*[%]?$'",
            ),
            (
                "users",
                json!([{"name": "u", "password": "p", "databases": [{"name": "a"}, {"name": "a"}]}]),
                "instance['users'][0]['databases'] [{\"name\":\"a\"},{\"name\":\"a\"}] has non-unique elements",
            ),
            (
                "nics",
                json!([{"port-id": "x"}]),
                "instance['nics'][0] Additional properties are not allowed ('port-id' was unexpected)",
            ),
            ("nics", json!([{}, {}]), "instance['nics'] [{},{}] is too long"),
            ("nics", json!([{"ip_address": "1.2.3"}]), "instance['nics'][0]['ip_address'] \"1.2.3\" is not a 'ipv4'"),
            (
                "access",
                json!({"allowed_cidrs": ["::/0"]}),
                "instance['access']['allowed_cidrs'][0] \"::/0\" is not a valid IPv4 CIDR (a.b.c.d or a.b.c.d/n: octets 0-255 without leading zeros, n 0-32)",
            ),
            (
                "access",
                json!({"allowed_cidrs": ["1.2.3.4", "1.2.3.4"]}),
                "instance['access']['allowed_cidrs'] [\"1.2.3.4\",\"1.2.3.4\"] has non-unique elements",
            ),
            ("access", json!({"is_public": 5}), "instance['access']['is_public'] 5 is not of type 'boolean'"),
            ("replica_count", json!(0), "instance['replica_count'] 0 is less than the minimum of 1"),
            ("replica_count", json!(4), "instance['replica_count'] 4 is greater than the maximum of 3"),
            ("replica_count", json!("2"), "instance['replica_count'] \"2\" is not of type 'integer'"),
            ("locality", json!(""), "instance['locality'] '' is too short"),
            ("locality", json!(null), "instance['locality'] null is not of type 'string'"),
            ("configuration", json!(5), "instance['configuration'] 5 is not of type 'string'"),
            ("replica_of", json!("x"), "instance['replica_of'] \"x\" is not a 'uuid'"),
            ("restorePoint", json!({}), "instance['restorePoint'] 'backupRef' is a required property"),
            ("modules", json!([{"id": 5}]), "instance['modules'][0]['id'] 5 is not of type 'string'"),
            ("availability_zone", json!(null), "instance['availability_zone'] null is not of type 'string'"),
            ("datastore", json!({"type": ""}), "instance['datastore']['type'] \"\" is too short"),
            ("databases", json!([{"name": "a", "collate": 5}]), "instance['databases'][0]['collate'] 5 is not of type 'string'"),
        ] {
            assert_eq!(with(key, v), format!("Validation error: {expected}"), "{key}");
        }
    }

    #[test]
    fn create_takes_what_upstream_takes() {
        let r = create(json!({
            "name": "db", "flavorRef": "https://h/flavors/3", "volume": {"size": "007", "type": null},
            "configuration": "", "access": {"is_public": true, "extra": [1]},
            "users": [{"name": "u", "password": "p", "host": null}], "unknown": 1
        }))
        .unwrap();
        let c = r.command;
        assert_eq!(c.flavor_ref.as_deref(), Some("3"));
        assert_eq!(c.volume.map(|v| (v.size, v.volume_type)), Some((7, None)));
        assert_eq!(c.configuration, None);
        assert_eq!(c.access, Some(json!({"is_public": true, "extra": [1]})));
        assert_eq!(c.users[0].host, None);
        let r = create(json!({"name": "db", "configuration": "https://h/configurations/c1/"}));
        assert_eq!(r.unwrap().command.configuration.as_deref(), Some("c1"));
    }

    #[test]
    fn update_with_two_non_name_keys_is_refused() {
        let e = put(json!({"configuration": null, "datastore_version": "8.0"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Only one attribute (except 'name') is allowed to update."
        );
    }

    #[test]
    fn empty_update_detaches_configuration() {
        assert_eq!(
            put(json!({})).unwrap(),
            vec![InstanceCommand::DetachConfiguration]
        );
    }

    #[test]
    fn access_only_on_put_and_slave_of_only_on_patch() {
        let a = json!({"access": {"is_public": true}});
        assert!(patch(a.clone()).is_err());
        assert!(put(a).is_ok());
        let s = json!({"slave_of": null});
        assert_eq!(
            put(s.clone()).unwrap_err().to_string(),
            "Validation error: instance Additional properties are not allowed ('slave_of' was unexpected)"
        );
        assert_eq!(patch(s).unwrap(), vec![InstanceCommand::DetachReplica]);
    }

    #[test]
    fn update_commands_rename_first() {
        let id = "a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854";
        assert_eq!(
            put(json!({"name": "n", "configuration": id})).unwrap(),
            vec![
                InstanceCommand::RenameInstance { name: "n".into() },
                InstanceCommand::AttachConfiguration {
                    configuration_id: id.into()
                },
            ]
        );
        assert_eq!(
            put(json!({"configuration": "x"})).unwrap_err().to_string(),
            "Validation error: instance['configuration'] \"x\" is not a 'uuid'"
        );
        assert_eq!(
            put(json!({"access": {"is_public": true, "x": 1}})).unwrap_err().to_string(),
            "Validation error: instance['access'] Additional properties are not allowed ('x' was unexpected)"
        );
    }

    #[test]
    fn create_collects_passwords_apart_from_the_command() {
        let r = create(json!({
            "name": "db", "flavorRef": 1, "volume": {"size": 1},
            "databases": [{"name": "a"}],
            "users": [{"name": "u", "password": "s3cret", "databases": [{"name": "a"}]}],
            "nics": [{"net-id": "a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854"}]
        }))
        .unwrap();
        assert_eq!(r.passwords, vec!["s3cret".to_string()]);
        assert_eq!(
            r.command.nics[0].network_id.as_deref(),
            Some("a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854")
        );
        assert!(!format!("{:?}", r.command).contains("s3cret"));
    }
}
