//! The trust store's document in the bucket, `trust/trust.json` ([`keys::TRUST`]): what
//! lets every daemon on one bucket apply the same trust and revocations
//! ([`crate::trust::SharedStore`] does the rest).
//!
//! It has its own client with short timeouts: the daemon checks it every few seconds and
//! judges requests by how recently a check got through, so a check must fail in seconds,
//! not wait out the minute a large download's read timeout allows.

use super::error::{Kind, Op, S3Error};
use super::{client, keys};
use crate::config::S3Config;
use crate::trust::{SharedDocument, SharedError, Written};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use std::time::Duration;

/// Connect, read and whole-operation timeouts of trust requests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

pub struct S3TrustDocument {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3TrustDocument {
    /// Builds the client; nothing is sent until the document is first asked for.
    pub async fn new(config: &S3Config) -> S3TrustDocument {
        let client = client::build(config).await;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let conf = client
            .config()
            .to_builder()
            .timeout_config(timeouts)
            .build();
        S3TrustDocument {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: config.bucket.clone(),
        }
    }

    fn failed<E>(
        &self,
        op: Op,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> S3Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        S3Error::from_sdk(op, &self.bucket, Some(keys::TRUST), err)
    }
}

fn shared(err: S3Error) -> SharedError {
    SharedError(err.to_string())
}

#[async_trait::async_trait]
impl SharedDocument for S3TrustDocument {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, keys::TRUST)
    }

    async fn version(&self) -> Result<Option<String>, SharedError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(keys::TRUST)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) => match self.failed(Op::HeadObject, e) {
                e if e.kind == Kind::NotFound => Ok(None),
                e => Err(shared(e)),
            },
        }
    }

    async fn read(&self) -> Result<Option<(Vec<u8>, String)>, SharedError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(keys::TRUST)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match self.failed(Op::GetObject, e) {
                    e if e.kind == Kind::NotFound => Ok(None),
                    e => Err(shared(e)),
                }
            }
        };
        let tag = out.e_tag().unwrap_or_default().to_owned();
        let body = out.body.collect().await.map_err(|e| {
            SharedError(format!(
                "reading s3://{}/{}: the answer was cut off ({e})",
                self.bucket,
                keys::TRUST
            ))
        })?;
        Ok(Some((body.into_bytes().to_vec(), tag)))
    }

    async fn write(&self, bytes: Vec<u8>, expected: Option<&str>) -> Result<Written, SharedError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(keys::TRUST)
            .content_type("application/json")
            .body(S3Body::from(bytes));
        let request = match expected {
            Some(tag) => request.if_match(tag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(out) => Ok(Written::Done(out.e_tag().map(str::to_owned))),
            Err(e) => {
                let e = self.failed(Op::PutObject, e);
                // 412: another writer got there first. AWS answers 409 when two
                // conditional writes race each other: the same thing, seen mid-way.
                let raced = e.kind == Kind::PreconditionFailed
                    || e.code.as_deref() == Some("ConditionalRequestConflict");
                if raced {
                    Ok(Written::Conflict)
                } else {
                    Err(shared(e))
                }
            }
        }
    }
}
