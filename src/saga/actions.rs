//! The workflows of the instance actions: restart (task REBOOTING) and flavor or volume
//! resize (task RESIZING), and the escape hatch that lets an admin's `reset_status` or a
//! DELETE take an instance away from a workflow stuck in a provider call.
//!
//! Like every workflow, each is a pure function of the folded state ([`next_step`]):
//! the provider call is named by the request's position in the log
//! (`Instance::action_requested_at`), so a step retried after a crash or a lost answer
//! does the effect once, and a later request does it again. A step whose call fails for
//! good records the failure: a failed restart or resize is rolled back to task NONE
//! with the fault, as upstream does (spec `instance-lifecycle.md` §7.8).

use aggregates::instance::{FaultInfo, Instance, InstanceCommand, ServiceStatus};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::watch;
use uuid::Uuid;

use super::ports::{FlavorSpec, IdempotencyKey, ProviderError};
use super::{service_status, Outcome, SagaRunner, StepError};
use super::{Policy, Step};

/// The step of a restart or resize in progress. A restart or flavor resize waits for
/// the guest to be healthy again; past `Policy::action_timeout` from the request it
/// fails instead (a volume resize does not wait for the guest: its provider call
/// either ends or fails).
pub(super) fn next_step(
    id: Uuid,
    s: &Instance,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Option<Step> {
    use aggregates::instance::Task;
    // Snapshots folded before the request time was kept: count from the last change.
    let requested = s.action_requested_on.unwrap_or(s.updated);
    let late = now - requested > policy.action_timeout;
    let secs = policy.action_timeout.num_seconds();
    match s.task {
        Task::Rebooting if late => Some(Step::FailRestart {
            message: format!(
                "Timeout waiting for instance {id} to restart: its database did not \
                 report HEALTHY within {secs} s."
            ),
        }),
        Task::Rebooting => Some(Step::Restart),
        Task::Resizing if late && s.pending_flavor.is_some() => Some(Step::FailResize {
            message: format!(
                "Timeout waiting for instance {id} to resize: its database did not \
                 report HEALTHY within {secs} s."
            ),
        }),
        Task::Resizing => Some(resize_step(s)),
        _ => None,
    }
}

fn resize_step(s: &Instance) -> Step {
    if let Some(f) = &s.pending_flavor {
        return Step::ResizeFlavor {
            flavor_id: f.id.clone(),
            ram: f.ram,
        };
    }
    match (s.pending_volume_size, &s.volume_id) {
        (Some(size), Some(volume_id)) => Step::ResizeVolume {
            volume_id: volume_id.clone(),
            size: size.get(),
        },
        (Some(_), None) => Step::FailResize {
            message: "The instance has no volume to resize.".into(),
        },
        (None, _) => Step::FailResize {
            message: "Nothing to resize.".into(),
        },
    }
}

/// What an idle instance left by an action still needs from the cloud:
/// - reset while its build waited for the compute server, it still reads that server's
///   BUILD: follow the server until it is active (or in error), as the build would have;
/// - reset (service UNKNOWN), or after a failed restart (service RESTARTING): ask the
///   guest for its status until it reports another one. Upstream waits for the guest's
///   next heartbeat; a cloud without heartbeats (the simulated one) would otherwise
///   refuse every action of the instance for good.
pub(super) fn after_reset(s: &Instance) -> Option<Step> {
    use aggregates::instance::ComputeStatus;
    s.server_id.as_ref()?;
    if s.status_reset && s.compute == Some(ComputeStatus::Build) {
        return Some(Step::PollServer);
    }
    let stale = match s.service {
        ServiceStatus::Restarting => true,
        ServiceStatus::Unknown => s.status_reset,
        _ => false,
    };
    (stale && s.guest_prepared).then_some(Step::PollGuest)
}

/// Whether `step` belongs to an action's workflow (performed by [`SagaRunner::perform_action`]).
pub(super) fn is_action(step: &Step) -> bool {
    matches!(
        step,
        Step::Restart
            | Step::ResizeFlavor { .. }
            | Step::ResizeVolume { .. }
            | Step::FailResize { .. }
            | Step::FailRestart { .. }
    )
}

/// The metric and log name of an action's step.
pub(super) fn step_name(step: &Step) -> Option<&'static str> {
    Some(match step {
        Step::Restart => "restart",
        Step::ResizeFlavor { .. } => "resize_flavor",
        Step::ResizeVolume { .. } => "resize_volume",
        Step::FailResize { .. } => "fail_resize",
        Step::FailRestart { .. } => "fail_restart",
        _ => return None,
    })
}

