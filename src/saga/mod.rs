//! The saga runner: drives every instance workflow (provisioning, deletion, upgrade,
//! replica detach, access update, configuration) through the provider ports, recording
//! each step's outcome as an event through the command path.
//!
//! Level-triggered: for an instance it loads the state from the log, asks [`plan`] for
//! the one next step, performs it through the ports and records the outcome; then asks
//! again, until there is nothing to do. So the workflow *is* the log, and a crash at any
//! point resumes from it:
//! - effects are exactly-once: every create carries an idempotency key derived from the
//!   instance and the step, so a repeated step finds the resource made the first time;
//! - recordings are idempotent: `decide` ignores a report of a fact already recorded,
//!   and saga events get deterministic ids (a retried append is deduplicated);
//! - after a restart every instance with work left is picked up from the read models.
//!
//! Failures: a transient provider error is retried with capped exponential backoff; a
//! permanent one (or too many transient ones) fails the workflow with a fault, and a
//! failed build releases what it created (compensation) unless the operator keeps failed
//! resources. Timeouts are part of the plan (they depend on the state's timestamps).

mod access;
mod actions;
pub mod backups;
pub mod guest_admin;
pub mod heartbeat;
pub mod plan;
pub mod ports;
mod replica_actions;
mod store_limits;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::configuration::{configuration_id_of_stream, Configuration};
use aggregates::instance::{
    self, instance_id_of_stream, Address, Caller, ComputeStatus, FaultInfo, Instance,
    InstanceCommand, InstanceEvent, ServiceStatus, Task,
};
use chrono::Utc;
use dashmap::DashMap;
use projections::configurations::ConfigurationModels;
use projections::InstanceModels;
use tokio::sync::watch;
use uuid::Uuid;

pub use plan::{plan, Policy, Step};
use ports::{
    ComputeProvider, GuestAgent, IdempotencyKey, PrepareRequest, PrepareUser, ProviderError,
    ServerSpec, VolumeProvider, VolumeSpec,
};

use crate::catalog::StaticCatalog;
use crate::metrics::{self, StepOutcome};
use crate::retry::Backoff;
use crate::runtime::codec::{self, Actor, CommandMeta};
use crate::runtime::commands::{CommandBus, CommandError, FoldedStream, SAGA_USER};
use crate::secrets::{Vault, VaultError};
use crate::store::{EventStore, StoreError};

/// Namespace of the saga's deterministic event ids.
const SAGA_NS: Uuid = Uuid::from_u128(0x2b7d_51e0_8c3a_4f19_9e62_07a4_c3d8_15f6);

/// Transient failures of one step tolerated before the workflow fails.
const TRANSIENT_ATTEMPTS: u32 = 6;

/// The identity saga commands run as.
pub fn saga_caller() -> Caller {
    Caller {
        user_id: SAGA_USER.into(),
        project_id: "service".into(),
        roles: vec!["admin".into()],
    }
}

/// The cloud the saga works with.
#[derive(Clone)]
pub struct Providers {
    pub volumes: Arc<dyn VolumeProvider>,
    pub compute: Arc<dyn ComputeProvider>,
    pub guests: Arc<dyn GuestAgent>,
    /// What the cloud still has, for reconciliation (`crate::reconcile`); the runner
    /// itself never asks.
    pub inventory: Arc<dyn ports::ResourceInventory>,
    /// Takes backups (`backups::BackupRunner`; restores are part of `prepare`).
    pub backups: Arc<dyn ports::BackupAgent>,
    /// Changes the guests' databases, users and root (`guest_admin`).
    pub guest_admin: Arc<dyn guest_admin::GuestAdmin>,
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
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A sealed secret the step needs cannot be opened (its key is not in the vault):
    /// retrying cannot help, so the workflow fails with this as its fault. Never
    /// replaced by an empty string.
    #[error("{0}")]
    SecretUnavailable(String),
}

/// What performing a step produced.
enum Outcome {
    /// Record this report.
    Record(InstanceCommand),
    /// Nothing changed yet (a server or guest still coming up): look again later.
    Wait,
}

/// Runs workflows.
#[derive(Clone)]
pub struct SagaRunner {
    bus: CommandBus,
    vault: Arc<Vault>,
    providers: Providers,
    catalog: Arc<StaticCatalog>,
    policy: Policy,
    /// How long to wait before asking a provider again about something in progress.
    poll_interval: Duration,
    /// A provider call without an answer after this is a transient failure.
    call_timeout: Duration,
    /// Instances with a running worker; `true` = new events arrived meanwhile, look again.
    running: Arc<DashMap<Uuid, bool>>,
    /// The newest revision of each instance's stream the subscription delivered: a
    /// step decides on a state that includes it. The command bus's cached entry is
    /// written after its append commits, so an event can arrive here first.
    newest: Arc<DashMap<Uuid, u64>>,
    /// Becomes `true` when the server shuts down; workers stop between steps.
    shutdown: watch::Receiver<bool>,
    /// Configuration groups: their revisions and values, and which instances use them.
    configurations: Arc<ConfigurationModels>,
    /// Backups: the chain a restore reads.
    backups: Arc<projections::backups::BackupModels>,
    /// Steps taken at once, over all instances. Without a bound, a burst of creates
    /// (or the start-up scan after a crash under load) ran a step for every instance at
    /// once: each holding its stream in memory and contending for the store and the
    /// providers, which made the whole burst slower and the memory peak large.
    steps: Arc<tokio::sync::Semaphore>,
    /// Admin resets and deletions delivered per instance: a step in flight for an
    /// instance taken away from its workflow is abandoned (`actions::Escapes`).
    escapes: Arc<actions::Escapes>,
}

