//! Deterministic fault injection for the simulated cloud.
//!
//! Responsibility: parse fault specs (the repeatable `--sim-fault` flag) and decide, for
//! one provider call, whether a fault fires. It must not touch the cloud's state: the
//! caller applies the verdict (fails the call, hangs, reports a broken resource, or does
//! the effect and then "loses" the answer).
//!
//! Grammar (one spec per flag; options in any order, each at most once):
//!
//! ```text
//! spec   = step *( ":" option )
//! step   = "create_volume" / "attach_volume" / "detach_volume" / "volume_usage"
//!        / "delete_volume" / "create_server" / "server_status" / "set_public"
//!        / "delete_server" / "prepare" / "guest_status" / "status" (= guest_status)
//!        / "upgrade" / "apply_configuration" / "detach_replica" / "restrict_access"
//!        / "backup" / "promote" / "eject" / "restart" / "resize" / "guest_change"
//! option = "rate=" FLOAT        ; probability in [0, 1] per attempt (default 1)
//!        / "name=" GLOB         ; instance name pattern, `*` matches any run (default: all)
//!        / "times=" N           ; transient and lost: attempts that may fail (default 2)
//!        / "transient"          ; the call fails, retrying clears it (the default mode)
//!        / "permanent"          ; the call fails and always will
//!        / "hang"               ; the call never answers (status steps: stuck in progress)
//!        / "lost"               ; the effect happens but the answer is lost (transient)
//! ```
//!
//! Determinism: a fault fires when the instance name matches and
//! `draw(seed, rule, step, identity, attempt) < rate`, where `draw` is a fixed hash
//! mapped to `[0, 1)` and `identity` is the idempotency key of a keyed call, else the
//! instance id of the resource (else the resource id). `attempt` counts this process's
//! calls of that step for that identity. Transient and lost faults only consider attempts
//! `0..times`, so they always clear on retry; permanent and hang faults always use
//! attempt 0, so their verdict for one identity never changes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use crate::saga::ports::ProviderError;

/// Attempts a transient or lost fault may fail when `times` is not given.
pub const DEFAULT_TIMES: u32 = 2;

/// A provider call fault injection can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    CreateVolume,
    AttachVolume,
    DetachVolume,
    VolumeUsage,
    DeleteVolume,
    CreateServer,
    ServerStatus,
    SetPublic,
    DeleteServer,
    Prepare,
    GuestStatus,
    Upgrade,
    ApplyConfiguration,
    DetachReplica,
    RestrictAccess,
    Backup,
    // ---- replica set: promote / eject (issue #15) ----
    Promote,
    Eject,
    // instance actions
    /// The database restart of `action restart`.
    Restart,
    /// A flavor or volume resize (`action resize`).
    Resize,
    /// A change of a guest's databases, users or root.
    GuestChange,
}

impl Step {
    /// Every step, in the order of the grammar.
    pub const ALL: [Step; 21] = [
        Step::CreateVolume,
        Step::AttachVolume,
        Step::DetachVolume,
        Step::VolumeUsage,
        Step::DeleteVolume,
        Step::CreateServer,
        Step::ServerStatus,
        Step::SetPublic,
        Step::DeleteServer,
        Step::Prepare,
        Step::GuestStatus,
        Step::Upgrade,
        Step::ApplyConfiguration,
        Step::DetachReplica,
        Step::RestrictAccess,
        Step::Backup,
        Step::Promote,
        Step::Eject,
        Step::Restart,
        Step::Resize,
        Step::GuestChange,
    ];

