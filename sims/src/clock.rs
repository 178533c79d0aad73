//! A simulator's clock: wall time plus an offset the admin API can move, so
//! expiry can be tested without waiting. Each system has its own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub(crate) fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn offset_secs(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst) / 1000
    }

    pub(crate) fn set_offset_secs(&self, secs: i64) {
        self.offset_ms.store(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

/// Scales vendor waiting times (Retry-After, SOAR's one-hour IP ban) so
/// rehearsals finish in seconds: `scaled = nominal * factor`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeScale(pub(crate) f64);

impl TimeScale {
    /// Whole seconds for a header, at least 1.
    pub(crate) fn secs(self, nominal_secs: u64) -> u64 {
        #[allow(clippy::cast_precision_loss, reason = "header values are small")]
        let scaled = (nominal_secs as f64 * self.0).ceil();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped below"
        )]
        let s = scaled.clamp(1.0, 1e9) as u64;
        s
    }

    pub(crate) fn duration(self, nominal_secs: u64) -> time::Duration {
        #[allow(clippy::cast_precision_loss, reason = "durations are small")]
        let ms = (nominal_secs as f64 * 1000.0 * self.0).max(1.0);
        #[allow(clippy::cast_possible_truncation, reason = "clamped")]
        time::Duration::milliseconds(ms.min(1e15) as i64)
    }

    /// A scaled wall-clock duration (for real rate-limit windows).
    pub(crate) fn std_duration(self, nominal_secs: u64) -> std::time::Duration {
        #[allow(clippy::cast_precision_loss, reason = "durations are small")]
        let secs = (nominal_secs as f64 * self.0).max(0.001);
        std::time::Duration::from_secs_f64(secs.min(1e9))
    }
}