/// Steps in flight at once (see [`SagaRunner::steps`]): enough to keep the store's group
/// commit and the providers busy.
pub const CONCURRENT_STEPS: usize = 128;

/// What the saga runner needs; see the fields of [`SagaRunner`].
pub struct SagaRunnerDeps {
    pub bus: CommandBus,
    pub vault: Arc<Vault>,
    pub providers: Providers,
    pub catalog: Arc<StaticCatalog>,
    pub configurations: Arc<ConfigurationModels>,
    pub backups: Arc<projections::backups::BackupModels>,
    pub policy: Policy,
    pub poll_interval: Duration,
    pub call_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
}

impl SagaRunner {
    /// A saga runner.
    pub fn new(d: SagaRunnerDeps) -> SagaRunner {
        SagaRunner {
            bus: d.bus,
            vault: d.vault,
            providers: d.providers,
            catalog: d.catalog,
            policy: d.policy,
            poll_interval: d.poll_interval,
            call_timeout: d.call_timeout,
            running: Arc::new(DashMap::new()),
            newest: Arc::new(DashMap::new()),
            shutdown: d.shutdown,
            configurations: d.configurations,
            backups: d.backups,
            steps: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_STEPS)),
            escapes: Arc::default(),
        }
    }

    /// Picks up every unfinished workflow and shreds the keys of deleted instances
    /// (after a restart), then follows `$all` until the store closes or shutdown.
    pub async fn run(
        mut self,
        store: Arc<dyn EventStore>,
        models: Arc<InstanceModels>,
    ) -> Result<(), StoreError> {
        // Everything the models have applied is covered by the scan below; everything
        // after it by the subscription.
        let from = models.position();
        let all = projections::MgmtFilter {
            deleted: None,
            project: None,
        };
        let now = Utc::now();
        let mut deleted = Vec::new();
        for s in models.mgmt_page(&all, 0, usize::MAX) {
            match s.id {
                Some(id) if s.deleted => deleted.push(id),
                Some(id) if plan(&s, self.group_of(&s).as_ref(), now, &self.policy).is_some() => {
                    self.poke(id)
                }
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
                        self.newest
                            .entry(id)
                            .and_modify(|n| *n = (*n).max(r.revision))
                            .or_insert(r.revision);
                        self.escapes.delivered(id, &r.event_type, r.revision);
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
        // Consecutive failures of the current step, by step name.
        let mut failures: HashMap<&'static str, u32> = HashMap::new();
        // The revision of the stream the last step looked at.
        let mut viewed = 0u64;
        loop {
            if *self.shutdown.borrow() {
                self.running.remove(&id);
                return;
            }
            let taken = {
                let Ok(_permit) = self.steps.acquire().await else {
                    self.running.remove(&id);
                    return;
                };
                // Boxed: a step's future is several KiB (provider calls inline), and a
                // burst of creates leaves thousands of workers waiting for a permit
                // above; unboxed, each waiting worker would hold that much.
                Box::pin(self.step(id, &mut failures, &mut viewed)).await
            };
            match taken {
                Ok(Progress::Moved) => {
                    failures.remove("store");
                }
                Ok(Progress::Waiting) => {
                    failures.remove("store");
                    tokio::time::sleep(self.poll_interval).await
                }
                Ok(Progress::Backoff(pause)) => tokio::time::sleep(pause).await,
                Ok(Progress::Idle) => {
                    failures.remove("store");
                    // What the step saw covers every delivered event, unless one newer
                    // arrived meanwhile (which also asked for a rerun below).
                    self.newest.remove_if(&id, |_, n| *n <= viewed);
                    // Done unless something arrived while we looked: decide atomically.
                    let rerun = self.running.remove_if(&id, |_, again| !*again).is_none();
                    if !rerun {
                        // Nothing left to do: the next command reads the stream again.
                        self.bus.forget(id);
                        self.escapes.forget(id);
                        return;
                    }
                    if let Some(mut again) = self.running.get_mut(&id) {
                        *again = false;
                    }
                }
                Err(e) if *self.shutdown.borrow() => {
                    // Stopping: the projector and the store close under the step, which
                    // is expected, not a failure to warn about (once per instance in
                    // flight). The step is taken again after the restart.
                    tracing::debug!(instance = %id, error = %e, "workflow step interrupted by shutdown");
                    self.running.remove(&id);
                    return;
                }
                Err(e) => {
                    // The store or the vault failed (provider errors are handled in
                    // `step`): keep trying with a capped backoff; giving up would leave
                    // the instance stuck.
                    let n = failures.entry("store").or_default();
                    *n = n.saturating_add(1);
                    if *n % 10 == 1 {
                        tracing::warn!(instance = %id, error = %e, failures = *n, "workflow step failed; retrying");
                    }
                    tokio::time::sleep(STORE_RETRY.delay(*n)).await;
                }
            }
        }
    }

    /// Takes one step: reads the instance, asks the plan for the next step, performs it
    /// and records its outcome.
    async fn step(
        &self,
        id: Uuid,
        failures: &mut HashMap<&'static str, u32>,
        viewed: &mut u64,
    ) -> Result<Progress, StepError> {
        // The stream as the last command left it (cached by the bus), or as read when
        // that misses an event already delivered.
        let newest = self.newest.get(&id).map(|n| *n);
        let Some(folded) = self.bus.folded(id, newest).await? else {
            return Ok(Progress::Idle);
        };
        *viewed = folded.revision;
        let state = &folded.state;
        if state.deleted {
            self.shred(id).await?;
            return Ok(Progress::Idle);
        }
        let group = self.group_of(state);
        let Some(step) = plan(state, group.as_ref(), Utc::now(), &self.policy) else {
            return Ok(Progress::Idle);
        };
        let name = step_name(&step);
        // An admin's reset or a DELETE delivered meanwhile abandons the step (its call
        // may never answer): the next step is planned on the new state.
        let performed = tokio::select! {
            p = self.perform_in_time(id, state, group.as_ref(), &step) => p,
            _ = self.escapes.after(id, folded.revision) => {
                tracing::info!(instance = %id, step = name, "step abandoned: the instance was reset or deleted");
                return Ok(Progress::Moved);
            }
        };
        // A secret that cannot be unsealed fails the step for good, as a permanent
        // provider error would: the workflow records it as its fault.
        let performed = performed.map_err(|e| match e {
            StepError::SecretUnavailable(m) => StepError::Provider(ProviderError::Permanent(m)),
            e => e,
        });
        let (cmd, outcome) = match performed {
            Ok(Outcome::Record(cmd)) => {
                failures.remove(name);
                (cmd, StepOutcome::Recorded)
            }
            Ok(Outcome::Wait) => {
                // Only consecutive failures count: an answer resets the step's count.
                failures.remove(name);
                metrics::global().saga_step(name, StepOutcome::Waiting);
                return Ok(Progress::Waiting);
            }
            Err(StepError::Provider(e)) => {
                match self.on_provider_error(id, state, &step, e, failures) {
                    Some(cmd) => (cmd, StepOutcome::Failed),
                    None => {
                        metrics::global().saga_step(name, StepOutcome::Retried);
                        let n = failures.get(name).copied().unwrap_or(1);
                        return Ok(Progress::Backoff(
                            provider_retry(self.poll_interval).delay(n),
                        ));
                    }
                }
            }
            Err(other) => {
                metrics::global().saga_step(name, StepOutcome::Retried);
                return Err(other);
            }
        };
        // The other members of a replica set record the end of its switch first.
        self.members_follow(id, state, &cmd).await?;
        match self.record(id, &folded, name, cmd, outcome).await {
            // A report the store can never take (too large) fails the step for good,
            // with a fault that fits, instead of being retried for ever.
            Err(e) => match store_limits::permanent(&e) {
                Some(p) => match self.on_provider_error(id, state, &step, p, failures) {
                    Some(cmd) => {
                        self.record(id, &folded, name, cmd, StepOutcome::Failed)
                            .await
                    }
                    None => Err(e),
                },
                None => Err(e),
            },
            recorded => recorded,
        }
    }

    /// [`SagaRunner::perform`], with no answer within the call timeout counted as a
    /// transient provider failure.
    async fn perform_in_time(
        &self,
        id: Uuid,
        state: &Instance,
        group: Option<&Configuration>,
        step: &Step,
    ) -> Result<Outcome, StepError> {
        tokio::time::timeout(self.call_timeout, self.perform(id, state, group, step))
            .await
            .unwrap_or_else(|_| {
                Err(StepError::Provider(ProviderError::Transient(format!(
                    "no answer within {} ms",
                    self.call_timeout.as_millis()
                ))))
            })
    }

    /// Records what step `name` produced as the saga, with ids derived from the stream
    /// revision it looked at, and counts its outcome; shreds the secrets of an instance
    /// the command deleted.
    async fn record(
        &self,
        id: Uuid,
        folded: &FoldedStream,
        name: &'static str,
        cmd: InstanceCommand,
        outcome: StepOutcome,
    ) -> Result<Progress, StepError> {
        let caller = saga_caller();
        let meta = CommandMeta {
            actor: Actor::from(&caller),
            request_id: format!("saga:{name}"),
            // The event this step reacts to.
            causation_id: folded.last_id,
            // The workflow: the user request that put the instance where it is.
            correlation_id: folded.workflow.unwrap_or(id),
            // Same state, same step, same ids: a retried append is deduplicated.
            derived_ids: Some(Uuid::new_v5(
                &SAGA_NS,
                format!("{id}/{}/{}", folded.revision, cmd.name()).as_bytes(),
            )),
        };
        let done = self
            .bus
            .execute(id, std::slice::from_ref(&cmd), &caller, &meta)
            .await;
        // A report that could not be recorded is retried by the worker loop.
        let outcome = if done.is_ok() {
            outcome
        } else {
            StepOutcome::Retried
        };
        metrics::global().saga_step(name, outcome);
        let done = done?;
        if done.state.deleted {
            // Crypto-shred the instance's secrets: the sealed passwords in the log are
            // unreadable from now on.
            self.shred(id).await?;
        }
        Ok(if done.events.is_empty() {
            Progress::Idle
        } else {
            Progress::Moved
        })
    }

    /// What to record when a provider call failed; `None` = retry later.
    fn on_provider_error(
        &self,
        id: Uuid,
        state: &Instance,
        step: &Step,
        e: ProviderError,
        failures: &mut HashMap<&'static str, u32>,
    ) -> Option<InstanceCommand> {
        let name = step_name(step);
        let n = failures.entry(name).or_default();
        *n += 1;
        let give_up = match &e {
            ProviderError::Permanent(_) | ProviderError::NotFound(_) => true,
            ProviderError::Transient(_) => *n >= TRANSIENT_ATTEMPTS,
        };
        tracing::warn!(instance = %id, step = name, attempt = *n, error = %e, give_up, "provider call failed");
        if !give_up {
            return None;
        }
        let fault = |message: String| FaultInfo {
            message,
            details: format!("{name} failed after {n} attempt(s): {e}"),
        };
        if let Some(cmd) = workflow_failure(id, state, step, &e, &fault) {
            return Some(cmd);
        }
        match step {
            Step::CreateVolume => Some(InstanceCommand::FailProvisioning {
                task: Task::BuildingErrorVolume,
                fault: fault(format!("Failed to create volume for instance {id}\n{e}")),
            }),
            Step::CreateServer => Some(InstanceCommand::FailProvisioning {
                task: Task::BuildingErrorServer,
                fault: fault(format!("Failed to create server for instance {id}\n{e}")),
            }),
            Step::PollServer => Some(InstanceCommand::FailProvisioning {
                task: Task::BuildingErrorTimeoutGa,
                fault: fault(format!(
                    "Server not active, status: unknown, fault message: {e}"
                )),
            }),
            Step::ReportUsage if state.task == Task::Building => {
                Some(InstanceCommand::FailProvisioning {
                    task: Task::BuildingErrorTimeoutGa,
                    fault: fault(format!(
                        "Failed to read the volume usage of instance {id}\n{e}"
                    )),
                })
            }
            Step::Prepare | Step::PollGuest if state.task == Task::Building => {
                Some(InstanceCommand::FailProvisioning {
                    task: Task::BuildingErrorTimeoutGa,
                    fault: fault(format!("Failed to prepare the guest of instance {id}\n{e}")),
                })
            }
            Step::ApplyConfiguration { .. } if state.task == Task::Building => {
                Some(InstanceCommand::FailProvisioning {
                    task: Task::BuildingErrorTimeoutGa,
                    fault: fault(format!(
                        "Failed to configure the guest of instance {id}\n{e}"
                    )),
                })
            }
            Step::ApplyConfiguration { .. } if matches!(e, ProviderError::Permanent(_)) => {
                configuration_refused(id, step, &e, &fault)
            }
            step if actions::is_action(step) => {
                actions::failure(id, step, actions::fault_of(name, *n, &e))
            }
            step if access::updates_access(step) => Some(InstanceCommand::FailAccessUpdate {
                fault: fault(format!("Failed to update access of instance {id}\n{e}")),
            }),
            // Teardown and compensation cannot "fail": a resource gone is what we wanted.
            _ if matches!(e, ProviderError::NotFound(_)) && already_gone(step).is_some() => {
                already_gone(step)
            }
            _ => {
                // Keep retrying (teardown, compensation, idle configuration that is not
                // refused for good), with a growing pause; cap the count so it stays
                // "not yet given up" and the log line rate stays low.
                *n = (*n).min(64);
                None
            }
        }
    }

    /// Performs one step through the providers: the steps that call a provider have a
    /// method each below; the others only record what the plan decided.
    async fn perform(
        &self,
        id: Uuid,
        s: &Instance,
        group: Option<&Configuration>,
        step: &Step,
    ) -> Result<Outcome, StepError> {
        use InstanceCommand as C;
        let rec = |c: InstanceCommand| Ok(Outcome::Record(c));
        match step {
            Step::CreateVolume => self.create_volume(id, s).await,
            Step::CreateServer => self.create_server(id, s).await,
            Step::PollServer => self.poll_server(s).await,
            Step::Prepare => {
                let req = self.prepare_request(id, s, group).await?;
                let key = IdempotencyKey::new(id, "prepare");
                self.providers.guests.prepare(&key, &req).await?;
                rec(C::RecordGuestPrepared)
            }
            Step::PollGuest => self.poll_guest(s).await,
            Step::ReportUsage => self.report_usage(s).await,
            Step::CompleteBuild => rec(C::CompleteProvisioning),
            Step::FailBuild { task, message } => rec(C::FailProvisioning {
                task: *task,
                fault: FaultInfo {
                    message: message.clone(),
                    details: format!("instance {id}: {message}"),
                },
            }),
            Step::ReleaseServer { server_id } | Step::DeleteServer { server_id } => {
                self.providers.compute.delete_server(server_id).await?;
                rec(C::RecordServerDeleted {
                    server_id: server_id.clone(),
                })
            }
            Step::ReleaseVolume { volume_id } | Step::DeleteVolume { volume_id } => {
                self.delete_volume(id, volume_id).await
            }
            Step::FinishDeletion => {
                self.sweep(id).await?;
                rec(C::CompleteDeletion)
            }
            Step::FinishRelease => {
                self.sweep(id).await?;
                rec(C::RecordResourcesReleased)
            }
            Step::Upgrade => self.upgrade(id, s).await,
            Step::FailUpgrade { message } => rec(C::FailUpgrade {
                fault: FaultInfo {
                    message: message.clone(),
                    details: message.clone(),
                },
            }),
            Step::DetachReplica => self.detach_replica(id, s).await,
            Step::SwitchReplicaSet => self.switch_replica_set(id, s).await,
            Step::SetPublic { public } => self.set_public(s, *public).await,
            Step::CompleteAccessUpdate => self.complete_access_update(s).await,
            Step::AdoptRevision {
                configuration_id,
                revision,
                restart_required,
            } => rec(C::ApplyConfigurationRevision {
                configuration_id: *configuration_id,
                revision: *revision,
                restart_required: *restart_required,
            }),
            Step::ApplyConfiguration {
                configuration_id,
                revision,
            } => {
                self.apply_configuration(id, s, group, *configuration_id, *revision)
                    .await
            }
            Step::Restart
            | Step::ResizeFlavor { .. }
            | Step::ResizeVolume { .. }
            | Step::FailResize { .. }
            | Step::FailRestart { .. } => self.perform_action(id, s, step).await,
            Step::ApplyGuestChange { seq } => self.apply_guest_change(id, s, *seq).await,
        }
    }

    /// Step `CreateVolume`: the instance's volume, under its idempotency key.
    async fn create_volume(&self, id: Uuid, s: &Instance) -> Result<Outcome, StepError> {
        let v = s
            .volume
            .clone()
            .unwrap_or(aggregates::instance::VolumeSpec {
                size: 1,
                volume_type: None,
            });
        let spec = VolumeSpec {
            instance_id: id,
            size: v.size,
            volume_type: v.volume_type,
            availability_zone: s.availability_zone.clone(),
            instance_name: s.name.clone(),
        };
        let vol = self
            .providers
            .volumes
            .create_volume(&IdempotencyKey::new(id, "volume"), &spec)
            .await?;
        Ok(Outcome::Record(InstanceCommand::RecordVolumeCreated {
            volume_id: vol.id,
            size: vol.size,
            volume_type: vol.volume_type,
        }))
    }

    /// Step `CreateServer`: the instance's server, with its volume attached, under its
    /// idempotency key.
    async fn create_server(&self, id: Uuid, s: &Instance) -> Result<Outcome, StepError> {
        let vcpus = self.catalog.flavor(&s.flavor.id).map_or(1, |f| f.vcpus);
        let spec = ServerSpec {
            instance_id: id,
            instance_name: s.name.clone(),
            flavor_id: s.flavor.id.clone(),
            vcpus,
            ram: s.flavor.ram,
            availability_zone: s.availability_zone.clone(),
            network_id: s.nics.first().and_then(|n| n.network_id.clone()),
            public: access_is_public(s),
            volume_id: s.volume_id.clone(),
        };
        let server = self
            .providers
            .compute
            .create_server(&IdempotencyKey::new(id, "server"), &spec)
            .await?;
        // The provider attaches `spec.volume_id` as part of the create (one
        // effect, one key): a separate attach that failed would leave a server
        // that was never recorded.
        Ok(Outcome::Record(InstanceCommand::RecordServerCreated {
            server_id: server.id,
        }))
    }

    /// Step `PollServer`: a change of the server's status, then of its addresses once
    /// it is active; otherwise wait.
    async fn poll_server(&self, s: &Instance) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let server = self.providers.compute.server(&sid).await?;
        let status = compute_status(&server.status);
        if s.compute != Some(status) {
            return Ok(Outcome::Record(InstanceCommand::RecordComputeStatus {
                status,
            }));
        }
        let addresses = to_addresses(&server.addresses);
        if status == ComputeStatus::Active && addresses != s.addresses {
            return Ok(Outcome::Record(InstanceCommand::RecordAddresses {
                addresses,
            }));
        }
        Ok(Outcome::Wait)
    }

    /// Step `PollGuest`: a change of the guest's status; otherwise wait.
    async fn poll_guest(&self, s: &Instance) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let report = self.providers.guests.status(&sid).await?;
        let status = service_status(&report.status);
        if status != s.service {
            Ok(Outcome::Record(InstanceCommand::RecordGuestStatus {
                status,
            }))
        } else {
            Ok(Outcome::Wait)
        }
    }

    /// Step `ReportUsage`: the volume's usage.
    async fn report_usage(&self, s: &Instance) -> Result<Outcome, StepError> {
        let vid = s.volume_id.clone().unwrap_or_default();
        let u = self.providers.volumes.volume_usage(&vid).await?;
        Ok(Outcome::Record(InstanceCommand::RecordVolumeUsage {
            used: u.used_gb,
            total: u.total_gb,
        }))
    }

    /// Steps `ReleaseVolume` and `DeleteVolume`: the volume, after any unrecorded server
    /// still holding it.
    async fn delete_volume(&self, id: Uuid, volume_id: &str) -> Result<Outcome, StepError> {
        // A server created but never recorded still holds the volume: delete it
        // first (a provider refuses to delete an attached volume).
        if let Some(server) = self
            .providers
            .compute
            .find_server(&IdempotencyKey::new(id, "server"))
            .await?
        {
            self.providers.compute.delete_server(&server).await?;
        }
        self.providers.volumes.delete_volume(volume_id).await?;
        Ok(Outcome::Record(InstanceCommand::RecordVolumeDeleted {
            volume_id: volume_id.to_string(),
        }))
    }

    /// Step `Upgrade`: asks the guest to run the requested version, done once it
    /// reports healthy.
    async fn upgrade(&self, id: Uuid, s: &Instance) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let version = s
            .datastore
            .as_ref()
            .map(|d| d.version_name.clone())
            .unwrap_or_default();
        // One key per requested upgrade: the log position of the request.
        let requested = s.upgrade_requested.as_deref().map_or(0, |(_, n)| *n);
        let k = IdempotencyKey::new(id, &format!("upgrade/{requested}"));
        self.providers.guests.upgrade(&k, &sid, &version).await?;
        let report = self.providers.guests.status(&sid).await?;
        if service_status(&report.status) == ServiceStatus::Healthy {
            Ok(Outcome::Record(InstanceCommand::CompleteUpgrade))
        } else {
            Ok(Outcome::Wait)
        }
    }

    /// Step `DetachReplica`: the guest stops replicating from its primary.
    async fn detach_replica(&self, id: Uuid, s: &Instance) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let primary = s.replica_of.map(|p| p.to_string()).unwrap_or_default();
        self.providers
            .guests
            .detach_replica(&IdempotencyKey::new(id, &format!("detach/{primary}")), &sid)
            .await?;
        Ok(Outcome::Record(InstanceCommand::CompleteReplicaDetach))
    }

    /// Step `SetPublic`: the server's public address given or taken away.
    async fn set_public(&self, s: &Instance, public: bool) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let server = self.providers.compute.set_public(&sid, public).await?;
        Ok(Outcome::Record(InstanceCommand::RecordAddresses {
            addresses: to_addresses(&server.addresses),
        }))
    }

    /// Step `ApplyConfiguration`: the guest runs the attached group's values (or none).
    async fn apply_configuration(
        &self,
        id: Uuid,
        s: &Instance,
        group: Option<&Configuration>,
        configuration_id: Option<Uuid>,
        revision: u64,
    ) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let values = group
            .filter(|g| configuration_id.is_some() && g.id == configuration_id)
            .map(|g| serde_json::to_value(&g.values).unwrap_or_default());
        // One key per change of the desired configuration (its log position), so
        // a detach, or attaching the same group again, reaches the guest.
        let k = IdempotencyKey::new(id, &format!("configuration/{}", s.configuration_changed_at));
        self.providers
            .guests
            .apply_configuration(&k, &sid, values.as_ref())
            .await?;
        Ok(Outcome::Record(InstanceCommand::RecordGuestConfiguration {
            configuration_id,
            revision,
            in_force: self.providers.guests.restarts_for_configuration(),
        }))
    }

    /// Deletes the server and the volume created under this instance's keys whose
    /// creation was never recorded (the process died between the call and the event):
    /// without this sweep they would leak.
    async fn sweep(&self, id: Uuid) -> Result<(), StepError> {
        if let Some(server) = self
            .providers
            .compute
            .find_server(&IdempotencyKey::new(id, "server"))
            .await?
        {
            self.providers.compute.delete_server(&server).await?;
        }
        if let Some(volume) = self
            .providers
            .volumes
            .find_volume(&IdempotencyKey::new(id, "volume"))
            .await?
        {
            self.providers.volumes.delete_volume(&volume).await?;
        }
        Ok(())
    }

    /// The prepare request: the create's databases and users, passwords unsealed from
    /// the vault for the guest only (never logged, never recorded).
    async fn prepare_request(
        &self,
        id: Uuid,
        s: &Instance,
        group: Option<&Configuration>,
    ) -> Result<PrepareRequest, StepError> {
        // The sealed passwords are in the creation event only (the state keeps none).
        let records = self.bus.read(&instance::stream_name(id)).await?;
        let created = records.iter().find_map(|r| match codec::decode(r) {
            Ok((InstanceEvent::InstanceCreated(c), _)) => Some(c),
            _ => None,
        });
        let mut users = Vec::new();
        if let Some(c) = &created {
            for u in &c.users {
                let (vault, sealed) = (self.vault.clone(), u.password.clone());
                let key_id = sealed.key_id.clone();
                let password = tokio::task::spawn_blocking(move || vault.unseal(id, &sealed))
                    .await??
                    .ok_or_else(|| {
                        StepError::SecretUnavailable(unseal_failure(&u.name, &key_id))
                    })?;
                users.push(PrepareUser {
                    name: u.name.clone(),
                    host: u.host.clone(),
                    password,
                    databases: u.databases.clone(),
                });
            }
        }
        let ds = s.datastore.clone().unwrap_or_default();
        Ok(PrepareRequest {
            instance_id: id,
            instance_name: s.name.clone(),
            server_id: s.server_id.clone().unwrap_or_default(),
            datastore_manager: ds.manager,
            datastore_version: ds.version_name,
            databases: s.databases.iter().map(|d| d.name.clone()).collect(),
            users,
            configuration: group.map(|g| serde_json::to_value(&g.values).unwrap_or_default()),
            replica_of: s.replica_of,
            allowed_cidrs: access::allowed_cidrs(s.access.as_ref()),
            restore: match s.restore_backup_id {
                None => None,
                Some(b) => Some(
                    backups::restore_chain(&self.backups, b)
                        .map_err(|m| StepError::Provider(ProviderError::Permanent(m)))?,
                ),
            },
        })
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

/// What a teardown or compensation step whose resource is already gone records.
fn already_gone(step: &Step) -> Option<InstanceCommand> {
    match step {
        Step::DeleteServer { server_id } | Step::ReleaseServer { server_id } => {
            Some(InstanceCommand::RecordServerDeleted {
                server_id: server_id.clone(),
            })
        }
        Step::DeleteVolume { volume_id } | Step::ReleaseVolume { volume_id } => {
            Some(InstanceCommand::RecordVolumeDeleted {
                volume_id: volume_id.clone(),
            })
        }
        _ => None,
    }
}

/// The failure to record when a step of a workflow other than the build gave up (an
/// upgrade, a change of databases or users, a replica detach, a replica-set switch).
fn workflow_failure(
    id: Uuid,
    state: &Instance,
    step: &Step,
    e: &ProviderError,
    fault: &dyn Fn(String) -> FaultInfo,
) -> Option<InstanceCommand> {
    Some(match step {
        Step::Upgrade => InstanceCommand::FailUpgrade {
            fault: fault(format!("Failed to upgrade instance {id}\n{e}")),
        },
        Step::ApplyGuestChange { seq } => InstanceCommand::RecordGuestChangeFailed {
            seq: *seq,
            fault: fault(guest_admin::failure_message(id, e)),
        },
        Step::DetachReplica => InstanceCommand::FailReplicaDetach {
            fault: fault(format!("Failed to detach replica {id}\n{e}")),
        },
        Step::SwitchReplicaSet => InstanceCommand::FailReplicaSetSwitch {
            fault: fault(replica_actions::failure_message(id, state.task, e)),
            switch: state.replica_switch.as_ref()?.id(),
        },
        _ => return None,
    })
}

/// A configuration the guest's server rejects (a permanent error of an idle
/// `ApplyConfiguration`): recorded, so the user sees a fault, and not tried again until
/// the group or the attachment changes.
fn configuration_refused(
    id: Uuid,
    step: &Step,
    e: &ProviderError,
    fault: &dyn Fn(String) -> FaultInfo,
) -> Option<InstanceCommand> {
    match step {
        Step::ApplyConfiguration {
            configuration_id,
            revision,
        } => Some(InstanceCommand::RecordConfigurationRefused {
            configuration_id: *configuration_id,
            revision: *revision,
            fault: fault(format!(
                "Failed to apply the configuration of instance {id}\n{e}"
            )),
        }),
        _ => None,
    }
}

/// The fault of a password that cannot be unsealed: which user, which key, and where the
/// operator reads on.
fn unseal_failure(user: &str, key_id: &str) -> String {
    format!(
        "the password of user '{user}' cannot be unsealed: the secret vault holds no key \
         {key_id} (secrets.db lost, emptied or restored from an older backup; see \
         docs/operations.md, \"Lost state files\")"
    )
}

/// What a step did to the workflow.
enum Progress {
    /// An event was recorded: look again at once.
    Moved,
    /// Something is in progress outside: look again after the poll interval.
    Waiting,
    /// A provider call failed and will be retried after this pause.
    Backoff(Duration),
    /// Nothing to do.
    Idle,
}

/// Pauses before retrying a failed provider call: the poll interval doubled per
/// consecutive failure, at most 5 s ([`TRANSIENT_ATTEMPTS`] bounds the retries).
fn provider_retry(poll: Duration) -> Backoff {
    Backoff::doubling(poll, Duration::from_secs(5))
}

/// Pauses before trying a step again after the store or the vault failed: 100 ms
/// doubling to 5 s, for as long as it takes (giving up would leave the instance stuck).
const STORE_RETRY: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::CreateVolume => "create_volume",
        Step::CreateServer => "create_server",
        Step::PollServer => "server_status",
        Step::Prepare => "prepare",
        Step::PollGuest => "guest_status",
        Step::ReportUsage => "volume_usage",
        Step::CompleteBuild => "complete_build",
        Step::FailBuild { .. } => "fail_build",
        Step::ReleaseServer { .. } => "release_server",
        Step::ReleaseVolume { .. } => "release_volume",
        Step::DeleteServer { .. } => "delete_server",
        Step::DeleteVolume { .. } => "delete_volume",
        Step::FinishDeletion => "finish_deletion",
        Step::FinishRelease => "finish_release",
        Step::Upgrade => "upgrade",
        Step::FailUpgrade { .. } => "fail_upgrade",
        Step::DetachReplica => "detach_replica",
        Step::SetPublic { .. } => "set_public",
        Step::CompleteAccessUpdate => "complete_access_update",
        Step::AdoptRevision { .. } => "adopt_revision",
        Step::ApplyConfiguration { .. } => "apply_configuration",
        Step::SwitchReplicaSet => "switch_replica_set",
        step @ (Step::Restart
        | Step::ResizeFlavor { .. }
        | Step::ResizeVolume { .. }
        | Step::FailResize { .. }
        | Step::FailRestart { .. }) => actions::step_name(step).unwrap_or("action"),
        Step::ApplyGuestChange { .. } => "guest_change",
    }
}

