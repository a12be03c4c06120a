//! Which databases each user of a prepare request gets.
//!
//! A user gets the databases it names at create (`users[].databases`), no others. A
//! name that is not one of the create's databases is skipped (with a warning): the guest
//! creates only the databases the request lists, and PostgreSQL cannot grant on a
//! database that does not exist (MariaDB could, which would let the user create it: the
//! same rule for both keeps the datastores alike).

use crate::local::UserSpec;
use crate::saga::ports::PrepareUser;

/// The engine's user to create for `user`, granted its databases among `created`.
pub fn user_spec(user: &PrepareUser, created: &[String]) -> UserSpec {
    let (databases, unknown): (Vec<String>, Vec<String>) = user
        .databases
        .iter()
        .cloned()
        .partition(|d| created.contains(d));
    if !unknown.is_empty() {
        tracing::warn!(user = %user.name, databases = ?unknown, "not granted: the create does not list these databases");
    }
    UserSpec {
        name: user.name.clone(),
        host: host_of(user),
        password: user.password.clone(),
        databases,
    }
}

/// The accounts `(name, host)` of the request's users, hosts as created.
pub fn accounts(users: &[PrepareUser]) -> Vec<(String, String)> {
    users.iter().map(|u| (u.name.clone(), host_of(u))).collect()
}

/// A user's host pattern: `%` when none was given.
fn host_of(user: &PrepareUser) -> String {
    if user.host.is_empty() {
        "%".into()
    } else {
        user.host.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(host: &str, dbs: &[&str]) -> PrepareUser {
        PrepareUser {
            name: "app".into(),
            host: host.into(),
            password: "pw".into(),
            databases: dbs.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_user_gets_only_its_own_created_databases() {
        let created = vec!["a".to_string(), "b".to_string()];
        let spec = user_spec(&user("", &["b", "zzz"]), &created);
        assert_eq!(spec.databases, vec!["b".to_string()]);
        assert_eq!(spec.host, "%");
        assert!(user_spec(&user("10.0.0.1", &[]), &created)
            .databases
            .is_empty());
    }
}