/// What to record when an action's provider call failed for good: the action fails
/// (rolled back to task NONE with the fault).
pub(super) fn failure(id: Uuid, step: &Step, fault: FaultInfo) -> Option<InstanceCommand> {
    let fault = |what: &str| FaultInfo {
        message: format!("Failed to {what} instance {id}\n{}", fault.message),
        details: fault.details.clone(),
    };
    match step {
        Step::Restart => Some(InstanceCommand::FailRestart {
            fault: fault("restart"),
        }),
        Step::ResizeFlavor { .. } => Some(InstanceCommand::FailResize {
            fault: fault("resize the flavor of"),
        }),
        Step::ResizeVolume { .. } => Some(InstanceCommand::FailResize {
            fault: fault("resize the volume of"),
        }),
        _ => None,
    }
}

impl SagaRunner {
    /// Performs an action's step: the provider call under the request's key, then
    /// (restart, flavor resize) the guest's status until it is healthy.
    pub(super) async fn perform_action(
        &self,
        id: Uuid,
        s: &Instance,
        step: &Step,
    ) -> Result<Outcome, StepError> {
        let sid = s.server_id.clone().unwrap_or_default();
        let key =
            |what: &str| IdempotencyKey::new(id, &format!("{what}/{}", s.action_requested_at));
        let guests = &self.providers.guests;
        let done = match step {
            Step::Restart => {
                guests.restart(&key("restart"), &sid).await?;
                InstanceCommand::CompleteRestart
            }
            Step::ResizeFlavor { flavor_id, ram } => {
                let flavor = FlavorSpec {
                    flavor_id: flavor_id.clone(),
                    vcpus: self.catalog.flavor(flavor_id).map_or(1, |f| f.vcpus),
                    ram: *ram,
                };
                guests.resize_flavor(&key("resize"), &sid, &flavor).await?;
                InstanceCommand::CompleteResize
            }
            Step::ResizeVolume { volume_id, size } => {
                guests
                    .resize_volume(&key("resize"), &sid, volume_id, *size)
                    .await?;
                // The volume needs no guest restart: done.
                return Ok(Outcome::Record(InstanceCommand::CompleteResize));
            }
            Step::FailResize { message } => {
                return Ok(Outcome::Record(InstanceCommand::FailResize {
                    fault: FaultInfo {
                        message: message.clone(),
                        details: format!("instance {id}: {message}"),
                    },
                }))
            }
            Step::FailRestart { message } => {
                return Ok(Outcome::Record(InstanceCommand::FailRestart {
                    fault: FaultInfo {
                        message: message.clone(),
                        details: format!("instance {id}: {message}"),
                    },
                }))
            }
            _ => return Ok(Outcome::Wait),
        };
        let report = guests.status(&sid).await?;
        if service_status(&report.status) == ServiceStatus::Healthy {
            Ok(Outcome::Record(done))
        } else {
            Ok(Outcome::Wait)
        }
    }
}

/// Event types that take an instance away from whatever workflow it was in: a step in
/// flight for it is abandoned at once (its provider call may hang forever) instead of
/// holding the instance until the call times out.
const ESCAPES: [&str; 2] = ["InstanceStatusReset", "InstanceDeletionRequested"];

/// Per instance, the newest revision of an escape event: what an abandoned step waits
/// for.
#[derive(Default)]
pub(super) struct Escapes(DashMap<Uuid, watch::Sender<u64>>);

impl Escapes {
    /// The subscription delivered `event_type` at `revision` of instance `id`.
    pub(super) fn delivered(&self, id: Uuid, event_type: &str, revision: u64) {
        if ESCAPES.contains(&event_type) {
            self.0
                .entry(id)
                .or_insert_with(|| watch::channel(0).0)
                .send_if_modified(|r| {
                    let newer = revision + 1 > *r;
                    if newer {
                        *r = revision + 1;
                    }
                    newer
                });
        }
    }

    /// Resolves once an escape event newer than `viewed` (the stream revision the step
    /// was planned on) is delivered for `id`; never otherwise.
    pub(super) async fn after(&self, id: Uuid, viewed: u64) {
        let mut rx = self
            .0
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        // `*r` is one past the escape's revision (0: none yet).
        let _ = rx.wait_for(|r| *r > viewed + 1).await;
        // A closed channel (never: the map keeps the sender) would end the wait too.
    }

    /// Forgets `id` (its workflow is over).
    pub(super) fn forget(&self, id: Uuid) {
        self.0.remove(&id);
    }
}