fn access_is_public(s: &Instance) -> bool {
    s.access
        .as_ref()
        .and_then(|a| a.get("is_public"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn to_addresses(addresses: &[ports::ServerAddress]) -> Vec<Address> {
    addresses
        .iter()
        .map(|a| Address {
            address: a.address.clone(),
            kind: a.kind.clone(),
            network: a.network.clone(),
            port: a.port,
        })
        .collect()
}

fn compute_status(s: &str) -> ComputeStatus {
    match s {
        "ACTIVE" => ComputeStatus::Active,
        "BUILD" => ComputeStatus::Build,
        "REBOOT" => ComputeStatus::Reboot,
        "HARD_REBOOT" => ComputeStatus::HardReboot,
        "RESIZE" => ComputeStatus::Resize,
        "VERIFY_RESIZE" => ComputeStatus::VerifyResize,
        "MIGRATING" => ComputeStatus::Migrating,
        "SHUTOFF" => ComputeStatus::Shutoff,
        _ => ComputeStatus::Error,
    }
}

fn service_status(s: &str) -> ServiceStatus {
    match s.to_ascii_uppercase().as_str() {
        "HEALTHY" => ServiceStatus::Healthy,
        "RUNNING" | "ACTIVE" => ServiceStatus::Running,
        "BUILDING" | "BUILD" => ServiceStatus::Building,
        "NEW" => ServiceStatus::New,
        "SHUTDOWN" => ServiceStatus::Shutdown,
        "CRASHED" => ServiceStatus::Crashed,
        "FAILED" => ServiceStatus::Failed,
        "UPGRADING" => ServiceStatus::Upgrading,
        "RESTARTING" => ServiceStatus::Restarting,
        "INSTANCE_READY" => ServiceStatus::InstanceReady,
        _ => ServiceStatus::Unknown,
    }
}
