//! The metrics contract: every name of docs/metrics.md exposed with its type.

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
    for (name, kind) in [
        ("aar_build_info", "gauge"),
        ("aar_http_requests", "counter"),
        ("aar_http_request_duration_seconds", "histogram"),
        ("aar_http_response_bytes", "counter"),
        ("aar_http_request_bytes", "counter"),
        ("aar_uploads_in_progress", "gauge"),
        ("aar_upload_bytes", "counter"),
        ("aar_redirects", "counter"),
        ("aar_storage_operations", "counter"),
        ("aar_storage_errors", "counter"),
        ("aar_storage_operation_duration_seconds", "histogram"),
        ("aar_storage_up", "gauge"),
        ("aar_storage_fs_available_bytes", "gauge"),
        ("aar_storage_fs_size_bytes", "gauge"),
        ("aar_trust_refreshes", "counter"),
        ("aar_refused_requests", "counter"),
        ("aar_index_applications", "gauge"),
        ("aar_index_versions", "gauge"),
        ("aar_index_blob_bytes", "gauge"),
        ("aar_index_unreadable_records", "gauge"),
        ("aar_last_publish_timestamp_seconds", "gauge"),
        ("aar_gc_runs", "counter"),
        ("aar_gc_collected_bytes", "counter"),
        ("aar_server_certificate_expiry_timestamp_seconds", "gauge"),
    ] {
        let line = format!("# TYPE {name} {kind}\n");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
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
