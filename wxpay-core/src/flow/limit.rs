//! A per-client token bucket for the sign-in route: junk codes must not
//! spend the app's `jscode2session` quota.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Sign-ins a client (by IP address) may make: `burst` at once, then one
/// per `every`. Kept in this process's memory: with several instances
/// behind a load balancer, each allows its own share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many at once.
    pub burst: u32,
    /// One more after each of these.
    pub every: Duration,
}

/// The most clients remembered; past it, the least recently seen go.
const CLIENTS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client` at `now`: `Ok`, or how long until one is
    /// free.
    pub(crate) fn take(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let every = self.limit.every.as_secs_f64();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= CLIENTS && !buckets.contains_key(client) {
            // Forget the clients rested back to a full bucket: they are as
            // good as new.
            let full: Vec<String> = (buckets.iter())
                .filter(|(_, (_, seen))| refill(0.0, *seen, now, every, burst) >= burst)
                .map(|(k, _)| k.clone())
                .collect();
            for k in full {
                buckets.remove(&k);
            }
            if buckets.len() >= CLIENTS {
                buckets.clear();
            }
        }
        let (tokens, seen) = buckets.entry(client.to_owned()).or_insert((burst, now));
        let available = refill(*tokens, *seen, now, every, burst);
        if available >= 1.0 {
            *tokens = available - 1.0;
            *seen = now;
            Ok(())
        } else {
            let wait = if every > 0.0 {
                (1.0 - available) * every
            } else {
                0.0
            };
            Err(Duration::from_secs_f64(wait))
        }
    }
}

/// Tokens after resting from `seen` to `now`, at most `burst`.
fn refill(tokens: f64, seen: Instant, now: Instant, every: f64, burst: f64) -> f64 {
    if every <= 0.0 {
        return burst;
    }
    let rested = now.saturating_duration_since(seen).as_secs_f64();
    (tokens + rested / every).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_client() {
        let l = Limiter::new(RateLimit {
            burst: 2,
            every: Duration::from_secs(10),
        });
        let t = Instant::now();
        assert!(l.take("1.2.3.4", t).is_ok());
        assert!(l.take("1.2.3.4", t).is_ok());
        let wait = l.take("1.2.3.4", t).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        // Another client has its own bucket.
        assert!(l.take("5.6.7.8", t).is_ok());
        // Half rested: still refused, for the other half.
        assert_eq!(
            l.take("1.2.3.4", t + Duration::from_secs(5)).unwrap_err(),
            Duration::from_secs(5)
        );
        assert!(l.take("1.2.3.4", t + Duration::from_secs(10)).is_ok());
        assert!(l.take("1.2.3.4", t + Duration::from_secs(10)).is_err());
        // A long rest refills up to the burst, no more.
        let later = t + Duration::from_secs(3600);
        assert!(l.take("1.2.3.4", later).is_ok());
        assert!(l.take("1.2.3.4", later).is_ok());
        assert!(l.take("1.2.3.4", later).is_err());
    }
}
