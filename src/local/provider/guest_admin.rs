//! The local provider's [`GuestAdmin`]: each change of an instance's databases, users or
//! root runs as real SQL on its server (`crate::local::guestdb` and the engines'
//! `create_database` / `create_user`), under the server's lock. A server that is down is
//! started first, as the supervisor would. The accounts troved created are kept in
//! `state.json` (`ServerRec::users`, names and hosts only) so that the access rules
//! (`allowed_cidrs`) cover the users created later too.
//!
//! Root: enabling sets the superuser's password (`root@'%'`, `postgres`) to the one the
//! API returned; disabling replaces it with a random one nobody is told. Either is kept
//! sealed in `state.json`, as prepare keeps the first one (`admin.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use super::state::ServerRec;
use super::{generate_password, provider_error, LocalProvider};
use crate::local::guestdb::GuestDb;
use crate::local::{access, running, Engine, Instance, UserSpec};
use crate::saga::guest_admin::{GuestAdmin, GuestChange};
use crate::saga::ports::{IdempotencyKey, ProviderError};

#[async_trait]
impl GuestAdmin for LocalProvider {
    async fn apply_change(
        &self,
        _key: &IdempotencyKey,
        server_id: &str,
        _manager: &str,
        change: &GuestChange,
    ) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let engine = self
            .engine_of(&rec)
            .filter(|_| rec.prepared)
            .ok_or_else(|| {
                ProviderError::Permanent(format!("server {server_id} is not prepared"))
            })?;
        let inst = self.instance(&rec);
        if running(&inst).is_none() {
            engine.start(&inst).await.map_err(|e| {
                ProviderError::Transient(format!("start the server to change it: {e}"))
            })?;
        }
        self.apply_on(server_id, &rec, &engine, &inst, change).await
    }
}

impl LocalProvider {
    async fn apply_on(
        &self,
        server_id: &str,
        rec: &ServerRec,
        engine: &Arc<dyn Engine>,
        inst: &Instance,
        change: &GuestChange,
    ) -> Result<(), ProviderError> {
        let db = engine.guest_db().ok_or_else(|| {
            ProviderError::Permanent("this datastore has no databases or users".into())
        })?;
        let e = provider_error;
        match change {
            GuestChange::CreateDatabases { databases } => {
                for (name, charset, collate) in databases {
                    db.create_database_with(inst, name, charset.as_deref(), collate.as_deref())
                        .await
                        .map_err(e)?;
                }
            }
            GuestChange::DeleteDatabase { name } => {
                db.drop_database(inst, name).await.map_err(e)?
            }
            GuestChange::CreateUsers { .. }
            | GuestChange::DeleteUser { .. }
            | GuestChange::UpdateUser { .. } => {
                return self
                    .apply_user_change(server_id, rec, engine, inst, change)
                    .await;
            }
            GuestChange::SetPasswords { users } => {
                for u in users {
                    db.set_password(inst, &u.name, &u.host, &u.password)
                        .await
                        .map_err(e)?;
                }
            }
            GuestChange::Grant {
                name,
                host,
                databases,
            } => db.grant(inst, name, host, databases).await.map_err(e)?,
            GuestChange::Revoke {
                name,
                host,
                database,
            } => db.revoke(inst, name, host, database).await.map_err(e)?,
            GuestChange::EnableRoot { password } => {
                self.set_root(server_id, rec, engine, inst, password.password.clone())
                    .await?
            }
            GuestChange::DisableRoot => {
                self.set_root(server_id, rec, engine, inst, generate_password())
                    .await?
            }
        }
        // The access rules copy an account's password and grants (MariaDB's per-CIDR
        // accounts) and lock the superuser to the allowed networks: a new password, a
        // grant, a revoke or root's password must reach those copies too, or the old
        // password keeps working from an allowed network.
        self.accounts_changed(server_id, engine, inst, &[], &[])
            .await
    }

