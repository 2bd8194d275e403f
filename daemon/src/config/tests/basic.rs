//! The daemon's own sections (`http`, `gc`, `log`, `state-directory`): their defaults,
//! the spellings accepted and the error for each mistake.

use super::*;

#[test]
fn paths_follow_the_state_directory() {
    let config = parse("state-directory: /srv/aar\n").unwrap();
    assert_eq!(config.state_directory, Path::new("/srv/aar"));
    assert_eq!(
        config.http.tls.certificate,
        Path::new("/srv/aar/certs/server.crt")
    );
    assert_eq!(config.http.tls.key, Path::new("/srv/aar/certs/server.key"));
    assert_eq!(
        config.storage,
        StorageConfig::Fs(FsConfig {
            root_directory: "/srv/aar/data".into(),
            min_free: 0
        })
    );
    assert_eq!(config, Config::with_state_directory("/srv/aar"));

    // Explicit paths win, and the ones left out still follow.
    let config =
        parse("state-directory: /srv/aar\nhttp: {tls: {key: /etc/aar.key}}\nstorage: {fs: {}}\n")
            .unwrap();
    assert_eq!(config.http.tls.key, Path::new("/etc/aar.key"));
    assert_eq!(
        config.http.tls.certificate,
        Path::new("/srv/aar/certs/server.crt")
    );
    assert_eq!(
        config.storage,
        StorageConfig::Fs(FsConfig::in_state_directory(Path::new("/srv/aar")))
    );

    // Relative paths are kept as written.
    let config = parse("state-directory: state\nstorage: {fs: {root-directory: blobs}}\n").unwrap();
    assert_eq!(config.state_directory, Path::new("state"));
    assert_eq!(
        config.http.tls.certificate,
        Path::new("state/certs/server.crt")
    );
    assert_eq!(
        config.storage,
        StorageConfig::Fs(FsConfig {
            root_directory: "blobs".into(),
            min_free: 0
        })
    );
}

#[test]
fn tls_min_version_spellings() {
    for (text, version) in [
        ("\"1.3\"", TlsVersion::Tls13),
        ("\"1.2\"", TlsVersion::Tls12),
        ("1.3", TlsVersion::Tls13),
        ("1.2", TlsVersion::Tls12),
        ("TLSv1.2", TlsVersion::Tls12),
        ("tls1.3", TlsVersion::Tls13),
    ] {
        let config = parse(&format!("http:\n  tls:\n    min-version: {text}\n")).unwrap();
        assert_eq!(config.http.tls.min_version, version, "{text}");
    }
}

