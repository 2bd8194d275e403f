//! Values of `storage.s3.cloudfront`: the signing key, its key pair ID and the
//! distribution's domain.

use super::{render_str, scalar};
use crate::config::redact;
use crate::config::Secret;

scalar!(
    /// A PEM private key. Only its markers and layout are checked here (no RSA parsing), so
    /// that the common mistakes are caught where the operator can see them. Never quoted.
    PrivateKey(Secret),
    "a PEM private key",
    |text| check_private_key(text).map(|()| Secret::new(text)),
    |secret, serializer| secret.serialize(serializer)
);

fn check_private_key(pem: &str) -> Result<(), String> {
    const EXAMPLE: &str = "\"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN PRIVATE KEY-----\"";
    let Some(begin) = pem.find("-----BEGIN ") else {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    };
    let after_begin = &pem[begin + "-----BEGIN ".len()..];
    let Some(label_end) = after_begin.find("-----") else {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    };
    let label = &after_begin[..label_end];
    if label.contains('\n') {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    }
    // The label is only quoted back when it is a known one: whatever else sits between the
    // dashes may be part of the secret.
    match label {
        "RSA PRIVATE KEY" | "PRIVATE KEY" | "EC PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "the private key is encrypted; give the decrypted key (value not shown)".to_owned(),
            )
        }
        "OPENSSH PRIVATE KEY" => {
            return Err(
                "this is an OpenSSH private key; convert it to PEM, e.g. `ssh-keygen -p -m PEM \
                 -f KEYFILE` (value not shown)"
                    .to_owned(),
            )
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" | "CERTIFICATE REQUEST" => {
            return Err(format!(
                "this is a PEM {label}, not a private key: CloudFront signs with the private key \
                 of the key pair (value not shown)"
            ))
        }
        _ => {
            return Err(format!(
                "not a PEM private key (value not shown): it must start with {EXAMPLE}"
            ))
        }
    }
    let body_and_end = &after_begin[label_end + "-----".len()..];
    if !body_and_end.starts_with('\n') && !body_and_end.starts_with("\r\n") {
        return Err(
            "the private key has lost its line breaks: write it as a block, `private-key: |` \
             followed by the PEM lines indented below it"
                .to_owned(),
        );
    }
    let end_marker = format!("-----END {label}-----");
    let Some(end) = body_and_end.find(&end_marker) else {
        return Err(format!(
            "the private key is cut short: \"{end_marker}\" is missing (value not shown)"
        ));
    };
    let body = &body_and_end[..end];
    if body.contains("ENCRYPTED") {
        return Err(
            "the private key is encrypted; give the decrypted key (value not shown)".to_owned(),
        );
    }
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let content: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if content.is_empty() || !content.iter().all(|&b| base64(b)) {
        return Err(
            "the private key's body is not base64 between its BEGIN and END lines (value not \
             shown)"
                .to_owned(),
        );
    }
    Ok(())
}

scalar!(
    KeypairId(String),
    "a key pair ID, e.g. ADF443JOEF3423JF",
    |text| {
        if text.is_empty() {
            return Err("must not be empty: set the CloudFront key pair ID".to_owned());
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid key pair ID {}: use only letters and digits, e.g. ADF443JOEF3423JF",
                redact::value(text)
            ));
        }
        Ok(text.to_owned())
    },
    render_str
);

scalar!(
    /// The distribution's domain, with or without `https://`.
    BaseUrl(String),
    "a CloudFront domain, e.g. d111111abcdef8.cloudfront.net",
    |text| {
        let fail = |why: &str| {
            Err(format!(
                "invalid CloudFront base URL {}: {why}",
                redact::value(text)
            ))
        };
        let lower = text.to_ascii_lowercase();
        let rest = if lower.starts_with("https://") {
            &text["https://".len()..]
        } else if lower.starts_with("http://") {
            &text["http://".len()..]
        } else if text.contains("://") {
            return fail("use the distribution's domain, with or without https://");
        } else {
            text
        };
        if text.chars().any(char::is_whitespace) {
            return fail("must not contain spaces");
        }
        if rest.contains(['?', '#', '@']) {
            return fail("use the distribution's domain, with or without https://");
        }
        let host = rest.split(['/', ':']).next().unwrap_or("");
        if host.is_empty() {
            return fail("missing domain, e.g. d111111abcdef8.cloudfront.net");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return fail("invalid domain");
        }
        Ok(text.to_owned())
    },
    render_str
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_rules() {
        let good = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\nq1w==\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(check_private_key(good), Ok(()));
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\r\nMIIBOgIBAAJBAK\r\n-----END PRIVATE KEY-----";
        assert_eq!(check_private_key(pkcs8), Ok(()));
        let bad = [
            "MIIBOgIBAAJBAK",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY----- MIIBOgIBAAJBAK -----END RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n",
            "-----BEGIN RSA PRIVATE KEY-----\nMII BOg!\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        ];
        for pem in bad {
            let err = check_private_key(pem).unwrap_err();
            assert!(!err.contains("MII"), "{err}");
        }
    }
}
