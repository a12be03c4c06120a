//! The secret vault: per-instance keys that seal passwords before they reach the log.
//!
//! The event log is permanent and auditors read it, so a password must never be written
//! to it as given. Each instance that carries secrets gets its own random 256-bit key,
//! kept in `secrets.db` beside (never inside) the event store. Passwords are sealed with
//! ChaCha20-Poly1305 (random 96-bit nonce, the instance id as associated data so a
//! ciphertext cannot be moved to another instance) and only the [`SealedSecret`] goes
//! into events. When the instance is deleted its key is deleted ("crypto-shredding"):
//! the ciphertexts that stay in the log forever become unreadable. `secure_delete` and a
//! rollback journal (not WAL) make SQLite overwrite the deleted key on disk.
//!
//! Order matters: the key is made durable *before* the event that uses it is appended,
//! so a crash can leave an unused key (harmless, shredded with the instance) but never a
//! sealed secret without its key.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use aggregates::instance::SealedSecret;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// Vault failures. Any of them refuses the command (nothing is appended).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secret vault i/o: {0}")]
    Io(#[from] rusqlite::Error),
    #[error("secret vault lock poisoned")]
    Poisoned,
    #[error("sealing failed")]
    Seal,
}

/// A key generated for an instance but not yet stored: sealing happens before `decide`,
/// storing only if the decided events carry a secret.
pub struct PendingKey {
    instance_id: Uuid,
    key: Key,
    key_id: String,
}

impl PendingKey {
    /// Generates a fresh random key for `instance_id`.
    pub fn generate(instance_id: Uuid) -> PendingKey {
        PendingKey {
            instance_id,
            key: ChaCha20Poly1305::generate_key(&mut OsRng),
            key_id: format!("instance-{instance_id}/1"),
        }
    }

    /// Seals `plaintext` for this instance.
    pub fn seal(&self, plaintext: &str) -> Result<SealedSecret, VaultError> {
        let cipher = ChaCha20Poly1305::new(&self.key);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = self.instance_id.as_bytes();
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        Ok(SealedSecret {
            key_id: self.key_id.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        })
    }
}

/// A password of `len` ASCII letters and digits from `rng` (upstream's
/// `generate_random_password`, 36 by default): each character drawn without bias.
pub fn generate_password(
    rng: &mut impl chacha20poly1305::aead::rand_core::RngCore,
    len: usize,
) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        // 248 = 4 * 62: bytes above it would favour the first characters.
        if byte[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    out
}

/// The key store.
pub struct Vault {
    /// One connection: key writes are rare (one per create with secrets) and must be
    /// durable before the append, so they are serialized anyway.
    conn: Mutex<Connection>,
}

