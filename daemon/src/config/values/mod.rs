//! Leaf values of the schema. Each one is checked in its `Deserialize` impl, while the YAML
//! parser still knows where the value is, so that the error names its line and column.
//! Messages never quote a value whole ([`redact::value`]): a secret pasted into the wrong
//! field would otherwise be echoed. Secrets' own fields say nothing of the value at all.

mod basic;
mod cloudfront;
mod s3;

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::Serializer;

use super::read::tagged;
use super::{format_duration, format_size};

pub(super) use basic::{
    AnyDuration, Count, Flag, HostList, HostName, ListenAddr, LogLevel, NonZeroDuration,
    NonZeroSize, PathText, Percent, Size,
};
pub(super) use cloudfront::{BaseUrl, KeypairId, PrivateKey};
pub(super) use s3::{AccessKey, Bucket, Endpoint, PresignDuration, Region, SecretText};

/// Reads any YAML scalar as its text and hands it to `parse`. serde_yaml_ng gives the
/// scalar's text as written (`1.2`, `true` and `30` included), which is what these values
/// are read from.
struct FromText<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).map_err(|message| E::custom(tagged(message)))
    }
}

/// A newtype read through [`FromText`] and written back through `$render`.
macro_rules! scalar {
    ($(#[$meta:meta])* $name:ident($inner:ty), $expecting:literal, $parse:expr, $render:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(in crate::config) struct $name(pub(in crate::config) $inner);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_str($crate::config::values::FromText {
                        expecting: $expecting,
                        parse: $parse,
                    })
                    .map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let render: fn(&$inner, S) -> Result<S::Ok, S::Error> = $render;
                render(&self.0, serializer)
            }
        }
    };
}
use scalar;

fn render_str<S: Serializer, T: AsRef<str>>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_ref())
}

fn render_duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*value))
}

fn render_size<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = format_size(*value);
    if text.bytes().all(|b| b.is_ascii_digit()) {
        serializer.serialize_u64(*value)
    } else {
        serializer.serialize_str(&text)
    }
}
