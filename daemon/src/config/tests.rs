//! Documents as operators write them (DESIGN.md and the Anbox Cloud docs), and the exact
//! error text an operator sees for each class of mistake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Not a usable key (the body is random), but laid out as `openssl genrsa` writes one.
const PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAUvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA/TkB/yOaGglfIP
k5VlDPk4C47bIkprJIoekk6P0K4uGpSSozBfGIy2EJAPnjR/rohtxlB3lex0XEw/
yy6yxz4Uk0yGfuBXunJJm/oSHoNrKsFXJu59awr2qxPDjpLK4NFQV7FZmH+UzHQR
1xfxRXmyqhAPu7NPpZP+rtJySLdi46tYBfB2WiucHX4PN8RJIb0/ZWTq338UKnJm
jEfiI9Fu3YxHtGr8W67iYfU7JhUtJjuoOwN81JYuQ0gBJWuIXpyQUfMgsNuD856n
rb0NdObex/PfrsyPZGVmZBp7omYPMBH8NXApHFeZDRoAkSaJGfJdnQYS3zWdYCai
QPRYml15Hx3ZfP76d3p7TxUkGr9XvUN61LEphAU08/OHXCWwi+oGwodM+qTdF7LY
QoRd6CpbxTmIiseAVKI5nM/J/MLaMc490Wa9zTozhH5buwf9B8pHeEIxsZr0WHLO
-----END RSA PRIVATE KEY-----
";

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// PEM indented for a block scalar under `private-key: |` at `indent` spaces.
fn indented_pem(indent: usize) -> String {
    PEM.lines()
        .map(|line| format!("{}{line}\n", " ".repeat(indent)))
        .collect()
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
        Err(err) => err.to_string(),
    }
}

fn storage_err(text: &str) -> String {
    match parse_storage_document(text) {
        Ok(storage) => panic!("accepted:\n{text}\nas {storage:?}"),
        Err(err) => err.to_string(),
    }
}

fn s3(storage: &StorageConfig) -> &S3Config {
    match storage {
        StorageConfig::S3(s3) => s3,
        other => panic!("expected s3, got {other:?}"),
    }
}

// ---------------------------------------------------------------- documents that must work

#[test]
fn design_daemon_config_example() {
    let text = r#"
http:
  addr: 0.0.0.0:3000
  tls:
    certificate: /var/lib/aar/certs/server.crt   # generated at first start if absent
    key: /var/lib/aar/certs/server.key           # SANs: listen and advertised addresses
    min-version: "1.3"                                 # "1.2" only when asked for
state-directory: /var/lib/aar                          # trust store, server certificate
storage:
  fs:
    root-directory: /var/lib/aar/data
"#;
    assert_eq!(parse(text).unwrap(), Config::default());
}

#[test]
fn every_key_of_the_schema() {
    let text = r#"
http:
  addr: 127.0.0.1:8443
  advertise: [aar.example.com, 10.0.0.5, "*.aar.example.com"]
  shutdown-timeout: 1m30s
  tls:
    certificate: /etc/aar/server.crt
    key: /etc/aar/server.key
    min-version: 1.2
  limits:
    header-timeout: 10s
    body-timeout: 2m
    max-metadata-size: 512KiB
    max-image-size: 100GB
    max-connections: 100
    untrusted-share: 25%
    untrusted-idle-timeout: 2s
    write-timeout: 90s
state-directory: /srv/aar
storage:
  fs:
    root-directory: /data/aar
    min-free: 10GiB
gc:
  interval: 30m
  upload-expiry: 12h
  scrub-interval: 24h
  scrub-rate: 8MiB
log:
  level: info,aar=debug
"#;
    let config = parse(text).unwrap();
    assert_eq!(
        config,
        Config {
            http: HttpConfig {
                addr: "127.0.0.1:8443".parse().unwrap(),
                advertise: vec![
                    "aar.example.com".into(),
                    "10.0.0.5".into(),
                    "*.aar.example.com".into()
                ],
                shutdown_timeout: Duration::from_secs(90),
                tls: TlsConfig {
                    certificate: "/etc/aar/server.crt".into(),
                    key: "/etc/aar/server.key".into(),
                    min_version: TlsVersion::Tls12,
                },
                limits: Limits {
                    header_timeout: Duration::from_secs(10),
                    body_timeout: Duration::from_secs(120),
                    max_metadata_size: 512 * 1024,
                    max_image_size: 100_000_000_000,
                    max_connections: 100,
                    untrusted_share: 25,
                    untrusted_idle_timeout: Duration::from_secs(2),
                    write_timeout: Duration::from_secs(90),
                },
            },
            state_directory: "/srv/aar".into(),
            storage: StorageConfig::Fs(FsConfig {
                root_directory: "/data/aar".into(),
                min_free: 10 << 30,
            }),
            gc: GcConfig {
                interval: Duration::from_secs(1800),
                upload_expiry: Duration::from_secs(12 * 3600),
                scrub_interval: Duration::from_secs(24 * 3600),
                scrub_rate: 8 << 20,
            },
            log: LogConfig {
                level: "info,aar=debug".into(),
                format: LogFormat::Text,
            },
            metrics: MetricsConfig::default(),
        }
    );
}