impl Vault {
    /// Opens (or creates) the vault file.
    pub fn open(path: &Path) -> Result<Vault, VaultError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS keys (
                 key_id TEXT PRIMARY KEY,
                 instance_id TEXT NOT NULL,
                 key BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS keys_by_instance ON keys(instance_id);",
        )?;
        Ok(Vault {
            conn: Mutex::new(conn),
        })
    }

    /// The instances the vault holds a key for (blocking): the start-up check compares
    /// them with the instances whose passwords the log holds sealed.
    pub fn instances_with_keys(&self) -> Result<HashSet<Uuid>, VaultError> {
        let conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
        let mut stmt = conn.prepare("SELECT DISTINCT instance_id FROM keys")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = HashSet::new();
        for id in ids {
            // A row that is not a UUID opens nothing; it cannot be any instance's key.
            if let Ok(id) = Uuid::parse_str(&id?) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Makes a pending key durable (blocking: call from `spawn_blocking`).
    pub fn store(&self, key: &PendingKey) -> Result<(), VaultError> {
        let conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
        conn.execute(
            "INSERT OR REPLACE INTO keys (key_id, instance_id, key) VALUES (?1, ?2, ?3)",
            params![key.key_id, key.instance_id.to_string(), key.key.as_slice()],
        )?;
        Ok(())
    }

    /// Seals `plaintext` with `instance_id`'s key, making the key (durable before this
    /// returns) when the instance has none: for a secret that appears after the create,
    /// such as the local provider's superuser password. Blocking. A key made here is
    /// shredded with the instance like any other.
    pub fn seal_for(&self, instance_id: Uuid, plaintext: &str) -> Result<SealedSecret, VaultError> {
        let conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
        let found: Option<(String, Vec<u8>)> = conn
            .query_row(
                "SELECT key_id, key FROM keys WHERE instance_id = ?1 ORDER BY key_id LIMIT 1",
                params![instance_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let key = match found.filter(|(_, k)| k.len() == 32) {
            Some((key_id, key)) => PendingKey {
                instance_id,
                key: *Key::from_slice(&key),
                key_id,
            },
            None => {
                let key = PendingKey::generate(instance_id);
                conn.execute(
                    "INSERT OR REPLACE INTO keys (key_id, instance_id, key) VALUES (?1, ?2, ?3)",
                    params![key.key_id, key.instance_id.to_string(), key.key.as_slice()],
                )?;
                key
            }
        };
        key.seal(plaintext)
    }

    /// Opens a sealed secret of `instance_id`; `None` once the key is shredded (or if the
    /// ciphertext was tampered with).
    pub fn unseal(
        &self,
        instance_id: Uuid,
        sealed: &SealedSecret,
    ) -> Result<Option<String>, VaultError> {
        let key: Option<Vec<u8>> = {
            let conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
            conn.query_row(
                "SELECT key FROM keys WHERE key_id = ?1 AND instance_id = ?2",
                params![sealed.key_id, instance_id.to_string()],
                |r| r.get(0),
            )
            .optional()?
        };
        let Some(key) = key.filter(|k| k.len() == 32) else {
            return Ok(None);
        };
        let (Ok(nonce), Ok(ct)) = (B64.decode(&sealed.nonce), B64.decode(&sealed.ciphertext))
        else {
            return Ok(None);
        };
        if nonce.len() != 12 {
            return Ok(None);
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: instance_id.as_bytes(),
                },
            )
            .ok();
        Ok(plain.and_then(|p| String::from_utf8(p).ok()))
    }

    /// Deletes the keys of many instances in one transaction (blocking). Idempotent.
    pub fn shred_all(&self, instance_ids: &[Uuid]) -> Result<(), VaultError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare("DELETE FROM keys WHERE instance_id = ?1")?;
            for id in instance_ids {
                stmt.execute(params![id.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes every key of `instance_id` (blocking). Idempotent.
    pub fn shred(&self, instance_id: Uuid) -> Result<(), VaultError> {
        let conn = self.conn.lock().map_err(|_| VaultError::Poisoned)?;
        conn.execute(
            "DELETE FROM keys WHERE instance_id = ?1",
            params![instance_id.to_string()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_until_shredded() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("secrets.db")).unwrap();
        let id = Uuid::new_v4();
        let key = PendingKey::generate(id);
        let sealed = key.seal("hunter2").unwrap();
        assert!(!sealed.ciphertext.contains("hunter2"));
        vault.store(&key).unwrap();
        assert_eq!(
            vault.unseal(id, &sealed).unwrap().as_deref(),
            Some("hunter2")
        );
        // Bound to its instance: another instance id cannot open it.
        assert_eq!(vault.unseal(Uuid::new_v4(), &sealed).unwrap(), None);
        vault.shred(id).unwrap();
        assert_eq!(vault.unseal(id, &sealed).unwrap(), None);
    }

    #[test]
    fn seal_for_uses_the_instances_key_or_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("secrets.db")).unwrap();
        // An instance with a key from its create: that key seals, and keeps opening the
        // create's secrets.
        let id = Uuid::new_v4();
        let key = PendingKey::generate(id);
        let users = key.seal("user-pw").unwrap();
        vault.store(&key).unwrap();
        let admin = vault.seal_for(id, "admin-pw").unwrap();
        assert_eq!(admin.key_id, users.key_id);
        assert_eq!(
            vault.unseal(id, &users).unwrap().as_deref(),
            Some("user-pw")
        );
        assert_eq!(
            vault.unseal(id, &admin).unwrap().as_deref(),
            Some("admin-pw")
        );
        // One without: a key is made, and shredded with the instance.
        let other = Uuid::new_v4();
        let sealed = vault.seal_for(other, "pw").unwrap();
        assert!(vault.instances_with_keys().unwrap().contains(&other));
        assert_eq!(vault.unseal(other, &sealed).unwrap().as_deref(), Some("pw"));
        vault.shred(other).unwrap();
        assert_eq!(vault.unseal(other, &sealed).unwrap(), None);
    }
}
