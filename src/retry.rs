//! One way to wait and try again. Every place that retries (the command path after a lost
//! optimistic-concurrency race, the saga after a failed step, the EventStoreDB adapter
//! after a lost connection, `troved migrate` while a store is away) names its policy as a
//! [`Backoff`] constant next to the code that uses it, so the pauses can be read in one
//! line and are computed in one place.
//!
//! Retry counts start at 1: `delay(1)` is the pause before the first retry.

use std::future::Future;
use std::time::Duration;

/// How the pause grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// `first`, `2 × first`, `4 × first`, … (capped at `max`).
    Doubling,
    /// `first`, `2 × first`, `3 × first`, … (capped at `max`).
    Linear,
}

/// A retry policy: the pauses between tries and how many retries at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The pause before the first retry.
    pub first: Duration,
    /// How the pause grows.
    pub growth: Growth,
    /// The longest pause.
    pub max: Duration,
    /// A random extra pause of up to this much, added to each pause so that callers that
    /// failed together do not retry in lock step.
    pub jitter: Duration,
    /// Retries at most (`None`: the caller decides when to stop).
    pub retries: Option<u32>,
}

/// Doublings beyond this change nothing for any pause we use (2^31 × 1 µs is over half
/// an hour), and the bound keeps the shift within `u32`.
const MAX_DOUBLINGS: u32 = 31;

impl Backoff {
    /// Pauses doubling from `first` up to `max`, retried until the caller stops.
    pub const fn doubling(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            growth: Growth::Doubling,
            max,
            jitter: Duration::ZERO,
            retries: None,
        }
    }

    /// Pauses of `step` times the retry number, up to `max`, retried until the caller
    /// stops.
    pub const fn linear(step: Duration, max: Duration) -> Backoff {
        Backoff {
            first: step,
            growth: Growth::Linear,
            max,
            jitter: Duration::ZERO,
            retries: None,
        }
    }

    /// The same policy with a random extra pause of up to `jitter` per retry.
    pub const fn with_jitter(self, jitter: Duration) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// The same policy, giving up after `retries` retries.
    pub const fn with_retries(self, retries: u32) -> Backoff {
        Backoff {
            retries: Some(retries),
            ..self
        }
    }

    /// Whether retry number `retry` (1 = the first retry) may be made.
    pub fn allows(&self, retry: u32) -> bool {
        self.retries.is_none_or(|most| retry <= most)
    }

    /// The pause before retry number `retry` (1 = the first retry), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let base = match self.growth {
            Growth::Doubling => self.first.saturating_mul(1 << (n - 1).min(MAX_DOUBLINGS)),
            Growth::Linear => self.first.saturating_mul(n),
        };
        let base = base.min(self.max);
        if self.jitter.is_zero() {
            return base;
        }
        let extra = fastrand::u64(0..self.jitter.as_nanos().min(u128::from(u64::MAX)) as u64);
        base + Duration::from_nanos(extra)
    }

    /// Calls `op` until it succeeds, fails with an error `retryable` refuses (it is told
    /// the error and the number of the retry it would allow), or the retries run out;
    /// sleeping [`Backoff::delay`] before each retry. Returns the last outcome.
    pub async fn retry<T, E, Op, Fut>(
        &self,
        mut op: Op,
        mut retryable: impl FnMut(&E, u32) -> bool,
    ) -> Result<T, E>
    where
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retry = 0u32;
        loop {
            match op().await {
                Err(e) if self.allows(retry + 1) && retryable(&e, retry + 1) => {
                    retry += 1;
                    tokio::time::sleep(self.delay(retry)).await;
                }
                outcome => return outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubling_pauses_double_up_to_the_cap() {
        let b = Backoff::doubling(100 * MS, 5_000 * MS);
        let pauses: Vec<_> = (1..=8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), 5_000 * MS);
        assert!(b.allows(u32::MAX));
    }

    #[test]
    fn linear_pauses_grow_by_one_step_and_the_retries_are_counted() {
        let b = Backoff::linear(50 * MS, Duration::MAX).with_retries(3);
        let pauses: Vec<_> = (1..=3).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 150]);
        assert!(b.allows(3));
        assert!(!b.allows(4));
    }

    #[test]
    fn jitter_adds_at_most_its_bound_and_varies() {
        let b = Backoff::doubling(2 * MS, 32 * MS).with_jitter(8 * MS);
        let pauses: Vec<_> = (0..200).map(|_| b.delay(10)).collect();
        assert!(pauses.iter().all(|p| *p >= 32 * MS && *p < 40 * MS));
        assert!(pauses.iter().any(|p| *p != pauses[0]), "no jitter at all");
    }

    #[tokio::test]
    async fn retry_stops_at_success_at_a_refused_error_or_when_retries_run_out() {
        let b = Backoff::doubling(MS, 4 * MS).with_retries(4);
        let mut calls = 0;
        let out: Result<u32, &str> = b
            .retry(
                || {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 3 {
                            Err("busy")
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_, _| true,
            )
            .await;
        assert_eq!(out, Ok(3));

        let mut calls = 0;
        let out: Result<(), &str> = b
            .retry(
                || {
                    calls += 1;
                    async { Err("busy") }
                },
                |_, _| true,
            )
            .await;
        assert_eq!((out, calls), (Err("busy"), 5), "one call and four retries");

        let mut calls = 0;
        let mut seen = Vec::new();
        let out: Result<(), &str> = b
            .retry(
                || {
                    calls += 1;
                    async { Err("fatal") }
                },
                |e, n| {
                    seen.push(n);
                    *e != "fatal"
                },
            )
            .await;
        assert_eq!((out, calls, seen), (Err("fatal"), 1, vec![1]));
    }
}
