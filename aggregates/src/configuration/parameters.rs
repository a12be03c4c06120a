//! The parameter catalogue of configuration groups: per datastore manager, the keys a
//! group may set, their type, bounds and whether the database must restart to apply
//! them (spec `supporting-resources.md` §3.1).
//!
//! Pure data, modelled on upstream's `validation-rules.json` files but smaller: a
//! handful of commonly tuned parameters per manager. Upstream keeps the catalogue per
//! datastore version in its database (operators may edit it); we key it by manager,
//! which is what selects the engine, so every version of a manager shares it.

use serde::{Deserialize, Serialize};

/// The declared type of a parameter; values are checked against it and rendered as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// A JSON integer, within `min`/`max`.
    Integer,
    /// A JSON string.
    String,
    /// `true`/`false`.
    Boolean,
    /// A JSON number, within `min`/`max`.
    Float,
}

impl ParameterType {
    /// The name upstream shows (`type` of the parameter views, and error messages).
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::Integer => "integer",
            ParameterType::String => "string",
            ParameterType::Boolean => "boolean",
            ParameterType::Float => "float",
        }
    }
}

/// One allowed parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// Lower-case name, as the engine spells it.
    pub name: &'static str,
    pub kind: ParameterType,
    /// Inclusive lower bound (numbers only).
    pub min: Option<i64>,
    /// Inclusive upper bound (numbers only).
    pub max: Option<i64>,
    /// Whether a changed value only takes effect after a database restart: attaching a
    /// group with such a key leaves the instance in `RESTART_REQUIRED`.
    pub restart_required: bool,
}

const fn int(name: &'static str, min: i64, max: i64, restart_required: bool) -> Parameter {
    Parameter {
        name,
        kind: ParameterType::Integer,
        min: Some(min),
        max: Some(max),
        restart_required,
    }
}

const fn float(name: &'static str, min: i64, max: i64, restart_required: bool) -> Parameter {
    Parameter {
        name,
        kind: ParameterType::Float,
        min: Some(min),
        max: Some(max),
        restart_required,
    }
}

const fn string(name: &'static str, restart_required: bool) -> Parameter {
    Parameter {
        name,
        kind: ParameterType::String,
        min: None,
        max: None,
        restart_required,
    }
}

const fn boolean(name: &'static str, restart_required: bool) -> Parameter {
    Parameter {
        name,
        kind: ParameterType::Boolean,
        min: None,
        max: None,
        restart_required,
    }
}

/// MySQL (`mysql` manager). Sorted by name: list endpoints show this order.
const MYSQL: &[Parameter] = &[
    int("auto_increment_increment", 1, 65535, false),
    int("auto_increment_offset", 1, 65535, false),
    int("autocommit", 0, 1, false),
    string("character_set_server", true),
    string("collation_server", true),
    int("connect_timeout", 2, 31_536_000, false),
    int("innodb_buffer_pool_size", 5_242_880, 68_719_476_736, true),
    int("innodb_log_file_size", 4_194_304, 4_294_967_295, true),
    int("local_infile", 0, 1, false),
    float("long_query_time", 0, 31_536_000, false),
    int("max_allowed_packet", 1024, 1_073_741_824, false),
    int("max_connections", 1, 100_000, false),
    boolean("performance_schema", true),
    string("sql_mode", false),
    int("wait_timeout", 1, 31_536_000, false),
];

/// MariaDB (`mariadb` manager): MySQL's keys without `performance_schema` (off by
/// default and rarely tuned there) plus the query cache, which MariaDB still has.
const MARIADB: &[Parameter] = &[
    int("auto_increment_increment", 1, 65535, false),
    int("auto_increment_offset", 1, 65535, false),
    int("autocommit", 0, 1, false),
    string("character_set_server", true),
    string("collation_server", true),
    int("connect_timeout", 2, 31_536_000, false),
    int("innodb_buffer_pool_size", 5_242_880, 68_719_476_736, true),
    int("innodb_log_file_size", 4_194_304, 4_294_967_295, true),
    int("local_infile", 0, 1, false),
    float("long_query_time", 0, 31_536_000, false),
    int("max_allowed_packet", 1024, 1_073_741_824, false),
    int("max_connections", 1, 100_000, false),
    int("query_cache_size", 0, 4_294_967_295, false),
    int("query_cache_type", 0, 2, true),
    string("sql_mode", false),
    int("wait_timeout", 1, 31_536_000, false),
];

