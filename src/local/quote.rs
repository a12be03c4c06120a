//! Quoting of names and values in SQL, connection strings and configuration files.
//!
//! Database and user names and passwords come from API users. They reach the servers only
//! through these functions, so that no name or password can end a literal or an
//! identifier early (SQL injection). Each function states the grammar it relies on. NUL
//! cannot be represented by either server in a name or a password, so it is refused
//! rather than quoted; PostgreSQL names longer than 63 bytes would be truncated silently,
//! so they are refused too.

use super::LocalError;

/// PostgreSQL's longest identifier (NAMEDATALEN - 1 bytes).
pub const PG_MAX_IDENT: usize = 63;
/// MariaDB's longest database name and user name (characters).
pub const MARIADB_MAX_DB: usize = 64;
pub const MARIADB_MAX_USER: usize = 80;

fn no_nul(what: &'static str, s: &str) -> Result<(), LocalError> {
    if s.contains('\0') {
        return Err(LocalError::invalid(what, "contains a NUL character"));
    }
    Ok(())
}

fn name(what: &'static str, s: &str, max: usize, len: usize) -> Result<(), LocalError> {
    no_nul(what, s)?;
    if s.is_empty() || len > max {
        return Err(LocalError::invalid(
            what,
            format!("must be 1 to {max} long, is {len}"),
        ));
    }
    Ok(())
}

/// A PostgreSQL quoted identifier: `"…"` with `"` doubled. Case and every other
/// character are kept as given.
pub fn pg_ident(s: &str) -> Result<String, LocalError> {
    name("name", s, PG_MAX_IDENT, s.len())?;
    Ok(format!("\"{}\"", s.replace('"', "\"\"")))
}

/// A PostgreSQL string literal: `'…'` with `'` doubled. Relies on
/// `standard_conforming_strings = on` (the default since 9.1, and set by every script
/// this module sends), under which a backslash is an ordinary character.
pub fn pg_literal(s: &str) -> Result<String, LocalError> {
    no_nul("value", s)?;
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// A value in a libpq connection string: `'…'` with `\` and `'` escaped by a backslash.
pub fn pg_conninfo_value(s: &str) -> Result<String, LocalError> {
    no_nul("value", s)?;
    Ok(format!(
        "'{}'",
        s.replace('\\', "\\\\").replace('\'', "\\'")
    ))
}

/// A MariaDB quoted identifier (database name): `` `…` `` with `` ` `` doubled.
pub fn mariadb_ident(s: &str) -> Result<String, LocalError> {
    name("database name", s, MARIADB_MAX_DB, s.chars().count())?;
    Ok(format!("`{}`", s.replace('`', "``")))
}

/// A MariaDB string literal: `'…'` with `'` doubled. Relies on the session's `sql_mode`
/// containing `NO_BACKSLASH_ESCAPES` (every script this module sends sets it first), under
/// which a backslash is an ordinary character, as in PostgreSQL.
pub fn mariadb_literal(s: &str) -> Result<String, LocalError> {
    no_nul("value", s)?;
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// A MariaDB account: `'user'@'host'`.
pub fn mariadb_account(user: &str, host: &str) -> Result<String, LocalError> {
    name("user name", user, MARIADB_MAX_USER, user.chars().count())?;
    name("host", host, 255, host.chars().count())?;
    Ok(format!(
        "{}@{}",
        mariadb_literal(user)?,
        mariadb_literal(host)?
    ))
}

/// The database part of a MariaDB `GRANT … ON <db>.*`: there `_` and `%` are wildcards
/// (`my_db` would also grant `myxdb`), so they are escaped with a backslash, which the
/// grant matcher reads whatever the `sql_mode`.
pub fn mariadb_grant_db(s: &str) -> Result<String, LocalError> {
    mariadb_ident(s)?;
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '_' | '%' | '\\' => vec!['\\', c],
            '`' => vec!['`', '`'],
            c => vec![c],
        })
        .collect();
    Ok(format!("`{escaped}`"))
}

/// A configuration parameter name: lower-case letters, digits, `_` and `.` (custom
/// PostgreSQL classes), starting with a letter; MariaDB's `-` spelling is accepted and
/// written as `_`.
pub fn config_name(s: &str) -> Result<String, LocalError> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(LocalError::invalid("configuration name", s.to_string()));
    }
    Ok(s.to_ascii_lowercase().replace('-', "_"))
}

