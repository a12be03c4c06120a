//! The lifecycle driver: moves instances through the provisioning, upgrade, detach,
//! access and deletion workflows against a simulated cloud, recording every step as an
//! event through the command path.
//!
//! It is level-triggered: for an instance it loads the current state from the log and
//! takes the one next step that state calls for ([`next_step`]), until none is left.
//! Every step is an idempotent report (`decide` ignores a fact already recorded), so a
//! crash at any point, or two drivers racing, can repeat a step but never apply it
//! twice; after a restart every unfinished instance is picked up again from the read
//! models. This is the minimal driver of the event-sourced core; the provisioning saga
//! issue replaces the instant simulated steps with provider ports, failures and
//! compensation.

use std::sync::Arc;
use std::time::Duration;

use aggregates::instance::{
    instance_id_of_stream, Address, Caller, ComputeStatus, Instance, InstanceCommand,
    ServiceStatus, Task,
};
use dashmap::DashMap;
use projections::ReadModels;
use uuid::Uuid;

use crate::runtime::codec::{Actor, CommandMeta};
use crate::runtime::commands::CommandBus;
use crate::secrets::Vault;
use crate::store::{EventStore, StoreError};

/// Namespace of the ids the simulated cloud derives from instance ids, so a repeated
/// step names the same volume and server.
const SIM_NS: Uuid = Uuid::from_u128(0x2b7d_51e0_8c3a_4f19_9e62_07a4_c3d8_15f6);

/// The identity saga commands run as.
pub fn saga_caller() -> Caller {
    Caller {
        user_id: "troved-saga".into(),
        project_id: "service".into(),
        roles: vec!["admin".into()],
    }
}

/// The next step an instance's state calls for, if any.
pub fn next_step(s: &Instance) -> Option<InstanceCommand> {
    use InstanceCommand as C;
    let id = s.id?;
    if s.deleted {
        return None;
    }
    match s.task {
        Task::Deleting => Some(C::CompleteDeletion),
        Task::Upgrading => Some(C::CompleteUpgrade),
        Task::Detaching => Some(C::CompleteReplicaDetach),
        Task::Updating => Some(C::CompleteAccessUpdate),
        Task::Building => Some(build_step(id, s)),
        _ => None,
    }
}

fn build_step(id: Uuid, s: &Instance) -> InstanceCommand {
    use InstanceCommand as C;
    if let (Some(v), None) = (&s.volume, &s.volume_id) {
        return C::RecordVolumeCreated {
            volume_id: Uuid::new_v5(&SIM_NS, format!("{id}/volume").as_bytes()).to_string(),
            size: v.size,
            volume_type: v.volume_type.clone(),
        };
    }
    if s.server_id.is_none() {
        return C::RecordServerCreated {
            server_id: Uuid::new_v5(&SIM_NS, format!("{id}/server").as_bytes()).to_string(),
        };
    }
    if s.compute == Some(ComputeStatus::Build) {
        return C::RecordComputeStatus {
            status: ComputeStatus::Active,
        };
    }
    if s.addresses.is_empty() {
        return C::RecordAddresses {
            addresses: sim_addresses(id, s),
        };
    }
    match s.service {
        ServiceStatus::New => C::RecordGuestStatus {
            status: ServiceStatus::Building,
        },
        ServiceStatus::Building => C::RecordGuestStatus {
            status: ServiceStatus::Healthy,
        },
        _ => C::CompleteProvisioning,
    }
}

/// A private address on the requested (or a default) network, derived from the id, plus
/// a public one when access asks for it.
fn sim_addresses(id: Uuid, s: &Instance) -> Vec<Address> {
    let b = id.as_bytes();
    let network = s
        .nics
        .first()
        .and_then(|n| n.network_id.clone())
        .unwrap_or_else(|| Uuid::new_v5(&SIM_NS, b"private-network").to_string());
    let mut out = vec![Address {
        address: format!("10.{}.{}.{}", b[0], b[1], b[2].max(2)),
        kind: "private".into(),
        network: Some(network),
    }];
    let public = s
        .access
        .as_ref()
        .and_then(|a| a.get("is_public"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if public {
        out.push(Address {
            address: format!("172.24.{}.{}", b[3], b[4].max(2)),
            kind: "public".into(),
            network: None,
        });
    }
    out
}

/// Runs workflows.
#[derive(Clone)]
pub struct Driver {
    bus: CommandBus,
    vault: Arc<Vault>,
    /// Delay of each simulated step.
    latency: Duration,
    /// Instances with a running worker; `true` = new events arrived meanwhile, look again.
    running: Arc<DashMap<Uuid, bool>>,
}

impl Driver {
    /// A driver executing through `bus`.
    pub fn new(bus: CommandBus, vault: Arc<Vault>, latency: Duration) -> Driver {
        Driver {
            bus,
            vault,
            latency,
            running: Arc::new(DashMap::new()),
        }
    }

    /// Picks up every unfinished workflow (after a restart), then follows `$all` from
    /// the store's head until the store closes.
    pub async fn run(
        self,
        store: Arc<dyn EventStore>,
        models: Arc<ReadModels>,
    ) -> Result<(), StoreError> {
        let from = store.head().await?;
        let live = projections::MgmtFilter {
            deleted: Some(false),
            project: None,
        };
        for s in models.mgmt_page(&live, 0, usize::MAX) {
            if let (Some(id), Some(_)) = (s.id, next_step(&s)) {
                self.poke(id);
            }
        }
        let mut sub = store.subscribe_all(from).await?;
        loop {
            let r = sub.next().await?;
            if let Some(id) = instance_id_of_stream(&r.stream) {
                self.poke(id);
            }
        }
    }

    /// Makes sure a worker looks at instance `id`.
    pub fn poke(&self, id: Uuid) {
        use dashmap::mapref::entry::Entry;
        match self.running.entry(id) {
            Entry::Occupied(mut e) => {
                *e.get_mut() = true;
            }
            Entry::Vacant(e) => {
                e.insert(false);
                let me = self.clone();
                tokio::spawn(async move { me.work(id).await });
            }
        }
    }

    async fn work(self, id: Uuid) {
        let mut failures = 0u32;
        loop {
            match self.step(id).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    // Done unless something arrived while we looked: decide atomically.
                    let rerun = self.running.remove_if(&id, |_, again| !*again).is_none();
                    if !rerun {
                        return;
                    }
                    if let Some(mut again) = self.running.get_mut(&id) {
                        *again = false;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(instance = %id, error = %e, failures, "workflow step failed; retrying");
                    if failures >= 10 {
                        self.running.remove(&id);
                        tracing::error!(instance = %id, "workflow step keeps failing; giving up until the next event");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
                }
            }
        }
    }

    /// Takes one step; `Ok(false)` when there is nothing to do.
    async fn step(&self, id: Uuid) -> anyhow::Result<bool> {
        let state = self.bus.load(id).await?;
        let Some(cmd) = next_step(&state) else {
            return Ok(false);
        };
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let caller = saga_caller();
        let meta = CommandMeta {
            actor: Actor::from(&caller),
            request_id: format!("saga:{}", cmd.name()),
            causation_id: Uuid::new_v4(),
            correlation_id: id,
        };
        let done = self
            .bus
            .execute(id, std::slice::from_ref(&cmd), &caller, &meta)
            .await?;
        if done.state.deleted {
            // Crypto-shred the instance's secrets: the sealed passwords in the log are
            // unreadable from now on.
            let vault = self.vault.clone();
            tokio::task::spawn_blocking(move || vault.shred(id)).await??;
        }
        Ok(true)
    }
}
