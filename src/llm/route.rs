//! Which target of a model's route an attempt goes to: the weighted first
//! choice, then the others as fallbacks; a circuit breaker per target
//! ([`Breaker`]) and a retry budget shared by all ([`RetryBudget`]) keep
//! failures from multiplying load on providers already in trouble.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::llm::{BreakerConfig, ModelRoute, RetryConfig};

/// Whether a target is taken out of rotation: closed (in rotation), open
/// (ejected until its cool-down is over) or half-open (one probe may try
/// it; its outcome closes or reopens the breaker).
pub struct Breaker {
    config: BreakerConfig,
    /// Failures in a row.
    failures: AtomicU32,
    /// Ejected until then.
    open_until: Mutex<Option<Instant>>,
    /// A half-open probe is under way.
    probing: AtomicBool,
}

/// A breaker's state, for `/readyz` and the admin status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            probing: AtomicBool::new(false),
        }
    }

    fn until(&self) -> Option<Instant> {
        *self.open_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match self.until() {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may go to this target now: always when closed;
    /// once its cool-down is over, to one probe at a time.
    pub fn admit(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }

    /// The target answered: back in rotation.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.until().is_some() {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.probing.store(false, Ordering::Release);
    }

    /// The target failed (connection, timeout, 5xx): a failed probe, or
    /// the last of `failures` in a row, ejects it for the cool-down.
    /// Returns whether this ejected it.
    pub fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let probe = self.probing.swap(false, Ordering::AcqRel);
        if probe || failures >= self.config.failures {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + self.config.cool_down);
            return true;
        }
        false
    }

    /// A probe that ended without a verdict (the caller went away, the
    /// caller's own error): another may try.
    pub fn release(&self) {
        self.probing.store(false, Ordering::Release);
    }
}

/// Retries allowed across all calls: each call deposits `budget` (0.2) of
/// a retry, each retry takes a whole one, so retries add at most that
/// share of load once the reserve is spent (the scheme of Finagle's and
/// Envoy's retry budgets).
pub struct RetryBudget {
    /// In thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
}

/// Retries available before any call has deposited: a cold start or a
/// quiet gateway may still retry a little.
const RESERVE: i64 = 10_000;
/// Most retries saved up.
const CAP: i64 = 100_000;

impl RetryBudget {
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            balance: AtomicI64::new(RESERVE),
            deposit: (config.budget * 1000.0) as i64,
        }
    }

    /// A call begins.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(CAP))
            });
    }

    /// Take one retry, if there is one.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }
}

/// The order a call tries a route's targets in: the first by weight
/// (smooth over calls: a weight-3 target takes 3 of every 4 first
/// attempts next to a weight-1 one), then the others in configured order.
pub fn order(route: &ModelRoute, counter: &AtomicU64) -> Vec<usize> {
    let n = route.targets.len();
    if n <= 1 {
        return (0..n).collect();
    }
    let total: u64 = route.targets.iter().map(|t| u64::from(t.weight)).sum();
    let mut slot = counter.fetch_add(1, Ordering::Relaxed) % total.max(1);
    let mut first = 0;
    for (i, t) in route.targets.iter().enumerate() {
        if slot < u64::from(t.weight) {
            first = i;
            break;
        }
        slot -= u64::from(t.weight);
    }
    std::iter::once(first)
        .chain((0..n).filter(|&i| i != first))
        .collect()
}

/// The wait before attempt number `attempt` (1 for the first retry) on a
/// target already tried: `backoff` doubling up to `max_backoff`, with up
/// to a quarter of jitter so callers that failed together do not retry
/// together.
pub fn backoff(config: &RetryConfig, attempt: u32, seed: u64) -> Duration {
    let base = config
        .backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(config.max_backoff);
    // A cheap spread from the call number: no cryptographic need here.
    let jitter = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as u32; // 0..1023
    base + base / 4 * jitter / 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::llm::RouteTarget;

    #[test]
    fn a_breaker_ejects_after_failures_in_a_row_and_probes_once_after_its_cool_down() {
        let breaker = Breaker::new(BreakerConfig {
            failures: 3,
            cool_down: Duration::from_millis(50),
        });
        assert!(!breaker.failure());
        breaker.success();
        assert!(!breaker.failure());
        assert!(!breaker.failure());
        assert!(breaker.failure(), "the third in a row ejects");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.admit());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit(), "one probe");
        assert!(!breaker.admit(), "only one");
        assert!(breaker.failure(), "a failed probe reopens");
        assert!(!breaker.admit());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit());
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit() && breaker.admit());
    }

    #[test]
    fn the_retry_budget_allows_its_share_once_the_reserve_is_spent() {
        let budget = RetryBudget::new(&RetryConfig::default());
        let mut reserve = 0;
        while budget.withdraw() {
            reserve += 1;
        }
        assert_eq!(reserve, 10);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 200, "20% of 1000 calls");
    }

    #[test]
    fn first_attempts_follow_the_weights_and_fallbacks_follow_the_rest() {
        let provider = std::sync::Arc::new(crate::config::llm::ProviderConfig {
            name: "p".into(),
            kind: crate::config::ProviderKind::OpenAiCompatible,
            base_url: crate::config::UpstreamUrl::parse("http://127.0.0.1:1/v1", &[], false)
                .expect("url"),
            auth: crate::config::ProviderAuth::None,
            api_version: None,
            responses: false,
        });
        let target = |model: &str, weight| RouteTarget {
            provider: provider.clone(),
            model: model.into(),
            weight,
            timeout: Duration::from_secs(1),
        };
        let route = ModelRoute {
            alias: "m".into(),
            targets: vec![target("a", 3), target("b", 1), target("c", 1)],
        };
        let counter = AtomicU64::new(0);
        let mut firsts = [0; 3];
        for _ in 0..500 {
            let order = order(&route, &counter);
            assert_eq!(order.len(), 3);
            firsts[order[0]] += 1;
            let mut rest = order[1..].to_vec();
            rest.sort_unstable();
            assert!(rest.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(firsts, [300, 100, 100]);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        let config = RetryConfig::default();
        for seed in [0, 1, 77, u64::MAX] {
            let first = backoff(&config, 1, seed);
            assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(126));
            let third = backoff(&config, 3, seed);
            assert!(third >= Duration::from_millis(400) && third < Duration::from_millis(501));
            assert!(backoff(&config, 30, seed) <= Duration::from_millis(2500));
        }
    }
}
