//! A circuit breaker for the shared backend: after a few consecutive failures it opens,
//! and requests go straight to the failure mode instead of each paying the backend's
//! timeout. A probe task closes it once the backend answers again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Consecutive failures that open the breaker.
const TRIP_AFTER: u32 = 3;

#[derive(Default)]
pub struct CircuitBreaker {
    failures: AtomicU32,
    open: AtomicBool,
}

impl CircuitBreaker {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records a failed call; `true` when this failure opened the breaker.
    pub fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        failures >= TRIP_AFTER && !self.open.swap(true, Ordering::AcqRel)
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
    }

    /// Opens the breaker at once (the backend was never reachable).
    pub fn trip(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// `true` when this call closed an open breaker.
    pub fn close(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        self.open.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = CircuitBreaker::default();
        assert!(!b.failure());
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(!b.is_open());
        assert!(b.failure(), "third consecutive failure opens");
        assert!(b.is_open());
        assert!(!b.failure(), "already open");
        assert!(b.close());
        assert!(!b.is_open());
        assert!(!b.close());
    }
}
