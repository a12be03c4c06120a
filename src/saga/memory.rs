//! An in-memory, instant cloud behind the provider ports: for tests of the saga runner
//! that need no persistence (the simulated cloud in `crate::sim` is the default
//! provider). Idempotent by key like any provider must be.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use uuid::Uuid;

use super::ports::*;

#[derive(Default)]
struct Inner {
    volumes: HashMap<String, Volume>,
    servers: HashMap<String, Server>,
    keys: HashMap<IdempotencyKey, String>,
    guests: HashMap<String, String>,
}

/// The cloud.
#[derive(Default)]
pub struct MemoryCloud {
    inner: Mutex<Inner>,
}

impl MemoryCloud {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T, ProviderError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| ProviderError::Transient("memory cloud lock poisoned".into()))?;
        Ok(f(&mut g))
    }

    /// (servers, volumes) currently existing.
    pub fn counts(&self) -> (usize, usize) {
        self.with(|i| (i.servers.len(), i.volumes.len()))
            .unwrap_or((0, 0))
    }
}

#[async_trait]
impl VolumeProvider for MemoryCloud {
    async fn create_volume(
        &self,
        key: &IdempotencyKey,
        spec: &VolumeSpec,
    ) -> Result<Volume, ProviderError> {
        self.with(|i| {
            if let Some(v) = i.keys.get(key).and_then(|id| i.volumes.get(id)) {
                return v.clone();
            }
            let v = Volume {
                id: Uuid::new_v4().to_string(),
                instance_id: spec.instance_id,
                size: spec.size,
                volume_type: spec.volume_type.clone(),
                availability_zone: spec
                    .availability_zone
                    .clone()
                    .unwrap_or_else(|| "nova".into()),
                status: "available".into(),
                attached_to: None,
            };
            i.keys.insert(key.clone(), v.id.clone());
            i.volumes.insert(v.id.clone(), v.clone());
            v
        })
    }

    async fn find_volume(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        self.with(|i| {
            i.keys
                .get(key)
                .filter(|id| i.volumes.contains_key(*id))
                .cloned()
        })
    }

    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        self.with(|i| {
            if let Some(v) = i.volumes.get_mut(volume_id) {
                v.attached_to = Some(server_id.to_string());
                v.status = "in-use".into();
            }
        })
    }

    async fn detach_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        self.with(|i| {
            if let Some(v) = i.volumes.get_mut(volume_id) {
                v.attached_to = None;
                v.status = "available".into();
            }
        })
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        self.with(|i| {
            i.volumes.remove(volume_id);
        })
    }

    async fn volume_usage(&self, volume_id: &str) -> Result<VolumeUsage, ProviderError> {
        self.with(|i| i.volumes.get(volume_id).map(|v| v.size))?
            .map(|size| VolumeUsage {
                used_gb: 0.12,
                total_gb: size as f64 - 0.1,
            })
            .ok_or_else(|| ProviderError::NotFound(volume_id.to_string()))
    }
}

#[async_trait]
impl ComputeProvider for MemoryCloud {
    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> Result<Server, ProviderError> {
        self.with(|i| {
            if let Some(s) = i.keys.get(key).and_then(|id| i.servers.get(id)) {
                return s.clone();
            }
            let mut addresses = vec![ServerAddress {
                address: "10.0.0.5".into(),
                kind: "private".into(),
                network: spec.network_id.clone().or_else(|| Some("private".into())),
            }];
            if spec.public {
                addresses.push(ServerAddress {
                    address: "172.24.0.5".into(),
                    kind: "public".into(),
                    network: None,
                });
            }
            let s = Server {
                id: Uuid::new_v4().to_string(),
                instance_id: spec.instance_id,
                status: "ACTIVE".into(),
                availability_zone: spec
                    .availability_zone
                    .clone()
                    .unwrap_or_else(|| "nova".into()),
                addresses,
            };
            i.keys.insert(key.clone(), s.id.clone());
            i.servers.insert(s.id.clone(), s.clone());
            s
        })
    }

    async fn find_server(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        self.with(|i| {
            i.keys
                .get(key)
                .filter(|id| i.servers.contains_key(*id))
                .cloned()
        })
    }

    async fn server(&self, server_id: &str) -> Result<Server, ProviderError> {
        self.with(|i| i.servers.get(server_id).cloned())?
            .ok_or_else(|| ProviderError::NotFound(server_id.to_string()))
    }

    async fn set_public(&self, server_id: &str, public: bool) -> Result<Server, ProviderError> {
        self.with(|i| {
            let s = i.servers.get_mut(server_id)?;
            s.addresses.retain(|a| a.kind != "public");
            if public {
                s.addresses.push(ServerAddress {
                    address: "172.24.0.5".into(),
                    kind: "public".into(),
                    network: None,
                });
            }
            Some(s.clone())
        })?
        .ok_or_else(|| ProviderError::NotFound(server_id.to_string()))
    }

    async fn delete_server(&self, server_id: &str) -> Result<(), ProviderError> {
        self.with(|i| {
            i.servers.remove(server_id);
            i.guests.remove(server_id);
        })
    }
}

#[async_trait]
impl GuestAgent for MemoryCloud {
    async fn prepare(
        &self,
        _key: &IdempotencyKey,
        req: &PrepareRequest,
    ) -> Result<(), ProviderError> {
        self.with(|i| {
            i.guests.insert(req.server_id.clone(), "HEALTHY".into());
        })
    }

    async fn status(&self, server_id: &str) -> Result<GuestReport, ProviderError> {
        self.with(|i| i.guests.get(server_id).cloned())?
            .map(|status| GuestReport { status })
            .ok_or_else(|| ProviderError::NotFound(server_id.to_string()))
    }

    async fn upgrade(
        &self,
        _key: &IdempotencyKey,
        _server_id: &str,
        _version: &str,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn apply_configuration(
        &self,
        _key: &IdempotencyKey,
        _server_id: &str,
        _values: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn detach_replica(
        &self,
        _key: &IdempotencyKey,
        _server_id: &str,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
}
