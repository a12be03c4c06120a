//! The actions `promote_to_replica_source` and `eject_replica_source` (issue #15):
//! the request becomes a command on the named instance, run by the command path that
//! joins the rest of the replica set (`crate::runtime::replica_actions`); the saga
//! switches the servers (`crate::saga`).

use aggregates::instance::{Caller, InstanceCommand};
use chrono::Utc;
use uuid::Uuid;

use super::error::ApiResult;
use super::AppState;
use crate::runtime::codec::CommandMeta;

/// `{"promote_to_replica_source": {}}` on replica `id`.
pub(super) async fn promote(
    state: &AppState,
    id: Uuid,
    caller: &Caller,
    meta: &CommandMeta,
) -> ApiResult<()> {
    state
        .bus
        .switch_replica_set(id, InstanceCommand::PromoteToReplicaSource, caller, meta)
        .await?;
    Ok(())
}

/// `{"eject_replica_source": {}}` on replica source `id`.
pub(super) async fn eject(
    state: &AppState,
    id: Uuid,
    caller: &Caller,
    meta: &CommandMeta,
) -> ApiResult<()> {
    let cmd = InstanceCommand::EjectReplicaSource {
        silent: silent(state, id),
    };
    state.bus.switch_replica_set(id, cmd, caller, meta).await?;
    Ok(())
}

/// Upstream's "no current heartbeat": the last heartbeat is older than the expiry.
/// Heartbeats exist only with the local provider's supervisor (in memory); without an
/// expiry (the simulated cloud) or before the first heartbeat since start, the source
/// is not silent, and only a failure the log shows (the supervisor's `GuestFailed` or a
/// server it found down) lets it be ejected (docs/api.md).
fn silent(state: &AppState, id: Uuid) -> bool {
    match (state.heartbeat_expiry, state.heartbeats.last(id)) {
        (Some(expiry), Some(last)) => Utc::now() - last > expiry,
        _ => false,
    }
}
