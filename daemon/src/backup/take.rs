//! Writing a backup: a tar stream, built on a blocking thread that calls back into the
//! runtime for storage reads (an image is streamed, never held in memory).

use super::{io, BackupError, Entry, Manifest, FORMAT, ROOT};
use crate::config::Config;
use crate::digest::Digest;
use crate::model::VersionRecord;
use crate::storage::{Storage, StorageKind};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// What a backup holds.
#[derive(Debug, Default)]
pub struct Taken {
    pub server_fingerprint: String,
    pub trusted: usize,
    pub revoked: usize,
    pub records: usize,
    /// Images written, or `None` when they were left out (S3, or `--no-blobs`).
    pub blobs: Option<usize>,
    pub blob_bytes: u64,
    /// Records storage holds but could not read; they are not in the backup.
    pub unreadable: Vec<String>,
}

/// Writes the backup of the registry `config` describes to `out`. With fs storage the
/// images the records use are included unless `blobs` is false; with S3 they stay in
/// the bucket. Refuses an image whose bytes no longer match its digest.
pub async fn backup(
    config: &Config,
    storage: Arc<dyn Storage>,
    blobs: bool,
    out: Box<dyn Write + Send>,
) -> Result<Taken, BackupError> {
    let certificate = std::fs::read(&config.http.tls.certificate).map_err(io(format!(
        "reading the server certificate {} (start the registry once: it creates it)",
        config.http.tls.certificate.display()
    )))?;
    let key = std::fs::read(&config.http.tls.key).map_err(io(format!(
        "reading the server key {}",
        config.http.tls.key.display()
    )))?;
    let server_fingerprint = crate::trust::parse_certificate(&certificate)?
        .0
        .fingerprint
        .to_string();
    let trust = crate::trust_setup::location(config).await.list().await?;
    let trust_bytes = serde_json::to_vec_pretty(&trust).expect("the trust store serialises");
    let loaded = storage.load_versions().await?;
    let blobs = blobs && storage.kind() == StorageKind::Fs;
    let manifest = Manifest {
        format: FORMAT,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        storage: storage.kind().to_string(),
        server_fingerprint: server_fingerprint.clone(),
        blobs,
    };
    let mut taken = Taken {
        server_fingerprint,
        trusted: trust.trusted.len(),
        revoked: trust.revoked.len(),
        unreadable: loaded.unreadable,
        ..Taken::default()
    };
    let records = loaded.records;
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(out);
        let small = |tar: &mut tar::Builder<_>, path: &str, data: &[u8], mode| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            tar.append_data(&mut header, format!("{ROOT}/{path}"), data)
                .map_err(io(format!("writing {path} to the backup")))
        };
        let manifest = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
        small(&mut tar, "manifest.json", &manifest, 0o600)?;
        small(&mut tar, "tls/server.crt", &certificate, 0o644)?;
        small(&mut tar, "tls/server.key", &key, 0o600)?;
        small(&mut tar, "trust.json", &trust_bytes, 0o600)?;
        if blobs {
            let mut sizes = BTreeMap::new();
            for record in &records {
                for image in record.images.values() {
                    sizes.insert(image.digest, image.size);
                }
            }
            for (&digest, &size) in &sizes {
                append_blob(&mut tar, &handle, storage.as_ref(), digest, size)?;
                taken.blob_bytes += size;
            }
            taken.blobs = Some(sizes.len());
        }
        for record in &records {
            let data = serde_json::to_vec_pretty(record).expect("a record serialises");
            small(&mut tar, &record_path(record), &data, 0o600)?;
        }
        taken.records = records.len();
        tar.into_inner()
            .and_then(|mut out| out.flush())
            .map_err(io("finishing the backup"))?;
        Ok(taken)
    })
    .await
    .expect("the backup thread does not panic")
}

fn record_path(record: &VersionRecord) -> String {
    format!("records/{}/{}.json", record.application, record.version)
}

/// Streams one image into the archive, checking its size and digest on the way: a
/// backup must never carry damaged bytes as if they were sound.
fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    handle: &Handle,
    storage: &dyn Storage,
    digest: Digest,
    size: u64,
) -> Result<(), BackupError> {
    let stream = handle.block_on(storage.scan_blob(&digest))?;
    let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), handle.clone());
    let mut checked = Checked {
        inner: reader,
        left: size,
        hasher: Sha256::new(),
    };
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    let path = format!("{ROOT}/blobs/sha256/{}", digest.hex());
    debug_assert_eq!(Entry::of(&path), Some(Entry::Blob(digest)));
    tar.append_data(&mut header, &path, &mut checked)
        .map_err(io(format!("writing image {digest} to the backup")))?;
    let mut extra = [0u8; 1];
    let longer = checked
        .inner
        .read(&mut extra)
        .map_err(io(format!("reading image {digest}")))?
        > 0;
    let actual = Digest::from_bytes(checked.hasher.finalize().into());
    if checked.left > 0 || longer || actual != digest {
        return Err(crate::storage::StorageError::Damaged(format!(
            "image {digest} no longer matches its digest or recorded size"
        ))
        .into());
    }
    Ok(())
}

/// Reads exactly the recorded size, hashing what passes; a short image is an error
/// rather than a short archive entry.
struct Checked<R> {
    inner: R,
    left: u64,
    hasher: Sha256,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the image ended {} bytes before its recorded size",
                    self.left
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}
