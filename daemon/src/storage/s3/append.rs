//! Appending to an upload: the body cut into parts sent while more arrives, each part
//! recorded once sent, and the upload completed once its digest is checked.

use super::error::{Kind, Op, S3Error};
use super::parts::PartPool;
use super::upload::{hash_state, record_write_error, Session, UploadEntry, MAX_IN_FLIGHT_BYTES};
use super::{keys, Bucket};
use crate::digest::Digest;
use crate::storage::{ByteStream, Result, StorageError, UploadState};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use sha2_resumable::Digest as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A part being sent: its ETag and the hash state after it, once sent.
type PartSend = BoxFuture<'static, std::result::Result<(String, String), S3Error>>;

/// How a request body ended. A failure of S3 is not among them: it ends the append with
/// an error and the session with it.
enum BodyEnd {
    Complete,
    /// What was received before is kept, so the publisher can resume.
    Failed(StorageError),
}

impl Bucket {
    pub(super) async fn append_upload(
        self: &Arc<Self>,
        id: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<UploadState> {
        let entry = self.hold_upload(id).await?;
        let mut guard = entry.lock(id).await?;
        let session = self.session_at(id, &entry, &mut guard, offset).await?;
        let ended = Append::new(self, id, &entry, session).run(body).await;
        let ended = match ended {
            Ok(ended) => ended,
            Err(e) => {
                // Parts sent but not recorded are overwritten when the upload resumes from
                // its record; the bytes held in memory are gone with the session.
                *guard = None;
                entry.offset.store(u64::MAX, Ordering::Relaxed);
                return Err(e);
            }
        };
        let offset = session.offset();
        entry.offset.store(offset, Ordering::Relaxed);
        if let BodyEnd::Failed(e) = ended {
            return Err(e);
        }
        let size = session.record.size;
        if offset < size {
            return Ok(session.record.state(id, offset, false));
        }
        let state = session.record.state(id, offset, true);
        let finished = self.finish_upload(id, session).await;
        // Ended, or to be reloaded from the record on the next attempt: either way the
        // session goes, and the entry with it once nobody holds it.
        *guard = None;
        entry.offset.store(u64::MAX, Ordering::Relaxed);
        finished?;
        Ok(state)
    }

    /// The session of upload `id`, which must hold `offset` bytes; read from the record
    /// when this daemon has none.
    async fn session_at<'g>(
        &self,
        id: &str,
        entry: &UploadEntry,
        guard: &'g mut Option<Session>,
        offset: u64,
    ) -> Result<&'g mut Session> {
        if guard.is_none() {
            // Read under the lock: a writer that held it may have moved the record on.
            let session = self.load_session(id).await?;
            entry.offset.store(session.offset(), Ordering::Relaxed);
            *guard = Some(session);
        }
        let session = guard.as_mut().expect("loaded above");
        let current = session.offset();
        if offset != current {
            return Err(StorageError::OffsetMismatch {
                id: id.to_owned(),
                expected: current,
                got: offset,
            });
        }
        Ok(session)
    }

    /// Sends the part held in `bytes` as part `number`; returns its ETag with `state`.
    fn start_part(
        self: &Arc<Self>,
        key: &str,
        multipart: &str,
        number: usize,
        bytes: Bytes,
        state: String,
    ) -> PartSend {
        let this = self.clone();
        let (key, multipart) = (key.to_owned(), multipart.to_owned());
        Box::pin(async move {
            let number = i32::try_from(number).expect("at most 10,000 parts");
            let etag = this.upload_part(key, multipart, number, bytes).await?;
            Ok((etag, state))
        })
    }

    async fn upload_part(
        &self,
        key: String,
        multipart: String,
        number: i32,
        bytes: Bytes,
    ) -> std::result::Result<String, S3Error> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(multipart)
            .part_number(number)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes));
        let sent = if self.sign_payload {
            request.send().await
        } else {
            // Over TLS the payload's integrity is TLS's, and the image's is the SHA-256
            // checked before completion: hashing every part a second time for SigV4 would
            // only cost CPU.
            request.customize().disable_payload_signing().send().await
        };
        let out = sent.map_err(|e| self.err(Op::UploadPart, Some(&key), e))?;
        out.e_tag().map(str::to_owned).ok_or_else(|| {
            self.failure(
                Op::UploadPart,
                &key,
                Kind::Other,
                "the server answered without an ETag".into(),
            )
        })
    }

    /// Creates the multipart upload and records it before any part is sent to it.
    async fn start_multipart(&self, id: &str, session: &mut Session, key: &str) -> Result<()> {
        let multipart = self
            .create_multipart(key)
            .await
            .map_err(|e| e.into_storage(format!("upload {id}")))?;
        let mut record = session.record.clone();
        record.multipart = Some(multipart.clone());
        if let Err(e) = self.replace_record(id, session, record).await {
            // Unrecorded, it would be found only by ListMultipartUploads: abort it now.
            let _ = self.abort_multipart(key, &multipart).await;
            return Err(record_write_error(id, e));
        }
        Ok(())
    }

    /// Records a part that finished (parts finish in order).
    async fn commit_part(
        &self,
        id: &str,
        session: &mut Session,
        etag: String,
        state: String,
    ) -> Result<()> {
        let mut record = session.record.clone();
        record.parts.push(etag);
        record.hash_state = state;
        self.replace_record(id, session, record)
            .await
            .map_err(|e| record_write_error(id, e))
    }

    /// Checks the digest, stores what is still in memory and makes the object visible.
    async fn finish_upload(&self, id: &str, session: &mut Session) -> Result<()> {
        let record = &mut session.record;
        let actual = Digest::from_bytes(session.hasher.clone().finalize().into());
        if actual != record.digest {
            let expected = record.digest;
            let _ = self.discard(id, record).await;
            return Err(StorageError::DigestMismatch { expected, actual });
        }
        let key = keys::blob(&record.digest);
        let tail = Bytes::from(std::mem::take(&mut session.pending));
        let stored = match record.multipart.clone() {
            None => self.put_whole(&key, tail).await,
            Some(multipart) => {
                self.complete_multipart(&key, &multipart, &mut record.parts, tail, record.size)
                    .await
            }
        };
        stored.map_err(|e| {
            e.into_storage(format!("storing blob {} from upload {id}", record.digest))
        })?;
        // The blob is stored; a record left behind by a failure here is expired later.
        if let Err(e) = self.delete_key(&keys::upload(id)).await {
            tracing::warn!(upload = id, error = %e, "could not remove a finished upload's record");
        }
        Ok(())
    }

    /// Stores an image smaller than a part with one PutObject.
    async fn put_whole(&self, key: &str, bytes: Bytes) -> std::result::Result<(), S3Error> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| self.err(Op::PutObject, Some(key), e))?;
        Ok(())
    }

    /// Sends `tail` as the last part, if any bytes are left, and completes the upload.
    async fn complete_multipart(
        &self,
        key: &str,
        multipart: &str,
        parts: &mut Vec<String>,
        tail: Bytes,
        size: u64,
    ) -> std::result::Result<(), S3Error> {
        if !tail.is_empty() {
            let number = parts.len() as i32 + 1;
            let etag = self
                .upload_part(key.to_owned(), multipart.to_owned(), number, tail)
                .await?;
            parts.push(etag);
        }
        let completed: Vec<CompletedPart> = parts
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(etag)
                    .build()
            })
            .collect();
        let answer = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(multipart)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        let Err(e) = answer else {
            return Ok(());
        };
        let e = self.err(Op::CompleteMultipartUpload, Some(key), e);
        // Some S3-compatible stores (moto) answer 200 with a body the SDK cannot read.
        // Whether the object is there, at its size, says whether the upload was completed.
        let stored = e.status == Some(200)
            && e.kind == Kind::Other
            && matches!(self.exists(key).await, Ok(Some((stored, _))) if stored == size);
        if !stored {
            return Err(e);
        }
        tracing::debug!(error = %e, "completion answer unreadable, but the object is stored");
        Ok(())
    }
}

