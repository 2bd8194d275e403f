//! What an S3 answer means for the registry.
//!
//! The SDK has already retried what it knows to be transient (throttling, 5xx, timeouts,
//! dropped connections) by the time an error reaches this module; here each failure is
//! sorted once into the [`StorageError`] variants every backend shares, and given a
//! message that names the operation, the bucket and, for a refusal, the IAM permission
//! the documented policy grants for it.

use crate::storage::StorageError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::fmt;
use std::io;

/// The S3 operations the backend uses, with the permission each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    GetBucketLocation,
    ListObjectsV2,
    ListMultipartUploads,
    HeadObject,
    GetObject,
    PutObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
}

impl Op {
    /// The IAM action that allows the operation (as in the documented policy).
    pub fn permission(self) -> &'static str {
        match self {
            Op::GetBucketLocation => "s3:GetBucketLocation",
            Op::ListObjectsV2 => "s3:ListBucket",
            Op::ListMultipartUploads => "s3:ListBucketMultipartUploads",
            Op::HeadObject | Op::GetObject => "s3:GetObject",
            Op::PutObject
            | Op::CreateMultipartUpload
            | Op::UploadPart
            | Op::CompleteMultipartUpload => "s3:PutObject",
            Op::DeleteObject => "s3:DeleteObject",
            Op::AbortMultipartUpload => "s3:AbortMultipartUpload",
            Op::ListParts => "s3:ListMultipartUploadParts",
        }
    }

    /// Whether the permission applies to the bucket or to its objects (`bucket/*`).
    fn on_objects(self) -> bool {
        !matches!(
            self,
            Op::GetBucketLocation | Op::ListObjectsV2 | Op::ListMultipartUploads
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a failed request is to be treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// 404: no such key, upload or bucket (see `code`).
    NotFound,
    /// 412: an `If-None-Match` / `If-Match` condition did not hold.
    PreconditionFailed,
    /// The credentials were refused or lack a permission.
    Denied,
    /// Worth trying again later: unreachable, timed out, throttled, 5xx, 409 on a
    /// conditional write racing another.
    Transient,
    /// The server does not implement the operation (501), e.g. ListMultipartUploads on
    /// some S3-compatible stores.
    NotImplemented,
    /// Anything else: a bug or a misconfiguration, not retried.
    Other,
}

/// One failed S3 request, classified.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct S3Error {
    pub op: Op,
    pub bucket: String,
    pub key: Option<String>,
    pub kind: Kind,
    pub status: Option<u16>,
    pub code: Option<String>,
    /// The server's message or the transport error, without credentials.
    pub detail: String,
    /// `x-amz-bucket-region` of a redirect: the bucket lives in another region.
    pub bucket_region: Option<String>,
}

impl S3Error {
    pub fn from_sdk<E>(
        op: Op,
        bucket: &str,
        key: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let bucket_region = err
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_owned);
        let kind = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Kind::Transient,
            SdkError::ConstructionFailure(_) => Kind::Other,
            _ => classify(status, code.as_deref()),
        };
        let detail = match (&err, err.message()) {
            (SdkError::ServiceError(_), Some(message)) => message.to_owned(),
            (SdkError::ServiceError(_), None) if code.is_some() => String::new(),
            // An answer the SDK could not read: its own message says why.
            _ => error_chain(&err),
        };
        S3Error {
            op,
            bucket: bucket.to_owned(),
            key: key.map(str::to_owned),
            kind,
            status,
            code,
            detail,
            bucket_region,
        }
    }

    fn describe(&self) -> String {
        let target = match &self.key {
            Some(key) => format!("{} of s3://{}/{key}", self.op, self.bucket),
            None => format!("{} on bucket {}", self.op, self.bucket),
        };
        let answer = match (self.status, &self.code) {
            (Some(status), Some(code)) => format!("{status} {code}"),
            (Some(status), None) => status.to_string(),
            (None, _) => "no answer".to_owned(),
        };
        let mut text = format!("{target} failed ({answer})");
        if !self.detail.is_empty() {
            text.push_str(": ");
            text.push_str(&self.detail);
        }
        if let Some(hint) = self.hint() {
            text.push_str("; ");
            text.push_str(&hint);
        }
        text
    }

    /// What the operator should do about it, where that is known.
    pub fn hint(&self) -> Option<String> {
        let resource = if self.op.on_objects() {
            format!("arn:aws:s3:::{}/*", self.bucket)
        } else {
            format!("arn:aws:s3:::{}", self.bucket)
        };
        match self.code.as_deref() {
            Some("SignatureDoesNotMatch") => Some(
                "the secret-access-key does not belong to the access-key: check \
                 storage.s3.secret-access-key"
                    .to_owned(),
            ),
            Some("InvalidAccessKeyId") => {
                Some("the server does not know this access key: check storage.s3.access-key".into())
            }
            Some("ExpiredToken" | "InvalidToken") => Some(
                "the credentials have expired: renew them (or the instance profile's role)".into(),
            ),
            Some("NoSuchBucket") => Some(format!(
                "the bucket does not exist: create it or fix storage.s3.bucket ({})",
                self.bucket
            )),
            Some(
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException",
            ) => Some(match &self.bucket_region {
                Some(region) => {
                    format!("the bucket is in region {region}: set storage.s3.region: {region}")
                }
                None => "the bucket is in another region: fix storage.s3.region".to_owned(),
            }),
            _ if self.kind == Kind::Denied => Some(format!(
                "the credentials lack {} on {resource} (see the IAM policy in docs/s3.md)",
                self.op.permission()
            )),
            _ if self.status.is_none() && self.kind == Kind::Transient => Some(
                "the S3 endpoint did not answer: check storage.s3.endpoint (or the region) and \
                 the network"
                    .to_owned(),
            ),
            _ if self.status == Some(301) => Some(match &self.bucket_region {
                Some(region) => {
                    format!("the bucket is in region {region}: set storage.s3.region: {region}")
                }
                None => "the bucket is in another region: fix storage.s3.region".to_owned(),
            }),
            _ => None,
        }
    }

    /// As a [`StorageError`], `what` naming the registry object concerned.
    pub fn into_storage(self, what: impl Into<String>) -> StorageError {
        let what = what.into();
        match self.kind {
            Kind::NotFound => StorageError::NotFound(what),
            Kind::PreconditionFailed => StorageError::AlreadyExists(what),
            Kind::Transient => StorageError::Unavailable(format!("{what}: {self}")),
            Kind::Denied | Kind::NotImplemented | Kind::Other => StorageError::Io {
                context: what,
                source: io::Error::other(self),
            },
        }
    }
}

