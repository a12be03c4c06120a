//! The backup body (`POST /backups`, upstream `apischema.backup['create']`) and the
//! command it becomes.

use aggregates::backup::CreateBackup;
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::{checked_by, objects_only, present, Broken, HyphenatedUuid, Name, RequestBody};
use crate::http::error::{ApiError, ApiResult};

objects_only!(BackupCreateBody, BackupCreate);

/// `POST /backups`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"backup": {
    "name": "nightly", "instance": "44b277eb-39be-4921-be31-3d61b43651d7",
    "description": "before the upgrade", "incremental": 0
}}))]
#[serde(remote = "Self")]
pub struct BackupCreateBody {
    pub backup: BackupCreate,
}

impl RequestBody for BackupCreateBody {
    const ROOT: &'static str = "backup";
}

/// The `backup` object of a create. Unknown keys are ignored (upstream's schema allows
/// them); `storage_driver` is accepted and ignored: where artifacts go is the
/// operator's `--backup-store`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct BackupCreate {
    pub name: Name,
    /// The instance to back up (required unless `restore_from`, which troved refuses).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub instance: Option<HyphenatedUuid>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub description: Option<Name>,
    /// Take an increment of this backup (of the same instance).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub parent_id: Option<HyphenatedUuid>,
    /// 1: an increment of the instance's last completed backup (a full one if none).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub incremental: Option<Incremental>,
    /// The storage location name (a container of the backup store).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub swift_container: Option<Name>,
    /// Cross-region restore of an artifact stored elsewhere: refused (400).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub restore_from: Option<Value>,
}

impl BackupCreate {
    /// The create command, after the rules the schema cannot say.
    pub fn command(self) -> ApiResult<CreateBackup> {
        if self.restore_from.is_some() {
            return Err(ApiError::BadRequest(
                "restore_from is not supported: backups are restored with an instance create's restorePoint.".into(),
            ));
        }
        let instance = self
            .instance
            .ok_or_else(|| ApiError::BadRequest("instance is missing.".into()))?;
        let container = match self.swift_container {
            Some(Name(c)) if !crate::backup_store::valid_name(&c) => {
                return Err(ApiError::BadRequest(format!(
                    "Invalid swift_container '{c}': a storage location name is 1 to 128 characters of letters, digits, '.', '_' and '-', not starting with '.'."
                )))
            }
            Some(Name(c)) => Some(c),
            None => None,
        };
        Ok(CreateBackup {
            name: self.name.0,
            description: self.description.map(|d| d.0),
            instance_id: instance.0,
            parent_id: self.parent_id.map(|p: HyphenatedUuid| -> Uuid { p.0 }),
            incremental: self.incremental.is_some_and(|i| i.0),
            container,
        })
    }
}

/// `incremental`: upstream's `boolean_string`, an integer 0 or 1.
#[derive(Clone, Copy, Debug)]
pub struct Incremental(pub bool);

impl Incremental {
    fn check(v: &Value) -> Result<Incremental, Broken> {
        match v.as_u64() {
            Some(n @ 0..=1) => Ok(Incremental(n == 1)),
            Some(_) => Err(Broken::because("is greater than the maximum of 1")),
            _ if v.is_i64() => Err(Broken::because("is less than the minimum of 0")),
            _ => Err(Broken::not_of_type("integer")),
        }
    }
}
checked_by!(Incremental);

impl PartialSchema for Incremental {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(1))
            .description(Some("1: incremental; 0: full."))
            .into()
    }
}
impl ToSchema for Incremental {}
