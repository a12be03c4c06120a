//! PostgreSQL's [`GuestDb`]: roles have no host (the host is ignored); a database's
//! privileges are `CONNECT`, `CREATE`, `TEMPORARY` plus the `public` schema (PostgreSQL
//! 15 took that from PUBLIC).

use async_trait::async_trait;

use super::{Postgres, ADMIN};
use crate::local::guestdb::GuestDb;
use crate::local::quote::{pg_ident, pg_literal};
use crate::local::{Instance, LocalError};

impl Postgres {
    /// Whether the role exists.
    async fn role_exists(&self, inst: &Instance, name: &str) -> Result<bool, LocalError> {
        let sql = format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {};",
            pg_literal(name)?
        );
        Ok(self.psql(inst, ADMIN, &sql, &[]).await?.trim() == "1")
    }

    /// The databases one may connect to (not templates).
    async fn connectable(&self, inst: &Instance) -> Result<Vec<String>, LocalError> {
        let out = self
            .psql(
                inst,
                ADMIN,
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate;",
                &[],
            )
            .await?;
        Ok(out
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }
}

#[async_trait]
impl GuestDb for Postgres {
    async fn user_exists(
        &self,
        inst: &Instance,
        name: &str,
        _host: &str,
    ) -> Result<bool, LocalError> {
        self.role_exists(inst, name).await
    }

    async fn create_database_with(
        &self,
        inst: &Instance,
        name: &str,
        _character_set: Option<&str>,
        _collate: Option<&str>,
    ) -> Result<(), LocalError> {
        crate::local::Engine::create_database(self, inst, name).await
    }

    async fn drop_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError> {
        // FORCE: sessions still connected to it would make the drop fail.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", pg_ident(name)?);
        self.psql(inst, ADMIN, &sql, &[]).await.map(drop)
    }

    async fn drop_user(&self, inst: &Instance, name: &str, _host: &str) -> Result<(), LocalError> {
        if !self.role_exists(inst, name).await? {
            return Ok(());
        }
        let ident = pg_ident(name)?;
        // In every database its objects go to the administrator (the data stays: a
        // user's delete is not a database's), then its privileges go; then the role.
        for db in self.connectable(inst).await? {
            let sql = format!(
                "REASSIGN OWNED BY {ident} TO {};\nDROP OWNED BY {ident};",
                pg_ident(ADMIN)?
            );
            self.psql(inst, &db, &sql, &[]).await?;
        }
        let sql = format!("DROP ROLE IF EXISTS {ident};");
        self.psql(inst, ADMIN, &sql, &[]).await.map(drop)
    }

    async fn rename_user(
        &self,
        inst: &Instance,
        (name, _): (&str, &str),
        (new_name, _): (&str, &str),
    ) -> Result<(), LocalError> {
        if name == new_name || !self.role_exists(inst, name).await? {
            return Ok(());
        }
        let sql = format!(
            "ALTER ROLE {} RENAME TO {};",
            pg_ident(name)?,
            pg_ident(new_name)?
        );
        self.psql(inst, ADMIN, &sql, &[]).await.map(drop)
    }

    async fn set_password(
        &self,
        inst: &Instance,
        name: &str,
        _host: &str,
        password: &str,
    ) -> Result<(), LocalError> {
        let sql = format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {};",
            pg_ident(name)?,
            pg_literal(password)?
        );
        self.psql(inst, ADMIN, &sql, &[password]).await.map(drop)
    }

    async fn grant(
        &self,
        inst: &Instance,
        name: &str,
        _host: &str,
        databases: &[String],
    ) -> Result<(), LocalError> {
        let ident = pg_ident(name)?;
        for db in databases {
            let sql = format!(
                "GRANT ALL PRIVILEGES ON DATABASE {} TO {ident};",
                pg_ident(db)?
            );
            self.psql(inst, ADMIN, &sql, &[]).await?;
            let schema = format!("GRANT ALL ON SCHEMA public TO {ident};");
            self.psql(inst, db, &schema, &[]).await?;
        }
        Ok(())
    }

    async fn revoke(
        &self,
        inst: &Instance,
        name: &str,
        _host: &str,
        database: &str,
    ) -> Result<(), LocalError> {
        let ident = pg_ident(name)?;
        let sql = format!(
            "REVOKE ALL PRIVILEGES ON DATABASE {} FROM {ident};",
            pg_ident(database)?
        );
        self.psql(inst, ADMIN, &sql, &[]).await?;
        let schema = format!("REVOKE ALL ON SCHEMA public FROM {ident};");
        self.psql(inst, database, &schema, &[]).await.map(drop)
    }
}
