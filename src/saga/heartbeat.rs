//! The heartbeat supervisor: checks every live, built instance's database server each
//! `--heartbeat-secs`, and restarts the ones whose process is gone.
//!
//! - A check that answers (whatever it found) is a heartbeat: its time goes to the
//!   in-memory [`Heartbeats`] the views show as `service_status_updated`. Only a *change*
//!   of the guest status is recorded (`GuestStatusReported`), so steady heartbeats never
//!   grow the log. A check that errs or times out is silence: after the heartbeat expiry
//!   the views read `operating_status` ERROR (lifecycle §4).
//! - A server that is down is recorded SHUTDOWN and restarted through the provider with
//!   exponential backoff (1 s, 2 s, 4 s … capped); once it answers it is recorded HEALTHY.
//!   After `max_restarts` restarts within `window` it is given up on: `GuestFailed`
//!   (compute ERROR, status ERROR, with a fault). The restarts go on at the capped
//!   delay, so a server the operator repairs comes back by itself.
//! - Each heartbeat also measures the instance's volume: the views show that usage
//!   (`volume.used`), kept in memory like the heartbeat's time.
//! - Only instances with task NONE are supervised: a build, delete, resize, upgrade or
//!   any other workflow belongs to the saga, which this never interferes with.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aggregates::instance::{
    ComputeStatus, FaultInfo, Instance, InstanceCommand, ServiceStatus, Task,
};
use async_trait::async_trait;
use chrono::Utc;
use projections::views::Heartbeats;
use projections::{InstanceModels, MgmtFilter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::ports::ProviderError;
use super::saga_caller;
use crate::runtime::codec::CommandMeta;
use crate::runtime::commands::CommandBus;

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beat {
    /// A real connection worked.
    Healthy,
    /// The process runs but does not answer.
    Unresponsive(String),
    /// No server process.
    Down,
    /// Not set up (yet): nothing to supervise.
    NotReady,
}

/// The provider side of supervision (the local provider implements it).
#[async_trait]
pub trait Supervised: Send + Sync {
    /// The server's health.
    async fn check(&self, server_id: &str) -> Result<Beat, ProviderError>;
    /// Starts the server again; `NotFound` once it was deleted.
    async fn revive(&self, server_id: &str) -> Result<(), ProviderError>;
    /// The usage of the server's data volume now (used, total GB), if it has one.
    async fn usage(&self, _server_id: &str) -> Option<(f64, f64)> {
        None
    }
}

/// How often and how hard it supervises.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// `--heartbeat-secs`.
    pub interval: Duration,
    /// Longest wait for one check (a slower answer counts as silence).
    pub check_timeout: Duration,
    /// Longest wait for one restart.
    pub restart_timeout: Duration,
    /// Checks in flight at once.
    pub concurrency: usize,
    /// Restarts within `window` before the instance is given up on (ERROR).
    pub max_restarts: usize,
    pub window: Duration,
    /// The first restart delay; it doubles up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl HeartbeatConfig {
    /// The defaults derived from the interval (docs/providers.md "Heartbeats").
    pub fn every(interval: Duration, restart_timeout: Duration) -> HeartbeatConfig {
        HeartbeatConfig {
            interval,
            check_timeout: interval.max(Duration::from_secs(2)),
            restart_timeout,
            concurrency: 8,
            max_restarts: 5,
            window: (interval * 20).max(Duration::from_secs(60)),
            first_delay: Duration::from_secs(1),
            max_delay: (interval * 3).max(Duration::from_secs(1)),
        }
    }

    /// The heartbeat expiry the views apply: three intervals, at least 10 s (a loaded
    /// machine must not make healthy instances flicker to ERROR).
    pub fn expiry(&self) -> chrono::Duration {
        let secs = (self.interval.as_secs() * 3).max(10);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// The delay before a restart when `attempts` were made within the window.
    pub fn delay(&self, attempts: usize) -> Duration {
        let factor = 1u32 << attempts.min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Consecutive unanswered checks of a running server before its status is UNKNOWN.
const UNANSWERED_BEFORE_UNKNOWN: u32 = 3;

/// Whether the supervisor looks after `s`: built, live, no workflow running.
pub fn supervised(s: &Instance) -> bool {
    !s.deleted && s.task == Task::None && s.server_id.is_some() && s.guest_prepared
}

/// The supervisor; run it with [`Supervisor::run`].
pub struct Supervisor {
    bus: CommandBus,
    models: Arc<InstanceModels>,
    target: Arc<dyn Supervised>,
    beats: Heartbeats,
    cfg: HeartbeatConfig,
    /// Restart attempts per instance, the recent ones (within the window). They outlive
    /// a recovery: a server that crashes again soon after is one that keeps crashing.
    attempts: Mutex<HashMap<Uuid, VecDeque<Instant>>>,
    /// Instances a recovery task is working on.
    recovering: Mutex<HashSet<Uuid>>,
    /// Consecutive checks a running server did not answer, by instance: UNKNOWN is
    /// recorded only after [`UNANSWERED_BEFORE_UNKNOWN`] of them, so that one slow answer
    /// on a loaded machine neither flaps the status nor grows the log (upstream's guest
    /// agent likewise counts consecutive checks, `state_healthy_counts`).
    unanswered: Mutex<HashMap<Uuid, u32>>,
    shutdown: watch::Receiver<bool>,
}

impl Supervisor {
    pub fn new(
        bus: CommandBus,
        models: Arc<InstanceModels>,
        target: Arc<dyn Supervised>,
        beats: Heartbeats,
        cfg: HeartbeatConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            bus,
            models,
            target,
            beats,
            cfg,
            attempts: Mutex::default(),
            recovering: Mutex::default(),
            unanswered: Mutex::default(),
            shutdown,
        })
    }

    /// Checks every supervised instance each interval until shutdown.
    pub async fn run(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut ticks = tokio::time::interval(self.cfg.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.tick().await,
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One round: every supervised instance, `concurrency` at a time.
    async fn tick(self: &Arc<Self>) {
        let live = self.models.mgmt_page(
            &MgmtFilter {
                deleted: Some(false),
                project: None,
            },
            0,
            usize::MAX,
        );
        let ids: HashSet<Uuid> = live.iter().filter_map(|s| s.id).collect();
        self.beats.retain(|id| ids.contains(&id));
        lock(&self.unanswered).retain(|id, _| ids.contains(id));
        let gate = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut checks = JoinSet::new();
        for s in live.into_iter().filter(supervised) {
            let (Some(id), Some(sid)) = (s.id, s.server_id.clone()) else {
                continue;
            };
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            checks.spawn(async move {
                this.check_one(id, &sid).await;
                drop(permit);
            });
        }
        while checks.join_next().await.is_some() {}
    }

    /// Checks one instance and records what changed.
    async fn check_one(self: &Arc<Self>, id: Uuid, sid: &str) {
        let Some(beat) = self.check(id, sid).await else {
            return;
        };
        if !matches!(beat, Beat::Unresponsive(_)) {
            lock(&self.unanswered).remove(&id);
        }
        match beat {
            Beat::Healthy => self.record_healthy(id).await,
            Beat::Unresponsive(why) => {
                tracing::debug!(instance = %id, %why, "database server unresponsive");
                let n = {
                    let mut unanswered = lock(&self.unanswered);
                    let n = unanswered.entry(id).or_default();
                    *n += 1;
                    *n
                };
                if n >= UNANSWERED_BEFORE_UNKNOWN {
                    self.record_status(id, ServiceStatus::Unknown).await;
                }
            }
            Beat::Down => {
                self.record_status(id, ServiceStatus::Shutdown).await;
                self.spawn_recovery(id, sid.to_string());
            }
            Beat::NotReady => {}
        }
    }

    /// One check, with its timeout; an answer is a heartbeat, anything else silence.
    async fn check(&self, id: Uuid, sid: &str) -> Option<Beat> {
        match tokio::time::timeout(self.cfg.check_timeout, self.target.check(sid)).await {
            Ok(Ok(beat)) => {
                if beat != Beat::NotReady {
                    self.beats.beat(id, Utc::now());
                    // A full volume is what a database that fails its writes shows. The
                    // measure has the check's time limit too (a directory volume is
                    // walked): a slow one is skipped, the last measure stays shown.
                    let usage =
                        tokio::time::timeout(self.cfg.check_timeout, self.target.usage(sid));
                    if let Ok(Some((used, total))) = usage.await {
                        self.beats.measured(id, used, total);
                    }
                }
                Some(beat)
            }
            Ok(Err(e)) => {
                tracing::debug!(instance = %id, error = %e, "heartbeat check failed");
                None
            }
            Err(_) => {
                tracing::debug!(instance = %id, "heartbeat check timed out");
                None
            }
        }
    }

    /// A good check: compute ACTIVE again after a give-up, guest HEALTHY (each only
    /// if it changes).
    async fn record_healthy(&self, id: Uuid) {
        let Some(s) = self.models.instance(id) else {
            return;
        };
        let mut cmds = Vec::new();
        if s.compute == Some(ComputeStatus::Error) {
            cmds.push(InstanceCommand::RecordComputeStatus {
                status: ComputeStatus::Active,
            });
        }
        if s.service != ServiceStatus::Healthy {
            cmds.push(InstanceCommand::RecordGuestStatus {
                status: ServiceStatus::Healthy,
            });
        }
        self.record(id, &cmds).await;
    }

    /// A status other than healthy, unless the instance was given up on (FAILED stays
    /// until a good check).
    async fn record_status(&self, id: Uuid, status: ServiceStatus) {
        let Some(s) = self.models.instance(id) else {
            return;
        };
        if s.service != status && s.service != ServiceStatus::Failed && supervised(&s) {
            self.record(id, &[InstanceCommand::RecordGuestStatus { status }])
                .await;
        }
    }

    /// Appends `cmds` as the supervisor (an unchanged state appends nothing).
    async fn record(&self, id: Uuid, cmds: &[InstanceCommand]) {
        if cmds.is_empty() {
            return;
        }
        let caller = saga_caller();
        let meta = CommandMeta::for_request(&caller, "saga:heartbeat");
        if let Err(e) = self.bus.execute(id, cmds, &caller, &meta).await {
            // The next heartbeat tries again.
            tracing::warn!(instance = %id, error = %e, "could not record a status change");
        }
    }
}

// ---- recovery ---------------------------------------------------------------------------

impl Supervisor {
    /// Starts a recovery task for `id` unless one runs.
    fn spawn_recovery(self: &Arc<Self>, id: Uuid, sid: String) {
        {
            let mut busy = lock(&self.recovering);
            if !busy.insert(id) {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.recover(id, &sid).await;
            lock(&this.recovering).remove(&id);
        });
    }

    /// Restarts the server with backoff until it answers, the instance leaves
    /// supervision (a workflow started, it was deleted) or troved stops.
    async fn recover(&self, id: Uuid, sid: &str) {
        let mut shutdown = self.shutdown.clone();
        let mut last_error = String::from("the server process is gone");
        loop {
            let attempts = self.recent_attempts(id);
            if attempts >= self.cfg.max_restarts {
                self.give_up(id, attempts, &last_error).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.delay(attempts)) => {}
                _ = shutdown.changed() => return,
            }
            if !self.models.instance(id).is_some_and(|s| supervised(&s)) {
                return;
            }
            // Back by itself (or by the operator's hand)?
            if self.check(id, sid).await == Some(Beat::Healthy) {
                self.record_healthy(id).await;
                return;
            }
            self.note_attempt(id);
            tracing::info!(instance = %id, server = sid, "restarting a database server that stopped");
            let restarted =
                tokio::time::timeout(self.cfg.restart_timeout, self.target.revive(sid)).await;
            match restarted {
                Ok(Ok(())) if self.check(id, sid).await == Some(Beat::Healthy) => {
                    self.record_healthy(id).await;
                    return;
                }
                Ok(Ok(())) => last_error = "restarted, but it does not answer".into(),
                Ok(Err(ProviderError::NotFound(_))) => return,
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "the restart timed out".into(),
            }
            tracing::warn!(instance = %id, error = %last_error, "restart failed");
            let attempts = self.recent_attempts(id);
            if attempts >= self.cfg.max_restarts {
                self.give_up(id, attempts, &last_error).await;
            }
        }
    }

    /// Records the give-up (once: an instance already FAILED records nothing).
    async fn give_up(&self, id: Uuid, attempts: usize, last_error: &str) {
        let Some(s) = self.models.instance(id) else {
            return;
        };
        if s.service == ServiceStatus::Failed || !supervised(&s) {
            return;
        }
        tracing::error!(instance = %id, attempts, error = last_error, "giving up on a database server");
        let fault = FaultInfo {
            message: format!(
                "The database server keeps stopping: {attempts} restarts within {} s did not \
                 keep it running.",
                self.cfg.window.as_secs()
            ),
            details: last_error.to_string(),
        };
        self.record(id, &[InstanceCommand::RecordGuestFailure { fault }])
            .await;
    }

    fn note_attempt(&self, id: Uuid) {
        lock(&self.attempts)
            .entry(id)
            .or_default()
            .push_back(Instant::now());
    }

    /// Restart attempts of `id` within the window (older ones are dropped).
    fn recent_attempts(&self, id: Uuid) -> usize {
        let mut all = lock(&self.attempts);
        let Some(times) = all.get_mut(&id) else {
            return 0;
        };
        while times.front().is_some_and(|t| t.elapsed() > self.cfg.window) {
            times.pop_front();
        }
        times.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let cfg = HeartbeatConfig::every(Duration::from_secs(10), Duration::from_secs(30));
        let delays: Vec<u64> = (0..8).map(|n| cfg.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(cfg.expiry(), chrono::Duration::seconds(30));
        let fast = HeartbeatConfig::every(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(fast.delay(5), Duration::from_secs(3));
        assert_eq!(
            fast.expiry(),
            chrono::Duration::seconds(10),
            "at least 10 s"
        );
    }
}
