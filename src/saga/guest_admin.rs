//! The guest's databases, users and root (ADR 0010): the port a provider implements,
//! and the saga step that applies the instance's queued changes to it, in order.
//!
//! Each change was recorded by an event on the instance's stream and queued on the
//! folded state (`Instance::guest_changes`); this step applies the first one through
//! [`GuestAdmin::apply_change`] and records `GuestChangeApplied`, or, when the provider
//! refuses it for good (or keeps failing), `GuestChangeFailed` with the fault. Passwords
//! are unsealed from the vault for the guest only, never logged or recorded.

use aggregates::instance::{Instance, InstanceCommand, InstanceEvent, SealedSecret};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ports::{IdempotencyKey, ProviderError};
use super::{Outcome, SagaRunner, StepError};

/// A user the guest creates (or whose password it sets).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestAccount {
    pub name: String,
    /// `%` for any host.
    pub host: String,
    /// Unsealed for the guest only: never logged (`Debug` blanks it).
    pub password: String,
    /// The databases it gets (by name).
    pub databases: Vec<String>,
}

impl std::fmt::Debug for GuestAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestAccount")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("password", &"<hidden>")
            .field("databases", &self.databases)
            .finish()
    }
}

/// One change of the guest's databases, users or root. Every change is idempotent on
/// the guest (creating what exists, dropping what is gone succeed), so a step retried
/// after a lost answer changes nothing more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GuestChange {
    CreateDatabases {
        /// `(name, character set, collation)`.
        databases: Vec<(String, Option<String>, Option<String>)>,
    },
    DeleteDatabase {
        name: String,
    },
    CreateUsers {
        users: Vec<GuestAccount>,
    },
    DeleteUser {
        name: String,
        host: String,
    },
    /// Rename and/or new host and/or new password (`password.databases` unused).
    UpdateUser {
        name: String,
        host: String,
        new_name: Option<String>,
        new_host: Option<String>,
        password: Option<GuestAccount>,
    },
    SetPasswords {
        users: Vec<GuestAccount>,
    },
    Grant {
        name: String,
        host: String,
        databases: Vec<String>,
    },
    Revoke {
        name: String,
        host: String,
        database: String,
    },
    /// Sets the superuser's password (`root`, `postgres`) and allows its network logins.
    EnableRoot {
        password: GuestAccount,
    },
    /// Replaces the superuser's password by one nobody is told.
    DisableRoot,
}

impl GuestChange {
    /// What a provider may record about the change: everything but passwords.
    pub fn public_detail(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        strip_passwords(&mut v);
        v
    }
}

fn strip_passwords(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("password");
            m.values_mut().for_each(strip_passwords);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_passwords),
        _ => {}
    }
}

/// Changes the databases, users and root of a guest.
#[async_trait]
pub trait GuestAdmin: Send + Sync {
    /// Applies `change` to the guest of `server_id` (datastore `manager`); idempotent per
    /// `key` and by the nature of each change.
    async fn apply_change(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        manager: &str,
        change: &GuestChange,
    ) -> Result<(), ProviderError>;
}

/// The first queued change, if the instance has a server to apply it on.
pub fn next_change(s: &Instance) -> Option<u64> {
    s.server_id.as_ref()?;
    s.guest_changes.first().map(|p| p.seq)
}

impl SagaRunner {
    /// Step `ApplyGuestChange`: applies change `seq` and records it applied.
    pub(super) async fn apply_guest_change(
        &self,
        id: Uuid,
        s: &Instance,
        seq: u64,
    ) -> Result<Outcome, StepError> {
        let Some(pending) = s.guest_changes.iter().find(|p| p.seq == seq) else {
            return Ok(Outcome::Wait);
        };
        // A change that depended on a refused one is refused too, not applied.
        aggregates::instance::guestdb::still_applies(pending).map_err(ProviderError::Permanent)?;
        let change = self.guest_change_of(id, &pending.event).await?;
        let server = s.server_id.clone().unwrap_or_default();
        let manager = s
            .datastore
            .as_ref()
            .map(|d| d.manager.clone())
            .unwrap_or_default();
        let key = IdempotencyKey::new(id, &format!("guest-change/{seq}"));
        self.providers
            .guest_admin
            .apply_change(&key, &server, &manager, &change)
            .await?;
        Ok(Outcome::Record(InstanceCommand::RecordGuestChangeApplied {
            seq,
        }))
    }

