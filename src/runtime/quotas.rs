//! The command path of the Quota aggregate (streams `quota-<project>`): an admin's
//! change of a project's limits, run through [`CommandBus::run`] under the same keyed
//! locks as the decisions that check those limits (instance creates take
//! `quota:<project>`, backup creates `backup-quota:<project>`), so a create never
//! decides against a limit that is being changed.

use aggregates::instance::Caller;
use aggregates::quota::{self, DecideCtx, Quota, QuotaError, QuotaEvent, UpdateQuotas};
use chrono::Utc;

use super::codec::{self, CodecError, CommandMeta};
use super::commands::{CommandBus, CommandError, StreamCommand};
use crate::metrics::CommandOutcome;
use crate::store::{NewEvent, RecordedEvent};

impl CommandBus {
    /// Runs `UpdateQuotas`: fold, decide, append, wait for the read models (the next
    /// create sees the new limits). Returns the events recorded (none for a body that
    /// named nothing).
    pub async fn execute_quota(
        &self,
        cmd: &UpdateQuotas,
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Vec<QuotaEvent>, CommandError> {
        let project = &cmd.project_id;
        let _guards = self
            .lock_keys(vec![
                format!("quota:{project}"),
                format!("backup-quota:{project}"),
            ])
            .await;
        let command = QuotaCommandRun { cmd, caller, meta };
        let done = self.run(&quota::stream_name(project), None, &command).await;
        crate::metrics::global().commands(["UpdateQuotas"], CommandOutcome::from(&done));
        Ok(done?.events)
    }
}

/// One `UpdateQuotas`, as the command path performs it.
struct QuotaCommandRun<'a> {
    cmd: &'a UpdateQuotas,
    caller: &'a Caller,
    meta: &'a CommandMeta,
}

impl StreamCommand for QuotaCommandRun<'_> {
    type State = Quota;
    type Event = QuotaEvent;

    fn fold(&self, records: &[RecordedEvent]) -> Result<Quota, CommandError> {
        let mut state = Quota::default();
        for r in records {
            let event = codec::decode_quota_event(r)
                .map_err(|e: CodecError| CommandError::unreadable(r, e))?;
            state = quota::evolve(state, &event);
        }
        Ok(state)
    }

    fn decide(&self, state: &Quota) -> Result<Vec<QuotaEvent>, CommandError> {
        let ctx = DecideCtx {
            now: Utc::now(),
            caller: self.caller,
        };
        quota::decide(state, self.cmd, &ctx).map_err(rejected)
    }

    fn encode(&self, event: &QuotaEvent, _index: usize) -> NewEvent {
        let (event_type, version, data) = event.encode();
        codec::encode_parts(event_type, version, &data, event.at(), self.meta)
    }

    fn evolve(&self, state: Quota, event: &QuotaEvent) -> Quota {
        quota::evolve(state, event)
    }
}

/// A refusal of the quota aggregate, in its Trove fault class.
fn rejected(e: QuotaError) -> CommandError {
    CommandError::Rejected(e.fault(), e.to_string())
}
