//! `storage` and the charm's `storage_config`: choosing fs or s3, and the s3 keys.

use super::*;

#[test]
fn storage_config_s3_only() {
    let text = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    access-key: AKIAIOSFODNN7EXAMPLE
    secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
";
    let storage = parse_storage_document(text).unwrap().unwrap();
    assert_eq!(storage.kind(), "s3");
    let expected = S3Config {
        access_key: Some("AKIAIOSFODNN7EXAMPLE".into()),
        secret_access_key: Some(Secret::new(SECRET_KEY)),
        ..S3Config::new("eu-west-3", "aar0")
    };
    assert_eq!(s3(&storage), &expected);
    assert_eq!(expected.presign_duration, Duration::from_secs(300));
    assert_eq!(expected.refresh_interval, Duration::from_secs(30));
    assert_eq!(expected.trust_refresh_interval, Duration::from_secs(2));
    assert_eq!(expected.trust_stale_after, Duration::from_secs(30));
    assert!(!expected.path_style);

    // The same section is valid in the daemon's own file.
    assert_eq!(parse(text).unwrap().storage, storage);

    // Without keys: the AWS default credential chain (an instance profile).
    let storage =
        parse_storage_document("storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n")
            .unwrap()
            .unwrap();
    assert_eq!(s3(&storage), &S3Config::new("eu-west-3", "aar0"));
}

#[test]
fn storage_config_as_juju_config_file_carries_it() {
    // `juju config aar -f config.yaml`: the charm receives the block's text.
    let juju = format!(
        "\
aar:
  storage_config: |
    storage:
      s3:
        region: eu-west-3
        bucket: aar0
        cloudfront:
          base-url: d1dfsdfjmcefekdotjm.cloudfront.net
          private-key: |
{}          keypair-id: ADF443JOEF3423JF
",
        indented_pem(12)
    );
    let outer: serde_yaml_ng::Value = serde_yaml_ng::from_str(&juju).unwrap();
    let inner = outer["aar"]["storage_config"].as_str().unwrap();
    let storage = parse_storage_document(inner).unwrap().unwrap();
    let cloudfront = s3(&storage).cloudfront.as_ref().unwrap();
    assert_eq!(cloudfront.private_key.expose(), PEM);
}

#[test]
fn storage_config_s3_compatible() {
    let text = "\
storage:
  s3:
    region: us-east-1
    bucket: aar-test
    access-key: minioadmin
    secret-access-key: minioadmin
    endpoint: http://127.0.0.1:9000
    path-style: true
    presign-duration: 15m
    refresh-interval: 5s
    trust-refresh-interval: 500ms
    trust-stale-after: 1m
";
    let storage = parse_storage_document(text).unwrap().unwrap();
    let s3 = s3(&storage);
    assert_eq!(s3.trust_refresh_interval, Duration::from_millis(500));
    assert_eq!(s3.trust_stale_after, Duration::from_secs(60));
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(s3.path_style);
    assert_eq!(s3.presign_duration, Duration::from_secs(900));
    assert_eq!(s3.refresh_interval, Duration::from_secs(5));
}

#[test]
fn trust_stale_after_must_outlast_a_refresh() {
    assert_eq!(
        storage_err(
            "storage: {s3: {region: eu-west-3, bucket: aar0, trust-refresh-interval: 10s, trust-stale-after: 10s}}"
        ),
        "storage.s3.trust-stale-after (line 1, column 97): must be longer than \
         trust-refresh-interval (10s): it is how long the last trust store read stays in use \
         while the bucket cannot be reached, so it must outlast at least one refresh"
    );
    assert_eq!(
        storage_err("storage: {s3: {region: eu-west-3, bucket: aar0, trust-stale-after: 1s}}"),
        "storage.s3.trust-stale-after (line 1, column 68): must be longer than \
         trust-refresh-interval (2s): it is how long the last trust store read stays in use \
         while the bucket cannot be reached, so it must outlast at least one refresh"
    );
}

