//! Byte sizes: a plain number of bytes, or a number and a unit (`512MiB`, `2GB`, `1.5GiB`).

use super::number::{unknown_unit, Number};

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

const HOW: &str = "use a number of bytes, or a number and a unit, e.g. 512MiB or 2GB";

/// Units people write that are not taken; named back in errors because they come from this
/// list, not from the value (which is never quoted: it could be a misplaced secret).
const FOREIGN_UNITS: &[&str] = &[
    "k", "m", "g", "t", "p", "e", "ki", "mi", "gi", "ti", "pi", "ei", "pb", "pib", "eb", "eib",
    "byte", "bytes",
];

/// Parses a size in bytes. Units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB,
/// TiB (powers of 1024), matched without regard to case; a space may separate number and
/// unit. A fraction is allowed when it comes to a whole number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let fail = |why: &str| format!("invalid size {}: {why}", super::redact::value(text));
    let s = text.trim();
    let Some(number) = Number::scan(s) else {
        return Err(fail(HOW));
    };
    let frac_part = number.frac;
    let unit = number.rest.trim_start();
    let multiplier = if unit.is_empty() {
        if s.contains('.') {
            return Err(fail("a number of bytes must be a whole number"));
        }
        1
    } else {
        match UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        {
            Some(&(_, multiplier)) => multiplier,
            None if unit.chars().all(char::is_alphabetic) => {
                let known = FOREIGN_UNITS.contains(&unit.to_lowercase().as_str());
                return Err(fail(&unknown_unit(
                    unit,
                    known,
                    "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB",
                )));
            }
            None => return Err(fail(HOW)),
        }
    };

    let too_large = || fail("too large");
    let int = number.whole().ok_or_else(too_large)?;
    let mut bytes = int
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?;
    if !frac_part.is_empty() {
        let digits = frac_part.trim_end_matches('0');
        if digits.len() > 24 {
            return Err(fail("not a whole number of bytes"));
        }
        if !digits.is_empty() {
            let frac: u128 = digits.parse().map_err(|_| fail(HOW))?;
            let scaled = frac * u128::from(multiplier);
            let divisor = 10u128.pow(digits.len() as u32);
            if scaled % divisor != 0 {
                return Err(fail("not a whole number of bytes"));
            }
            bytes += scaled / divisor;
        }
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Formats a size so that [`parse_size`] gives it back: in the largest binary unit that
/// divides it, else the largest decimal one, else as a plain number of bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    for (name, multiplier) in UNITS.iter().rev() {
        if *multiplier > 1 && bytes % multiplier == 0 {
            return format!("{}{name}", bytes / multiplier);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> u64 {
        parse_size(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn accepts_bytes_and_units() {
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("1048576"), 1 << 20);
        assert_eq!(ok("10B"), 10);
        assert_eq!(ok("1KB"), 1_000);
        assert_eq!(ok("2MB"), 2_000_000);
        assert_eq!(ok("3GB"), 3_000_000_000);
        assert_eq!(ok("1TB"), 1_000_000_000_000);
        assert_eq!(ok("1KiB"), 1024);
        assert_eq!(ok("1MiB"), 1 << 20);
        assert_eq!(ok("64GiB"), 64 << 30);
        assert_eq!(ok("2TiB"), 2 << 40);
        assert_eq!(ok("64 GiB"), 64 << 30);
        assert_eq!(ok("512mib"), 512 << 20);
        assert_eq!(ok("1.5GiB"), 3 << 29);
        assert_eq!(ok("1.10KB"), 1_100);
        assert_eq!(ok(".5KiB"), 512);
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        let how = "use a number of bytes, or a number and a unit, e.g. 512MiB or 2GB";
        for text in ["", "lots", "-1", "1e9", "GiB", "1 2MB", "1.2.3MB"] {
            assert_eq!(
                parse_size(text).unwrap_err(),
                format!("invalid size {}: {how}", crate::config::redact::value(text))
            );
        }
        assert_eq!(
            parse_size("64G").unwrap_err(),
            r#"invalid size "6…" (3 characters): unknown unit "G"; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"#
        );
        assert_eq!(
            parse_size("1secretvalue").unwrap_err(),
            r#"invalid size "1sec…" (12 characters): unknown unit; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"#
        );
        assert_eq!(
            parse_size("0.3KiB").unwrap_err(),
            r#"invalid size "0.3…" (6 characters): not a whole number of bytes"#
        );
        assert_eq!(
            parse_size("1.5").unwrap_err(),
            r#"invalid size "1…" (3 characters): a number of bytes must be a whole number"#
        );
        assert_eq!(
            parse_size("16777216TiB").unwrap_err(),
            r#"invalid size "1677…" (11 characters): too large"#
        );
    }

    #[test]
    fn format_then_parse_is_identity() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(64 << 30), "64GiB");
        assert_eq!(format_size(2_000_000), "2MB");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(1500), "1500");
        assert_eq!(format_size(3 << 29), "1536MiB");
        for bytes in [
            0,
            1,
            999,
            1000,
            1024,
            1536,
            5 << 40,
            7_000_000_000_000,
            u64::MAX,
        ] {
            assert_eq!(ok(&format_size(bytes)), bytes);
        }
    }
}
