//! Small helpers shared by every simulator: seeded id generation, secret
//! fingerprints, vendor date formats and JSON bodies parsed without axum's
//! plain-text rejections (each vendor answers bad input in its own envelope).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

/// Deterministic generator of ids and secret values: fixtures and every value
/// a simulator mints come from it, so the same seed gives the same ids.
#[derive(Debug)]
pub(crate) struct Gen {
    rng: StdRng,
}

impl Gen {
    /// A generator for one system, derived from the global seed and a salt so
    /// two systems never share a stream.
    pub(crate) fn new(seed: u64, salt: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(seed.to_le_bytes());
        hasher.update(salt.as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        Self {
            rng: StdRng::from_seed(digest),
        }
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.rng.fill(&mut out[..]);
        out
    }

    /// Lowercase hex of `n` random bytes (Plytix's 24-hex ObjectIds are `hex(12)`).
    pub(crate) fn hex(&mut self, n: usize) -> String {
        let v: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
        hex::encode(v)
    }

    pub(crate) fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.bytes::<16>()).into_uuid()
    }

    /// A secret made of `n` characters from `[A-Za-z0-9]`.
    pub(crate) fn alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| {
                let i = self.rng.random_range(0..CHARS.len());
                char::from(CHARS.get(i).copied().unwrap_or(b'x'))
            })
            .collect()
    }
}

/// What admin state shows instead of a secret value.
pub(crate) fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// `YYYY-MM-DDThh:mm:ss.fffffffZ`, the Plex Connect date format.
pub(crate) fn plex_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    t.format(&fmt).unwrap_or_default()
}

/// `YYYY-MM-DDThh:mm:ssZ` (Constellix, Plytix, DemandCaster).
pub(crate) fn iso(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// Epoch milliseconds (SOAR).
pub(crate) fn epoch_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Adds calendar months, clamping the day to the target month's length.
pub(crate) fn add_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + i64::from(months);
    let year = i32::try_from(total.div_euclid(12)).unwrap_or(9999);
    let month_n = u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1);
    let Ok(month) = time::Month::try_from(month_n) else {
        return t;
    };
    let day = t.day().min(time::util::days_in_month(month, year));
    match time::Date::from_calendar_date(year, month, day) {
        Ok(d) => t.replace_date(d),
        Err(_) => t,
    }
}

/// Parses a JSON body; an empty body reads as `{}` so optional bodies work.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Locks a simulator's state; a panic elsewhere must not wedge the server.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plex_date_has_seven_fraction_digits() {
        let t = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        assert_eq!(plex_date(t), "2024-01-01T00:00:00.0000000Z");
    }

    #[test]
    fn add_months_clamps_day() {
        let t = time::macros::datetime!(2024-01-31 10:00:00 UTC);
        assert_eq!(iso(add_months(t, 1)), "2024-02-29T10:00:00Z");
        assert_eq!(iso(add_months(t, 18)), "2025-07-31T10:00:00Z");
    }

    #[test]
    fn same_seed_same_ids() {
        let (mut a, mut b) = (Gen::new(7, "x"), Gen::new(7, "x"));
        assert_eq!(a.hex(12), b.hex(12));
        assert_ne!(Gen::new(7, "x").hex(12), Gen::new(8, "x").hex(12));
    }
}
