//! `parse_retry_after`: the HTTP `Retry-After` header in both its forms (delta-seconds and HTTP-date).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an HTTP `Retry-After` header value into how long to wait from `now`.
///
/// Both forms of RFC 9110 §10.2.3 are understood: delta-seconds (`"120"`) and an HTTP-date in the
/// preferred IMF-fixdate form (`"Sun, 06 Nov 1994 08:49:37 GMT"`). A date in the past means "now" (zero).
/// Anything else, including the obsolete RFC 850 and asctime date forms, gives `None`.
///
/// Use it in your error type's [`Classify::retry_after`](crate::Classify::retry_after) or in a
/// [`retry_after`](crate::Retry::retry_after) closure.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use aqueduct_retry::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_700);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(77)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// # let _ = SystemTime::now();
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Delta-seconds too large for a u64 saturate: the caller's deadline or clamp bounds the wait anyway.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses `"Sun, 06 Nov 1994 08:49:37 GMT"`.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_ascii_whitespace();
    let weekday = parts.next()?;
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day: u32 = parse_digits(parts.next()?, 2)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = parse_digits(parts.next()?, 4)?;
    let mut clock = parts.next()?.split(':');
    let hours: u32 = parse_digits(clock.next()?, 2)?;
    let minutes: u32 = parse_digits(clock.next()?, 2)?;
    let seconds: u32 = parse_digits(clock.next()?, 2)?;
    if clock.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let since_epoch = days * 86_400 + i64::from(hours * 3600 + minutes * 60 + seconds);
    let since_epoch = u64::try_from(since_epoch).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(since_epoch))
}

/// Parses exactly `width` ASCII digits.
fn parse_digits(text: &str, width: usize) -> Option<u32> {
    if text.len() != width || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
