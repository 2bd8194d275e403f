//! How a value or key name from a config document appears in an error message.
//!
//! A secret pasted into the wrong field (an access key as the bucket, a secret key as the
//! key pair ID, `AKIA…: x` as a key) would otherwise be quoted back, and through `aar
//! config check` and the charm it would reach logs and Juju status. So a value is never
//! quoted whole: a short one shows at most 4 leading characters (never more than half of
//! it) and its length, a long one (the length of keys and tokens) only its length. The
//! line and column the message carries already point at the value.

/// Longer values are shown by length only: AWS secret keys are 40 characters, tokens more.
const MAX_HINTED: usize = 32;
/// Leading characters shown of a short value.
const MAX_SHOWN: usize = 4;
/// Longer key names are never shown.
const MAX_KEY_NAME: usize = 32;

/// `"eu w…" (9 characters)`, or `(40 characters, not shown)`.
pub(super) fn value(text: &str) -> String {
    let count = text.chars().count();
    let characters = if count == 1 {
        "character"
    } else {
        "characters"
    };
    if count > MAX_HINTED {
        return format!("({count} {characters}, not shown)");
    }
    let shown = MAX_SHOWN.min(count / 2);
    if shown == 0 {
        return format!("({count} {characters})");
    }
    let prefix: String = text.chars().take(shown).collect();
    format!("\"{}…\" ({count} {characters})", prefix.escape_debug())
}

/// The key name as written when it reads like one (`bucke`, `min_version`, `s3`): at most
/// 32 characters, words of lowercase letters, each ending in at most two digits, joined by
/// `-` or `_`. Anything else (`AKIAIOSFODNN7EXAMPLE`, a hex token) may be a secret.
pub(super) fn key_name(key: &str) -> Option<&str> {
    let word = |part: &str| {
        let letters = part.bytes().take_while(u8::is_ascii_lowercase).count();
        let digits = &part[letters..];
        (1..=20).contains(&letters)
            && digits.len() <= 2
            && digits.bytes().all(|b| b.is_ascii_digit())
    };
    (key.len() <= MAX_KEY_NAME && key.split(['-', '_']).all(word)).then_some(key)
}

/// `"bucke"`, or `(20 characters, not shown)`.
pub(super) fn key(key: &str) -> String {
    match key_name(key) {
        Some(name) => format!("{name:?}"),
        None => {
            let count = key.chars().count();
            let characters = if count == 1 {
                "character"
            } else {
                "characters"
            };
            format!("({count} {characters}, not shown)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_their_length_and_at_most_a_short_prefix() {
        assert_eq!(value(""), "(0 characters)");
        assert_eq!(value("x"), "(1 character)");
        assert_eq!(value("ab"), "\"a…\" (2 characters)");
        assert_eq!(value("yes"), "\"y…\" (3 characters)");
        assert_eq!(value("5 minutes"), "\"5 mi…\" (9 characters)");
        assert_eq!(value("AKIAIOSFODNN7EXAMPLE"), "\"AKIA…\" (20 characters)");
        assert_eq!(value(&"x".repeat(32)), "\"xxxx…\" (32 characters)");
        assert_eq!(
            value("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "(40 characters, not shown)"
        );
        // Characters, not bytes; control characters escaped.
        assert_eq!(value("é\té\tééé"), "\"é\\té…\" (7 characters)");
    }

    #[test]
    fn only_key_names_that_read_like_one_are_shown() {
        for name in [
            "bucke",
            "min_version",
            "state-dir",
            "s3",
            "secret-acces-key",
            "region2",
            "root-directry",
        ] {
            assert_eq!(key_name(name), Some(name));
        }
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "Secret-Access-Key",
            "d41d8cd98f00b204e9800998ecf8427e",
            "hunter2hunter2",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "abc123",
            "",
            "a--b",
            &"word-".repeat(7),
        ] {
            assert_eq!(key_name(secret), None, "{secret}");
        }
        assert_eq!(key("bucke"), "\"bucke\"");
        assert_eq!(key("AKIAIOSFODNN7EXAMPLE"), "(20 characters, not shown)");
    }
}
