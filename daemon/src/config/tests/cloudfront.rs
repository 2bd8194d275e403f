//! `storage.s3.cloudfront`: its required keys and the signing key's checks.

use super::*;

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
