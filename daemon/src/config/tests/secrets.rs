//! Secrets never shown: not in Debug or Display, not in any error, not even when pasted
//! into the wrong field.

use super::*;

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
            s3(&format!("    trust-refresh-interval: \"{secret}\"\n")),
            s3(&format!("    trust-stale-after: \"{secret}\"\n")),
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
         refresh-interval, trust-refresh-interval, trust-stale-after, cloudfront"
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