    /// The name used in fault specs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::CreateVolume => "create_volume",
            Step::AttachVolume => "attach_volume",
            Step::DetachVolume => "detach_volume",
            Step::VolumeUsage => "volume_usage",
            Step::DeleteVolume => "delete_volume",
            Step::CreateServer => "create_server",
            Step::ServerStatus => "server_status",
            Step::SetPublic => "set_public",
            Step::DeleteServer => "delete_server",
            Step::Prepare => "prepare",
            Step::GuestStatus => "guest_status",
            Step::Upgrade => "upgrade",
            Step::ApplyConfiguration => "apply_configuration",
            Step::DetachReplica => "detach_replica",
            Step::RestrictAccess => "restrict_access",
            Step::Backup => "backup",
            Step::Promote => "promote",
            Step::Eject => "eject",
            Step::Restart => "restart",
            Step::Resize => "resize",
            Step::GuestChange => "guest_change",
        }
    }

    /// Parses a step name; `status` is accepted for `guest_status`.
    pub fn from_name(s: &str) -> Option<Step> {
        if s == "status" {
            return Some(Step::GuestStatus);
        }
        Step::ALL.into_iter().find(|step| step.name() == s)
    }

    /// Status queries report a broken or stuck resource instead of failing or hanging.
    pub fn is_status(self) -> bool {
        matches!(self, Step::ServerStatus | Step::GuestStatus)
    }

    /// Steps whose effect can happen before the answer is lost.
    fn has_effect(self) -> bool {
        !matches!(
            self,
            Step::ServerStatus | Step::GuestStatus | Step::VolumeUsage
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a firing fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// The call fails with `ProviderError::Transient`; clears after `times` attempts.
    Transient,
    /// The call fails with `ProviderError::Permanent`; for status steps the resource
    /// reports `ERROR` (server) or `FAILED` (guest) instead.
    Permanent,
    /// The call never answers; for status steps the resource stays in its in-progress
    /// status (`BUILD`, `BUILDING`, `UPGRADING`) forever.
    Hang,
    /// The effect happens, then the call fails with `ProviderError::Transient` as if the
    /// answer had been lost; clears after `times` attempts.
    Lost,
}

impl FaultMode {
    fn name(self) -> &'static str {
        match self {
            FaultMode::Transient => "transient",
            FaultMode::Permanent => "permanent",
            FaultMode::Hang => "hang",
            FaultMode::Lost => "lost",
        }
    }

    fn clears(self) -> bool {
        matches!(self, FaultMode::Transient | FaultMode::Lost)
    }
}

/// One fault rule: which calls it targets and what it does to them.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub step: Step,
    /// Instance name glob (`*` only); `None` targets every instance.
    pub name: Option<String>,
    /// Probability per attempt, in `[0, 1]`.
    pub rate: f64,
    pub mode: FaultMode,
    /// For transient and lost faults: only attempts `0..times` may fail.
    pub times: u32,
}

impl FaultSpec {
    /// Parses `step[:option]...` (see the module docs for the grammar).
    pub fn parse(s: &str) -> Result<FaultSpec, String> {
        let s = s.trim();
        let mut parts = s.split(':');
        let step_name = parts.next().unwrap_or_default().trim();
        if step_name.is_empty() {
            return Err(format!("empty fault spec {s:?}: expected step[:option]..."));
        }
        let step = Step::from_name(step_name).ok_or_else(|| {
            let names: Vec<&str> = Step::ALL.iter().map(|st| st.name()).collect();
            format!(
                "unknown step {step_name:?} in fault spec {s:?}; steps: {}",
                names.join(", ")
            )
        })?;
        let mut builder = Builder::default();
        for option in parts {
            builder
                .option(option.trim())
                .map_err(|e| format!("{e} in fault spec {s:?}"))?;
        }
        builder
            .build(step)
            .map_err(|e| format!("{e} in fault spec {s:?}"))
    }

    /// Whether this rule targets an instance with this name (a call whose resource is
    /// unknown has no name and only matches rules without a pattern).
    pub fn matches_name(&self, name: Option<&str>) -> bool {
        match (&self.name, name) {
            (None, _) => true,
            (Some(pattern), Some(name)) => glob_match(pattern, name),
            (Some(_), None) => false,
        }
    }
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        FaultSpec::parse(s)
    }
}

/// The canonical text of the spec; parsing it gives the same spec back.
impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.step)?;
        if let Some(name) = &self.name {
            write!(f, ":name={name}")?;
        }
        if self.rate < 1.0 {
            write!(f, ":rate={}", self.rate)?;
        }
        write!(f, ":{}", self.mode.name())?;
        if self.mode.clears() && self.times != DEFAULT_TIMES {
            write!(f, ":times={}", self.times)?;
        }
        Ok(())
    }
}

/// Options seen so far while parsing one spec; each may appear once.
#[derive(Default)]
struct Builder {
    rate: Option<f64>,
    name: Option<String>,
    times: Option<u32>,
    mode: Option<FaultMode>,
}