/// A provider failure of an action as the fault it records.
pub(super) fn fault_of(name: &str, n: u32, e: &ProviderError) -> FaultInfo {
    FaultInfo {
        message: e.to_string(),
        details: format!("{name} failed after {n} attempt(s): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::instance::{ComputeStatus, FlavorRef, Task};

    fn idle() -> Instance {
        Instance {
            id: Some(Uuid::from_u128(1)),
            server_id: Some("s".into()),
            volume_id: Some("v".into()),
            compute: Some(ComputeStatus::Active),
            service: ServiceStatus::Healthy,
            guest_prepared: true,
            ..Instance::default()
        }
    }

    #[test]
    fn each_action_task_has_its_step() {
        let next_step =
            |s: &Instance| next_step(Uuid::from_u128(1), s, s.updated, &Policy::default());
        let mut s = idle();
        s.task = Task::Rebooting;
        assert_eq!(next_step(&s), Some(Step::Restart));
        s.task = Task::Resizing;
        s.pending_flavor = Some(Box::new(FlavorRef {
            id: "3".into(),
            ram: 4096,
        }));
        assert_eq!(
            next_step(&s),
            Some(Step::ResizeFlavor {
                flavor_id: "3".into(),
                ram: 4096
            })
        );
        s.pending_flavor = None;
        s.pending_volume_size = std::num::NonZeroU64::new(4);
        assert_eq!(
            next_step(&s),
            Some(Step::ResizeVolume {
                volume_id: "v".into(),
                size: 4
            })
        );
        s.task = Task::None;
        assert_eq!(next_step(&s), None);
    }

    #[test]
    fn a_restart_or_flavor_resize_not_healthy_in_time_fails() {
        let id = Uuid::from_u128(1);
        let policy = Policy::default();
        let asked = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut s = idle();
        s.task = Task::Rebooting;
        s.action_requested_on = Some(asked);
        // A later change (a rename) does not move the deadline.
        s.updated = asked + chrono::Duration::seconds(500);
        let at = |secs| asked + chrono::Duration::seconds(secs);
        assert_eq!(next_step(id, &s, at(600), &policy), Some(Step::Restart));
        let Some(Step::FailRestart { message }) = next_step(id, &s, at(601), &policy) else {
            panic!("a late restart fails");
        };
        assert!(message.contains("to restart"), "{message}");
        s.task = Task::Resizing;
        s.pending_flavor = Some(Box::new(FlavorRef {
            id: "3".into(),
            ram: 4096,
        }));
        assert!(matches!(
            next_step(id, &s, at(601), &policy),
            Some(Step::FailResize { .. })
        ));
        // A volume resize does not wait for the guest: its call ends or fails.
        s.pending_flavor = None;
        s.pending_volume_size = std::num::NonZeroU64::new(4);
        assert!(matches!(
            next_step(id, &s, at(601), &policy),
            Some(Step::ResizeVolume { .. })
        ));
    }

    #[test]
    fn a_reset_instance_follows_its_server_and_asks_its_guest_once() {
        let mut s = idle();
        assert_eq!(
            after_reset(&s),
            None,
            "a healthy idle instance needs nothing"
        );
        s.status_reset = true;
        s.compute = Some(ComputeStatus::Build);
        assert_eq!(after_reset(&s), Some(Step::PollServer));
        s.compute = Some(ComputeStatus::Active);
        s.service = ServiceStatus::Unknown;
        assert_eq!(after_reset(&s), Some(Step::PollGuest));
        s.guest_prepared = false;
        assert_eq!(after_reset(&s), None, "a guest never prepared is not asked");
        let mut s = idle();
        s.service = ServiceStatus::Restarting;
        assert_eq!(
            after_reset(&s),
            Some(Step::PollGuest),
            "after a failed restart"
        );
    }

    #[tokio::test]
    async fn only_a_newer_escape_ends_the_wait() {
        let escapes = Escapes::default();
        let id = Uuid::from_u128(1);
        escapes.delivered(id, "InstanceStatusReset", 4);
        // A step planned on revision 4 already saw it.
        let wait = escapes.after(id, 4);
        tokio::pin!(wait);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut wait)
                .await
                .is_err()
        );
        escapes.delivered(id, "GuestStatusReported", 6);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut wait)
                .await
                .is_err()
        );
        escapes.delivered(id, "InstanceDeletionRequested", 7);
        tokio::time::timeout(std::time::Duration::from_millis(200), wait)
            .await
            .expect("a newer escape ends the wait");
    }
}
