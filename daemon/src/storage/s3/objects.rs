//! Requests on single objects and listings, and the one place an SDK failure becomes an
//! [`S3Error`] (logged when it outlasted the SDK's retries).

use super::error::{Kind, Op, S3Error};
use super::{keys, Bucket};
use crate::digest::Digest;
use crate::storage::{ByteStream, Result, StorageError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use bytes::Bytes;
use std::time::SystemTime;

type S3Result<T> = std::result::Result<T, S3Error>;

/// One object of a ListObjectsV2 answer; what the server left out is `None`.
pub(super) struct Listed {
    pub key: String,
    pub modified: Option<SystemTime>,
    /// As the server returns it, quotes included.
    pub etag: Option<String>,
    pub size: Option<u64>,
}

impl Bucket {
    /// What a failed request on `key` (or on the bucket) means.
    pub(super) fn err<E>(
        &self,
        op: Op,
        key: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let e = S3Error::from_sdk(op, &self.bucket, key, err);
        if e.kind == Kind::Transient {
            tracing::warn!(error = %e, "S3 request failed after retries");
        }
        e
    }

    /// A failure the SDK did not report as one: an answer that lacks what it must hold,
    /// or a body cut off after the answer began.
    pub(super) fn failure(&self, op: Op, key: &str, kind: Kind, detail: String) -> S3Error {
        S3Error {
            op,
            bucket: self.bucket.clone(),
            key: Some(key.to_owned()),
            kind,
            status: None,
            code: None,
            detail,
            bucket_region: None,
        }
    }

    /// The object at `key`, its body not yet read.
    pub(super) async fn get(&self, key: &str) -> S3Result<GetObjectOutput> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(Op::GetObject, Some(key), e))
    }

    /// The whole object at `key`, with its ETag.
    pub(super) async fn get_bytes(&self, key: &str) -> S3Result<(Bytes, Option<String>)> {
        let out = self.get(key).await?;
        let etag = out.e_tag().map(str::to_owned);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.failure(Op::GetObject, key, Kind::Transient, e.to_string()))?;
        Ok((body.into_bytes(), etag))
    }

    /// Creates `key` with `If-None-Match: *`: an object already there is never replaced.
    pub(super) async fn put_new(
        &self,
        key: &str,
        body: S3Body,
        content_type: Option<&str>,
    ) -> S3Result<()> {
        self.put(key, body, content_type, true).await.map(drop)
    }

    /// Writes `key`, only where no object is there yet when `only_new`; answers the ETag
    /// of what was written, when the server gives one.
    pub(super) async fn put(
        &self,
        key: &str,
        body: S3Body,
        content_type: Option<&str>,
        only_new: bool,
    ) -> S3Result<Option<String>> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_none_match(only_new.then(|| "*".to_owned()))
            .set_content_type(content_type.map(str::to_owned))
            .body(body)
            .send()
            .await
            .map_err(|e| self.err(Op::PutObject, Some(key), e))?;
        Ok(out.e_tag().map(str::to_owned))
    }

    /// Every key under `prefix`, with its last-modified time.
    pub(super) async fn list(&self, prefix: &str) -> S3Result<Vec<(String, SystemTime)>> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|o| (o.key, o.modified.unwrap_or(SystemTime::UNIX_EPOCH)))
            .collect())
    }

    /// Every object under `prefix`, as the listing describes it.
    pub(super) async fn list_objects(&self, prefix: &str) -> S3Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(Op::ListObjectsV2, None, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(Listed {
                    key: key.to_owned(),
                    modified: object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                    etag: object.e_tag().map(str::to_owned),
                    size: object.size().and_then(|s| u64::try_from(s).ok()),
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn delete_key(&self, key: &str) -> S3Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(Op::DeleteObject, Some(key), e))?;
        Ok(())
    }

    /// Deletes `key`, answering `NotFound` (named `what`) when it is not there: S3
    /// answers a delete of a missing key with success, every backend says NotFound.
    pub(super) async fn delete_existing(&self, key: &str, what: String) -> Result<()> {
        if self
            .exists(key)
            .await
            .map_err(|e| e.into_storage(what.clone()))?
            .is_none()
        {
            return Err(StorageError::NotFound(what));
        }
        self.delete_key(key).await.map_err(|e| e.into_storage(what))
    }

    /// The size and ETag of `key`, or `None` when there is no such object.
    pub(super) async fn exists(&self, key: &str) -> S3Result<Option<(u64, Option<String>)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag().map(str::to_owned),
            ))),
            Err(e) => {
                let e = self.err(Op::HeadObject, Some(key), e);
                if e.kind == Kind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub(super) async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.exists(&keys::blob(digest))
            .await
            .map(|found| found.map(|(size, _)| size))
            .map_err(|e| e.into_storage(format!("blob {digest}")))
    }

    pub(super) async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream> {
        let key = keys::blob(digest);
        let out = self
            .get(&key)
            .await
            .map_err(|e| e.into_storage(format!("blob {digest}")))?;
        let body = futures_util::stream::unfold(out.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), body)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), body)),
            }
        });
        Ok(Box::pin(body))
    }

    pub(super) async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        Ok(self
            .list(keys::BLOBS)
            .await
            .map_err(|e| e.into_storage("listing blobs"))?
            .into_iter()
            .filter_map(|(key, modified)| Some((keys::parse_blob(&key)?, modified)))
            .collect())
    }

    pub(super) async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.delete_existing(&keys::blob(digest), format!("blob {digest}"))
            .await
    }
}