/// PostgreSQL (`postgresql` manager). Memory sizes are in the server's units (kB for
/// `work_mem`, 8 kB pages for `effective_cache_size`); `shared_buffers` takes a string
/// with a unit (`"256MB"`), as in the default template.
const POSTGRESQL: &[Parameter] = &[
    boolean("autovacuum", false),
    int("effective_cache_size", 1, 2_147_483_647, false),
    boolean("fsync", false),
    int("log_min_duration_statement", -1, 2_147_483_647, false),
    int("maintenance_work_mem", 1024, 2_147_483_647, false),
    int("max_connections", 1, 262_143, true),
    int("max_wal_senders", 0, 262_143, true),
    float("random_page_cost", 0, 1_000_000, false),
    string("shared_buffers", true),
    string("timezone", false),
    int("work_mem", 64, 2_147_483_647, false),
];

/// The catalogue of a manager; empty for managers without configuration support.
pub fn parameters(manager: &str) -> &'static [Parameter] {
    match manager {
        "mysql" => MYSQL,
        "mariadb" => MARIADB,
        "postgresql" => POSTGRESQL,
        _ => &[],
    }
}

/// A parameter by name, case-insensitively (upstream lower-cases before matching).
pub fn parameter(manager: &str, name: &str) -> Option<&'static Parameter> {
    parameters(manager)
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Whether setting `keys` needs a restart: any key flagged so, or unknown to the
/// catalogue (we no longer know how it applies, so the safe answer is yes).
pub fn restart_required<'a>(manager: &str, keys: impl IntoIterator<Item = &'a str>) -> bool {
    keys.into_iter()
        .any(|k| parameter(manager, k).is_none_or(|p| p.restart_required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_are_sorted_unique_lower_case_and_bounded_only_for_numbers() {
        for manager in ["mysql", "mariadb", "postgresql"] {
            let ps = parameters(manager);
            assert!(ps.len() >= 5, "{manager} has a handful of parameters");
            for w in ps.windows(2) {
                assert!(
                    w[0].name < w[1].name,
                    "{manager}: {} then {}",
                    w[0].name,
                    w[1].name
                );
            }
            for p in ps {
                assert_eq!(p.name, p.name.to_ascii_lowercase());
                let numeric = matches!(p.kind, ParameterType::Integer | ParameterType::Float);
                assert_eq!(p.min.is_some(), numeric, "{manager}.{}", p.name);
                assert_eq!(p.max.is_some(), numeric, "{manager}.{}", p.name);
                if let (Some(lo), Some(hi)) = (p.min, p.max) {
                    assert!(lo <= hi, "{manager}.{}", p.name);
                }
            }
        }
    }

    #[test]
    fn unknown_manager_has_no_parameters() {
        assert!(parameters("redis").is_empty());
        assert_eq!(parameter("redis", "maxmemory"), None);
    }

    #[test]
    fn lookup_ignores_case() {
        let p = parameter("mysql", "Connect_Timeout").map(|p| p.name);
        assert_eq!(p, Some("connect_timeout"));
    }

    #[test]
    fn restart_is_required_when_any_key_needs_it_or_is_unknown() {
        assert!(!restart_required(
            "mysql",
            ["connect_timeout", "wait_timeout"]
        ));
        assert!(restart_required(
            "mysql",
            ["connect_timeout", "innodb_buffer_pool_size"]
        ));
        assert!(restart_required("mysql", ["no_such_key"]));
        assert!(!restart_required("mysql", []));
        assert!(restart_required("postgresql", ["max_connections"]));
        assert!(!restart_required("postgresql", ["work_mem"]));
    }
}