impl Builder {
    fn option(&mut self, option: &str) -> Result<(), String> {
        match option.split_once('=') {
            Some(("rate", v)) => set_once(&mut self.rate, "rate", parse_rate(v)?),
            Some(("name", v)) => set_once(&mut self.name, "name", parse_name(v)?),
            Some(("times", v)) => set_once(&mut self.times, "times", parse_times(v)?),
            Some((key, _)) => Err(format!(
                "unknown option {key:?} (expected rate=, name=, times=)"
            )),
            None => {
                let mode = match option {
                    "transient" => FaultMode::Transient,
                    "permanent" => FaultMode::Permanent,
                    "hang" => FaultMode::Hang,
                    "lost" => FaultMode::Lost,
                    "" => return Err("empty option".into()),
                    other => {
                        return Err(format!(
                            "unknown option {other:?} (expected rate=, name=, times=, \
                             transient, permanent, hang or lost)"
                        ))
                    }
                };
                if self.mode.is_some() {
                    return Err("more than one of transient, permanent, hang, lost".into());
                }
                self.mode = Some(mode);
                Ok(())
            }
        }
    }

    fn build(self, step: Step) -> Result<FaultSpec, String> {
        let mode = self.mode.unwrap_or(FaultMode::Transient);
        if self.times.is_some() && !mode.clears() {
            return Err(format!(
                "times= only applies to transient and lost faults, not {}",
                mode.name()
            ));
        }
        if mode == FaultMode::Lost && !step.has_effect() {
            return Err(format!("lost needs a step with an effect, {step} has none"));
        }
        Ok(FaultSpec {
            step,
            name: self.name,
            rate: self.rate.unwrap_or(1.0),
            mode,
            times: self.times.unwrap_or(DEFAULT_TIMES),
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("option {key}= given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_rate(v: &str) -> Result<f64, String> {
    let rate: f64 = v
        .parse()
        .map_err(|_| format!("rate {v:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("rate {v} is not between 0 and 1"));
    }
    Ok(rate)
}

fn parse_name(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("name= needs a pattern".into());
    }
    Ok(v.to_string())
}

fn parse_times(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("times {v:?} is not a positive integer")),
    }
}

/// Matches `name` against `pattern`, where `*` matches any run of characters (also
/// empty) and everything else matches itself; the whole name must match.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` and the name index it was tried at: on a mismatch the
    // star absorbs one more character (classic linear backtracking, no recursion).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A number in `[0, 1)` fixed by its inputs (FNV-1a over the inputs, then the
/// SplitMix64 finalizer), identical on every platform and release: the standard hasher
/// is not guaranteed to stay the same across Rust versions.
pub fn draw(seed: u64, rule: &str, step: Step, identity: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    feed(&seed.to_le_bytes());
    feed(rule.as_bytes());
    feed(step.name().as_bytes());
    feed(identity.as_bytes());
    feed(&attempt.to_le_bytes());
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // The top 53 bits are exactly representable in an f64.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What a fired fault does to the call at hand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Injected {
    /// Fail the call with this error before doing anything.
    Fail(ProviderError),
    /// Do the effect, then fail with this (transient) error.
    Lost(ProviderError),
    /// Never answer (status steps: report the in-progress status forever).
    Hang,
    /// Status steps: report the resource as broken (`ERROR` / `FAILED`).
    Broken,
}

/// The configured rules, the seed, and per-(step, identity) attempt counters.
pub(crate) struct FaultPlan {
    seed: u64,
    /// Each rule with its canonical text, which is part of the draw so that two rules
    /// on one step fire independently.
    rules: Vec<(FaultSpec, String)>,
    /// Attempts so far in this process. Not persisted: after a restart transient faults
    /// start over, which is still deterministic and still clears.
    attempts: Mutex<HashMap<(Step, String), u32>>,
}

impl FaultPlan {
    pub(crate) fn new(seed: u64, rules: Vec<FaultSpec>) -> FaultPlan {
        FaultPlan {
            seed,
            rules: rules
                .into_iter()
                .map(|r| {
                    let text = r.to_string();
                    (r, text)
                })
                .collect(),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any rule targets `step` (callers skip looking up names otherwise).
    pub(crate) fn targets(&self, step: Step) -> bool {
        self.rules.iter().any(|(r, _)| r.step == step)
    }

    /// Counts one attempt of `step` for `identity` and returns the first rule (in
    /// configuration order) that fires on it, translated for the call at hand.
    pub(crate) fn check(&self, step: Step, name: Option<&str>, identity: &str) -> Option<Injected> {
        if !self.targets(step) {
            return None;
        }
        let attempt = self.next_attempt(step, identity);
        let (rule, _) = self.rules.iter().find(|(rule, text)| {
            rule.step == step
                && rule.matches_name(name)
                && self.fires(rule, text, identity, attempt)
        })?;
        tracing::info!(step = %step, identity, attempt, rule = %rule, "injected fault");
        Some(verdict(rule, name.unwrap_or(identity), attempt))
    }

    fn fires(&self, rule: &FaultSpec, text: &str, identity: &str, attempt: u32) -> bool {
        let attempt = if rule.mode.clears() {
            if attempt >= rule.times {
                return false;
            }
            attempt
        } else {
            0
        };
        draw(self.seed, text, rule.step, identity, attempt) < rule.rate
    }

    fn next_attempt(&self, step: Step, identity: &str) -> u32 {
        let mut attempts = self.lock_attempts();
        let counter = attempts.entry((step, identity.to_string())).or_insert(0);
        let attempt = *counter;
        *counter = counter.saturating_add(1);
        attempt
    }

    fn lock_attempts(&self) -> MutexGuard<'_, HashMap<(Step, String), u32>> {
        // Counters are plain integers updated in one statement; a panic elsewhere cannot
        // leave them half-written, so a poisoned lock is still consistent.
        self.attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn verdict(rule: &FaultSpec, subject: &str, attempt: u32) -> Injected {
    let step = rule.step;
    match rule.mode {
        FaultMode::Transient => Injected::Fail(ProviderError::Transient(format!(
            "Injected fault: {step} failed for '{subject}' (attempt {}).",
            attempt + 1
        ))),
        FaultMode::Permanent if step.is_status() => Injected::Broken,
        FaultMode::Permanent => Injected::Fail(ProviderError::Permanent(format!(
            "Injected fault: {step} failed permanently for '{subject}'."
        ))),
        FaultMode::Hang => Injected::Hang,
        FaultMode::Lost => Injected::Lost(ProviderError::Transient(format!(
            "Injected fault: the answer of {step} for '{subject}' was lost (attempt {}).",
            attempt + 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> FaultSpec {
        FaultSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn rate_only_spec_parses_as_transient_for_every_instance() {
        let f = spec("create_server:rate=0.3");
        assert_eq!(f.step, Step::CreateServer);
        assert_eq!(f.rate, 0.3);
        assert_eq!(f.name, None);
        assert_eq!(f.mode, FaultMode::Transient);
        assert_eq!(f.times, DEFAULT_TIMES);
    }

    #[test]
    fn name_and_mode_options_parse_in_any_order() {
        let f = spec("prepare:permanent:name=crash-*");
        assert_eq!(f.step, Step::Prepare);
        assert_eq!(f.name.as_deref(), Some("crash-*"));
        assert_eq!(f.rate, 1.0);
        assert_eq!(f.mode, FaultMode::Permanent);
        let f = spec("delete_server:rate=0.5:transient:times=4");
        assert_eq!((f.mode, f.times, f.rate), (FaultMode::Transient, 4, 0.5));
        assert_eq!(
            spec("create_volume:name=fail-vol-*:lost").mode,
            FaultMode::Lost
        );
    }

    #[test]
    fn status_alias_means_guest_status() {
        let f = spec("status:name=slow-*:hang");
        assert_eq!((f.step, f.mode), (Step::GuestStatus, FaultMode::Hang));
    }

    #[test]
    fn every_step_name_parses() {
        for step in Step::ALL {
            assert_eq!(spec(step.name()).step, step);
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "create_server:rate=0.3",
            "prepare:name=crash-*:permanent",
            "guest_status:name=slow-*:hang",
            "delete_volume:rate=0.25:lost:times=5",
            "upgrade",
        ] {
            let f = spec(s);
            assert_eq!(spec(&f.to_string()), f, "{s} -> {f}");
        }
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty fault spec"),
            ("create_vm", "unknown step \"create_vm\""),
            ("create_server:rate=1.5", "not between 0 and 1"),
            ("create_server:rate=abc", "not a number"),
            ("create_server:rate=0.1:rate=0.2", "given twice"),
            ("create_server:name=", "needs a pattern"),
            ("create_server:times=0", "not a positive integer"),
            (
                "create_server:permanent:times=3",
                "only applies to transient and lost",
            ),
            ("create_server:hang:permanent", "more than one"),
            ("create_server:color=red", "unknown option \"color\""),
            ("create_server:sometimes", "unknown option \"sometimes\""),
            ("create_server::permanent", "empty option"),
            ("server_status:lost", "lost needs a step with an effect"),
        ];
        for (input, needle) in cases {
            let err = FaultSpec::parse(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn unknown_step_error_lists_the_steps() {
        let err = FaultSpec::parse("boot").expect_err("unknown step");
        assert!(
            err.contains("create_volume") && err.contains("detach_replica"),
            "{err}"
        );
    }

    #[test]
    fn glob_matches_star_runs_only() {
        assert!(glob_match("fail-*", "fail-1"));
        assert!(glob_match("fail-*", "fail-"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*-vol-*", "db-vol-7"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("fail-*", "nofail-1"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(!glob_match("?", "x"), "only * is special");
    }

    #[test]
    fn draw_is_stable_and_spread() {
        let a = draw(7, "r", Step::CreateServer, "instance-1/server", 0);
        assert_eq!(a, draw(7, "r", Step::CreateServer, "instance-1/server", 0));
        assert_ne!(a, draw(8, "r", Step::CreateServer, "instance-1/server", 0));
        assert_ne!(a, draw(7, "r", Step::CreateServer, "instance-1/server", 1));
        assert_ne!(a, draw(7, "r", Step::CreateVolume, "instance-1/server", 0));
        let values: Vec<f64> = (0..10_000)
            .map(|i| draw(1, "r", Step::Prepare, &format!("i-{i}"), 0))
            .collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let below = values.iter().filter(|v| **v < 0.3).count();
        assert!((2700..3300).contains(&below), "{below} of 10000 below 0.3");
    }

    #[test]
    fn same_seed_gives_the_same_failures() {
        let outcomes = |seed: u64| -> Vec<bool> {
            let plan = FaultPlan::new(seed, vec![spec("create_server:rate=0.5")]);
            (0..200)
                .map(|i| {
                    plan.check(Step::CreateServer, Some("db"), &format!("k-{i}"))
                        .is_some()
                })
                .collect()
        };
        assert_eq!(outcomes(42), outcomes(42));
        assert_ne!(outcomes(42), outcomes(43));
        let failures = outcomes(42).iter().filter(|f| **f).count();
        assert!((60..140).contains(&failures), "{failures} of 200");
    }

    #[test]
    fn transient_fault_clears_after_times_attempts() {
        let plan = FaultPlan::new(0, vec![spec("create_volume:name=flaky-*:times=3")]);
        let results: Vec<bool> = (0..6)
            .map(|_| {
                plan.check(Step::CreateVolume, Some("flaky-1"), "k")
                    .is_some()
            })
            .collect();
        assert_eq!(results, [true, true, true, false, false, false]);
        assert!(matches!(
            FaultPlan::new(0, vec![spec("create_volume")]).check(Step::CreateVolume, None, "k"),
            Some(Injected::Fail(ProviderError::Transient(_)))
        ));
    }

    #[test]
    fn permanent_fault_never_clears_and_status_steps_report_broken() {
        let plan = FaultPlan::new(0, vec![spec("prepare:name=crash-*:permanent")]);
        for _ in 0..10 {
            assert!(matches!(
                plan.check(Step::Prepare, Some("crash-1"), "k"),
                Some(Injected::Fail(ProviderError::Permanent(_)))
            ));
        }
        assert_eq!(plan.check(Step::Prepare, Some("fine-1"), "k2"), None);
        let plan = FaultPlan::new(0, vec![spec("guest_status:permanent")]);
        assert_eq!(
            plan.check(Step::GuestStatus, None, "s"),
            Some(Injected::Broken)
        );
    }

    #[test]
    fn name_pattern_never_matches_an_unknown_resource() {
        let plan = FaultPlan::new(0, vec![spec("delete_server:name=*:permanent")]);
        assert_eq!(plan.check(Step::DeleteServer, None, "gone"), None);
        let plan = FaultPlan::new(0, vec![spec("delete_server:permanent")]);
        assert!(plan.check(Step::DeleteServer, None, "gone").is_some());
    }

    #[test]
    fn untargeted_steps_are_not_counted() {
        let plan = FaultPlan::new(0, vec![spec("prepare")]);
        assert_eq!(plan.check(Step::CreateServer, Some("x"), "k"), None);
        assert!(plan.lock_attempts().is_empty());
    }
}