#[test]
fn sizes_as_numbers_or_with_units() {
    let config = parse(
        "http:\n  limits:\n    max-metadata-size: 2097152\n    max-image-size: 1.5 GiB\n\
         storage: {fs: {min-free: 500MB}}\n",
    )
    .unwrap();
    assert_eq!(config.http.limits.max_metadata_size, 2 << 20);
    assert_eq!(config.http.limits.max_image_size, 3 << 29);
    match config.storage {
        StorageConfig::Fs(fs) => assert_eq!(fs.min_free, 500_000_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn listen_address_forms() {
    let addr = |text: &str| {
        parse(&format!("http: {{addr: \"{text}\"}}"))
            .unwrap()
            .http
            .addr
    };
    assert_eq!(addr("0.0.0.0:3000"), "0.0.0.0:3000".parse().unwrap());
    assert_eq!(addr("[::]:3000"), "[::]:3000".parse().unwrap());
    assert_eq!(addr(":8443"), "0.0.0.0:8443".parse().unwrap());
}

#[test]
fn invalid_duration() {
    let text = "\
http:
  addr: 0.0.0.0:3000
  limits:
    header-timeout: 30s
    body-timeout: 5 minutes
";
    assert_eq!(
        err(text),
        r#"http.limits.body-timeout (line 5, column 19): invalid duration "5 mi…" (9 characters): use a number and a unit, e.g. 30s, 1m, 1h30m"#
    );
    assert_eq!(
        err("gc:\n  interval: 30\n"),
        r#"gc.interval (line 2, column 13): invalid duration "3…" (2 characters): add a unit, e.g. 30s"#
    );
    assert_eq!(
        err("gc:\n  upload-expiry: 7d\n"),
        r#"gc.upload-expiry (line 2, column 18): invalid duration "7…" (2 characters): unknown unit "d"; use ns, us, ms, s, m or h"#
    );
}

#[test]
fn connection_admission_limits() {
    let limits = parse(
        "http:\n  limits:\n    max-connections: 50\n    untrusted-share: 20%\n    \
         untrusted-idle-timeout: 2s\n    write-timeout: 10s\n    header-timeout: 30s\n",
    )
    .unwrap()
    .http
    .limits;
    assert_eq!(limits.max_untrusted(), 10);
    assert_eq!(limits.untrusted_idle_timeout, Duration::from_secs(2));
    assert_eq!(limits.write_timeout, Duration::from_secs(10));
    // The handshake gets the shorter of the two: the client has not shown a trusted
    // certificate yet.
    assert_eq!(limits.handshake_timeout(), Duration::from_secs(2));
    // Never less than one connection, or nobody could complete a handshake.
    let tiny = parse("http: {limits: {max-connections: 3, untrusted-share: 1%}}").unwrap();
    assert_eq!(tiny.http.limits.max_untrusted(), 1);
    let all = parse("http: {limits: {max-connections: 3, untrusted-share: 100 %}}").unwrap();
    assert_eq!(all.http.limits.max_untrusted(), 3);

    assert_eq!(
        err("http: {limits: {untrusted-share: 10}}"),
        r#"http.limits.untrusted-share (line 1, column 34): expected a percentage, e.g. 10%, found "1…" (2 characters)"#
    );
    assert_eq!(
        err("http: {limits: {untrusted-share: 0%}}"),
        r#"http.limits.untrusted-share (line 1, column 34): invalid percentage "0…" (2 characters): use a whole number from 1% to 100%"#
    );
    assert_eq!(
        err("http: {limits: {untrusted-share: 150%}}"),
        r#"http.limits.untrusted-share (line 1, column 34): invalid percentage "15…" (4 characters): use a whole number from 1% to 100%"#
    );
    assert_eq!(
        err("http: {limits: {untrusted-share: 2.5%}}"),
        r#"http.limits.untrusted-share (line 1, column 34): invalid percentage "2.…" (4 characters): use a whole number from 1% to 100%"#
    );
    assert_eq!(
        err("http: {limits: {write-timeout: 0s}}"),
        r#"http.limits.write-timeout (line 1, column 32): invalid duration 0s: must be longer than 0s"#
    );
    assert_eq!(
        err("http: {limits: {untrusted-idle-timeout: 0s}}"),
        r#"http.limits.untrusted-idle-timeout (line 1, column 41): invalid duration 0s: must be longer than 0s"#
    );
    assert_eq!(
        err("http: {limits: {untrusted-idle: 5s}}"),
        r#"http.limits.untrusted-idle (line 1, column 17): unknown key "untrusted-idle"; did you mean "untrusted-idle-timeout"?"#
    );
}

#[test]
fn durations_that_must_be_positive() {
    assert_eq!(
        err("gc:\n  interval: 0s\n"),
        r#"gc.interval (line 2, column 13): invalid duration 0s: must be longer than 0s"#
    );
    assert_eq!(
        storage_err("storage: {s3: {region: eu-west-3, bucket: aar0, refresh-interval: 0s}}"),
        r#"storage.s3.refresh-interval (line 1, column 67): invalid duration 0s: must be longer than 0s"#
    );
    assert_eq!(
        storage_err("storage: {s3: {region: eu-west-3, bucket: aar0, presign-duration: 8d}}"),
        r#"storage.s3.presign-duration (line 1, column 67): invalid duration "8…" (2 characters): unknown unit "d"; use ns, us, ms, s, m or h"#
    );
    assert_eq!(
        storage_err("storage: {s3: {region: eu-west-3, bucket: aar0, presign-duration: 200h}}"),
        r#"storage.s3.presign-duration (line 1, column 67): invalid duration 200h: S3 presigned URLs last at most 168h (7 days)"#
    );
    // A shutdown without grace is allowed.
    assert_eq!(
        parse("http: {shutdown-timeout: 0s}")
            .unwrap()
            .http
            .shutdown_timeout,
        Duration::ZERO
    );
}

#[test]
fn bad_tls_version() {
    assert_eq!(
        err("http:\n  tls:\n    min-version: 1.1\n"),
        r#"http.tls.min-version (line 3, column 18): unsupported TLS version "1…" (3 characters): use "1.3" (the default) or "1.2""#
    );
}
