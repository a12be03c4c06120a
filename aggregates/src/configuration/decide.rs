//! `decide`: checks a configuration command against the group's state, the datastore
//! catalog and the parameter catalogue, and answers with the events that record it or
//! with upstream's refusal. Pure: time, identity, lookups and the number of instances
//! using the group come in through [`DecideCtx`].
//!
//! Check order follows upstream's controller (`trove/configuration/service.py`): load
//! the group (404), then resolve the datastore version (create), then validate values.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::{ConfigurationCommand, CreateConfiguration, UpdateMode};
use super::error::ConfigurationError;
use super::event::{ConfigurationCreated, ConfigurationEvent, Values};
use super::parameters::{self, ParameterType};
use super::state::Configuration;
use crate::catalog::{Catalog, Datastore, DatastoreVersion};
use crate::instance::{Caller, DatastoreRef, DatastoreRequest};

/// What `decide` may not fetch itself.
pub struct DecideCtx<'a> {
    /// The clock reading for this command.
    pub now: DateTime<Utc>,
    /// The id of the group the command addresses (the stream's id).
    pub configuration_id: Uuid,
    pub caller: &'a Caller,
    /// Datastores and their versions (and the operator's default datastore).
    pub catalog: &'a dyn Catalog,
    /// Non-deleted instances of any project that have this group attached. A delete is
    /// refused unless it is zero.
    pub attached_instances: usize,
}

/// Decides one command.
pub fn decide(
    state: &Configuration,
    cmd: &ConfigurationCommand,
    ctx: &DecideCtx,
) -> Result<Vec<ConfigurationEvent>, ConfigurationError> {
    match cmd {
        ConfigurationCommand::CreateConfiguration(c) => create(state, c, ctx),
        ConfigurationCommand::UpdateConfiguration {
            name,
            description,
            values,
            mode,
        } => {
            visible(state, ctx)?;
            let given = match values {
                Some(v) => validate_values(
                    &state.datastore.manager,
                    &state.datastore.datastore_name,
                    &state.datastore.version_name,
                    v,
                )?,
                None => Values::new(),
            };
            let values = match mode {
                UpdateMode::Replace => given,
                UpdateMode::Merge => {
                    let mut all = state.values.clone();
                    all.extend(given);
                    all
                }
            };
            Ok(vec![ConfigurationEvent::ConfigurationUpdated {
                name: name.clone().unwrap_or_else(|| state.name.clone()),
                description: description.clone().or_else(|| state.description.clone()),
                values,
                at: ctx.now,
            }])
        }
        ConfigurationCommand::DeleteConfiguration => {
            visible(state, ctx)?;
            // Upstream counts only the caller's project's instances, so an admin could
            // delete a group another project still uses; we count every project's.
            if ctx.attached_instances > 0 {
                return Err(ConfigurationError::InUse);
            }
            Ok(vec![ConfigurationEvent::ConfigurationDeleted {
                at: ctx.now,
            }])
        }
    }
}

/// The group exists, is not deleted, and the caller may see it (owner or admin).
fn visible(state: &Configuration, ctx: &DecideCtx) -> Result<(), ConfigurationError> {
    if state.is_live() && ctx.caller.can_see(&state.project_id) {
        Ok(())
    } else {
        Err(ConfigurationError::NotFound(ctx.configuration_id))
    }
}

fn create(
    state: &Configuration,
    c: &CreateConfiguration,
    ctx: &DecideCtx,
) -> Result<Vec<ConfigurationEvent>, ConfigurationError> {
    if state.exists() {
        return Err(ConfigurationError::AlreadyExists(ctx.configuration_id));
    }
    let (datastore, version) = resolve_datastore_version(ctx.catalog, &c.datastore)?;
    let values = validate_values(&version.manager, &datastore.name, &version.name, &c.values)?;
    Ok(vec![ConfigurationEvent::ConfigurationCreated(Box::new(
        ConfigurationCreated {
            configuration_id: ctx.configuration_id,
            project_id: ctx.caller.project_id.clone(),
            user_id: ctx.caller.user_id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            datastore: DatastoreRef {
                datastore_id: datastore.id,
                datastore_name: datastore.name.clone(),
                version_id: version.id,
                version_name: version.name.clone(),
                version_number: version.version.clone(),
                manager: version.manager.clone(),
            },
            values,
            at: ctx.now,
        },
    ))])
}

