//! Configuration values on a running MariaDB: `SET GLOBAL` for each, and the server's
//! answer decides.
//!
//! - accepted: in force now;
//! - `ER_UNKNOWN_SYSTEM_VARIABLE` (1193): refused (an unknown name in `my.cnf` would
//!   stop the next start);
//! - `ER_INCORRECT_GLOBAL_LOCAL_VAR` (1238, read-only) or `ER_QUERY_CACHE_IS_DISABLED`
//!   (1651: `query_cache_type` on a server started with it off): written to `my.cnf`, in
//!   force after a restart;
//! - any other server error (1231 wrong value, 1232 wrong type, 1115 unknown character
//!   set, 1273 unknown collation…): the value is refused, `my.cnf` is not written, and
//!   the values set before it in the same apply are set back, so the server runs as
//!   before (a client may see them for the moment in between). A value no start could
//!   take never reaches the file.
//!
//! A value going back to what a start gives (a detached group: troved's memory setting
//! such as `256M`, which `SET` does not take, or the default) needs a restart when `SET`
//! refuses it: the start reads it from the file.
//!
//! Numbers go unquoted: `SET GLOBAL long_query_time = '2.5'` is refused (1232), `2.5`
//! is taken.

use super::{config_name, global_value, memory_settings, Mariadb};
use crate::local::{ConfigOutcome, Instance, LocalError};

/// What the server said to one `SET GLOBAL`.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Unknown,
    ReadOnly,
    /// The server's error number and message.
    Value(u32, String),
}

/// The server error in the client's stderr (`ERROR 1238 (HY000) at line 1: message`);
/// `None` for anything else (the client could not connect: error numbers 2000 and up).
fn refusal(stderr: &str) -> Option<Refusal> {
    let rest = &stderr[stderr.find("ERROR ")? + "ERROR ".len()..];
    let (code, rest) = rest.split_once(' ')?;
    let code: u32 = code.parse().ok()?;
    let message = rest
        .split_once(": ")
        .map_or(rest, |(_, m)| m)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    match code {
        1193 => Some(Refusal::Unknown),
        1238 | 1651 => Some(Refusal::ReadOnly),
        1000..=1999 => Some(Refusal::Value(code, message)),
        _ => None,
    }
}

/// The key MariaDB matches names by (`max-connections` is `max_connections`).
fn key(n: &str) -> String {
    n.replace('-', "_").to_ascii_lowercase()
}

/// The `SET GLOBAL` right-hand side a start would give `name` without the group: the
/// memory setting, else the server's default.
fn start_value(memory: &[(String, String)], name: &str) -> Result<String, LocalError> {
    match memory.iter().find(|(n, _)| key(n) == key(name)) {
        Some((_, v)) => global_value(v),
        None => Ok("DEFAULT".to_string()),
    }
}

impl Mariadb {
    /// `apply_config` on a running server (the module docs).
    pub(super) async fn apply_running(
        &self,
        inst: &Instance,
        values: &[(String, String)],
    ) -> Result<ConfigOutcome, LocalError> {
        let memory = inst.ram_mb.map(memory_settings).unwrap_or_default();
        let saved = Self::saved_values(inst);
        // The group's values, then those no longer set (going back to a start's value).
        let mut sets = Vec::new();
        for (name, value) in values {
            sets.push((name.clone(), global_value(value)?, true));
        }
        for (name, _) in &saved {
            if !values.iter().any(|(n, _)| key(n) == key(name)) {
                sets.push((name.clone(), start_value(&memory, name)?, false));
            }
        }
        let mut outcome = ConfigOutcome::Applied;
        for (i, (name, value, of_group)) in sets.iter().enumerate() {
            let sql = format!("SET GLOBAL {} = {};", config_name(name)?, value);
            let err = match self.sql(inst, &sql, &[]).await {
                Ok(_) => continue,
                Err(e) => e,
            };
            let refused = match &err {
                LocalError::Command { stderr, .. } => refusal(stderr),
                _ => None,
            };
            match refused {
                Some(Refusal::Unknown) => {
                    self.set_back(inst, &sets[..i], &saved, &memory).await;
                    return Err(LocalError::invalid(
                        "configuration",
                        format!("{name} is unknown"),
                    ));
                }
                Some(Refusal::ReadOnly) => outcome = ConfigOutcome::RestartRequired,
                Some(Refusal::Value(..)) if !of_group => outcome = ConfigOutcome::RestartRequired,
                Some(Refusal::Value(code, message)) => {
                    self.set_back(inst, &sets[..i], &saved, &memory).await;
                    return Err(LocalError::invalid(
                        "configuration",
                        format!(
                            "{name} = {value} is refused by the server (error {code}: {message})"
                        ),
                    ));
                }
                None => return Err(err),
            }
        }
        self.write_options(inst, values)?;
        Ok(outcome)
    }

    /// Best effort: the values of `done` (set by this apply before a refusal) go back to
    /// what the server ran with before it (the saved group's value, else a start's).
    async fn set_back(
        &self,
        inst: &Instance,
        done: &[(String, String, bool)],
        saved: &[(String, String)],
        memory: &[(String, String)],
    ) {
        for (name, _, _) in done {
            let before = match saved.iter().find(|(n, _)| key(n) == key(name)) {
                Some((_, v)) => global_value(v),
                None => start_value(memory, name),
            };
            let (Ok(before), Ok(ident)) = (before, config_name(name)) else {
                continue;
            };
            let sql = format!("SET GLOBAL {ident} = {before};");
            if let Err(e) = self.sql(inst, &sql, &[]).await {
                tracing::warn!(name = %name, error = %e, "could not set a configuration value back");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_variables_wait_for_a_restart() {
        assert_eq!(
            refusal("ERROR 1238 (HY000) at line 2: Variable 'log_bin' is a read only variable"),
            Some(Refusal::ReadOnly)
        );
        assert_eq!(
            refusal("ERROR 1193 (HY000) at line 2: Unknown system variable 'x'"),
            Some(Refusal::Unknown)
        );
        assert_eq!(
            refusal("ERROR 1115 (42000) at line 2: Unknown character set: 'bogus'"),
            Some(Refusal::Value(
                1115,
                "Unknown character set: 'bogus'".into()
            ))
        );
        assert!(matches!(
            refusal("ERROR 1231 (42000) at line 2: Variable 'sql_mode' can't be set to the value of 'bogus'"),
            Some(Refusal::Value(1231, _))
        ));
        assert_eq!(
            refusal("ERROR 2002 (HY000): Can't connect to local server through socket"),
            None
        );
        assert_eq!(refusal("killed"), None);
    }
}