    /// Creating, dropping, renaming a user: the accounts in `state.json` follow, and
    /// the access rules are applied to the accounts of both names.
    async fn apply_user_change(
        &self,
        server_id: &str,
        rec: &ServerRec,
        engine: &Arc<dyn Engine>,
        inst: &Instance,
        change: &GuestChange,
    ) -> Result<(), ProviderError> {
        let e = provider_error;
        let Some(db) = engine.guest_db() else {
            return Ok(());
        };
        match change {
            GuestChange::CreateUsers { users } => {
                let mut ours = rec.users.clone();
                for u in users {
                    self.refuse_foreign_account(db, inst, &ours, &u.name, &u.host)
                        .await?;
                    let spec = UserSpec {
                        name: u.name.clone(),
                        host: u.host.clone(),
                        password: u.password.clone(),
                        databases: u.databases.clone(),
                    };
                    // Recorded as troved's before the create: a retry after a failure
                    // part way (the account made, a later grant failed, the answer lost,
                    // a crash) or after a later user's failure finds it troved's, not
                    // foreign.
                    let account = (u.name.clone(), u.host.clone());
                    self.claim_account(server_id, &account).await?;
                    ours.push(account.clone());
                    engine.create_user(inst, &spec).await.map_err(e)?;
                    self.accounts_changed(server_id, engine, inst, &[account], &[])
                        .await?;
                }
            }
            GuestChange::DeleteUser { name, host } => {
                db.drop_user(inst, name, host).await.map_err(e)?;
                let gone = [(name.clone(), host.clone())];
                self.accounts_changed(server_id, engine, inst, &[], &gone)
                    .await?;
            }
            GuestChange::UpdateUser {
                name,
                host,
                new_name,
                new_host,
                password,
            } => {
                let to_name = new_name.as_deref().unwrap_or(name);
                let to_host = new_host.as_deref().unwrap_or(host);
                db.rename_user(inst, (name, host), (to_name, to_host))
                    .await
                    .map_err(e)?;
                if let Some(p) = password {
                    db.set_password(inst, to_name, to_host, &p.password)
                        .await
                        .map_err(e)?;
                }
                let renamed = (to_name, to_host) != (name.as_str(), host.as_str());
                let now = [(to_name.to_string(), to_host.to_string())];
                let gone = [(name.clone(), host.clone())];
                let (now, gone): (&[_], &[_]) = if renamed { (&now, &gone) } else { (&[], &[]) };
                self.accounts_changed(server_id, engine, inst, now, gone)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets the superuser's password and keeps it sealed in `state.json`.
    async fn set_root(
        &self,
        server_id: &str,
        rec: &ServerRec,
        engine: &Arc<dyn Engine>,
        inst: &Instance,
        password: String,
    ) -> Result<(), ProviderError> {
        engine
            .set_admin_password(inst, &password)
            .await
            .map_err(provider_error)?;
        let sealed = self.seal_admin_password(rec.instance_id, password).await?;
        self.update_rec(server_id, |s| s.sealed_admin_password = Some(sealed))
            .await
    }

    /// Records accounts created or dropped, then applies the access rules to them.
    async fn accounts_changed(
        &self,
        server_id: &str,
        engine: &Arc<dyn Engine>,
        inst: &Instance,
        added: &[(String, String)],
        removed: &[(String, String)],
    ) -> Result<(), ProviderError> {
        let (added, gone) = (added.to_vec(), removed.to_vec());
        self.update_rec(server_id, move |s| {
            s.users.retain(|a| !gone.contains(a));
            for a in added {
                if !s.users.contains(&a) {
                    s.users.push(a);
                }
            }
        })
        .await?;
        let rec = self.live_server(server_id).await?;
        let allowed = access::parse_all(&rec.allowed_cidrs).map_err(provider_error)?;
        // The removed accounts too: gone from the server, their copies at the allowed
        // networks (MariaDB's `name@'10.0.0.0/255.0.0.0'`) are dropped with them.
        let mut accounts = rec.users.clone();
        accounts.extend(removed.iter().filter(|a| !rec.users.contains(a)).cloned());
        engine
            .restrict_network(inst, &allowed, &accounts)
            .await
            .map_err(provider_error)
    }

    /// Records `account` as troved's in `state.json` (before its create runs).
    async fn claim_account(
        &self,
        server_id: &str,
        account: &(String, String),
    ) -> Result<(), ProviderError> {
        let a = account.clone();
        self.update_rec(server_id, move |s| {
            if !s.users.contains(&a) {
                s.users.push(a);
            }
        })
        .await
    }

    /// Refuses (for good) to create `name@host` when the server has that account and
    /// troved did not create it (`ours`): `CREATE USER` would otherwise take over an
    /// account of the server, of troved's administration or of an operator.
    async fn refuse_foreign_account(
        &self,
        db: &dyn GuestDb,
        inst: &Instance,
        ours: &[(String, String)],
        name: &str,
        host: &str,
    ) -> Result<(), ProviderError> {
        // PostgreSQL's users all have host `%` (the aggregate's rule): a pair compares.
        let known = ours.iter().any(|(n, h)| n == name && h == host);
        if known
            || !db
                .user_exists(inst, name, host)
                .await
                .map_err(provider_error)?
        {
            return Ok(());
        }
        Err(ProviderError::Permanent(format!(
            "the server has an account {name}@{host} already that troved did not create; \
             it is not taken over"
        )))
    }

    /// Changes the server's record in `state.json`.
    async fn update_rec(
        &self,
        server_id: &str,
        f: impl FnOnce(&mut ServerRec),
    ) -> Result<(), ProviderError> {
        self.change(|st| {
            let s = st
                .servers
                .get_mut(server_id)
                .ok_or_else(|| ProviderError::NotFound(format!("server {server_id}")))?;
            f(s);
            Ok(())
        })
        .await
    }
}
