//! Store failures of a workflow step that retrying cannot cure.
//!
//! The worker loop retries a step whose report could not be recorded, with a capped
//! backoff (the store is away, full, or lost a race): that is right for a failure that
//! passes. An append over the store's size limit (EventStoreDB's maximum append size,
//! [`StoreError::TooLarge`]) never passes: the same report is refused every time, so the
//! step fails for good instead, as a permanent provider error does, and the workflow
//! records a fault (small, so it fits). A persistent [`StoreError::Denied`] is left to
//! the loop: troved stops on it (the projector's subscription is denied too) and an
//! operator fixes the credentials.

use super::ports::ProviderError;
use super::StepError;
use crate::runtime::commands::CommandError;
use crate::store::StoreError;

/// The permanent provider error a failed recording stands for, if retrying cannot help.
pub(super) fn permanent(e: &StepError) -> Option<ProviderError> {
    match e {
        StepError::Command(CommandError::Store(StoreError::TooLarge(m))) => Some(
            ProviderError::Permanent(format!("the step's report is too large to record: {m}")),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_permanent_and_denied_or_unavailable_are_retried() {
        let too_large = StepError::Command(CommandError::Store(StoreError::TooLarge(
            "Maximum Append Size of 1048576 Exceeded.".into(),
        )));
        match permanent(&too_large) {
            Some(ProviderError::Permanent(m)) => {
                assert!(m.contains("Maximum Append Size"), "{m}")
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        for retried in [
            StoreError::Denied("access denied".into()),
            StoreError::Unavailable("away".into()),
            StoreError::Full("disk".into()),
        ] {
            let e = StepError::Command(CommandError::Store(retried));
            assert!(permanent(&e).is_none(), "{e}");
        }
    }
}
