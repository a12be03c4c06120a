//! What the databases, users and root endpoints share (ADR 0010): the instance as the
//! read models show it behind upstream's `load_and_verify`, running a change through
//! the command bus, and waiting (bounded) for the guest to apply it before answering, so
//! that a client's next step (a login as the user it just created) works.

use std::time::Duration;

use aggregates::fault::Fault;
use aggregates::instance::guestdb::{guest_admin_gate, Family};
use aggregates::instance::{Caller, Instance, InstanceCommand};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::{AppState, RequestId};
use crate::runtime::codec::CommandMeta;

/// Longest wait for the guest to apply a change before the answer (202 either way,
/// unless the guest refused it). A guest slower than this still applies it later.
pub const APPLY_WAIT: Duration = Duration::from_secs(20);

/// How often the wait looks at the read model.
const POLL: Duration = Duration::from_millis(20);

/// The instance and its datastore family, after upstream's checks: visible to the
/// caller (404), a datastore with databases and users (422), running (422).
pub fn loaded(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<(Instance, Family)> {
    let id = Uuid::parse_str(raw_id).map_err(|_| ApiError::resource_not_found(raw_id))?;
    let inst = state
        .models
        .instance_visible_to(id, &caller.project_id, caller.is_admin())
        .ok_or_else(|| ApiError::resource_not_found(raw_id))?;
    let (_, family) = guest_admin_gate(&inst, true, id).map_err(domain)?;
    Ok((inst, family))
}

/// A domain refusal as an API error.
pub fn domain(e: aggregates::instance::DomainError) -> ApiError {
    ApiError::Domain {
        fault: e.fault(),
        message: e.to_string(),
    }
}

/// Upstream's `unquote_user_host` (the path is already percent-decoded): `name@host`,
/// split at the last `@`; no `@` (or a trailing one) means host `%`.
pub fn user_and_host(raw: &str) -> (String, String) {
    match raw.rsplit_once('@') {
        Some((name, host)) if !host.is_empty() => (name.to_string(), host.to_string()),
        _ => (raw.to_string(), "%".to_string()),
    }
}

/// Runs `cmd` on instance `id` and waits (at most [`APPLY_WAIT`]) until the guest has
/// applied the change it recorded. A change the guest refused is answered with its
/// fault (422); the lists no longer show it.
pub async fn run_change(
    state: &AppState,
    caller: &Caller,
    rid: &RequestId,
    id: Uuid,
    cmd: InstanceCommand,
) -> ApiResult<()> {
    let meta = CommandMeta::for_request(caller, &rid.0);
    let done = state.bus.execute(id, &[cmd], caller, &meta).await?;
    if done.events.is_empty() {
        return Ok(());
    }
    let seq = done.state.guest_changes_made;
    wait_applied(state, id, seq).await
}

/// Waits until change `seq` of instance `id` is in the read model and no longer pending.
async fn wait_applied(state: &AppState, id: Uuid, seq: u64) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + APPLY_WAIT;
    loop {
        let Some(inst) = state.models.instance(id) else {
            return Ok(());
        };
        // The read model may not have folded change `seq` yet: then nothing is pending
        // there either, and the answer would come before the change was applied.
        let recorded = inst.guest_changes_made >= seq;
        if recorded && !inst.guest_changes.iter().any(|p| p.seq <= seq) {
            if inst.failed_guest_change.map(std::num::NonZeroU64::get) == Some(seq) {
                let message = inst
                    .fault
                    .map(|f| f.message)
                    .unwrap_or_else(|| "The guest refused the change.".into());
                return Err(ApiError::Domain {
                    fault: Fault::UnprocessableEntity,
                    message,
                });
            }
            return Ok(());
        }
        if inst.deleted || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One page of `items` sorted by `key`: those after `marker` (exclusive), at most
/// `limit`, and the marker of the next page when more follow (upstream's
/// `SimplePaginatedDataView`: the last item's key).
pub fn page<T, K: PartialOrd>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> K,
    marker: Option<K>,
    limit: usize,
) -> (Vec<T>, Option<usize>) {
    items.sort_by(|a, b| {
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if let Some(m) = marker {
        items.retain(|i| key(i) > m);
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let last = (more && !items.is_empty()).then(|| items.len() - 1);
    (items, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_split_at_the_last_at_sign() {
        assert_eq!(user_and_host("bob"), ("bob".into(), "%".into()));
        assert_eq!(user_and_host("bob@%"), ("bob".into(), "%".into()));
        assert_eq!(
            user_and_host("a@b@10.0.0.1"),
            ("a@b".into(), "10.0.0.1".into())
        );
        assert_eq!(user_and_host("bob@"), ("bob@".into(), "%".into()));
    }

    #[test]
    fn pages_follow_the_marker_and_name_the_last_item() {
        let (p, next) = page(vec!["c", "a", "b"], |s| s.to_string(), None, 2);
        assert_eq!((p, next), (vec!["a", "b"], Some(1)));
        let (p, next) = page(vec!["c", "a", "b"], |s| s.to_string(), Some("b".into()), 2);
        assert_eq!((p, next), (vec!["c"], None));
    }
}
