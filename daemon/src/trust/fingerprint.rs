//! Certificate fingerprints: the SHA-256 of a certificate's DER encoding, which is how the
//! registry names a caller (AMS shows the same value as `registry.fingerprint`).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A certificate's SHA-256 fingerprint, written as 64 lowercase hex characters in
/// `trust.json`, in messages and on the command line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

/// Text that is not 64 hex characters. The text is not quoted: it may be anything a caller
/// sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a certificate fingerprint: expected 64 hex characters")]
pub struct InvalidFingerprint;

impl Fingerprint {
    /// Length of the text form.
    pub const HEX_LEN: usize = 64;

    /// The fingerprint of a certificate given as DER.
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Whether the text form starts with `prefix`, which must be lowercase hex to match.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.text().starts_with(prefix.as_bytes())
    }

    fn text(&self) -> [u8; Self::HEX_LEN] {
        let mut text = [0u8; Self::HEX_LEN];
        hex::encode_to_slice(self.0, &mut text).expect("64 bytes hold 32 bytes as hex");
        text
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    /// Either case: hand-edited files and other tools may write uppercase, and both name the
    /// same certificate.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::HEX_LEN {
            return Err(InvalidFingerprint);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| InvalidFingerprint)?;
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        f.write_str(std::str::from_utf8(&text).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Compares with a text form exactly as written: only the lowercase form is equal.
impl PartialEq<str> for Fingerprint {
    fn eq(&self, other: &str) -> bool {
        self.text() == other.as_bytes()
    }
}

impl PartialEq<&str> for Fingerprint {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Fingerprint {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn is_the_sha256_of_the_der_in_lowercase_hex() {
        let fp = Fingerprint::of(b"");
        assert_eq!(fp.to_string(), EMPTY);
        assert_eq!(format!("{fp:?}"), EMPTY);
        assert_eq!(fp, EMPTY);
        assert_eq!(fp, EMPTY.to_owned());
        assert!(fp != EMPTY.to_uppercase());
        assert!(fp.starts_with("e3b0"));
        assert!(!fp.starts_with("E3B0"));
    }

    #[test]
    fn parses_either_case_and_nothing_else() {
        let fp = Fingerprint::of(b"");
        assert_eq!(EMPTY.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(EMPTY.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        for bad in [
            "",
            &EMPTY[..63],
            &format!("{EMPTY}0"),
            &EMPTY.replace('e', "g"),
            &format!(" {}", &EMPTY[1..]),
        ] {
            assert_eq!(bad.parse::<Fingerprint>(), Err(InvalidFingerprint), "{bad}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let fp = Fingerprint::of(b"");
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
    }
}
