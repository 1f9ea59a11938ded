//! Waiting on conditions with deadlines (never fixed sleeps).

use std::time::{Duration, Instant};

/// How often [`until`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A point in time after which a test stops waiting.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end: Instant,
}

impl Deadline {
    /// The deadline `within` from now.
    pub fn after(within: Duration) -> Self {
        Self {
            end: Instant::now() + within,
        }
    }

    /// True once the deadline is reached.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Sleeps one poll interval, or less if the deadline is closer.
    pub async fn tick(&self, interval: Duration) {
        tokio::time::sleep(interval.min(self.remaining())).await;
    }
}

/// Calls `probe` every `interval` until it returns `Some`, or `within` has passed (then
/// `None`). The probe runs at least once, and once more at the deadline.
pub async fn until<T>(
    within: Duration,
    interval: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Deadline::after(within);
    loop {
        let passed = deadline.passed();
        if let Some(value) = probe().await {
            return Some(value);
        }
        if passed {
            return None;
        }
        deadline.tick(interval).await;
    }
}
