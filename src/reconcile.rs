//! Lost state (issue #12): the start-up checks of the secret vault and of the provider's
//! own state, and the reconciliation of the log with what the provider still has.
//!
//! Both files live beside the log but are not rebuilt from it: `secrets.db` holds the only
//! keys of the sealed passwords, and the provider's state (`cloud.db` for the simulated
//! cloud) is the cloud's. Opening either creates it when it is missing, which used to hide
//! its loss: builds then prepared guests with empty passwords, and every instance kept
//! showing an address and a volume the cloud no longer had. So, before opening them:
//! - [`check_vault`]: a live instance whose passwords the log holds sealed needs its key
//!   (keys go only with their instance, after `InstanceDeleted`; one can be missing only
//!   if the file was lost, emptied or restored from an older backup). If any is missing,
//!   start-up fails naming the file, unless the operator accepts the loss, which is then
//!   recorded per instance (`InstanceSecretsLost`).
//! - [`check_provider_state`]: a provider state that is missing or holds no resources
//!   while the log holds instances owning servers or volumes fails start-up the same way,
//!   unless accepted; the reconciliation then records those instances as lost.
//!
//! [`Reconciler::run`] asks the provider (the [`ResourceInventory`] port) which of the
//! servers and volumes the read models claim it no longer has, and records each loss
//! through the command path (`RecordResourcesLost` → `InstanceResourcesLost`): at start,
//! on demand (`POST /v1.0/{project}/mgmt/reconcile`) and periodically. It never deletes
//! anything and never touches the provider.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use aggregates::instance::{Caller, FaultInfo, Instance, InstanceCommand, Task};
use chrono::{SecondsFormat, Utc};
use projections::{InstanceModels, MgmtFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::runtime::codec::CommandMeta;
use crate::runtime::commands::{CommandBus, CommandError};
use crate::saga::ports::{ProviderError, ResourceIds, ResourceInventory, StoredState};
use crate::secrets::{Vault, VaultError};

/// Where the operator reads what to do.
const DOCS: &str = "docs/operations.md, \"Lost state files\"";

/// Why start-up refuses, or a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum LostStateError {
    /// A state file is lost while the log needs it: the message names the file and the
    /// way out.
    #[error("{0}")]
    Refused(String),
    #[error("secret vault: {0}")]
    Vault(#[from] VaultError),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("recording a loss: {0}")]
    Command(#[from] CommandError),
}

/// The identity losses are recorded as at start-up and by the periodic check (the
/// on-demand check records them as the admin who asked).
pub fn service_caller() -> Caller {
    Caller {
        user_id: "troved-reconcile".into(),
        project_id: "service".into(),
        roles: vec!["admin".into()],
    }
}

/// Every instance the read models hold that is not deleted.
fn live_instances(models: &InstanceModels) -> Vec<Instance> {
    let live = MgmtFilter {
        deleted: Some(false),
        project: None,
    };
    models.mgmt_page(&live, 0, usize::MAX)
}

/// Up to three ids, for messages.
fn some_ids(ids: &[Uuid]) -> String {
    let mut shown: Vec<String> = ids.iter().take(3).map(Uuid::to_string).collect();
    if ids.len() > 3 {
        shown.push("...".into());
    }
    shown.join(", ")
}

/// Checks the vault at `path` against the log, then opens it: a missing file is created
/// only once the check passed (or the loss is accepted). Returns the vault and the
/// instances whose loss of secrets the caller must record (only when `accept`).
/// Blocking.
pub fn check_vault(
    path: &Path,
    models: &InstanceModels,
    accept: bool,
) -> Result<(Vault, Vec<Uuid>), LostStateError> {
    let needing: Vec<Uuid> = live_instances(models)
        .into_iter()
        .filter(|i| i.has_sealed_secrets && !i.secrets_lost)
        .filter_map(|i| i.id)
        .collect();
    let (state, keys) = if path.exists() {
        let vault = Vault::open(path)?;
        let keys = vault.instances_with_keys()?;
        let state = if keys.is_empty() {
            "holds no keys"
        } else {
            "lacks some keys"
        };
        (state, Some((vault, keys)))
    } else {
        ("is missing", None)
    };
    let held = keys.as_ref().map(|(_, k)| k);
    let lacking: Vec<Uuid> = needing
        .into_iter()
        .filter(|id| !held.is_some_and(|h| h.contains(id)))
        .collect();
    if !lacking.is_empty() && !accept {
        return Err(LostStateError::Refused(format!(
            "secret vault {} {state}, but the log holds {} instance(s) whose passwords are sealed with its keys ({}): restore it from a backup ({DOCS}), or start with --accept-lost-secrets (TROVED_ACCEPT_LOST_SECRETS=true) to record those passwords as lost for good (builds that still need them then fail)",
            path.display(),
            lacking.len(),
            some_ids(&lacking),
        )));
    }
    let vault = match keys {
        Some((vault, _)) => vault,
        None => Vault::open(path)?,
    };
    if !lacking.is_empty() {
        tracing::warn!(vault = %path.display(), instances = lacking.len(), "--accept-lost-secrets: recording the sealed passwords of these instances as lost");
    }
    Ok((vault, lacking))
}

/// Checks a provider's own state, as found before opening it (`state`, at `location`),
/// against the log: missing or empty while instances own servers or volumes refuses to
/// start unless `accept`.
pub fn check_provider_state(
    state: StoredState,
    location: &str,
    models: &InstanceModels,
    accept: bool,
) -> Result<(), LostStateError> {
    if state == StoredState::Present {
        return Ok(());
    }
    let owning: Vec<Uuid> = live_instances(models)
        .into_iter()
        .filter(|i| i.server_id.is_some() || i.volume_id.is_some())
        .filter_map(|i| i.id)
        .collect();
    if owning.is_empty() {
        return Ok(());
    }
    if accept {
        tracing::warn!(provider_state = location, instances = owning.len(), "--accept-lost-cloud-state: the reconciliation records these instances' servers and volumes as lost");
        return Ok(());
    }
    Err(LostStateError::Refused(format!(
        "provider state {location} {}, but the log holds {} instance(s) whose servers or volumes it kept ({}): restore it from a backup ({DOCS}), or start with --accept-lost-cloud-state (TROVED_ACCEPT_LOST_CLOUD_STATE=true) to record those instances as lost (ERROR; they can then only be deleted)",
        state.describe(),
        owning.len(),
        some_ids(&owning),
    )))
}

/// Records `InstanceSecretsLost` for each of `ids` (after an accepted vault loss).
pub async fn record_secrets_lost(
    bus: &CommandBus,
    ids: &[Uuid],
    vault: &Path,
) -> Result<(), LostStateError> {
    let caller = service_caller();
    let meta = CommandMeta::for_request(&caller, "startup:accept-lost-secrets");
    let reason = format!(
        "the secret vault {} held no key for this instance at start-up; the operator accepted the loss (--accept-lost-secrets)",
        vault.display()
    );
    for id in ids {
        let cmd = InstanceCommand::RecordSecretsLost {
            reason: reason.clone(),
        };
        bus.execute(*id, &[cmd], &caller, &meta).await?;
    }
    Ok(())
}

/// One instance found lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LostInstance {
    pub instance_id: Uuid,
    pub project_id: String,
    pub name: String,
    /// The server that is gone, if it is.
    pub server_id: Option<String>,
    /// The volume that is gone, if it is.
    pub volume_id: Option<String>,
}

/// What one reconciliation found and recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Instances whose resources were checked.
    pub checked: usize,
    /// Instances newly recorded as lost (already recorded ones are not repeated).
    pub lost: Vec<LostInstance>,
    /// When it ran (RFC 3339).
    pub at: String,
}

