//! The metrics contract: every name of tests/unit/daemon_metrics.txt (the list the
//! charm's dashboard and rules are checked against, and docs/metrics.md's table) exposed
//! with its type, and nothing else.

use super::*;

#[test]
fn every_contract_name_is_exposed_with_its_type() {
    // A registry of its own: other tests in this process move the global one.
    let m = &Metrics::new();
    m.refused(Refusal::ClientWrite);
    m.storage_up("fs", true);
    assert!(!m.encode().contains("aar_storage_fs_size_bytes"));
    m.fs_size_bytes.set(1 << 30);
    m.fs_available_bytes.set(1 << 20);
    // A family shows once it has a series.
    let route = || "/test/contract".to_owned();
    let op = StorageLabels {
        backend: "fs",
        operation: "test",
    };
    m.http_requests.get_or_create_owned(&RequestLabels {
        route: route(),
        method: "GET",
        status: 200,
    });
    m.http_duration.get_or_create_owned(&RouteMethodLabels {
        route: route(),
        method: "GET",
    });
    m.http_response_bytes
        .get_or_create_owned(&RouteLabel { route: route() });
    m.http_request_bytes
        .get_or_create_owned(&RouteLabel { route: route() });
    m.storage_operations.get_or_create_owned(&op);
    m.storage_duration.get_or_create_owned(&op);
    m.storage_errors.get_or_create_owned(&StorageErrorLabels {
        backend: "fs",
        operation: "test",
        kind: "io",
    });
    let text = m.encode();
    // The contract the charm's dashboard and alert rules are checked against: every
    // metric it lists is exposed with its type, and nothing is exposed that it lacks.
    let contract = include_str!("../../../tests/unit/daemon_metrics.txt");
    let mut listed = std::collections::BTreeSet::new();
    for line in contract.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, kind) = line.split_once(' ').expect("<name> <type>");
        // The exposition's TYPE line names a counter without its `_total`.
        let family = match kind {
            "counter" => name.strip_suffix("_total").expect("counters end in _total"),
            _ => name,
        };
        let type_line = format!("# TYPE {family} {kind}\n");
        assert!(
            text.contains(&type_line),
            "{type_line} missing from\n{text}"
        );
        listed.insert(family.to_owned());
    }
    let exposed: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        exposed, listed,
        "tests/unit/daemon_metrics.txt and the exposition differ"
    );
    assert!(text.contains(&format!(
        "aar_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("aar_refused_requests_total{reason=\"untrusted\"} 0\n"));
    assert!(text.contains("aar_refused_requests_total{reason=\"client_write\"} "));
    assert!(text.contains("aar_redirects_total{kind=\"cloudfront\"} 0\n"));
    assert!(text.contains("aar_storage_up{backend=\"fs\"} 1\n"));
    assert!(text.ends_with("# EOF\n"));
}
