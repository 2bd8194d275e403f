//! `render`: what the charm and `aar config check` write back reads the same again.

use super::*;

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