/// What the read models claim: the live instances a reconciliation checks (not being
/// deleted, not a failed build being compensated: those delete their own resources),
/// and their servers and volumes.
pub fn claims(models: &InstanceModels) -> (Vec<Instance>, ResourceIds) {
    let candidates: Vec<Instance> = live_instances(models)
        .into_iter()
        .filter(|i| i.task != Task::Deleting && !i.build_failed)
        .filter(|i| i.server_id.is_some() || i.volume_id.is_some())
        .collect();
    let claimed = ResourceIds {
        servers: candidates
            .iter()
            .filter_map(|i| i.server_id.clone())
            .collect(),
        volumes: candidates
            .iter()
            .filter_map(|i| i.volume_id.clone())
            .collect(),
    };
    (candidates, claimed)
}

/// The instances among `candidates` whose server or volume is in `gone`, naming those.
pub fn matching(candidates: &[Instance], gone: &ResourceIds) -> Vec<LostInstance> {
    let servers: HashSet<&String> = gone.servers.iter().collect();
    let volumes: HashSet<&String> = gone.volumes.iter().collect();
    candidates
        .iter()
        .filter_map(|i| {
            let server_id = i.server_id.clone().filter(|s| servers.contains(s));
            let volume_id = i.volume_id.clone().filter(|v| volumes.contains(v));
            (server_id.is_some() || volume_id.is_some()).then_some(LostInstance {
                instance_id: i.id?,
                project_id: i.project_id.clone(),
                name: i.name.clone(),
                server_id,
                volume_id,
            })
        })
        .collect()
}

