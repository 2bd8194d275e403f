//! Documents as operators write them (DESIGN.md and the Anbox Cloud docs), and the exact
//! error text an operator sees for each class of mistake.

mod basic;
mod cloudfront;
mod render;
mod secrets;
mod storage;

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
    let reference = include_str!("../../../../docs/config-reference.yaml");
    assert_eq!(parse(reference).unwrap(), Config::default());
}
