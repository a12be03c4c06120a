//! The configuration group bodies (spec `supporting-resources.md` §3): `POST
//! /configurations` and `PUT` / `PATCH /configurations/{id}`, and the commands they
//! become. What each value may be is the parameter catalogue's business (`decide`).

use std::collections::BTreeMap;

use aggregates::configuration::{ConfigurationCommand, CreateConfiguration, UpdateMode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{objects_only, present, DatastoreRequest, Name, RequestBody};

objects_only!(
    ConfigurationCreateBody,
    ConfigurationCreate,
    ConfigurationPutBody,
    ConfigurationPut,
    ConfigurationPatchBody,
    ConfigurationPatch,
);

/// Messages show a refused value whole (upstream's jsonschema does too).
fn render(v: &Value) -> String {
    v.to_string()
}

/// `POST /configurations`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"configuration": {
    "name": "cfg1", "values": {"max_connections": 100},
    "datastore": {"type": "mysql", "version": "8.0"}
}}))]
#[serde(remote = "Self")]
pub struct ConfigurationCreateBody {
    pub configuration: ConfigurationCreate,
}

impl RequestBody for ConfigurationCreateBody {
    const ROOT: &'static str = "configuration";

    fn render(v: &Value) -> String {
        render(v)
    }
}

/// The `configuration` object of a create. Unknown keys are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ConfigurationCreate {
    /// Parameter name → value (checked against the version's catalogue). Before
    /// `name`: a body without either is told about `values` first.
    pub values: BTreeMap<String, Value>,
    pub name: Name,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub description: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub datastore: Option<DatastoreRequest>,
}

impl ConfigurationCreate {
    pub fn command(self) -> ConfigurationCommand {
        ConfigurationCommand::CreateConfiguration(Box::new(CreateConfiguration {
            name: self.name.0,
            description: self.description.map(|d| d.0),
            values: self.values,
            datastore: self.datastore.unwrap_or_default().into(),
        }))
    }
}

/// `PUT /configurations/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"configuration": {"values": {"max_connections": 200}}}))]
#[serde(remote = "Self")]
pub struct ConfigurationPutBody {
    pub configuration: ConfigurationPut,
}

impl RequestBody for ConfigurationPutBody {
    const ROOT: &'static str = "configuration";

    fn render(v: &Value) -> String {
        render(v)
    }
}

/// The `configuration` object of a PUT: replaces the values (none when absent) and
/// sets `name`/`description` when given. Unknown keys are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ConfigurationPut {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub description: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub values: Option<BTreeMap<String, Value>>,
}

impl ConfigurationPut {
    pub fn command(self) -> ConfigurationCommand {
        ConfigurationCommand::UpdateConfiguration {
            name: self.name.map(|n| n.0),
            description: self.description.map(|d| d.0),
            values: self.values,
            mode: UpdateMode::Replace,
        }
    }
}

/// `PATCH /configurations/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"configuration": {"values": {"max_connections": 200}}}))]
#[serde(remote = "Self")]
pub struct ConfigurationPatchBody {
    pub configuration: ConfigurationPatch,
}

impl RequestBody for ConfigurationPatchBody {
    const ROOT: &'static str = "configuration";

    fn render(v: &Value) -> String {
        render(v)
    }
}

/// The `configuration` object of a PATCH: `values` are merged into the group's;
/// other keys are ignored (not even checked), as upstream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ConfigurationPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub values: Option<BTreeMap<String, Value>>,
}

impl ConfigurationPatch {
    pub fn command(self) -> ConfigurationCommand {
        ConfigurationCommand::UpdateConfiguration {
            name: None,
            description: None,
            values: self.values,
            mode: UpdateMode::Merge,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::from_value;
    use super::*;

    fn message<T: RequestBody + std::fmt::Debug>(body: Value) -> String {
        from_value::<T>(&body).unwrap_err().to_string()
    }

    #[test]
    fn create_messages_follow_upstreams_schema() {
        for (body, expected) in [
            (json!({}), "'configuration' is a required property"),
            (
                json!({"configuration": []}),
                "configuration [] is not of type 'object'",
            ),
            (
                json!({"configuration": {}}),
                "configuration 'values' is a required property",
            ),
            (
                json!({"configuration": {"values": {}}}),
                "configuration 'name' is a required property",
            ),
            (
                json!({"configuration": {"name": "g", "values": [1]}}),
                "configuration['values'] [1] is not of type 'object'",
            ),
            (
                json!({"configuration": {"name": "", "values": {}}}),
                "configuration['name'] \"\" is too short",
            ),
            (
                json!({"configuration": {"name": "g", "values": {}, "description": null}}),
                "configuration['description'] null is not of type 'string'",
            ),
            (
                json!({"configuration": {"name": "g", "values": {}, "datastore": 5}}),
                "configuration['datastore'] 5 is not of type 'object'",
            ),
        ] {
            assert_eq!(
                message::<ConfigurationCreateBody>(body),
                format!("Validation error: {expected}")
            );
        }
        // Long values are shown whole.
        let long = "-".repeat(300);
        assert_eq!(
            message::<ConfigurationCreateBody>(
                json!({"configuration": {"name": long, "values": {}}})
            ),
            format!("Validation error: configuration['name'] \"{long}\" is too long")
        );
    }

    #[test]
    fn updates_replace_or_merge() {
        let put = from_value::<ConfigurationPutBody>(&json!({"configuration": {"name": "n"}}))
            .unwrap()
            .configuration
            .command();
        assert_eq!(
            put,
            ConfigurationCommand::UpdateConfiguration {
                name: Some("n".into()),
                description: None,
                values: None,
                mode: UpdateMode::Replace,
            }
        );
        let patch = from_value::<ConfigurationPatchBody>(
            &json!({"configuration": {"name": 5, "values": {"a": 1}}}),
        )
        .unwrap()
        .configuration
        .command();
        assert_eq!(
            patch,
            ConfigurationCommand::UpdateConfiguration {
                name: None,
                description: None,
                values: Some([("a".to_string(), json!(1))].into_iter().collect()),
                mode: UpdateMode::Merge,
            }
        );
        assert_eq!(
            message::<ConfigurationPatchBody>(json!({"configuration": {"values": null}})),
            "Validation error: configuration['values'] null is not of type 'object'"
        );
    }
}