/// One PATCH in progress: the body read while parts are sent, at most
/// [`MAX_IN_FLIGHT_BYTES`] of them at once.
struct Append<'a> {
    bucket: &'a Arc<Bucket>,
    id: &'a str,
    entry: &'a UploadEntry,
    session: &'a mut Session,
    blob_key: String,
    part: u64,
    max_in_flight: usize,
    in_flight: FuturesOrdered<PartSend>,
    /// Buffers of the parts in flight and of the one filling, reused.
    pool: PartPool,
    received: u64,
}

impl<'a> Append<'a> {
    fn new(
        bucket: &'a Arc<Bucket>,
        id: &'a str,
        entry: &'a UploadEntry,
        session: &'a mut Session,
    ) -> Self {
        let part = session.record.part_size;
        let max_in_flight = (MAX_IN_FLIGHT_BYTES / part).max(1) as usize;
        let pool = PartPool::new(part as usize, max_in_flight + 1);
        let remaining = session.record.size - session.offset();
        if remaining >= part - session.pending.len() as u64
            && session.pending.capacity() < part as usize
        {
            // Allocated at full size once, rather than grown by doubling; an image that
            // ends before a part is full keeps the small buffer it grows.
            let mut buf = pool.take();
            buf.extend_from_slice(&session.pending);
            session.pending = buf;
        }
        Append {
            bucket,
            id,
            entry,
            blob_key: keys::blob(&session.record.digest),
            part,
            max_in_flight,
            in_flight: FuturesOrdered::new(),
            pool,
            received: session.offset(),
            session,
        }
    }

