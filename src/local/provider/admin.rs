//! The servers' superuser password (`postgres`, `root@'%'`): generated at the first
//! prepare (128 random bits), set on the server, and kept in `state.json` only sealed
//! with the instance's vault key (`crate::secrets`), so that a copy of `state.json`
//! holds no usable password and deleting the instance shreds it.
//!
//! troved never logs in with it: it administers the servers through their private
//! sockets (PostgreSQL `trust`, MariaDB `unix_socket`). It is kept so that a retried
//! prepare sets the same password again rather than a new one, and so that an operator
//! holding the vault can recover it. When it cannot be unsealed (its key is gone), the
//! next prepare sets a new one: nothing depends on the old one.

use aggregates::instance::SealedSecret;
use uuid::Uuid;

use super::state::{ServerRec, State};
use super::{generate_password, LocalProvider};
use crate::local::LocalError;
use crate::saga::ports::ProviderError;
use crate::secrets::{Vault, VaultError};

impl LocalProvider {
    /// The superuser password of `rec` for a prepare: its sealed one, unsealed; or a
    /// fresh one (first prepare, or a key that is gone) with its sealed form to record.
    pub(super) async fn admin_password(
        &self,
        rec: &ServerRec,
    ) -> Result<(String, Option<SealedSecret>), ProviderError> {
        let vault = self.inner.vault.clone();
        let (id, sealed) = (rec.instance_id, rec.sealed_admin_password.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(sealed) = &sealed {
                if let Some(pw) = vault.unseal(id, sealed)? {
                    return Ok((pw, None));
                }
                tracing::warn!(instance = %id, "the superuser password cannot be unsealed (its key is gone): setting a new one");
            }
            let pw = generate_password();
            let sealed = vault.seal_for(id, &pw)?;
            Ok((pw, Some(sealed)))
        })
        .await
        .map_err(|e| ProviderError::Transient(format!("vault task: {e}")))?
        .map_err(|e: VaultError| ProviderError::Transient(e.to_string()))
    }
}

impl LocalProvider {
    /// `password` sealed with instance `id`'s key (a replica keeps its primary's).
    pub(super) async fn seal_admin_password(
        &self,
        id: Uuid,
        password: String,
    ) -> Result<SealedSecret, ProviderError> {
        let vault = self.inner.vault.clone();
        tokio::task::spawn_blocking(move || vault.seal_for(id, &password))
            .await
            .map_err(|e| ProviderError::Transient(format!("vault task: {e}")))?
            .map_err(|e: VaultError| ProviderError::Transient(e.to_string()))
    }
}

/// Seals the plaintext superuser passwords a state written by an older troved holds
/// (deleted servers' are dropped). Whether anything changed. Blocking.
pub(super) fn seal_plaintext(state: &mut State, vault: &Vault) -> Result<bool, LocalError> {
    let mut changed = false;
    for s in state.servers.values_mut() {
        let Some(pw) = s.admin_password.take() else {
            continue;
        };
        changed = true;
        if !s.deleted && s.sealed_admin_password.is_none() {
            s.sealed_admin_password = Some(seal(vault, s.instance_id, &pw)?);
        }
    }
    Ok(changed)
}

fn seal(vault: &Vault, id: Uuid, pw: &str) -> Result<SealedSecret, LocalError> {
    vault
        .seal_for(id, pw)
        .map_err(|e| LocalError::Unusable(format!("sealing a superuser password: {e}")))
}
