//! Durations as playbooks write them: `500ms`, `30s`, `5m`, `1h30m`, `7d`.
//!
//! Design decision: one strict grammar (number + unit, repeated, largest unit
//! first), no bare numbers: `timeout: 30` could mean seconds or minutes, so it
//! is an error that says which forms are accepted.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A duration written in a playbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

pub fn expected_forms() -> &'static str {
    "a number followed by ms, s, m, h or d, e.g. 500ms, 30s, 5m, 1h30m, 7d"
}

/// Parses `1h30m`-style durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration \"{text}\": expected {}", expected_forms());
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (rank, unit, millis) = [4usize, 0, 1, 2, 3]
            .into_iter()
            .filter_map(|i| UNITS.get(i).map(|(u, ms)| (i, *u, *ms)))
            .find(|(_, u, _)| rest.starts_with(u))
            .ok_or_else(bad)?;
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        rest = &rest[unit.len()..];
        total = number
            .checked_mul(millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration \"{text}\" is too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way playbooks write it.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration such as 30s or 5m")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DurationSpec, E> {
                parse_duration(s).map(DurationSpec).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "invalid duration \"{n}\": a bare number has no unit; expected {}",
                    expected_forms()
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<DurationSpec, E> {
                self.visit_u64(n.unsigned_abs())
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "invalid duration \"{n}\": expected {}",
                    expected_forms()
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl schemars::JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$",
            "description": "A duration: a number followed by ms, s, m, h or d, e.g. 500ms, 30s, 5m, 1h30m, 7d"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for bad in ["", "30", "5 minutes", "1.5s", "30m1h", "s", "1x", "5m5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
    }
}
