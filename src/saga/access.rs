//! Access updates reach the guest: after the public address is given or taken away
//! (step `SetPublic`), the step `CompleteAccessUpdate` tells the guest the new
//! `allowed_cidrs` before recording the update as done.

use aggregates::instance::{Instance, InstanceCommand};

use super::plan::Step;
use super::{Outcome, SagaRunner, StepError};

/// Whether `step` is one of an access update's: a permanent failure of either fails the
/// update (`AccessUpdateFailed`) instead of leaving the instance in UPDATING.
pub(super) fn updates_access(step: &Step) -> bool {
    matches!(step, Step::SetPublic { .. } | Step::CompleteAccessUpdate)
}

/// The `allowed_cidrs` of a stored access object (absent or not a list: none, meaning
/// from anywhere, as upstream documents).
pub(super) fn allowed_cidrs(access: Option<&serde_json::Value>) -> Vec<String> {
    access
        .and_then(|a| a.get("allowed_cidrs"))
        .and_then(|c| c.as_array())
        .map(|cidrs| {
            cidrs
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl SagaRunner {
    /// Step `CompleteAccessUpdate`: the guest restricts logins to the pending access's
    /// CIDRs (idempotent: a retry applies them again), then the update is recorded.
    pub(super) async fn complete_access_update(&self, s: &Instance) -> Result<Outcome, StepError> {
        if let (Some(sid), Some(access)) = (&s.server_id, &s.pending_access) {
            self.providers
                .guests
                .restrict_access(sid, &access.allowed_cidrs)
                .await?;
        }
        Ok(Outcome::Record(InstanceCommand::CompleteAccessUpdate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_come_from_the_access_object() {
        let a = serde_json::json!({"is_public": true, "allowed_cidrs": ["10.0.0.0/8", 3]});
        assert_eq!(allowed_cidrs(Some(&a)), vec!["10.0.0.0/8".to_string()]);
        assert!(allowed_cidrs(Some(&serde_json::json!({"is_public": true}))).is_empty());
        assert!(allowed_cidrs(None).is_empty());
    }
}
