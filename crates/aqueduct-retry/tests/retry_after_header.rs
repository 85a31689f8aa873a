//! `parse_retry_after`: both header forms, past dates, and malformed values.

use std::time::{Duration, UNIX_EPOCH};

use aqueduct_retry::parse_retry_after;
use proptest::prelude::*;

#[test]
fn delta_seconds_are_parsed() {
    let now = UNIX_EPOCH;
    assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after(" 3600 ", now), Some(Duration::from_secs(3600)));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(Duration::from_secs(u64::MAX))
    );
}

#[test]
fn imf_fixdates_are_parsed_relative_to_now() {
    // RFC 9110's example: Sun, 06 Nov 1994 08:49:37 GMT is 784111777 seconds after the epoch.
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(30))
    );
    // A leap day and the turn of a century.
    let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29T00:00:00Z
    assert_eq!(
        parse_retry_after("Tue, 29 Feb 2000 00:00:10 GMT", leap_day),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn dates_in_the_past_mean_now() {
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
}

#[test]
fn malformed_values_are_refused() {
    let now = UNIX_EPOCH;
    for value in [
        "",
        "-5",
        "1.5",
        "soon",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
    ] {
        assert_eq!(parse_retry_after(value, now), None, "{value:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(value in ".{0,40}", seconds in any::<u32>()) {
        let _ = parse_retry_after(&value, UNIX_EPOCH + Duration::from_secs(u64::from(seconds)));
    }
}
