//! Metadata answers kept as built, until the index changes.
//!
//! AMS units poll the same few URLs over and over; between publishes the answer to each
//! is the same bytes. Serialising the JSON and hashing it for the ETag took a fifth of a
//! metadata GET's server CPU (bench/results/answer-cache.md), so an answer is built once
//! per index generation
//! ([`Registry::generation`](crate::registry::Registry::generation)) and served from here
//! until the generation moves on. Authorisation is checked at every request before this
//! cache is consulted, and a kept answer is served only after the readiness check its
//! handler makes; only `200` answers are kept.

use super::response::Rendered;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of answers kept at most; reaching it starts the cache afresh. A listing of a very
/// large registry is left out rather than allowed to take the whole budget.
const BUDGET: usize = 16 << 20;
const LARGEST: usize = BUDGET / 4;

#[derive(Default)]
pub struct AnswerCache(Mutex<Entries>);

#[derive(Default)]
struct Entries {
    generation: u64,
    bytes: usize,
    answers: HashMap<String, Rendered>,
}

impl AnswerCache {
    /// The answer kept for `key` at `generation`, if any.
    pub fn get(&self, key: &str, generation: u64) -> Option<Rendered> {
        let entries = self.0.lock().unwrap();
        if entries.generation != generation {
            return None;
        }
        entries.answers.get(key).cloned()
    }

    /// Keeps `answer`, built from the index at `generation` or later, for `key`.
    pub fn put(&self, key: &str, generation: u64, answer: &Rendered) {
        let size = answer.body.len() + key.len();
        if size > LARGEST {
            return;
        }
        let mut entries = self.0.lock().unwrap();
        if generation < entries.generation {
            return; // built from an index older than what is kept
        }
        if generation > entries.generation || entries.bytes + size > BUDGET {
            *entries = Entries {
                generation,
                ..Entries::default()
            };
        }
        entries.bytes += size;
        if let Some(old) = entries.answers.insert(key.to_owned(), answer.clone()) {
            entries.bytes -= old.body.len() + key.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn answer(body: &str) -> Rendered {
        Rendered {
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            etag: HeaderValue::from_static("\"e\""),
        }
    }

    #[test]
    fn answers_live_for_one_generation() {
        let cache = AnswerCache::default();
        cache.put("/a", 1, &answer("one"));
        assert_eq!(cache.get("/a", 1).unwrap().body, "one");
        assert!(cache.get("/b", 1).is_none());
        // The index moved on: nothing from before is served.
        assert!(cache.get("/a", 2).is_none());
        // An answer built before the change is not kept after it.
        cache.put("/b", 2, &answer("two"));
        cache.put("/a", 1, &answer("stale"));
        assert!(cache.get("/a", 2).is_none());
        assert!(cache.get("/a", 1).is_none());
        assert_eq!(cache.get("/b", 2).unwrap().body, "two");
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let cache = AnswerCache::default();
        let big = "x".repeat(LARGEST);
        cache.put("/huge", 1, &answer(&big));
        assert!(cache.get("/huge", 1).is_none(), "too large to keep");
        let quarter = "y".repeat(LARGEST - 10);
        for i in 0..8 {
            cache.put(&format!("/{i}"), 1, &answer(&quarter));
        }
        let entries = cache.0.lock().unwrap();
        assert!(entries.bytes <= BUDGET, "{} bytes kept", entries.bytes);
        assert!(entries.answers.contains_key("/7"), "the newest is kept");
    }
}
