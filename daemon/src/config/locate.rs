//! Finds the line and column of a key or value by its path, for errors found after
//! deserialization (rules that span several keys, duplicate keys).
//!
//! serde_yaml_ng keeps node positions to itself but attaches the position of the node being
//! read to any error raised while reading it. So the text is read once more, walking down
//! the path and ignoring everything else, and the target node is made to fail with a marker
//! message; the position attached to that error is the answer.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
    /// A key that is not a string; never found.
    Unknown,
}

impl Segment {
    pub(super) fn as_key(&self) -> &str {
        match self {
            Segment::Key(key) => key,
            Segment::Index(_) | Segment::Unknown => "",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// The value at the path (for a mapping, where its first key starts).
    Value,
    /// The `occurrence`-th (1-based) appearance of the path's last key in its mapping.
    Key { occurrence: usize },
}

const FOUND: &str = "\u{1}located\u{1}";

/// 1-based (line, column) of the target, or `None` when the path is not in the text.
pub(super) fn locate(text: &str, path: &[Segment], target: Target) -> Option<(usize, usize)> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    match (Walk { path, target }).deserialize(deserializer) {
        Err(err) if err.to_string().contains(FOUND) => {
            err.location().map(|l| (l.line(), l.column()))
        }
        _ => None,
    }
}

struct Walk<'p> {
    path: &'p [Segment],
    target: Target,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => deserializer.deserialize_any(Found),
            Some(Segment::Key(_)) => deserializer.deserialize_map(self),
            Some(Segment::Index(_)) => deserializer.deserialize_seq(self),
            Some(Segment::Unknown) => Err(de::Error::custom("not found")),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Segment::Key(wanted)) = self.path.first() else {
            return Err(de::Error::custom("not found"));
        };
        let last = self.path.len() == 1;
        let mut seen = 0;
        loop {
            let stop_at = match self.target {
                Target::Key { occurrence } if last => Some(occurrence),
                _ => None,
            };
            let key = KeySeed {
                wanted,
                seen: &mut seen,
                stop_at,
            };
            match map.next_key_seed(key)? {
                None => return Ok(()),
                Some(true) if stop_at.is_none() => {
                    return map.next_value_seed(Walk {
                        path: &self.path[1..],
                        target: self.target,
                    });
                }
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(&Segment::Index(wanted)) = self.path.first() else {
            return Err(de::Error::custom("not found"));
        };
        for _ in 0..wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk {
            path: &self.path[1..],
            target: self.target,
        })?;
        Ok(())
    }
}

/// Reads one key; says whether it is the wanted one, or fails on the wanted occurrence so
/// that the error carries the key's position.
struct KeySeed<'a> {
    wanted: &'a str,
    seen: &'a mut usize,
    stop_at: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.wanted {
            return Ok(false);
        }
        *self.seen += 1;
        if Some(*self.seen) == self.stop_at {
            return Err(E::custom(FOUND));
        }
        Ok(true)
    }
}

/// Fails on whatever node it is given: serde's "invalid type" error quotes `expecting`,
/// which carries the marker.
struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Segment {
        Segment::Key(name.to_owned())
    }

    const TEXT: &str = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    tags: [a, b]
  fs: {root-directory: /x}
";

    #[test]
    fn finds_values_and_keys() {
        let value = |path: &[Segment]| locate(TEXT, path, Target::Value);
        assert_eq!(value(&[key("storage")]), Some((2, 3)));
        assert_eq!(value(&[key("storage"), key("s3")]), Some((3, 5)));
        assert_eq!(
            value(&[key("storage"), key("s3"), key("bucket")]),
            Some((4, 13))
        );
        assert_eq!(
            value(&[key("storage"), key("s3"), key("tags"), Segment::Index(1)]),
            Some((5, 15))
        );
        assert_eq!(value(&[key("storage"), key("fs")]), Some((6, 7)));
        assert_eq!(
            value(&[key("storage"), key("fs"), key("root-directory")]),
            Some((6, 24))
        );
        assert_eq!(value(&[key("storage"), key("gcs")]), None);
        assert_eq!(
            value(&[key("storage"), key("s3"), key("region"), key("x")]),
            None
        );
        assert_eq!(
            locate(
                TEXT,
                &[key("storage"), key("s3"), key("bucket")],
                Target::Key { occurrence: 1 }
            ),
            Some((4, 5))
        );
    }

    #[test]
    fn finds_the_second_occurrence() {
        let text = "a:\n  b: 1\n  c: 2\n  b: 3\n";
        let path = [key("a"), key("b")];
        assert_eq!(
            locate(text, &path, Target::Key { occurrence: 1 }),
            Some((2, 3))
        );
        assert_eq!(
            locate(text, &path, Target::Key { occurrence: 2 }),
            Some((4, 3))
        );
        assert_eq!(locate(text, &path, Target::Key { occurrence: 3 }), None);
    }
}
