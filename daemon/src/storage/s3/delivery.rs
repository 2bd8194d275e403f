//! Download URLs: S3 presigned GETs or CloudFront signed URLs, answered as 307 redirects.
//!
//! Signing is the whole cost of a redirect, and a CloudFront signature is an RSA private
//! key operation (about a millisecond). Both kinds of URL are pure functions of the object
//! and the signing second (`X-Amz-Date` and `Expires` have a resolution of one second),
//! so the URL made for an object is reused for the rest of its second: at most one
//! signature per object per second, whatever the request rate, and every URL handed out
//! is exactly as valid as a freshly signed one. The cache holds one URL per object and is
//! emptied when it grows past [`CACHE_LIMIT`] objects.

use super::keys;
use crate::cloudfront::CloudFrontSigner;
use crate::digest::Digest;
use crate::storage::StorageError;
use aws_sdk_s3::presigning::PresigningConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CACHE_LIMIT: usize = 4096;

pub struct Delivery {
    how: How,
    /// Per object: the second the URL belongs to (signing second for presigned URLs,
    /// `Expires` for CloudFront) and the URL.
    cache: Mutex<HashMap<Digest, (u64, Arc<str>)>>,
}

enum How {
    Presign(Duration),
    CloudFront(Box<CloudFrontSigner>),
}

impl Delivery {
    pub fn presign(duration: Duration) -> Self {
        Delivery {
            how: How::Presign(duration),
            cache: Mutex::default(),
        }
    }

    pub fn cloudfront(signer: CloudFrontSigner) -> Self {
        Delivery {
            how: How::CloudFront(Box::new(signer)),
            cache: Mutex::default(),
        }
    }

    fn cached(&self, digest: &Digest, second: u64) -> Option<Arc<str>> {
        let cache = self.cache.lock().unwrap();
        match cache.get(digest) {
            Some((at, url)) if *at == second => Some(url.clone()),
            _ => None,
        }
    }

    fn remember(&self, digest: Digest, second: u64, url: Arc<str>) {
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_LIMIT && !cache.contains_key(&digest) {
            cache.clear();
        }
        cache.insert(digest, (second, url));
    }

    /// The URL a client is redirected to for `digest`, signed at `now`.
    pub async fn url(
        &self,
        client: &aws_sdk_s3::Client,
        bucket: &str,
        digest: &Digest,
        now: SystemTime,
    ) -> Result<Arc<str>, StorageError> {
        let key = keys::blob(digest);
        match &self.how {
            How::CloudFront(signer) => {
                let expires = signer.expires_at(now);
                if let Some(url) = self.cached(digest, expires) {
                    return Ok(url);
                }
                let url: Arc<str> = signer.sign(&key, expires).into();
                self.remember(*digest, expires, url.clone());
                Ok(url)
            }
            How::Presign(duration) => {
                let second = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                if let Some(url) = self.cached(digest, second) {
                    return Ok(url);
                }
                let config = PresigningConfig::builder()
                    .start_time(UNIX_EPOCH + Duration::from_secs(second))
                    .expires_in(*duration)
                    .build()
                    .map_err(|e| {
                        StorageError::io("presigning a download", std::io::Error::other(e))
                    })?;
                let request = client
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .presigned(config)
                    .await
                    // Presigning only fails when credentials cannot be had (an instance
                    // profile's endpoint not answering, say): worth a retry later.
                    .map_err(|e| {
                        StorageError::Unavailable(format!(
                            "presigning a download of blob {digest}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        ))
                    })?;
                let url: Arc<str> = request.uri().into();
                self.remember(*digest, second, url.clone());
                Ok(url)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CloudFrontConfig, S3Config, Secret};
    use std::time::Instant;

    /// What a redirect costs when its URL is not cached (the first request for an object
    /// in a second), for docs/s3.md. Needs the openssl command line for a key:
    /// `cargo test --release --lib -- --ignored --nocapture signing_cost`.
    #[tokio::test]
    #[ignore]
    async fn signing_cost() {
        let config = S3Config {
            access_key: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some(Secret::new("secret")),
            endpoint: Some("http://127.0.0.1:9".into()),
            path_style: true,
            ..S3Config::new("us-east-1", "aar0")
        };
        let client = super::super::client::build(&config).await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let made = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&key)
            .arg("2048")
            .status()
            .unwrap();
        assert!(made.success());
        let cloudfront = Delivery::cloudfront(
            CloudFrontSigner::new(&CloudFrontConfig {
                base_url: "d111111abcdef8.cloudfront.net".into(),
                private_key: Secret::new(std::fs::read_to_string(&key).unwrap()),
                keypair_id: "K1".into(),
                duration: Duration::from_secs(60),
            })
            .unwrap(),
        );
        let presign = Delivery::presign(Duration::from_secs(300));
        let now = SystemTime::now();
        for (name, delivery, n) in [
            ("presigned", &presign, 2000u32),
            ("CloudFront", &cloudfront, 200),
        ] {
            let digests: Vec<Digest> = (0..n).map(|i| Digest::of(&i.to_le_bytes())).collect();
            let start = Instant::now();
            for digest in &digests {
                delivery.url(&client, "aar0", digest, now).await.unwrap();
            }
            let cold = start.elapsed() / n;
            let start = Instant::now();
            for digest in &digests {
                delivery.url(&client, "aar0", digest, now).await.unwrap();
            }
            let warm = start.elapsed() / n;
            println!("{name}: {cold:?} per URL signed, {warm:?} per URL reused");
        }
    }
}