    /// The change an event asks of the guest, its passwords unsealed.
    async fn guest_change_of(
        &self,
        id: Uuid,
        event: &InstanceEvent,
    ) -> Result<GuestChange, StepError> {
        use InstanceEvent as E;
        Ok(match event {
            E::DatabasesCreated { databases, .. } => GuestChange::CreateDatabases {
                databases: databases
                    .iter()
                    .map(|d| (d.name.clone(), d.character_set.clone(), d.collate.clone()))
                    .collect(),
            },
            E::DatabaseDeleted { name, .. } => GuestChange::DeleteDatabase { name: name.clone() },
            E::UsersCreated { users, .. } => {
                let mut out = Vec::with_capacity(users.len());
                for u in users {
                    out.push(
                        self.account(id, &u.name, &u.host, &u.password, &u.databases)
                            .await?,
                    );
                }
                GuestChange::CreateUsers { users: out }
            }
            E::UserDeleted { name, host, .. } => GuestChange::DeleteUser {
                name: name.clone(),
                host: host.clone(),
            },
            E::UserAttributesUpdated {
                name,
                host,
                new_name,
                new_host,
                password,
                ..
            } => {
                let password = match password {
                    Some(p) => Some(self.account(id, name, host, p, &[]).await?),
                    None => None,
                };
                GuestChange::UpdateUser {
                    name: name.clone(),
                    host: host.clone(),
                    new_name: new_name.clone(),
                    new_host: new_host.clone(),
                    password,
                }
            }
            E::UserPasswordsChanged { users, .. } => {
                let mut out = Vec::with_capacity(users.len());
                for u in users {
                    out.push(self.account(id, &u.name, &u.host, &u.password, &[]).await?);
                }
                GuestChange::SetPasswords { users: out }
            }
            E::UserAccessGranted {
                name,
                host,
                databases,
                ..
            } => GuestChange::Grant {
                name: name.clone(),
                host: host.clone(),
                databases: databases.clone(),
            },
            E::UserAccessRevoked {
                name,
                host,
                database,
                ..
            } => GuestChange::Revoke {
                name: name.clone(),
                host: host.clone(),
                database: database.clone(),
            },
            E::RootEnabled { password, .. } => GuestChange::EnableRoot {
                password: self.account(id, "root", "%", password, &[]).await?,
            },
            _ => GuestChange::DisableRoot,
        })
    }

    /// A user with its password unsealed; a key that is gone fails the change for good.
    async fn account(
        &self,
        id: Uuid,
        name: &str,
        host: &str,
        sealed: &SealedSecret,
        databases: &[String],
    ) -> Result<GuestAccount, StepError> {
        let (vault, s) = (self.vault.clone(), sealed.clone());
        let password = tokio::task::spawn_blocking(move || vault.unseal(id, &s))
            .await??
            .ok_or_else(|| {
                StepError::SecretUnavailable(format!(
                    "The password of user {name} cannot be unsealed: key {} is not in the vault.",
                    sealed.key_id
                ))
            })?;
        Ok(GuestAccount {
            name: name.to_string(),
            host: host.to_string(),
            password,
            databases: databases.to_vec(),
        })
    }
}

/// The fault message of a change of databases, users or root the guest refused.
pub(super) fn failure_message(id: uuid::Uuid, e: &ProviderError) -> String {
    format!("Failed to change the databases or users of instance {id}\n{e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::plan::{plan, Policy, Step};
    use aggregates::instance::{PendingGuestChange, Task};

    fn idle_with_changes(seqs: &[u64]) -> Instance {
        Instance {
            id: Some(Uuid::from_u128(1)),
            server_id: Some("server-1".into()),
            guest_prepared: true,
            task: Task::None,
            guest_changes: seqs
                .iter()
                .map(|&seq| PendingGuestChange {
                    seq,
                    event: InstanceEvent::RootDisabled {
                        at: chrono::DateTime::UNIX_EPOCH,
                    },
                    before: Default::default(),
                })
                .collect(),
            ..Instance::default()
        }
    }

    #[test]
    fn an_idle_instance_applies_its_first_queued_change() {
        let now = chrono::Utc::now();
        let s = idle_with_changes(&[3, 4]);
        assert_eq!(
            plan(&s, None, now, &Policy::default()),
            Some(Step::ApplyGuestChange { seq: 3 })
        );
        assert_eq!(
            plan(&idle_with_changes(&[]), None, now, &Policy::default()),
            None
        );
        // Another workflow first: the change waits.
        let busy = Instance {
            task: Task::Upgrading,
            ..idle_with_changes(&[3])
        };
        assert_ne!(
            plan(&busy, None, now, &Policy::default()),
            Some(Step::ApplyGuestChange { seq: 3 })
        );
        // The configuration is applied before any change.
        let unconfigured = Instance {
            configuration_id: Some(Uuid::from_u128(9)),
            configuration_revision: 1,
            ..idle_with_changes(&[3])
        };
        assert!(matches!(
            plan(&unconfigured, None, now, &Policy::default()),
            Some(Step::ApplyConfiguration { .. })
        ));
    }

    #[test]
    fn public_detail_has_no_password_anywhere() {
        let acct = GuestAccount {
            name: "app".into(),
            host: "%".into(),
            password: "s3cret-pw".into(),
            databases: vec![],
        };
        let change = GuestChange::CreateUsers {
            users: vec![acct.clone()],
        };
        let text = change.public_detail().to_string();
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("app"));
        assert!(!format!("{acct:?}").contains("s3cret-pw"));
    }
}
