//! The engines' side of databases, users and root after prepare (issue #15, ADR 0010):
//! dropping databases and users, renaming users, new passwords, grants and revokes.
//! Creating users is [`super::Engine::create_user`], as at prepare.
//!
//! Every operation is idempotent (dropping what is gone, granting what is granted,
//! revoking what is not granted succeed): the saga may retry a step whose answer was
//! lost. Names and passwords reach the servers only through `super::quote`.

use async_trait::async_trait;

use super::{Instance, LocalError};

/// Databases and users of a running server, beyond what prepare creates.
#[async_trait]
pub trait GuestDb: Send + Sync {
    /// `CREATE DATABASE` with a character set and collation where the engine has them
    /// (MariaDB; PostgreSQL takes the server's, as upstream's guest does). Exists
    /// already: fine.
    async fn create_database_with(
        &self,
        inst: &Instance,
        name: &str,
        character_set: Option<&str>,
        collate: Option<&str>,
    ) -> Result<(), LocalError>;
    /// Whether the account `name@host` exists on the server (PostgreSQL: the role
    /// `name`, whatever the host). A user create refuses one that troved did not create:
    /// it would take over an account of the server, of troved or of an operator.
    async fn user_exists(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
    ) -> Result<bool, LocalError>;
    /// `DROP DATABASE` (gone already: fine).
    async fn drop_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError>;
    /// Drops the user and what it owns (gone already: fine).
    async fn drop_user(&self, inst: &Instance, name: &str, host: &str) -> Result<(), LocalError>;
    /// Renames `name@host` to `new_name@new_host` (already renamed: fine).
    async fn rename_user(
        &self,
        inst: &Instance,
        from: (&str, &str),
        to: (&str, &str),
    ) -> Result<(), LocalError>;
    /// Sets the user's password.
    async fn set_password(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        password: &str,
    ) -> Result<(), LocalError>;
    /// Grants the user all privileges on each database.
    async fn grant(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        databases: &[String],
    ) -> Result<(), LocalError>;
    /// Revokes the user's privileges on the database.
    async fn revoke(
        &self,
        inst: &Instance,
        name: &str,
        host: &str,
        database: &str,
    ) -> Result<(), LocalError>;
}
