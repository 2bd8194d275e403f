//! The decimal number that starts a duration or a size (`30`, `1.5`, `.5`, `1.`), scanned
//! the same way for both so that they accept the same numbers.

/// A number as written: its digits before and after the point, and the text after it.
pub(super) struct Number<'a> {
    pub(super) int: &'a str,
    pub(super) frac: &'a str,
    pub(super) rest: &'a str,
}

impl<'a> Number<'a> {
    /// Reads ASCII digits, then optionally `.` and more digits, from the start of `text`.
    /// `None` when there is no digit on either side of the point.
    pub(super) fn scan(text: &'a str) -> Option<Number<'a>> {
        let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
        let int = &text[..int_len];
        let mut rest = &text[int_len..];
        let mut frac = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        Some(Number { int, frac, rest })
    }

    /// The whole part; `None` when it does not fit in a u128, which can only mean an
    /// absurdly large value.
    pub(super) fn whole(&self) -> Option<u128> {
        if self.int.is_empty() {
            Some(0)
        } else {
            self.int.parse().ok()
        }
    }
}

/// The reason given for a unit that is not one of `units`. The unit is named only when
/// `known` (it is on a list of units people write), never otherwise: it comes from the
/// value, which could be a misplaced secret.
pub(super) fn unknown_unit(unit: &str, known: bool, units: &str) -> String {
    if known {
        format!("unknown unit {unit:?}; use {units}")
    } else {
        format!("unknown unit; use {units}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_point() {
        let n = Number::scan("1.25s").unwrap();
        assert_eq!((n.int, n.frac, n.rest), ("1", "25", "s"));
        let n = Number::scan(".5KiB").unwrap();
        assert_eq!((n.int, n.frac, n.rest), ("", "5", "KiB"));
        let n = Number::scan("1.s").unwrap();
        assert_eq!((n.int, n.frac, n.rest), ("1", "", "s"));
        assert!(Number::scan(".s").is_none());
        assert!(Number::scan("GiB").is_none());
        assert!(Number::scan("").is_none());
    }

    #[test]
    fn whole_part_overflows_to_none() {
        assert_eq!(Number::scan(".5").unwrap().whole(), Some(0));
        assert_eq!(Number::scan("42h").unwrap().whole(), Some(42));
        assert_eq!(Number::scan(&"9".repeat(40)).unwrap().whole(), None);
    }
}