/// The messages of an error and its sources, each once: the SDK's transport errors nest
/// several layers that repeat one another, and their `Debug` forms are not for operators.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let message = e.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = e.source();
    }
    text
}

/// Sorts a service answer by status and error code.
fn classify(status: Option<u16>, code: Option<&str>) -> Kind {
    match (status, code) {
        (_, Some("NoSuchKey" | "NoSuchUpload" | "NotFound")) => Kind::NotFound,
        (_, Some("PreconditionFailed")) => Kind::PreconditionFailed,
        (
            _,
            Some(
                "AccessDenied"
                | "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "ExpiredToken"
                | "InvalidToken"
                | "AllAccessDisabled",
            ),
        ) => Kind::Denied,
        (_, Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout"))
        | (_, Some("ConditionalRequestConflict" | "OperationAborted")) => Kind::Transient,
        (_, Some("NotImplemented")) | (Some(501), _) => Kind::NotImplemented,
        (Some(404), _) => Kind::NotFound,
        (Some(412), _) => Kind::PreconditionFailed,
        (Some(401 | 403), _) => Kind::Denied,
        (Some(408 | 409 | 429), _) => Kind::Transient,
        (Some(s), _) if s >= 500 => Kind::Transient,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(op: Op, status: u16, code: &str) -> S3Error {
        S3Error {
            op,
            bucket: "aar0".into(),
            key: None,
            kind: classify(Some(status), Some(code)),
            status: Some(status),
            code: Some(code.into()),
            detail: String::new(),
            bucket_region: None,
        }
    }

    #[test]
    fn answers_are_sorted() {
        assert_eq!(classify(Some(404), Some("NoSuchKey")), Kind::NotFound);
        assert_eq!(classify(Some(404), None), Kind::NotFound);
        assert_eq!(
            classify(Some(412), Some("PreconditionFailed")),
            Kind::PreconditionFailed
        );
        assert_eq!(
            classify(Some(409), Some("ConditionalRequestConflict")),
            Kind::Transient
        );
        assert_eq!(classify(Some(503), Some("SlowDown")), Kind::Transient);
        assert_eq!(classify(Some(500), None), Kind::Transient);
        assert_eq!(classify(Some(403), Some("AccessDenied")), Kind::Denied);
        assert_eq!(
            classify(Some(501), Some("NotImplemented")),
            Kind::NotImplemented
        );
        assert_eq!(classify(Some(400), Some("InvalidArgument")), Kind::Other);
    }

    #[test]
    fn refusals_name_the_permission() {
        let text = error(Op::PutObject, 403, "AccessDenied").to_string();
        assert_eq!(
            text,
            "PutObject on bucket aar0 failed (403 AccessDenied); the credentials lack \
             s3:PutObject on arn:aws:s3:::aar0/* (see the IAM policy in docs/s3.md)"
        );
        let text = error(Op::ListMultipartUploads, 403, "AccessDenied").to_string();
        assert!(
            text.contains("s3:ListBucketMultipartUploads on arn:aws:s3:::aar0 "),
            "{text}"
        );
        let text = error(Op::HeadObject, 403, "SignatureDoesNotMatch").to_string();
        assert!(
            text.contains("check storage.s3.secret-access-key"),
            "{text}"
        );
    }

    #[test]
    fn storage_errors_look_like_every_backend() {
        let gone = error(Op::GetObject, 404, "NoSuchKey").into_storage("upload 1");
        assert!(matches!(gone, StorageError::NotFound(w) if w == "upload 1"));
        let taken = error(Op::PutObject, 412, "PreconditionFailed").into_storage("version 1");
        assert!(matches!(taken, StorageError::AlreadyExists(_)));
        let down = error(Op::PutObject, 503, "SlowDown").into_storage("version 1");
        assert!(matches!(down, StorageError::Unavailable(_)));
    }
}
