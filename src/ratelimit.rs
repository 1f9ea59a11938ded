//! One rate limiter for the daemon's logs: at most a burst of lines per interval, counting what
//! it suppressed in between, so a flood of bad input or failing calls cannot flood the log.
//!
//! A leaf: used by the stats, the receiver and the proxy; imports nothing of this crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often at most one warning per reason is logged about bad input or drops.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// At most `burst` messages per `interval`, counting what it suppressed in between. The one
/// rate limiter of the daemon's logs (stats warnings, the proxy's upstream failures).
#[derive(Debug, Default)]
pub struct RateLimit {
    /// Unix seconds when the current window started.
    window: AtomicU64,
    /// Messages let through in the current window.
    used: AtomicU64,
    /// Messages suppressed since the last one let through.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// Returns `Some(suppressed before this one)` when a message may be logged now.
    pub fn allow(&self, burst: u64, interval: Duration) -> Option<u64> {
        let now = unix_seconds();
        let window = self.window.load(Ordering::Relaxed);
        if now >= window + interval.as_secs()
            && self
                .window
                .compare_exchange(window, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < burst {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Once per [`WARN_INTERVAL`]: [`Self::allow`] with a burst of one.
    pub fn once(&self) -> Option<u64> {
        self.allow(1, WARN_INTERVAL)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tail of a rate-limited message: how many like it were not logged, when any.
#[derive(Debug)]
pub struct Suppressed(pub u64, pub &'static str);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(
                f,
                " ({n} more {} since the last message were not logged)",
                self.1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_through_then_counts() {
        let r = RateLimit::default();
        assert_eq!(r.once(), Some(0));
        assert_eq!(r.once(), None);
        assert_eq!(r.once(), None);
        assert_eq!(r.suppressed.load(Ordering::Relaxed), 2);
    }
}