    /// Reads `body` to its end, recording parts as they finish; an `Err` is a failure of
    /// S3, after which the session no longer matches the bucket. Parts still being sent
    /// when it returns an error are dropped with `self`.
    async fn run(mut self, mut body: ByteStream) -> Result<BodyEnd> {
        let mut ended: Option<BodyEnd> = None;
        loop {
            if self.in_flight.is_empty() {
                if let Some(end) = ended.take() {
                    return Ok(end);
                }
            }
            tokio::select! {
                biased;
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    let (etag, state) =
                        done.map_err(|e| e.into_storage(format!("writing upload {}", self.id)))?;
                    self.bucket.commit_part(self.id, self.session, etag, state).await?;
                }
                chunk = body.next(), if ended.is_none() && self.in_flight.len() < self.max_in_flight => {
                    match chunk {
                        None => ended = Some(BodyEnd::Complete),
                        Some(Err(e)) => ended = Some(BodyEnd::Failed(StorageError::BodyInterrupted(e))),
                        Some(Ok(chunk)) => {
                            if let Err(too_long) = self.receive(chunk).await? {
                                ended = Some(BodyEnd::Failed(too_long));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Takes in one chunk of the body. The inner `Err` is a body longer than declared
    /// (nothing of the chunk is kept); the outer one a failure of S3.
    async fn receive(&mut self, mut chunk: Bytes) -> Result<std::result::Result<(), StorageError>> {
        let size = self.session.record.size;
        self.received += chunk.len() as u64;
        if self.received > size {
            return Ok(Err(StorageError::TooLong { declared: size }));
        }
        self.entry.touch();
        // Cut at part boundaries, so that the hash state recorded with a part covers
        // exactly the bytes up to its end.
        while !chunk.is_empty() {
            let room = (self.part - self.session.pending.len() as u64) as usize;
            let piece = chunk.split_to(room.min(chunk.len()));
            self.session.hasher.update(&piece);
            self.session.pending.extend_from_slice(&piece);
            let held = self.session.record.durable()
                + (self.in_flight.len() as u64) * self.part
                + self.session.pending.len() as u64;
            self.entry.offset.store(held, Ordering::Relaxed);
            // A full part that is not the last one goes out now; the last one waits for
            // the digest check.
            if self.session.pending.len() as u64 == self.part && held < size {
                self.send_part().await?;
            }
        }
        Ok(Ok(()))
    }

    /// Starts sending the full part held in memory, creating the multipart upload first
    /// if this is its first part.
    async fn send_part(&mut self) -> Result<()> {
        if self.session.record.multipart.is_none() {
            self.bucket
                .start_multipart(self.id, self.session, &self.blob_key)
                .await?;
        }
        let number = self.session.record.parts.len() + self.in_flight.len() + 1;
        let bytes = std::mem::replace(&mut self.session.pending, self.pool.take());
        let bytes = self.pool.lend(bytes);
        let multipart = self
            .session
            .record
            .multipart
            .as_deref()
            .expect("created above");
        let send = self.bucket.start_part(
            &self.blob_key,
            multipart,
            number,
            bytes,
            hash_state(&self.session.hasher),
        );
        self.in_flight.push_back(send);
        Ok(())
    }
}
