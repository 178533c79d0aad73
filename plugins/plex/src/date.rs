//! Plex dates (`YYYY-MM-DDThh:mm:ss.fffffffZ`, any RFC 3339 offset) as
//! milliseconds since the Unix epoch, to compare them with the host clock.
//!
//! Design decision: a few lines of civil-calendar arithmetic instead of a
//! date crate: the plugin only ever compares instants, and every byte of a
//! plugin is loaded on each run.

const MS_PER_DAY: i64 = 86_400_000;

/// Whole days from 1970-01-01 to the given civil date (proleptic
/// Gregorian; H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Milliseconds since the epoch of an RFC 3339 date-time with a `T`, e.g.
/// `2025-01-01T00:00:00.0000000Z` or `2025-01-01T01:00:00+01:00`.
pub fn parse_ms(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (year, month, day) = (number(d.next()?)?, number(d.next()?)?, number(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset_ms) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off.get(1..)?.split_once(':')?;
        (c, sign * (number(h)? * 60 + number(m)?) * 60_000)
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (h, m, s) = (number(t.next()?)?, number(t.next()?)?, number(t.next()?)?);
    if t.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let millis = match fraction {
        Some(f) => {
            let digits: String = f.chars().chain("000".chars()).take(3).collect();
            number(f)?;
            number(&digits)?
        }
        None => 0,
    };
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + ((h * 60 + m) * 60 + s) * 1000 + millis - offset_ms)
}

/// Whole days from `now_ms` until `then_ms`, rounded down (negative when past).
pub fn days_between(now_ms: i64, then_ms: i64) -> i64 {
    (then_ms - now_ms).div_euclid(MS_PER_DAY)
}

/// `days` whole days, in milliseconds.
pub fn days_ms(days: i64) -> i64 {
    days.saturating_mul(MS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plex_dates_parse_to_epoch_milliseconds() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ms("2025-01-01T00:00:00.0000000Z"), Some(1_735_689_600_000));
        assert_eq!(parse_ms("2024-02-29T12:30:15.1234567Z"), Some(1_709_209_815_123));
        assert_eq!(parse_ms("2025-01-01T01:00:00+01:00"), Some(1_735_689_600_000));
        assert_eq!(parse_ms("1969-12-31T23:59:59Z"), Some(-1000));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "soon",
            "2025-01-01T00:00:00.x1Z",
            "",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_round_down() {
        assert_eq!(days_between(0, days_ms(14) + 5), 14);
        assert_eq!(days_between(0, -1), -1);
    }
}