#[test]
fn storage_config_fs_flow_style() {
    let text = "storage: {fs: {root-directory: /x}}";
    let expected = StorageConfig::Fs(FsConfig {
        root_directory: "/x".into(),
        min_free: 0,
    });
    assert_eq!(
        parse_storage_document(text).unwrap(),
        Some(expected.clone())
    );
    assert_eq!(parse(text).unwrap().storage, expected);
}

#[test]
fn storage_config_empty_means_default() {
    for empty in [
        "",
        "  ",
        "\n\n",
        "# use the defaults\n",
        "storage:\n",
        "storage: ~\n",
    ] {
        assert_eq!(parse_storage_document(empty).unwrap(), None, "{empty:?}");
    }
    // fs without a root directory: the default state directory's.
    assert_eq!(
        parse_storage_document("storage:\n  fs:\n").unwrap(),
        Some(StorageConfig::default())
    );
}

#[test]
fn missing_required_key() {
    let text = "\
storage:
  s3:
    bucket: aar0
";
    assert_eq!(
        storage_err(text),
        r#"storage.s3 (line 3, column 5): missing required key "region""#
    );
    assert_eq!(
        err("storage:\n  s3:\n"),
        r#"storage.s3 (line 2, column 6): missing required keys "region" and "bucket""#
    );
    assert_eq!(
        storage_err("storage: {s3: {}}"),
        r#"storage.s3 (line 1, column 15): missing required keys "region" and "bucket""#
    );
}

#[test]
fn choose_exactly_one_backend() {
    let text = "\
storage:
  fs:
    root-directory: /data
  s3:
    region: eu-west-3
    bucket: aar0
";
    assert_eq!(
        storage_err(text),
        "storage (line 2, column 3): choose exactly one storage backend, `fs` or `s3`"
    );
    assert_eq!(
        err("storage: {}\n"),
        "storage (line 1, column 10): choose exactly one storage backend, `fs` or `s3`"
    );
}

#[test]
fn access_keys_go_in_pairs() {
    let text = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0

    secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
";
    assert_eq!(
        storage_err(text),
        "storage.s3.secret-access-key (line 6, column 24): set access-key and secret-access-key \
         together, or neither to use the AWS default credential chain"
    );
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIAIOSFODNN7EXAMPLE\n"),
        "storage.s3.access-key (line 5, column 17): set access-key and secret-access-key \
         together, or neither to use the AWS default credential chain"
    );
    assert_eq!(
        storage_err(
            "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: \"\"\n"
        ),
        "storage.s3.access-key (line 5, column 17): must not be empty; leave out access-key and \
         secret-access-key to use the AWS default credential chain"
    );
}

#[test]
fn bucket_naming() {
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: eu-west-3\n    bucket: AAR_0\n"),
        r#"storage.s3.bucket (line 4, column 13): invalid bucket name "AA…" (5 characters): use only lowercase letters, digits, '.' and '-'"#
    );
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: eu-west-3\n    bucket: a0\n"),
        r#"storage.s3.bucket (line 4, column 13): invalid bucket name "a…" (2 characters): must be 3 to 63 characters long"#
    );
}

#[test]
fn bad_endpoint() {
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: us-east-1\n    bucket: aar0\n    endpoint: 127.0.0.1:9000\n"),
        r#"storage.s3.endpoint (line 5, column 15): invalid endpoint "127.…" (14 characters): add the scheme, http:// or https://, before the host"#
    );
    assert_eq!(
        storage_err(
            "storage:\n  s3:\n    region: us-east-1\n    bucket: aar0\n    endpoint: s3://aar0\n"
        ),
        r#"storage.s3.endpoint (line 5, column 15): invalid endpoint "s3:/…" (9 characters): use an http:// or https:// URL"#
    );
}

#[test]
fn duplicate_secret_key_names_the_key_only() {
    let text = format!(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIA1\n    \
         secret-access-key: {SECRET_KEY}\n    secret-access-key: {SECRET_KEY}\n"
    );
    assert_eq!(
        storage_err(&text),
        r#"storage.s3.secret-access-key (line 7, column 5): duplicate key "secret-access-key"; it is already set on line 6"#
    );
}
