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

pub mod ports;

use std::sync::Arc;
use std::time::Duration;

use aggregates::configuration::{configuration_id_of_stream, Configuration};
use aggregates::instance::{
    self, instance_id_of_stream, Address, Caller, ComputeStatus, Instance, InstanceCommand,
    ServiceStatus, Task,
};
use dashmap::DashMap;
use projections::configurations::ConfigurationModels;
use projections::ReadModels;
use tokio::sync::watch;
use uuid::Uuid;

use crate::runtime::codec::{Actor, CommandMeta, EventMetadata};
use crate::runtime::commands::{fold_instance, CommandBus, CommandError};
use crate::secrets::{Vault, VaultError};
use crate::store::{EventStore, RecordedEvent, StoreError};

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

/// The next step an instance's state calls for, if any. `group` is the current state of
/// the configuration group attached to it, if any.
pub fn next_step(s: &Instance, group: Option<&Configuration>) -> Option<InstanceCommand> {
    use InstanceCommand as C;
    let id = s.id?;
    if s.deleted {
        return None;
    }
    if let Some(step) = configuration_step(s, group) {
        return Some(step);
    }
    match s.task {
        Task::Deleting => Some(C::CompleteDeletion),
        Task::Upgrading => Some(C::CompleteUpgrade),
        Task::Detaching => Some(C::CompleteReplicaDetach),
        Task::Updating => Some(access_step(id, s)),
        Task::Building => Some(build_step(id, s)),
        _ => None,
    }
}

/// A newer revision of the attached group is applied once the instance is idle (not
/// building, upgrading, ...), needing a restart if a key changed since the instance's
/// revision needs one.
fn configuration_step(s: &Instance, group: Option<&Configuration>) -> Option<InstanceCommand> {
    let group = group.filter(|g| g.id.is_some() && g.id == s.configuration_id)?;
    let idle = matches!(s.task, Task::None | Task::RestartRequired);
    (idle && group.version > s.configuration_revision).then(|| {
        InstanceCommand::ApplyConfigurationRevision {
            configuration_id: s.configuration_id.unwrap_or_default(),
            revision: group.version,
            restart_required: group.restart_required_since > s.configuration_revision,
        }
    })
}

