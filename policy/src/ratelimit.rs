//! Attempts per key (a client IP address) within a sliding window: login forms and the
//! visitor portal's registration and token checks use it so that guessing and flooding cost
//! time. No I/O; the caller supplies the clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Most distinct keys tracked at once; beyond it the keys with the oldest last attempt are
/// dropped (a flood of addresses cannot exhaust memory).
const MAX_KEYS: usize = 65_536;

/// Refused: how many seconds until the next attempt is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// A sliding-window limiter: at most `max` attempts per key in any `window_secs`.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window_secs: i64,
    attempts: HashMap<IpAddr, VecDeque<i64>>,
}

impl RateLimiter {
    /// At most `max` (at least 1) attempts per key in any `window_secs` (at least 1).
    pub fn new(max: usize, window_secs: u64) -> RateLimiter {
        RateLimiter {
            max: max.max(1),
            window_secs: i64::try_from(window_secs.max(1)).unwrap_or(i64::MAX),
            attempts: HashMap::new(),
        }
    }

    /// Records an attempt by `key` at `now` (Unix seconds) if the key is under its limit.
    ///
    /// # Errors
    /// [`RetryAfter`] when the key has used up its attempts; the refused attempt is not counted.
    pub fn check(&mut self, key: IpAddr, now: i64) -> Result<(), RetryAfter> {
        let window = self.window_secs;
        if !self.attempts.contains_key(&key) && self.attempts.len() >= MAX_KEYS {
            self.attempts.retain(|_, times| times.back().is_some_and(|&t| now - t < window));
            if self.attempts.len() >= MAX_KEYS {
                let oldest = self.attempts.iter().min_by_key(|(_, times)| times.back().copied()).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.attempts.remove(&oldest);
                }
            }
        }
        let times = self.attempts.entry(key).or_default();
        while times.front().is_some_and(|&t| now - t >= window) {
            times.pop_front();
        }
        if times.len() >= self.max {
            let first = times.front().copied().unwrap_or(now);
            return Err(RetryAfter(u64::try_from(first + window - now).unwrap_or(1).max(1)));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_window() {
        let mut limiter = RateLimiter::new(3, 60);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        for t in 0..3 {
            assert!(limiter.check(a, 100 + t).is_ok());
        }
        assert_eq!(limiter.check(a, 110), Err(RetryAfter(50)), "the fourth attempt within a minute waits");
        assert!(limiter.check(b, 110).is_ok(), "another address is not affected");
        assert_eq!(limiter.check(a, 159), Err(RetryAfter(1)));
        assert!(limiter.check(a, 160).is_ok(), "the first attempt left the window");
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let mut limiter = RateLimiter::new(1, 3600);
        for i in 0..(MAX_KEYS as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(limiter.check(ip, i64::from(i)).is_ok());
        }
        assert!(limiter.attempts.len() <= MAX_KEYS);
    }
}
