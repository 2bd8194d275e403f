//! The store's timestamps: RFC 3339 in UTC with second precision (`2030-01-01T00:00:00Z`),
//! and their Unix time, which is what validity is compared in.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::time::ASN1Time;

pub(crate) const DAY: i64 = 24 * 3600;

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// RFC 3339 in UTC of a Unix time.
pub(crate) fn format(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// RFC 3339 in UTC of a certificate time.
pub(crate) fn format_asn1(time: ASN1Time) -> String {
    format(time.timestamp())
}

/// The Unix time of a timestamp as the store writes it (`YYYY-MM-DDTHH:MM:SSZ`); `None` for
/// anything else, e.g. an empty field in a hand-written store.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
        || !matches!(b[19], b'Z' | b'z')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|d| d.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // 60 is a leap second, which Unix time folds into the next one.
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * DAY + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        for (unix, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
        ] {
            assert_eq!(parse(text), Some(unix), "{text}");
            assert_eq!(format(unix), text, "{unix}");
        }
        assert_eq!(format(-1), "1969-12-31T23:59:59Z");
        // rcgen's default end of validity, as the store records it.
        assert_eq!(
            format(parse("4096-01-01T00:00:00Z").unwrap()),
            "4096-01-01T00:00:00Z"
        );
        // Years 1 to 9999, the ones four digits can write.
        for unix in (-62_135_596_800i64..253_402_300_799).step_by(777_777_777) {
            assert_eq!(parse(&format(unix)), Some(unix), "{unix}");
        }
    }

    #[test]
    fn anything_else_is_not_a_time() {
        for text in [
            "",
            "2030-01-01",
            "2030-01-01T00:00:00+01:00",
            "2030-13-01T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-0a-01T00:00:00Z",
            "+030-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn agrees_with_certificate_times() {
        let t = ASN1Time::from_timestamp(1_767_225_600).unwrap();
        assert_eq!(format_asn1(t), "2026-01-01T00:00:00Z");
    }
}
