//! One rate limiter for the daemon's logs: at most a burst of lines per interval, counting what
//! it suppressed in between, so a flood of bad input or failing calls cannot flood the log.
//!
//! A line stands for a number of things (a datagram refused, 9 segments dropped): the limiter
//! counts the things it suppressed, not the lines, so the next line it lets through can say how
//! many more there were ([`Suppressed`]). When no next line comes (the flood ended within the
//! interval), the owner of the limiter reports the count on its own once the interval is over
//! ([`RateLimit::take_suppressed`]), so every thing counted is in some line of the log.
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
    /// Things suppressed since they were last reported (by a message or by
    /// [`Self::take_suppressed`]).
    suppressed: AtomicU64,
}

impl RateLimit {
    /// Returns `Some(things suppressed before this one)` when a message may be logged now; see
    /// [`Self::allow_n`].
    pub fn allow(&self, burst: u64, interval: Duration) -> Option<u64> {
        self.allow_n(burst, interval, 1)
    }

    /// For a message that stands for `n` things (segments dropped, say): when it may be logged
    /// now, returns `Some(things suppressed since the last report)`, to be said in it (and so
    /// no longer counted here); when not, counts its `n` among the suppressed and returns
    /// `None`.
    pub fn allow_n(&self, burst: u64, interval: Duration, n: u64) -> Option<u64> {
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
        self.suppressed.fetch_add(n, Ordering::Relaxed);
        None
    }

    /// Once per [`WARN_INTERVAL`]: [`Self::allow`] with a burst of one.
    pub fn once(&self) -> Option<u64> {
        self.allow(1, WARN_INTERVAL)
    }

    /// Once per [`WARN_INTERVAL`], for a message that stands for `n` things: [`Self::allow_n`]
    /// with a burst of one.
    pub fn once_n(&self, n: u64) -> Option<u64> {
        self.allow_n(1, WARN_INTERVAL, n)
    }

    /// The things suppressed and not yet reported, taken (each is reported once), once the
    /// window in which they were suppressed is over (`interval` after it began), so that the
    /// report keeps to the rate; with `force`, now (at shutdown). `None` when there are none,
    /// or the window is not over yet.
    pub fn take_suppressed(&self, interval: Duration, force: bool) -> Option<u64> {
        if self.suppressed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let over = unix_seconds() >= self.window.load(Ordering::Relaxed) + interval.as_secs();
        if !(force || over) {
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tail of a rate-limited message: how many more things like it (in the words of `.1`,
/// e.g. "segments dropped for this reason") were not logged since the last message, when any.
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

    /// A warning that stands for 9 dropped segments, in a flood of them, is followed by counts
    /// of segments, not of warnings: the spillover warning said "Dropped 9 segment(s)" while
    /// 192,951 were dropped, and the suppressed count, when it came at all, counted calls.
    #[test]
    fn what_is_suppressed_is_counted_in_the_things_each_message_stands_for() {
        let r = RateLimit::default();
        assert_eq!(r.once_n(9), Some(0));
        for _ in 0..1000 {
            assert_eq!(r.once_n(7), None);
        }
        assert_eq!(r.suppressed.load(Ordering::Relaxed), 7000);
        // The next message of a new window says it; the count is then reported.
        r.window.store(0, Ordering::Relaxed);
        assert_eq!(r.once_n(5), Some(7000));
        assert_eq!(r.suppressed.load(Ordering::Relaxed), 0);
    }

    /// A flood that ends within the interval left its suppressed count unreported (each reason
    /// was logged once, with no count): once the window is over it can be taken, once.
    #[test]
    fn what_no_later_message_reports_is_taken_once_the_window_is_over() {
        let r = RateLimit::default();
        assert_eq!(r.take_suppressed(WARN_INTERVAL, false), None, "nothing yet");
        assert_eq!(r.once_n(1), Some(0));
        assert_eq!(r.once_n(4), None);
        assert_eq!(r.once_n(4), None);
        assert_eq!(
            r.take_suppressed(WARN_INTERVAL, false),
            None,
            "the window is still open"
        );
        // The window began more than an interval ago.
        let began = unix_seconds() - WARN_INTERVAL.as_secs();
        r.window.store(began, Ordering::Relaxed);
        assert_eq!(r.take_suppressed(WARN_INTERVAL, false), Some(8));
        assert_eq!(r.take_suppressed(WARN_INTERVAL, false), None, "taken once");
        // At shutdown, whatever the window.
        r.window.store(unix_seconds(), Ordering::Relaxed);
        assert_eq!(r.once_n(3), None);
        assert_eq!(r.take_suppressed(WARN_INTERVAL, true), Some(3));
    }
}
