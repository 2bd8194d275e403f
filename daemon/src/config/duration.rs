//! Go-style durations (`30s`, `1m`, `1h30m`, `1.5h`, `500ms`): the notation of the Anbox
//! Cloud documentation and of AMS's own configuration, so operators can copy values across.

use std::time::Duration;

use super::number::{unknown_unit, Number};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Go's units; both micro signs are accepted because Go accepts both.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("h", 3600 * NANOS_PER_SECOND),
];

const HOW: &str = "use a number and a unit, e.g. 30s, 1m, 1h30m";

/// Units people write that Go does not take; named back in errors because they come from
/// this list, not from the value (which is never quoted: it could be a misplaced secret).
const FOREIGN_UNITS: &[&str] = &[
    "d", "day", "days", "w", "wk", "week", "weeks", "mo", "month", "months", "y", "yr", "year",
    "years", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "hr", "hrs",
    "hour", "hours",
];

/// Parses a Go-style duration. A bare number is refused (its unit would be a guess), except
/// `0`, which Go accepts too and which means the same in every unit. Negative durations are
/// refused. The error is a complete sentence that shows the value only as
/// [`redact::value`](super::redact::value) does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let fail = |why: &str| format!("invalid duration {}: {why}", super::redact::value(text));
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if !unsigned.is_empty()
        && unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && unsigned.bytes().any(|b| b.is_ascii_digit())
    {
        return Err(fail("add a unit, e.g. 30s"));
    }
    if unsigned.is_empty() {
        return Err(fail(HOW));
    }

    let mut total: u128 = 0;
    let mut rest = unsigned;
    while !rest.is_empty() {
        let Some(number) = Number::scan(rest) else {
            return Err(fail(HOW));
        };
        let frac_part = number.frac;
        rest = number.rest;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            if !unit.is_empty() && unit.chars().all(char::is_alphabetic) {
                let lower = unit.to_lowercase();
                let known = FOREIGN_UNITS.contains(&lower.as_str())
                    || UNITS.iter().any(|(name, _)| *name == lower);
                return Err(fail(&unknown_unit(unit, known, "ns, us, ms, s, m or h")));
            }
            return Err(fail(HOW));
        };

        let int = number.whole().ok_or_else(|| fail("too large"))?;
        let mut value = int.checked_mul(scale).ok_or_else(|| fail("too large"))?;
        if !frac_part.is_empty() {
            // 20 digits are far below a nanosecond even in hours, and keep the product in
            // range: 10^20 * 3.6 * 10^12 < 2^128.
            let digits = &frac_part[..frac_part.len().min(20)];
            let frac: u128 = digits.parse().map_err(|_| fail(HOW))?;
            value += frac * scale / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(|| fail("too large"))?;
    }

    if negative && total != 0 {
        return Err(fail("must not be negative"));
    }
    let nanos = u64::try_from(total).map_err(|_| fail("too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration so that [`parse_duration`] gives it back exactly: whole hours,
/// minutes and seconds, then the sub-second rest in the coarsest exact unit
/// (`1h30m`, `1s500ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let nanos = duration.subsec_nanos();
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        out.push_str(&format!("{seconds}s"));
    }
    if nanos > 0 {
        if nanos % 1_000_000 == 0 {
            out.push_str(&format!("{}ms", nanos / 1_000_000));
        } else if nanos % 1_000 == 0 {
            out.push_str(&format!("{}us", nanos / 1_000));
        } else {
            out.push_str(&format!("{nanos}ns"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        parse_duration(text).expect_err(text)
    }

    #[test]
    fn accepts_go_durations() {
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0s"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("24h"), Duration::from_secs(86_400));
        assert_eq!(ok("1ns"), Duration::from_nanos(1));
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("7\u{b5}s"), Duration::from_micros(7));
        assert_eq!(ok("7\u{3bc}s"), Duration::from_micros(7));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("2m0.25s"), Duration::from_millis(120_250));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
    }

    #[test]
    fn refuses_bare_numbers() {
        assert_eq!(
            err("30"),
            r#"invalid duration "3…" (2 characters): add a unit, e.g. 30s"#
        );
        assert_eq!(
            err("1.5"),
            r#"invalid duration "1…" (3 characters): add a unit, e.g. 30s"#
        );
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        let how = "use a number and a unit, e.g. 30s, 1m, 1h30m";
        assert_eq!(
            err("5 minutes"),
            format!(r#"invalid duration "5 mi…" (9 characters): {how}"#)
        );
        for text in [
            "", "s", "h1", "1h30", "1h 30m", " 1h", ".s", "1..5s", "-", "+",
        ] {
            assert_eq!(
                err(text),
                format!(
                    "invalid duration {}: {how}",
                    crate::config::redact::value(text)
                )
            );
        }
    }

    #[test]
    fn names_an_unknown_unit() {
        assert_eq!(
            err("7d"),
            r#"invalid duration "7…" (2 characters): unknown unit "d"; use ns, us, ms, s, m or h"#
        );
        assert_eq!(
            err("1H"),
            r#"invalid duration "1…" (2 characters): unknown unit "H"; use ns, us, ms, s, m or h"#
        );
        assert_eq!(
            err("5minutes"),
            r#"invalid duration "5min…" (8 characters): unknown unit "minutes"; use ns, us, ms, s, m or h"#
        );
        // Any other run of letters may be part of a secret: not named.
        assert_eq!(
            err("1AKIAIOSFODNN"),
            r#"invalid duration "1AKI…" (13 characters): unknown unit; use ns, us, ms, s, m or h"#
        );
    }

    #[test]
    fn refuses_negative_and_huge() {
        assert_eq!(
            err("-5s"),
            r#"invalid duration "-…" (3 characters): must not be negative"#
        );
        assert_eq!(
            err("9999999999999h"),
            r#"invalid duration "9999…" (14 characters): too large"#
        );
        let long = format!("{}s", "9".repeat(60));
        assert_eq!(
            err(&long),
            "invalid duration (61 characters, not shown): too large"
        );
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1500us");
        assert_eq!(
            format_duration(Duration::new(3723, 4_005_006)),
            "1h2m3s4005006ns"
        );
    }

    #[test]
    fn format_then_parse_is_identity() {
        let samples = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(999_999_999),
            Duration::from_micros(1),
            Duration::from_millis(1),
            Duration::new(59, 1),
            Duration::new(3599, 500_000_000),
            Duration::new(90_061, 123_456_789),
            Duration::from_nanos(u64::MAX),
        ];
        for d in samples {
            assert_eq!(ok(&format_duration(d)), d, "{}", format_duration(d));
        }
    }
}
