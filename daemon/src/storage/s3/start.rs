//! Opening the backend: the client, the bucket's region, and a check of every permission
//! the backend needs, so that a missing one is reported at start rather than at the
//! first upload.

use super::delivery::Delivery;
use super::error::{Kind, Op, S3Error};
use super::{client, keys, Bucket};
use crate::cloudfront::{CloudFrontError, CloudFrontSigner};
use crate::config::S3Config;
use crate::storage::sessions::Sessions;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use std::sync::Mutex;

/// Why the S3 backend could not start. One line, naming the bucket and region, never a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum S3StartError {
    #[error("storage.s3 bucket {bucket} (region {region}): {failure}")]
    Request {
        bucket: String,
        region: String,
        // Not a `source`: its text is already in this one line.
        failure: Box<S3Error>,
    },
    #[error(
        "storage.s3 bucket {bucket} is in region {actual}, not {configured}: set \
         storage.s3.region: {actual}"
    )]
    WrongRegion {
        bucket: String,
        configured: String,
        actual: String,
    },
    #[error(transparent)]
    CloudFront(#[from] CloudFrontError),
}

impl S3StartError {
    /// Whether trying again later can succeed (the endpoint unreachable, timed out,
    /// throttled, answering 5xx), as opposed to a configuration the bucket refuses.
    /// A TLS certificate the daemon does not trust is not waited out: the endpoint or
    /// AWS_CA_BUNDLE has to change, so the daemon stops and says so.
    pub fn is_transient(&self) -> bool {
        matches!(self, S3StartError::Request { failure, .. }
            if failure.kind == Kind::Transient
                && !failure.detail.to_lowercase().contains("certificate"))
    }
}

/// The region a GetBucketLocation answer names, when it names one: AWS answers nothing
/// (or "") for us-east-1 and "EU" for eu-west-1; an S3-compatible store (a custom
/// endpoint) that answers nothing may not speak of regions at all.
fn bucket_region(constraint: Option<&str>, custom_endpoint: bool) -> Option<&str> {
    match constraint {
        None | Some("") if custom_endpoint => None,
        None | Some("") => Some("us-east-1"),
        Some("EU") => Some("eu-west-1"),
        Some(region) => Some(region),
    }
}

type S3Result<T> = std::result::Result<T, S3Error>;

impl Bucket {
    pub(super) async fn open(config: &S3Config) -> Result<Self, S3StartError> {
        let delivery = match &config.cloudfront {
            Some(cloudfront) => Delivery::cloudfront(CloudFrontSigner::new(cloudfront)?),
            None => Delivery::presign(config.presign_duration),
        };
        let bucket = Bucket {
            client: client::build(config).await,
            bucket: config.bucket.clone(),
            delivery,
            refresh_interval: config.refresh_interval,
            sign_payload: config
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            uploads: Sessions::new(),
            versions: Mutex::default(),
        };
        let start_err = |e: S3Error| S3StartError::Request {
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            failure: Box::new(e),
        };
        let constraint = bucket.location().await.map_err(start_err)?;
        if let Some(actual) = bucket_region(constraint.as_deref(), config.endpoint.is_some()) {
            if actual != config.region {
                return Err(S3StartError::WrongRegion {
                    bucket: config.bucket.clone(),
                    configured: config.region.clone(),
                    actual: actual.to_owned(),
                });
            }
        }
        bucket.probe().await.map_err(start_err)?;
        Ok(bucket)
    }

    /// The bucket's location constraint, as GetBucketLocation answers it.
    async fn location(&self) -> S3Result<Option<String>> {
        let location = self
            .client
            .get_bucket_location()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.err(Op::GetBucketLocation, None, e))?;
        Ok(location
            .location_constraint()
            .map(|c| c.as_str().to_owned()))
    }

    /// Exercises every permission the backend needs on a scratch key, which is removed
    /// whatever the outcome once it was written.
    async fn probe(&self) -> S3Result<()> {
        let key = keys::probe(&uuid::Uuid::new_v4().to_string());
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(keys::APPS)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.err(Op::ListObjectsV2, None, e))?;
        self.put_new(&key, Self::probe_body(), None).await?;
        let result = async {
            self.probe_conditional_put(&key).await?;
            self.get(&key).await?;
            self.probe_multipart(&key).await
        }
        .await;
        let deleted = self.delete_key(&key).await;
        result?;
        deleted?;
        Ok(())
    }

    fn probe_body() -> S3Body {
        S3Body::from_static(b"aar start-up check")
    }

    /// Writes the existing probe again with `If-None-Match: *`: a server that accepts
    /// it does not protect version records, which is worth a warning, not a refusal.
    async fn probe_conditional_put(&self, key: &str) -> S3Result<()> {
        match self.put_new(key, Self::probe_body(), None).await {
            Ok(()) => tracing::warn!(
                bucket = %self.bucket,
                "the S3 server ignores If-None-Match on PutObject: two daemons sharing this \
                 bucket could overwrite each other's version records"
            ),
            Err(e) if e.kind == Kind::PreconditionFailed => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Creates a multipart upload on the probe's key, lists its parts and aborts it.
    async fn probe_multipart(&self, key: &str) -> S3Result<()> {
        let c = &self.client;
        let multipart = self.create_multipart(key).await?;
        let upload_id = multipart.as_str();
        // The backend never needs ListParts (upload records keep the ETags); it is
        // called only to report a policy without it. Other failures (some stores
        // answer it in a form the SDK cannot read) are not worth refusing to start.
        let listed = match c
            .list_parts()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.err(Op::ListParts, Some(key), e);
                if e.kind == Kind::Denied {
                    Err(e)
                } else {
                    tracing::warn!(error = %e, "ignored at start: the backend does not use ListParts");
                    Ok(())
                }
            }
        };
        let aborted = c
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.err(Op::AbortMultipartUpload, Some(key), e));
        listed?;
        aborted?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_regions() {
        assert_eq!(bucket_region(None, false), Some("us-east-1"));
        assert_eq!(bucket_region(Some(""), false), Some("us-east-1"));
        assert_eq!(bucket_region(Some("EU"), false), Some("eu-west-1"));
        assert_eq!(bucket_region(Some("eu-west-3"), false), Some("eu-west-3"));
        assert_eq!(bucket_region(None, true), None);
        assert_eq!(bucket_region(Some("us-west-2"), true), Some("us-west-2"));
        let err = S3StartError::WrongRegion {
            bucket: "aar0".into(),
            configured: "eu-west-3".into(),
            actual: "eu-west-1".into(),
        };
        assert_eq!(
            err.to_string(),
            "storage.s3 bucket aar0 is in region eu-west-1, not eu-west-3: set \
             storage.s3.region: eu-west-1"
        );
    }
}