/// An access update first makes the user port public or private (adds or removes the
/// floating address), then records the new access (lifecycle §7.7).
fn access_step(id: Uuid, s: &Instance) -> InstanceCommand {
    let want_public = s.pending_access.as_ref().is_some_and(|a| a.is_public);
    let has_public = s.addresses.iter().any(|a| a.kind == "public");
    if want_public != has_public {
        InstanceCommand::RecordAddresses {
            addresses: sim_addresses(id, s, want_public),
        }
    } else {
        InstanceCommand::CompleteAccessUpdate
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
        let public = s
            .access
            .as_ref()
            .and_then(|a| a.get("is_public"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        return C::RecordAddresses {
            addresses: sim_addresses(id, s, public),
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
/// a public (floating) one when `public`.
fn sim_addresses(id: Uuid, s: &Instance, public: bool) -> Vec<Address> {
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
    if public {
        out.push(Address {
            address: format!("172.24.{}.{}", b[3], b[4].max(2)),
            kind: "public".into(),
            network: None,
        });
    }
    out
}

/// Why a step did not complete (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("vault task: {0}")]
    Join(#[from] tokio::task::JoinError),
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
    /// Becomes `true` when the server shuts down; workers stop between steps.
    shutdown: watch::Receiver<bool>,
    /// Configuration groups: their revisions, and which instances use them.
    configurations: Arc<ConfigurationModels>,
}

impl Driver {
    /// A driver executing through `bus`.
    pub fn new(
        bus: CommandBus,
        vault: Arc<Vault>,
        latency: Duration,
        shutdown: watch::Receiver<bool>,
        configurations: Arc<ConfigurationModels>,
    ) -> Driver {
        Driver {
            bus,
            vault,
            latency,
            running: Arc::new(DashMap::new()),
            shutdown,
            configurations,
        }
    }

    /// Picks up every unfinished workflow and shreds the keys of deleted instances
    /// (after a restart), then follows `$all` until the store closes or shutdown.
    pub async fn run(
        mut self,
        store: Arc<dyn EventStore>,
        models: Arc<ReadModels>,
    ) -> Result<(), StoreError> {
        // Everything the models have applied is covered by the scan below; everything
        // after it by the subscription. Reading the store's head instead could miss the
        // events between the two.
        let from = models.position();
        let all = projections::MgmtFilter {
            deleted: None,
            project: None,
        };
        let mut deleted = Vec::new();
        for s in models.mgmt_page(&all, 0, usize::MAX) {
            match s.id {
                Some(id) if s.deleted => deleted.push(id),
                Some(id) if next_step(&s, self.group_of(&s).as_ref()).is_some() => self.poke(id),
                _ => {}
            }
        }
        // A crash between `InstanceDeleted` and the shred left keys behind.
        let vault = self.vault.clone();
        match tokio::task::spawn_blocking(move || vault.shred_all(&deleted)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "shredding keys of deleted instances failed"),
            Err(e) => tracing::error!(error = %e, "shredding keys of deleted instances failed"),
        }
        let mut sub = store.subscribe_all(from).await?;
        loop {
            tokio::select! {
                r = sub.next() => {
                    let r = r?;
                    if let Some(id) = instance_id_of_stream(&r.stream) {
                        self.poke(id);
                    } else if let Some(group) = configuration_id_of_stream(&r.stream) {
                        // A group changed: every instance using it may have a step. The
                        // workers read the group from the read models, so wait until
                        // they show this event.
                        self.bus.wait_applied(r.position).await.map_err(|e| {
                            StoreError::Unavailable(e.to_string())
                        })?;
                        for id in self.configurations.all_instances_using(group) {
                            self.poke(id);
                        }
                    }
                }
                _ = self.shutdown.changed() => return Ok(()),
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
            if *self.shutdown.borrow() {
                self.running.remove(&id);
                return;
            }
            match self.step(id).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    failures = 0;
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
                    // Steps only fail when the store or the vault does; keep trying with
                    // a capped backoff (giving up would leave the instance stuck: no
                    // user command can move an instance in BUILD).
                    failures = failures.saturating_add(1);
                    if failures % 10 == 1 {
                        tracing::warn!(instance = %id, error = %e, failures, "workflow step failed; retrying");
                    }
                    let backoff = 50u64.saturating_mul(1 << failures.min(7));
                    tokio::time::sleep(Duration::from_millis(backoff.min(5_000))).await;
                }
            }
        }
    }

    /// Takes one step; `Ok(false)` when there is nothing (more) to do.
    async fn step(&self, id: Uuid) -> Result<bool, StepError> {
        let records = self.bus.read(&instance::stream_name(id)).await?;
        let state = fold_instance(&records)?;
        if state.deleted {
            self.shred(id).await?;
            return Ok(false);
        }
        let group = self.group_of(&state);
        let (Some(cmd), Some(last)) = (next_step(&state, group.as_ref()), records.last()) else {
            return Ok(false);
        };
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let caller = saga_caller();
        let meta = CommandMeta {
            actor: Actor::from(&caller),
            request_id: format!("saga:{}", cmd.name()),
            // The event this step reacts to.
            causation_id: last.id,
            // The workflow: the user request that put the instance where it is.
            correlation_id: workflow_of(&records).unwrap_or(id),
            // Same state, same step, same ids: a retried append is deduplicated.
            derived_ids: Some(Uuid::new_v5(
                &SIM_NS,
                format!("{id}/{}/{}", last.revision, cmd.name()).as_bytes(),
            )),
        };
        let done = self
            .bus
            .execute(id, std::slice::from_ref(&cmd), &caller, &meta)
            .await?;
        if done.state.deleted {
            // Crypto-shred the instance's secrets: the sealed passwords in the log are
            // unreadable from now on.
            self.shred(id).await?;
        }
        Ok(!done.events.is_empty())
    }

    /// The current state of the group attached to `s`, if any.
    fn group_of(&self, s: &Instance) -> Option<Configuration> {
        s.configuration_id
            .and_then(|g| self.configurations.configuration(g))
    }

    async fn shred(&self, id: Uuid) -> Result<(), StepError> {
        let vault = self.vault.clone();
        tokio::task::spawn_blocking(move || vault.shred(id)).await??;
        Ok(())
    }
}

/// The correlation id of the newest event a user (not the driver) caused.
fn workflow_of(records: &[RecordedEvent]) -> Option<Uuid> {
    let saga = saga_caller().user_id;
    records.iter().rev().find_map(|r| {
        let meta: EventMetadata = serde_json::from_slice(&r.metadata).ok()?;
        (meta.actor.user_id != saga).then_some(meta.correlation_id)
    })
}