/// Checks `values` against the catalogue of `manager` (upstream's
/// `_validate_configuration`) and returns them keyed by the catalogue's names.
///
/// No values: nothing to check (upstream validates only a non-empty set, so even a
/// datastore without a catalogue accepts an empty group). Otherwise, per key in key
/// order: known (case-insensitively), of the declared type, within `min`/`max`.
/// Deviations, all on the lenient or safe side: an integer is accepted for a float
/// parameter (JSON has one number type); a boolean is refused for an integer parameter
/// (Python's `bool` is an `int`, so upstream takes `true` as 1); bounds are checked for
/// floats too; keys are stored lower-cased, so `Max_Connections` and `max_connections`
/// cannot both be set.
pub fn validate_values(
    manager: &str,
    datastore_name: &str,
    version_name: &str,
    values: &Values,
) -> Result<Values, ConfigurationError> {
    if values.is_empty() {
        return Ok(Values::new());
    }
    if parameters::parameters(manager).is_empty() {
        return Err(ConfigurationError::NotSupported {
            datastore: datastore_name.to_string(),
            version: version_name.to_string(),
        });
    }
    let mut out = Values::new();
    for (key, value) in values {
        let p = parameters::parameter(manager, key).ok_or_else(|| {
            ConfigurationError::UnknownParameter {
                key: key.clone(),
                datastore: datastore_name.to_string(),
                version: version_name.to_string(),
            }
        })?;
        let number = match p.kind {
            ParameterType::Integer => value.as_i64().map(|n| n as f64).or_else(|| {
                // Above i64::MAX still counts as an integer (and is then above max).
                value.as_u64().map(|n| n as f64)
            }),
            ParameterType::Float => value.as_f64(),
            ParameterType::Boolean | ParameterType::String => None,
        };
        let well_typed = match p.kind {
            ParameterType::Integer | ParameterType::Float => number.is_some(),
            ParameterType::Boolean => value.is_boolean(),
            ParameterType::String => value.is_string(),
        };
        if !well_typed {
            return Err(ConfigurationError::WrongType {
                key: key.clone(),
                kind: p.kind.as_str(),
            });
        }
        if let Some(n) = number {
            if let Some(min) = p.min.filter(|min| n < *min as f64) {
                return Err(ConfigurationError::BelowMinimum {
                    key: key.clone(),
                    min,
                });
            }
            if let Some(max) = p.max.filter(|max| n > *max as f64) {
                return Err(ConfigurationError::AboveMaximum {
                    key: key.clone(),
                    max,
                });
            }
        }
        out.insert(p.name.to_string(), value.clone());
    }
    Ok(out)
}

/// Datastore version resolution (spec `supporting-resources.md` §2.3 steps 1-5, the
/// rules of instance create): datastore by id or name, else the operator's default;
/// version by UUID within it, else by name (and number), else its default version; the
/// version must be active.
pub fn resolve_datastore_version(
    catalog: &dyn Catalog,
    req: &DatastoreRequest,
) -> Result<(Datastore, DatastoreVersion), ConfigurationError> {
    let datastore = match &req.datastore_type {
        Some(t) => catalog
            .datastore(t)
            .ok_or_else(|| ConfigurationError::DatastoreNotFound(t.clone()))?,
        None => {
            let name = catalog
                .default_datastore()
                .ok_or(ConfigurationError::NoDefaultDatastore)?;
            catalog
                .datastore(&name)
                .ok_or(ConfigurationError::DefaultDatastoreNotFound(name))?
        }
    };
    let key = match (&req.version, datastore.default_version_id) {
        (Some(v), _) => v.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => {
            return Err(ConfigurationError::DefaultVersionNotFound(
                datastore.name.clone(),
            ))
        }
    };
    let version = find_version(&datastore, &key, req.version_number.as_deref())?.clone();
    if !version.active {
        return Err(ConfigurationError::DatastoreVersionInactive(
            version.name.clone(),
        ));
    }
    Ok((datastore, version))
}

/// A version of `datastore` by UUID, or by name (and number when given).
fn find_version<'d>(
    datastore: &'d Datastore,
    key: &str,
    number: Option<&str>,
) -> Result<&'d DatastoreVersion, ConfigurationError> {
    if let Ok(id) = Uuid::parse_str(key) {
        return datastore
            .versions
            .iter()
            .find(|v| v.id == id)
            .ok_or(ConfigurationError::DatastoreVersionIdNotFound);
    }
    if let Some(n) = number {
        return datastore
            .versions
            .iter()
            .find(|v| v.name == key && v.version == n)
            .ok_or_else(|| ConfigurationError::DatastoreVersionNotFound(n.to_string()));
    }
    let mut matches = datastore.versions.iter().filter(|v| v.name == key);
    match (matches.next(), matches.next()) {
        (Some(v), None) => Ok(v),
        (None, _) => Err(ConfigurationError::DatastoreVersionNotFound(
            key.to_string(),
        )),
        (Some(_), Some(_)) => Err(ConfigurationError::DatastoreVersionAmbiguous(
            key.to_string(),
        )),
    }
}