/// A configuration value for an option file or `postgresql.conf`: printable, one line,
/// none of the characters either file format treats specially (`'`, `"`, `\`, `#`).
pub fn config_value(s: &str) -> Result<&str, LocalError> {
    let ok = s.len() <= 1024
        && s.chars()
            .all(|c| !c.is_control() && !matches!(c, '\'' | '"' | '\\' | '#'));
    if !ok {
        return Err(LocalError::invalid("configuration value", s.to_string()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_identifiers_double_their_quotes_and_keep_everything_else() {
        assert_eq!(pg_ident("orders").unwrap(), "\"orders\"");
        assert_eq!(pg_ident("Mixed Case").unwrap(), "\"Mixed Case\"");
        assert_eq!(
            pg_ident("x\"; DROP TABLE t; --").unwrap(),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(pg_ident("a\\b").unwrap(), "\"a\\b\"");
        assert!(pg_ident("").is_err());
        assert!(pg_ident("nul\0").is_err());
        assert!(
            pg_ident(&"x".repeat(64)).is_err(),
            "truncated silently otherwise"
        );
        assert!(pg_ident(&"x".repeat(63)).is_ok());
        // 63 bytes, not characters: é is two bytes.
        assert!(pg_ident(&"é".repeat(32)).is_err());
    }

    #[test]
    fn postgres_literals_double_single_quotes_only() {
        assert_eq!(pg_literal("pw").unwrap(), "'pw'");
        assert_eq!(pg_literal("it's").unwrap(), "'it''s'");
        assert_eq!(pg_literal("a\\'; x").unwrap(), "'a\\''; x'");
        assert_eq!(pg_literal("").unwrap(), "''");
        assert_eq!(pg_literal("line\nbreak").unwrap(), "'line\nbreak'");
        assert!(pg_literal("\0").is_err());
    }

    #[test]
    fn conninfo_values_escape_backslash_and_quote() {
        assert_eq!(pg_conninfo_value("db").unwrap(), "'db'");
        assert_eq!(pg_conninfo_value("a b=c'd\\e").unwrap(), "'a b=c\\'d\\\\e'");
    }

    #[test]
    fn mariadb_identifiers_literals_and_accounts_quote_their_delimiters() {
        assert_eq!(mariadb_ident("shop").unwrap(), "`shop`");
        assert_eq!(mariadb_ident("a`b").unwrap(), "`a``b`");
        assert!(mariadb_ident(&"d".repeat(65)).is_err());
        assert_eq!(mariadb_literal("o'k\\").unwrap(), "'o''k\\'");
        assert_eq!(mariadb_account("app'--", "%").unwrap(), "'app''--'@'%'");
        assert!(mariadb_account("", "%").is_err());
        assert!(mariadb_account(&"u".repeat(81), "%").is_err());
        assert!(mariadb_literal("a\0").is_err());
    }

    #[test]
    fn mariadb_grant_patterns_escape_wildcards() {
        assert_eq!(mariadb_grant_db("my_db").unwrap(), "`my\\_db`");
        assert_eq!(mariadb_grant_db("100%").unwrap(), "`100\\%`");
        assert_eq!(mariadb_grant_db("a`\\").unwrap(), "`a``\\\\`");
    }

    #[test]
    fn configuration_names_and_values_are_restricted_to_safe_characters() {
        assert_eq!(config_name("max_connections").unwrap(), "max_connections");
        assert_eq!(
            config_name("innodb-buffer-pool-size").unwrap(),
            "innodb_buffer_pool_size"
        );
        assert_eq!(
            config_name("auto_explain.log_min_duration").unwrap(),
            "auto_explain.log_min_duration"
        );
        for bad in ["", "1x", "a b", "a=b", "a\nb", "a;b"] {
            assert!(config_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(config_value("128MB").unwrap(), "128MB");
        assert_eq!(
            config_value("STRICT_TRANS_TABLES,NO_ZERO_DATE").unwrap(),
            "STRICT_TRANS_TABLES,NO_ZERO_DATE"
        );
        for bad in ["a\nb", "x'", "x\"", "x#y", "a\\b", "\0"] {
            assert!(config_value(bad).is_err(), "{bad:?}");
        }
    }
}
