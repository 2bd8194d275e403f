//! Property tests of the parsers the network reaches: whatever the input, they answer
//! (a value or an error) without panicking and in bounded time. The `Range` parser,
//! private to the API, has its own in `api/images.rs`.

use aar::config::{parse_duration, parse_size};
use aar::manifest;
use aar::model::validate_name;
use aar::registry::PublishRequest;
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// Generous for one parse on a loaded 2-core machine; a quadratic blow-up takes seconds.
const BOUND: Duration = Duration::from_millis(500);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < BOUND,
        "{what} took {:?}",
        started.elapsed()
    );
    out
}

/// YAML-ish text: the characters that make YAML structure, plus some words.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("name: ".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(": ".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!binary ".to_string()),
        Just("hooks:\n  timeout: ".to_string()),
        Just("features: ".to_string()),
        Just("services:\n  - port: ".to_string()),
        "[a-z0-9\"'#,.|>-]{0,8}",
    ];
    proptest::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn manifests_never_panic(text in yamlish()) {
        let _ = timed("manifest", || manifest::parse(&text));
    }

    #[test]
    fn arbitrary_manifest_text_never_panics(text in "\\PC{0,400}") {
        let _ = timed("manifest", || manifest::parse(&text));
    }

    #[test]
    fn publish_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = timed("publish body", || serde_json::from_slice::<PublishRequest>(&bytes));
    }

    #[test]
    fn publish_bodies_of_json_shape_never_panic(
        version in any::<i64>(),
        manifest in "\\PC{0,100}",
        arch in "\\PC{0,20}",
        digest in "(sha256:)?[0-9a-fA-F]{0,70}",
    ) {
        let body = serde_json::json!({"version": version, "manifest": manifest, "images": {arch: digest}});
        let _ = timed("publish body", || serde_json::from_value::<PublishRequest>(body));
    }

    #[test]
    fn names_never_panic(name in "\\PC{0,100}") {
        let _ = timed("name", || validate_name("application name", &name));
    }

    #[test]
    fn durations_and_sizes_never_panic(text in "[0-9a-zA-Z. +-]{0,40}") {
        let _ = timed("duration", || parse_duration(&text));
        let _ = timed("size", || parse_size(&text));
    }

    #[test]
    fn upload_offsets_never_panic(text in "\\PC{0,30}") {
        // The API reads Upload-Offset as a u64 with `str::parse`, nothing else.
        let _ = timed("offset", || text.trim().parse::<u64>());
    }
}

#[test]
fn a_mebibyte_of_nesting_is_refused_quickly() {
    for (open, text) in [
        ("[", format!("name: deep\nextra: {}", "[".repeat(1 << 20))),
        (
            "{a: ",
            format!("name: deep\nextra: {}", "{a: ".repeat(1 << 18)),
        ),
        (
            "- ",
            format!("name: deep\nextra:\n  {}x", "- ".repeat(1 << 19)),
        ),
    ] {
        let started = Instant::now();
        let err = manifest::parse(&text).unwrap_err();
        let took = started.elapsed();
        assert!(
            err.to_string().contains("nests more than"),
            "{open:?}: {err}"
        );
        assert!(took < BOUND, "{open:?}: refusing took {took:?}");
        println!("1 MiB of {open:?} nesting refused in {took:?}");
    }
}