#[test]
fn defaults() {
    let config = Config::default();
    assert_eq!(config.http.addr, "0.0.0.0:3000".parse().unwrap());
    assert!(config.http.advertise.is_empty());
    assert_eq!(config.http.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(
        config.http.tls.certificate,
        Path::new("/var/lib/aar/certs/server.crt")
    );
    assert_eq!(
        config.http.tls.key,
        Path::new("/var/lib/aar/certs/server.key")
    );
    assert_eq!(config.http.tls.min_version, TlsVersion::Tls13);
    assert_eq!(config.http.limits.header_timeout, Duration::from_secs(30));
    assert_eq!(config.http.limits.body_timeout, Duration::from_secs(60));
    assert_eq!(config.http.limits.max_metadata_size, 1024 * 1024);
    assert_eq!(config.http.limits.max_image_size, 64 * 1024 * 1024 * 1024);
    assert_eq!(config.http.limits.max_connections, 4096);
    assert_eq!(config.http.limits.untrusted_share, 10);
    assert_eq!(config.http.limits.max_untrusted(), 409);
    assert_eq!(
        config.http.limits.untrusted_idle_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(config.http.limits.write_timeout, Duration::from_secs(60));
    assert_eq!(
        config.http.limits.handshake_timeout(),
        Duration::from_secs(5)
    );
    assert_eq!(config.state_directory, Path::new("/var/lib/aar"));
    assert_eq!(
        config.storage,
        StorageConfig::Fs(FsConfig {
            root_directory: "/var/lib/aar/data".into(),
            min_free: 0
        })
    );
    assert_eq!(config.storage.kind(), "fs");
    assert_eq!(config.gc.interval, Duration::from_secs(3600));
    assert_eq!(config.gc.upload_expiry, Duration::from_secs(86_400));
    assert_eq!(config.log.level, "info");

    for empty in ["", "\n", "   \n\n", "# nothing set\n", "---\n", "{}"] {
        assert_eq!(parse(empty).unwrap(), config, "{empty:?}");
    }
    // A section written with nothing under it keeps its defaults.
    assert_eq!(parse("http:\nstorage:\ngc:\nlog:\n").unwrap(), config);
    assert_eq!(parse("storage:\n  fs:\n").unwrap(), config);
}

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
fn storage_config_with_cloudfront() {
    let text = format!(
        "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    access-key: AKIAIOSFODNN7EXAMPLE
    secret-access-key: {SECRET_KEY}
    cloudfront:                    # optional
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      private-key: |
{}      keypair-id: ADF443JOEF3423JF
      duration: 1m                 # Go-style duration: 30s, 1m, 1h30m
",
        indented_pem(8)
    );
    let storage = parse_storage_document(&text).unwrap().unwrap();
    let cloudfront = s3(&storage).cloudfront.clone().unwrap();
    assert_eq!(
        cloudfront,
        CloudFrontConfig {
            base_url: "d1dfsdfjmcefekdotjm.cloudfront.net".into(),
            private_key: Secret::new(PEM),
            keypair_id: "ADF443JOEF3423JF".into(),
            duration: Duration::from_secs(60),
        }
    );
    assert_eq!(
        cloudfront.url_prefix(),
        "https://d1dfsdfjmcefekdotjm.cloudfront.net"
    );

    // duration is optional; base-url may carry its scheme.
    let text = format!(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    cloudfront:\n      \
         base-url: https://d1dfsdfjmcefekdotjm.cloudfront.net/\n      keypair-id: \
         ADF443JOEF3423JF\n      private-key: |\n{}",
        indented_pem(8)
    );
    let storage = parse_storage_document(&text).unwrap().unwrap();
    let cloudfront = s3(&storage).cloudfront.clone().unwrap();
    assert_eq!(cloudfront.duration, Duration::from_secs(60));
    assert_eq!(
        cloudfront.url_prefix(),
        "https://d1dfsdfjmcefekdotjm.cloudfront.net"
    );
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
";
    let storage = parse_storage_document(text).unwrap().unwrap();
    let s3 = s3(&storage);
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(s3.path_style);
    assert_eq!(s3.presign_duration, Duration::from_secs(900));
    assert_eq!(s3.refresh_interval, Duration::from_secs(5));
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

// ---------------------------------------------------------------- render

#[test]
fn render_round_trips() {
    let default = Config::default();
    assert_eq!(parse(&render(&default)).unwrap(), default);

    let mut config = Config::with_state_directory("/srv/aar");
    config.http.addr = "[::1]:8443".parse().unwrap();
    config.http.advertise = vec!["aar.example.com".into(), "10.1.2.3".into()];
    config.http.shutdown_timeout = Duration::from_millis(1500);
    config.http.tls.min_version = TlsVersion::Tls12;
    config.http.limits.max_image_size = 123_456_789;
    config.http.limits.max_metadata_size = 2_000_000;
    config.gc.upload_expiry = Duration::from_secs(5400);
    config.log.level = "warn,aar=trace".into();
    config.storage = StorageConfig::S3(S3Config {
        access_key: Some("AKIAIOSFODNN7EXAMPLE".into()),
        secret_access_key: Some(Secret::new(SECRET_KEY)),
        endpoint: Some("https://s3.example.com".into()),
        path_style: true,
        presign_duration: Duration::from_secs(600),
        cloudfront: Some(CloudFrontConfig {
            base_url: "d1dfsdfjmcefekdotjm.cloudfront.net".into(),
            private_key: Secret::new(PEM),
            keypair_id: "ADF443JOEF3423JF".into(),
            duration: Duration::from_secs(90),
        }),
        ..S3Config::new("eu-west-3", "aar0")
    });
    let text = render(&config);
    assert_eq!(parse(&text).unwrap(), config, "{text}");
    // The rendered file is the daemon's own: secrets in clear, the key as a block.
    assert!(text.contains(SECRET_KEY), "{text}");
    assert!(text.contains("private-key: |"), "{text}");
    assert!(text.contains("shutdown-timeout: 1s500ms"), "{text}");
    assert!(text.contains("max-image-size: 123456789"), "{text}");
    assert!(text.contains("max-metadata-size: 2MB"), "{text}");
    assert!(text.contains("min-version: '1.2'"), "{text}");

    // Keys left out of the S3 section stay out.
    let config = Config {
        storage: StorageConfig::S3(S3Config::new("eu-west-3", "aar0")),
        ..Config::default()
    };
    let text = render(&config);
    assert!(!text.contains("access-key"), "{text}");
    assert!(!text.contains("cloudfront"), "{text}");
    assert_eq!(parse(&text).unwrap(), config);
}

#[test]
fn render_default_reads_well() {
    assert_eq!(
        render(&Config::default()),
        "\
http:
  addr: 0.0.0.0:3000
  advertise: []
  shutdown-timeout: 30s
  tls:
    certificate: /var/lib/aar/certs/server.crt
    key: /var/lib/aar/certs/server.key
    min-version: '1.3'
  limits:
    header-timeout: 30s
    body-timeout: 1m
    max-metadata-size: 1MiB
    max-image-size: 64GiB
    max-connections: 4096
    untrusted-share: 10%
    untrusted-idle-timeout: 5s
    write-timeout: 1m
state-directory: /var/lib/aar
storage:
  fs:
    root-directory: /var/lib/aar/data
    min-free: 0
gc:
  interval: 1h
  upload-expiry: 24h
  scrub-interval: 0s
  scrub-rate: 32MiB
log:
  level: info
"
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_key_with_suggestion() {
    let text = "\
storage:
  s3:
    region: eu-west-3
    bucke: aar0
";
    assert_eq!(
        storage_err(text),
        r#"storage.s3.bucke (line 4, column 5): unknown key "bucke"; did you mean "bucket"?"#
    );
    let error = parse(text).unwrap_err();
    assert_eq!(error.path(), "storage.s3.bucke");
    assert_eq!(error.line(), Some(4));
    assert_eq!(error.column(), Some(5));
    assert_eq!(
        error.message(),
        r#"unknown key "bucke"; did you mean "bucket"?"#
    );

    assert_eq!(
        err("http:\n  tls:\n    min_version: \"1.2\"\n"),
        r#"http.tls.min_version (line 3, column 5): unknown key "min_version"; did you mean "min-version"?"#
    );
    assert_eq!(
        err("state-dir: /srv\n"),
        r#"state-dir (line 1, column 1): unknown key "state-dir"; did you mean "state-directory"?"#
    );
    assert_eq!(
        storage_err("storge:\n  fs: {}\n"),
        r#"storge (line 1, column 1): unknown key "storge"; did you mean "storage"?"#
    );
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    assert_eq!(
        err("http:\n  addr: 0.0.0.0:3000\n  compression: gzip\n"),
        r#"http.compression (line 3, column 3): unknown key "compression"; valid keys: addr, advertise, shutdown-timeout, tls, limits"#
    );
    assert_eq!(
        err("storage: {gcs: {bucket: aar0}}"),
        r#"storage.gcs (line 1, column 11): unknown key "gcs"; valid keys: fs, s3"#
    );
    assert_eq!(
        storage_err("log: {level: debug}\n"),
        r#"log (line 1, column 1): unknown key "log"; valid keys: storage"#
    );
}

#[test]
fn misplaced_key_says_where_it_belongs() {
    // The classic: a key one level too shallow.
    let text = "\
storage:
  s3:
    region: eu-west-3
  bucket: aar0
";
    assert_eq!(
        storage_err(text),
        r#"storage.bucket (line 4, column 3): unknown key "bucket" here; it belongs under storage.s3 (check the indentation)"#
    );
    assert_eq!(
        err("storage:\n  fs:\n    min-free: 1GiB\nroot-directory: /data\n"),
        r#"root-directory (line 4, column 1): unknown key "root-directory" here; it belongs under storage.fs (check the indentation)"#
    );
    assert_eq!(
        storage_err("s3:\n  region: eu-west-3\n  bucket: aar0\n"),
        r#"s3 (line 1, column 1): unknown key "s3"; a storage backend goes under the top-level "storage:" key"#
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
fn cloudfront_missing_keys() {
    let text = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      duration: 1m
";
    assert_eq!(
        storage_err(text),
        r#"storage.s3.cloudfront (line 6, column 7): missing required keys "private-key" and "keypair-id""#
    );
    // Written with nothing under it, cloudfront is still asked for.
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    cloudfront:\n"),
        r#"storage.s3.cloudfront (line 5, column 16): missing required keys "base-url", "private-key" and "keypair-id""#
    );
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
fn bad_private_key() {
    let public = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      keypair-id: ADF443JOEF3423JF
      private-key: |
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAUvImZaYMEtKJGF2VDuiB
        -----END PUBLIC KEY-----
";
    assert_eq!(
        storage_err(public),
        "storage.s3.cloudfront.private-key (line 8, column 20): this is a PEM PUBLIC KEY, not a \
         private key: CloudFront signs with the private key of the key pair (value not shown)"
    );
    let no_marker = "storage: {s3: {region: eu-west-3, bucket: aar0, cloudfront: {base-url: x.net, keypair-id: K1, private-key: MIIEowIBAAKCAQEA}}}";
    assert_eq!(
        storage_err(no_marker),
        "storage.s3.cloudfront.private-key (line 1, column 108): not a PEM private key (value not \
         shown): it must start with \"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN PRIVATE \
         KEY-----\""
    );
    // Pasted without `|`, the line breaks fold into spaces.
    let folded = "\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      keypair-id: ADF443JOEF3423JF
      private-key:
        -----BEGIN RSA PRIVATE KEY-----
        MIIEowIBAAKCAQEAUvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA/TkB/yOaGglfIP
        -----END RSA PRIVATE KEY-----
";
    assert_eq!(
        storage_err(folded),
        "storage.s3.cloudfront.private-key (line 9, column 9): the private key has lost its line \
         breaks: write it as a block, `private-key: |` followed by the PEM lines indented below it"
    );
}

#[test]
fn bad_tls_version() {
    assert_eq!(
        err("http:\n  tls:\n    min-version: 1.1\n"),
        r#"http.tls.min-version (line 3, column 18): unsupported TLS version "1…" (3 characters): use "1.3" (the default) or "1.2""#
    );
}

#[test]
fn wrong_types_name_the_expected_type() {
    assert_eq!(
        err("http:\n  advertise: aar.example.com\n"),
        "http.advertise (line 2, column 14): expected a list of strings, found a string"
    );
    assert_eq!(
        err("http:\n  advertise:\n    - aar.example.com\n    - {name: x}\n"),
        "http.advertise[1] (line 4, column 7): expected a host name or an IP address, found a mapping"
    );
    assert_eq!(
        storage_err(
            "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    path-style: yes\n"
        ),
        r#"storage.s3.path-style (line 5, column 17): expected true or false, found "y…" (3 characters)"#
    );
    assert_eq!(
        err("http: 3000\n"),
        "http (line 1, column 7): expected a mapping, found the number 3000"
    );
    assert_eq!(
        err("gc:\n  interval: [1h]\n"),
        "gc.interval (line 2, column 13): expected a duration, e.g. 30s, found a list"
    );
    assert_eq!(
        err("http: {limits: {max-connections: lots}}"),
        r#"http.limits.max-connections (line 1, column 34): expected a whole number, e.g. 4096, found "lo…" (4 characters)"#
    );
    assert_eq!(
        err("http: {limits: {max-image-size: 64G}}"),
        r#"http.limits.max-image-size (line 1, column 33): invalid size "6…" (3 characters): unknown unit "G"; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"#
    );
    assert_eq!(
        err("http: {addr: localhost:3000}"),
        r#"http.addr (line 1, column 14): invalid address "loca…" (14 characters): use an IP address and a port, e.g. 0.0.0.0:3000 or [::]:3000"#
    );
    assert_eq!(
        err("log: {level: verbose}"),
        r#"log.level (line 1, column 14): invalid log level "ver…" (7 characters): use off, error, warn, info, debug or trace, or a directive such as info,aar=debug"#
    );
    assert_eq!(
        err("- http\n"),
        "line 1, column 1: expected a mapping, found a list"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        storage_err("storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    bucket: aar1\n"),
        r#"storage.s3.bucket (line 5, column 5): duplicate key "bucket"; it is already set on line 4"#
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

#[test]
fn yaml_syntax_errors() {
    assert_eq!(
        err("http:\n\taddr: 0.0.0.0:3000\n"),
        "line 2, column 1: invalid YAML: found character that cannot start any token, while \
         scanning for the next token; indent with spaces: YAML does not allow tabs"
    );
    assert_eq!(
        err("http: {addr: 0.0.0.0:3000\n"),
        "line 2, column 1: invalid YAML: did not find expected ',' or '}', while parsing a flow \
         mapping (line 1, column 7)"
    );
    assert_eq!(
        storage_err("---\nstorage: {}\n---\nstorage: {}\n"),
        "line 3, column 1: the text holds more than one YAML document; keep a single one (remove the extra `---`)"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aar.yaml");

    let missing = load(&path).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    assert!(
        missing
            .to_string()
            .starts_with(&format!("cannot read config file {}: ", path.display())),
        "{missing}"
    );
    assert_eq!(missing.file(), Some(path.as_path()));

    std::fs::write(
        &path,
        "storage:\n  s3:\n    region: eu-west-3\n    bucke: aar0\n",
    )
    .unwrap();
    let invalid = load(&path).unwrap_err();
    assert_eq!(
        invalid.to_string(),
        format!(
            r#"{}: storage.s3.bucke (line 4, column 5): unknown key "bucke"; did you mean "bucket"?"#,
            path.display()
        )
    );
    assert_eq!(invalid.path(), "storage.s3.bucke");

    std::fs::write(&path, "state-directory: /srv/aar\n").unwrap();
    assert_eq!(
        load(&path).unwrap(),
        Config::with_state_directory(PathBuf::from("/srv/aar"))
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn secrets_are_redacted_in_debug_and_display() {
    let secret = Secret::new(SECRET_KEY);
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(secret.expose(), SECRET_KEY);

    let text = format!(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIA1\n    \
         secret-access-key: {SECRET_KEY}\n    cloudfront:\n      base-url: x.cloudfront.net\n      \
         keypair-id: K1\n      private-key: |\n{}",
        indented_pem(8)
    );
    let config = parse(&text).unwrap();
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(SECRET_KEY), "{shown}");
    assert!(!shown.contains("MIIEowIBAAKCAQEA"), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[test]
fn secrets_never_appear_in_errors() {
    const S: &str = "SeCrEtVaLuE";
    let pem_with = |body: &str| {
        format!(
            "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    cloudfront:\n      \
             base-url: x.net\n      keypair-id: K1\n      private-key: |\n{}",
            body.lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>()
        )
    };
    let base = "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n";
    let documents = [
        format!("{base}    secret-access-key: {S}\n"),
        format!("{base}    access-key: AKIA1\n    secret-access-key: \"{S} {S}\"\n"),
        format!("{base}    access-key: AKIA1\n    secret-access-key: [{S}]\n"),
        format!("{base}    access-key: AKIA1\n    secret-access-key: {{a: {S}}}\n"),
        format!("{base}    access-key: AKIA1\n    secret-acces-key: {S}\n"),
        format!("{base}    endpoint: http://AKIA1:{S}@127.0.0.1:9000\n"),
        format!("{base}    endpoint: AKIA1:{S}@127.0.0.1:9000\n"),
        format!("{base}    secret-access-key: {S}\n    bucket: aar1\n"),
        format!("{base}    access-key: AKIA1\n    secret-access-key: {S}\n    path-style: maybe\n"),
        format!("{base}    cloudfront: \"-----BEGIN RSA PRIVATE KEY-----\\n{S}\\n\"\n"),
        format!("{base}    cloudfront: {S}\n"),
        pem_with(S),
        pem_with(&format!("-----BEGIN RSA PRIVATE KEY----- {S} -----END RSA PRIVATE KEY-----")),
        pem_with(&format!("-----BEGIN PUBLIC KEY-----\n{S}\n-----END PUBLIC KEY-----")),
        pem_with(&format!("-----BEGIN RSA PRIVATE KEY-----\n{S}\n")),
        pem_with(&format!("-----BEGIN RSA PRIVATE KEY-----\n{S}!\n-----END RSA PRIVATE KEY-----")),
        pem_with(&format!(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{S}\n-----END ENCRYPTED PRIVATE KEY-----"
        )),
        pem_with(&format!(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n{S}\n-----END RSA PRIVATE KEY-----"
        )),
        pem_with(&format!("-----BEGIN {S} PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")),
        format!("{}\n  bad: [", pem_with(PEM).replace("MIIEowIBAAKCAQEA", S)),
        format!("{base}    access-key: AKIA1\n    secret-access-key: \"\"\n"),
        format!("{base}    access-key: AKIA1\n    secret-access-key: {S}\n    secret-access-key: {S}\n"),
    ];
    for document in documents {
        let error = parse_storage_document(&document)
            .expect_err(&document)
            .to_string();
        assert!(!error.contains(S), "{error}\n---\n{document}");
        let error = parse(&document).expect_err(&document);
        let shown = format!("{error} {error:?} {}", error.message());
        assert!(!shown.contains(S), "{shown}\n---\n{document}");
    }
}

/// A secret pasted into the wrong field: no error may show more than 4 of its characters in
/// a row, whichever field it landed in, and a key name that may be one is not shown.
#[test]
fn secrets_pasted_into_the_wrong_field_are_not_quoted() {
    let secrets = [
        SECRET_KEY,
        "AKIAIOSFODNN7EXAMPLE",
        "d41d8cd98f00b204e9800998ecf8427e",
        "hunter2hunter2",
    ];
    let s3 =
        |extra: &str| format!("storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n{extra}");
    let cloudfront = |field: &str, value: &str| {
        let mut fields = vec![
            ("base-url", "d1.cloudfront.net".to_owned()),
            ("keypair-id", "K1".to_owned()),
            ("duration", "1m".to_owned()),
        ];
        for (name, v) in &mut fields {
            if *name == field {
                *v = value.to_owned();
            }
        }
        let lines: String = fields
            .iter()
            .map(|(name, v)| format!("      {name}: \"{v}\"\n"))
            .collect();
        s3(&format!(
            "    cloudfront:\n{lines}      private-key: |\n{}",
            indented_pem(8)
        ))
    };
    for secret in secrets {
        let documents = [
            format!("storage:\n  s3:\n    region: \"{secret}\"\n    bucket: aar0\n"),
            format!("storage:\n  s3:\n    region: eu-west-3\n    bucket: \"{secret}\"\n"),
            s3(&format!("    endpoint: \"{secret}\"\n")),
            s3(&format!("    presign-duration: \"{secret}\"\n")),
            s3(&format!("    refresh-interval: \"{secret}\"\n")),
            s3(&format!("    path-style: \"{secret}\"\n")),
            cloudfront("keypair-id", secret),
            cloudfront("duration", secret),
            s3(&format!("    \"{secret}\": x\n")),
            s3(&format!("    cloudfront:\n      \"{secret}\": x\n")),
            format!("\"{secret}\": x\n"),
        ];
        for document in &documents {
            // Some of these secrets make a valid region, bucket or key pair ID; the one with
            // a slash is invalid in every field.
            let error = match parse_storage_document(document) {
                Ok(_) if secret != SECRET_KEY => continue,
                result => result.expect_err(document),
            };
            let shown = format!(
                "{error} | {error:?} | {} | {}",
                error.message(),
                error.path()
            );
            let chars: Vec<char> = secret.chars().collect();
            for window in chars.windows(5) {
                let piece: String = window.iter().collect();
                assert!(
                    !shown.contains(&piece),
                    "{piece:?} of the secret is shown:\n{shown}\n---\n{document}"
                );
            }
        }
    }
    // What is shown instead: the length, and at most 4 leading characters of a short value.
    assert_eq!(
        storage_err(&s3(&format!("    \"{SECRET_KEY}\": x\n"))),
        "storage.s3.? (line 5, column 5): unknown key (40 characters, not shown); valid keys: \
         region, bucket, access-key, secret-access-key, endpoint, path-style, presign-duration, \
         refresh-interval, cloudfront"
    );
    assert_eq!(
        storage_err(
            "storage:\n  s3:\n    region: eu-west-3\n    bucket: \"AKIAIOSFODNN7EXAMPLE\"\n"
        ),
        r#"storage.s3.bucket (line 4, column 13): invalid bucket name "AKIA…" (20 characters): use only lowercase letters, digits, '.' and '-'"#
    );
    assert_eq!(
        storage_err(&cloudfront("keypair-id", SECRET_KEY)),
        "storage.s3.cloudfront.keypair-id (line 7, column 19): invalid key pair ID (40 \
         characters, not shown): use only letters and digits, e.g. ADF443JOEF3423JF"
    );
}

#[test]
fn schema_table_matches_the_parser() {
    // Every path the misplaced-key hint can name must be a real key.
    let text = "\
http:
  addr: 0.0.0.0:3000
  advertise: []
  shutdown-timeout: 30s
  tls: {certificate: /c, key: /k, min-version: '1.3'}
  limits: {header-timeout: 1s, body-timeout: 1s, max-metadata-size: 1, max-image-size: 1, max-connections: 1, untrusted-share: 100%, untrusted-idle-timeout: 1s, write-timeout: 1s}
state-directory: /s
storage:
  s3:
    region: r
    bucket: aar
    access-key: a
    secret-access-key: s
    endpoint: http://h
    path-style: false
    presign-duration: 1s
    refresh-interval: 1s
    cloudfront: {base-url: b.net, keypair-id: K, duration: 1s, private-key: \"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\"}
gc: {interval: 1s, upload-expiry: 1s}
log: {level: info}
";
    parse(text).unwrap();
    parse("storage: {fs: {root-directory: /r, min-free: 0}}").unwrap();
}

#[test]
fn the_reference_config_documents_the_defaults() {
    let reference = include_str!("../../../docs/config-reference.yaml");
    assert_eq!(parse(reference).unwrap(), Config::default());
}