/// Runs reconciliations, one at a time.
pub struct Reconciler {
    bus: CommandBus,
    models: Arc<InstanceModels>,
    inventory: Arc<dyn ResourceInventory>,
    /// One run at a time: two would only decide the same losses twice (no-ops).
    running: tokio::sync::Mutex<()>,
}

impl Reconciler {
    /// A reconciler over the read models and the provider's inventory.
    pub fn new(
        bus: CommandBus,
        models: Arc<InstanceModels>,
        inventory: Arc<dyn ResourceInventory>,
    ) -> Reconciler {
        Reconciler {
            bus,
            models,
            inventory,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Compares what the read models claim with what the provider has, and records each
    /// instance whose server or volume is gone, as `caller` (request id `request_id`).
    ///
    /// The claims are read before the provider is asked: a resource is recorded only
    /// after the provider made it, so one claimed before the question existed before
    /// it. Teardowns and the compensation of failed builds are skipped (they delete
    /// resources themselves, and take "already gone" as done); `decide` skips them too,
    /// on the stream as it is when the loss is recorded.
    pub async fn run(&self, caller: &Caller, request_id: &str) -> Result<Report, LostStateError> {
        let _one = self.running.lock().await;
        let (candidates, claimed) = claims(&self.models);
        let gone = if claimed.is_empty() {
            ResourceIds::default()
        } else {
            self.inventory.gone(&claimed).await?
        };
        let meta = CommandMeta::for_request(caller, request_id);
        let mut report = Report {
            checked: candidates.len(),
            lost: Vec::new(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        for lost in matching(&candidates, &gone) {
            let cmd = InstanceCommand::RecordResourcesLost {
                server_id: lost.server_id.clone(),
                volume_id: lost.volume_id.clone(),
                fault: self.fault(&lost.server_id, &lost.volume_id),
            };
            let done = self
                .bus
                .execute(lost.instance_id, &[cmd], caller, &meta)
                .await?;
            if !done.events.is_empty() {
                tracing::warn!(instance = %lost.instance_id, server = ?lost.server_id, volume = ?lost.volume_id, "the provider no longer has this instance's resources: recorded as lost");
                report.lost.push(lost);
            }
        }
        Ok(report)
    }

    /// The fault of a loss: what is gone, where the provider keeps its state, and what
    /// the user can do.
    fn fault(&self, server_id: &Option<String>, volume_id: &Option<String>) -> FaultInfo {
        let gone: Vec<String> = [("server", server_id), ("volume", volume_id)]
            .into_iter()
            .filter_map(|(kind, id)| id.as_ref().map(|id| format!("{kind} {id}")))
            .collect();
        let gone = gone.join(" and ");
        FaultInfo {
            message: format!(
                "The cloud no longer has the {gone} of this instance: its database is not running and its data may be lost. Delete the instance (and restore a backup into a new one)."
            ),
            details: format!(
                "reconciliation: {gone} not found in the provider state {}",
                self.inventory.state_location()
            ),
        }
    }
}
