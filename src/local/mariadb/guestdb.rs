//! MariaDB's [`GuestDb`]: users are accounts `'name'@'host'`; a database's privileges
//! are `ALL ON db.*` (wildcards in the name escaped, `quote::mariadb_grant_db`).

use async_trait::async_trait;

use super::Mariadb;
use crate::local::guestdb::GuestDb;
use crate::local::quote::{mariadb_account, mariadb_grant_db, mariadb_ident, mariadb_literal};
use crate::local::{Instance, LocalError};

impl Mariadb {
    /// Whether the account exists.
    async fn account_exists(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
    ) -> Result<bool, LocalError> {
        let sql = format!(
            "SELECT COUNT(*) FROM mysql.global_priv WHERE User = {} AND Host = {};",
            mariadb_literal(name)?,
            mariadb_literal(host)?
        );
        Ok(self.sql(inst, &sql, &[]).await?.trim() == "1")
    }

    /// The accounts with privileges on database `name` (`mysql.db`, which holds the
    /// name as the GRANT wrote it: plain or with its wildcards escaped).
    async fn grantees(
        &self,
        inst: &Instance,
        name: &str,
    ) -> Result<Vec<(String, String)>, LocalError> {
        let escaped = mariadb_grant_db(name)?;
        let escaped = escaped[1..escaped.len() - 1].replace("``", "`");
        let sql = format!(
            "SELECT User, Host FROM mysql.db WHERE Db IN ({}, {});",
            mariadb_literal(name)?,
            mariadb_literal(&escaped)?
        );
        Ok(self
            .sql(inst, &sql, &[])
            .await?
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(u, h)| (u.to_string(), h.to_string()))
            .collect())
    }
}

/// A character set or collation name: letters, digits and `_` only (they are
/// identifiers in the statement, not literals).
fn charset_name(what: &'static str, s: &str) -> Result<String, LocalError> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(LocalError::invalid(what, format!("{s:?} is not a name")));
    }
    Ok(s.to_string())
}

#[async_trait]
impl GuestDb for Mariadb {
    async fn user_exists(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
    ) -> Result<bool, LocalError> {
        self.account_exists(inst, name, host).await
    }

    async fn create_database_with(
        &self,
        inst: &Instance,
        name: &str,
        character_set: Option<&str>,
        collate: Option<&str>,
    ) -> Result<(), LocalError> {
        let mut sql = format!("CREATE DATABASE IF NOT EXISTS {}", mariadb_ident(name)?);
        if let Some(cs) = character_set {
            sql.push_str(&format!(
                " CHARACTER SET {}",
                charset_name("character set", cs)?
            ));
        }
        if let Some(co) = collate {
            sql.push_str(&format!(" COLLATE {}", charset_name("collation", co)?));
        }
        sql.push(';');
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn drop_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError> {
        // DROP DATABASE leaves the grants on it (`mysql.db`): a database of that name
        // created later would open to the old users at once.
        let grant_db = mariadb_grant_db(name)?;
        let mut sql = String::new();
        for (user, host) in self.grantees(inst, name).await? {
            sql.push_str(&format!(
                "REVOKE ALL PRIVILEGES ON {grant_db}.* FROM {};\n",
                mariadb_account(&user, &host)?
            ));
        }
        sql.push_str(&format!(
            "DROP DATABASE IF EXISTS {};",
            mariadb_ident(name)?
        ));
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn drop_user(&self, inst: &Instance, name: &str, host: &str) -> Result<(), LocalError> {
        let sql = format!("DROP USER IF EXISTS {};", mariadb_account(name, host)?);
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn rename_user(
        &self,
        inst: &Instance,
        (name, host): (&str, &str),
        (new_name, new_host): (&str, &str),
    ) -> Result<(), LocalError> {
        if (name, host) == (new_name, new_host) || !self.account_exists(inst, name, host).await? {
            return Ok(());
        }
        let sql = format!(
            "RENAME USER {} TO {};",
            mariadb_account(name, host)?,
            mariadb_account(new_name, new_host)?
        );
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn set_password(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        password: &str,
    ) -> Result<(), LocalError> {
        let sql = format!(
            "ALTER USER {} IDENTIFIED BY {};",
            mariadb_account(name, host)?,
            mariadb_literal(password)?
        );
        self.sql(inst, &sql, &[password]).await.map(drop)
    }

    async fn grant(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        databases: &[String],
    ) -> Result<(), LocalError> {
        // A GRANT to a missing account would create it (without a password where the
        // server's sql_mode lacks NO_AUTO_CREATE_USER): a user whose create was refused
        // gets nothing.
        if !self.account_exists(inst, name, host).await? {
            return Err(LocalError::invalid(
                "user",
                format!("{name}@{host} does not exist on the server"),
            ));
        }
        let account = mariadb_account(name, host)?;
        let mut sql = String::new();
        for db in databases {
            let db = mariadb_grant_db(db)?;
            sql.push_str(&format!("GRANT ALL PRIVILEGES ON {db}.* TO {account};\n"));
        }
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn revoke(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        database: &str,
    ) -> Result<(), LocalError> {
        let sql = format!(
            "REVOKE ALL PRIVILEGES ON {}.* FROM {};",
            mariadb_grant_db(database)?,
            mariadb_account(name, host)?
        );
        match self.sql(inst, &sql, &[]).await {
            // ER_NONEXISTING_GRANT (1141): nothing granted there, which is the goal.
            Err(LocalError::Command { stderr, .. }) if stderr.contains("1141") => Ok(()),
            other => other.map(drop),
        }
    }
}
