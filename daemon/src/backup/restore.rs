//! Restoring a backup: format first, then a refusal to overwrite a registry that holds
//! something, then the server identity, the trust store, images (each verified against
//! its digest by the storage's own upload path) and last the records that use them.

use super::{io, BackupError, Entry, Manifest, FORMAT};
use crate::config::Config;
use crate::digest::Digest;
use crate::fsutil::{self, Replace};
use crate::model::VersionRecord;
use crate::storage::{ByteStream, Storage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use tokio::runtime::Handle;

/// What a restore did.
#[derive(Debug, Default)]
pub struct Restored {
    pub server_fingerprint: String,
    pub trusted: usize,
    pub revoked: usize,
    pub records_added: usize,
    /// Records storage already held, identical to the backup's.
    pub records_present: usize,
    pub blobs_added: usize,
    pub blobs_present: usize,
    /// Versions stored with other contents than the backup's: left as stored.
    pub differing: Vec<(String, u32)>,
    /// Versions not restored because an image they use is neither in the backup nor
    /// in storage (a backup taken with `--no-blobs`, or from S3 into fs).
    pub without_images: Vec<(String, u32)>,
}

/// Restores `input` into the registry `config` describes. Refuses a registry that holds
/// trust entries, versions or another server key unless `force`.
pub async fn restore(
    config: &Config,
    storage: Arc<dyn Storage>,
    force: bool,
    input: Box<dyn Read + Send>,
) -> Result<Restored, BackupError> {
    let config = config.clone();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        Restore {
            config: &config,
            storage,
            handle,
            stored: BTreeMap::new(),
            done: Restored::default(),
            certificate: None,
        }
        .run(input, force)
    })
    .await
    .expect("the restore thread does not panic")
}

struct Restore<'a> {
    config: &'a Config,
    storage: Arc<dyn Storage>,
    handle: Handle,
    stored: BTreeMap<(String, u32), VersionRecord>,
    done: Restored,
    certificate: Option<Vec<u8>>,
}

impl Restore<'_> {
    fn run(mut self, input: Box<dyn Read + Send>, force: bool) -> Result<Restored, BackupError> {
        let mut archive = tar::Archive::new(input);
        let mut entries = archive.entries().map_err(io("reading the backup"))?;
        let not_a_backup = |why: &str| BackupError::NotABackup("the input".into(), why.into());
        let mut first = entries
            .next()
            .ok_or_else(|| not_a_backup("it is empty"))?
            .map_err(io("reading the backup"))?;
        let path = entry_path(&first)?;
        if Entry::of(&path) != Some(Entry::Manifest) {
            return Err(not_a_backup(&format!("its first entry is {path:?}")));
        }
        let manifest: Manifest = serde_json::from_slice(&read_all(&mut first, &path)?)
            .map_err(|e| not_a_backup(&format!("its manifest does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BackupError::Format {
                found: manifest.format,
            });
        }
        self.done.server_fingerprint = manifest.server_fingerprint.clone();
        self.check_empty(&manifest, force)?;
        for entry in entries {
            let mut entry = entry.map_err(io("reading the backup"))?;
            let path = entry_path(&entry)?;
            match Entry::of(&path) {
                Some(Entry::Certificate) => self.certificate = Some(read_all(&mut entry, &path)?),
                Some(Entry::Key) => {
                    let key = read_all(&mut entry, &path)?;
                    self.server_identity(key)?;
                }
                Some(Entry::Trust) => {
                    let bytes = read_all(&mut entry, &path)?;
                    self.trust(&bytes)?;
                }
                Some(Entry::Blob(digest)) => {
                    let size = entry
                        .header()
                        .size()
                        .map_err(io(format!("reading {path}")))?;
                    self.blob(digest, size, &mut entry)?
                }
                Some(Entry::Record) => {
                    let bytes = read_all(&mut entry, &path)?;
                    self.record(&path, &bytes)?;
                }
                Some(Entry::Manifest) | None => {
                    return Err(not_a_backup(&format!(
                        "it holds an unexpected entry {path:?}"
                    )))
                }
            }
        }
        Ok(self.done)
    }

    /// What the target holds that a restore would overwrite or mix with.
    fn check_empty(&mut self, manifest: &Manifest, force: bool) -> Result<(), BackupError> {
        let mut held = Vec::new();
        let trust = self
            .handle
            .block_on(async { crate::trust_setup::location(self.config).await.list().await })?;
        if !trust.trusted.is_empty() || !trust.revoked.is_empty() {
            held.push(format!(
                "{} trusted and {} revoked certificates",
                trust.trusted.len(),
                trust.revoked.len()
            ));
        }
        let loaded = self.handle.block_on(self.storage.load_versions())?;
        if !loaded.records.is_empty() || !loaded.unreadable.is_empty() {
            held.push(format!(
                "{} version records",
                loaded.records.len() + loaded.unreadable.len()
            ));
        }
        if let Ok(current) = std::fs::read(&self.config.http.tls.certificate) {
            let fingerprint = crate::trust::parse_certificate(&current)
                .map(|(info, _)| info.fingerprint.to_string())
                .unwrap_or_default();
            if fingerprint != manifest.server_fingerprint {
                held.push("a server certificate with another fingerprint".into());
            }
        }
        if !held.is_empty() && !force {
            return Err(BackupError::NotEmpty(held.join(", ")));
        }
        self.stored = loaded
            .records
            .into_iter()
            .map(|r| ((r.application.clone(), r.version), r))
            .collect();
        Ok(())
    }

    fn server_identity(&mut self, key: Vec<u8>) -> Result<(), BackupError> {
        let certificate = self.certificate.take().ok_or_else(|| {
            BackupError::NotABackup(
                "the input".into(),
                "its key comes without a certificate".into(),
            )
        })?;
        let tls = &self.config.http.tls;
        fsutil::write_atomic(&tls.key, &key, 0o600, Replace::Overwrite)
            .map_err(io(format!("writing the server key {}", tls.key.display())))?;
        fsutil::write_atomic(&tls.certificate, &certificate, 0o644, Replace::Overwrite).map_err(
            io(format!(
                "writing the server certificate {}",
                tls.certificate.display()
            )),
        )?;
        Ok(())
    }

    /// Replaces the trust store wherever it is (the bucket's with S3). What the store's
    /// own reader refuses (duplicates, malformed fingerprints) is never written.
    fn trust(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        let file = self.handle.block_on(async {
            crate::trust_setup::location(self.config)
                .await
                .replace(bytes)
                .await
        })?;
        self.done.trusted = file.trusted.len();
        self.done.revoked = file.revoked.len();
        Ok(())
    }

    /// Feeds the entry through the storage's upload, which verifies the digest and
    /// commits the image only when it matches: a damaged backup restores no damaged image.
    fn blob(
        &mut self,
        digest: Digest,
        size: u64,
        entry: &mut impl Read,
    ) -> Result<(), BackupError> {
        let handle = self.handle.clone();
        if handle.block_on(self.storage.blob_size(&digest))? == Some(size) {
            self.done.blobs_present += 1;
            return Ok(());
        }
        let upload = handle.block_on(self.storage.create_upload(digest, size))?;
        if upload.complete {
            self.done.blobs_present += 1;
            return Ok(());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let storage = self.storage.clone();
        let id = upload.id.clone();
        let append = handle.spawn(async move { storage.append_upload(&id, 0, chunks(rx)).await });
        let mut fed = Ok(());
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            match entry.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    // A closed channel means the upload already stopped; its error says why.
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    fed = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let appended = handle
            .block_on(append)
            .expect("the upload task does not panic");
        if let Err(e) = fed {
            let _ = handle.block_on(self.storage.abort_upload(&upload.id));
            return Err(io(format!("reading image {digest} from the backup"))(e));
        }
        let done = appended?;
        if !done.complete {
            let _ = handle.block_on(self.storage.abort_upload(&upload.id));
            return Err(BackupError::NotABackup(
                "the input".into(),
                format!("image {digest} is cut short in it"),
            ));
        }
        self.done.blobs_added += 1;
        Ok(())
    }

    fn record(&mut self, path: &str, bytes: &[u8]) -> Result<(), BackupError> {
        let record: VersionRecord = serde_json::from_slice(bytes).map_err(|e| {
            BackupError::NotABackup("the input".into(), format!("{path} does not parse: {e}"))
        })?;
        if !path.ends_with(&format!(
            "records/{}/{}.json",
            record.application, record.version
        )) {
            return Err(BackupError::NotABackup(
                "the input".into(),
                format!(
                    "{path} holds version {} of {:?}",
                    record.version, record.application
                ),
            ));
        }
        let key = (record.application.clone(), record.version);
        if let Some(stored) = self.stored.get(&key) {
            if serde_json::to_value(stored).ok() == serde_json::to_value(&record).ok() {
                self.done.records_present += 1;
            } else {
                self.done.differing.push(key);
            }
            return Ok(());
        }
        for image in record.images.values() {
            let found = self
                .handle
                .block_on(self.storage.blob_size(&image.digest))?;
            if found != Some(image.size) {
                self.done.without_images.push(key);
                return Ok(());
            }
        }
        self.handle.block_on(self.storage.put_version(&record))?;
        self.done.records_added += 1;
        Ok(())
    }
}

fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, BackupError> {
    let path = entry.path().map_err(io("reading the backup"))?;
    Ok(path.to_string_lossy().into_owned())
}

/// Small entries (manifest, certificates, trust, records) are read whole; a bound keeps
/// a hostile archive from claiming memory.
fn read_all(entry: &mut impl Read, path: &str) -> Result<Vec<u8>, BackupError> {
    const LIMIT: u64 = 64 << 20;
    let mut data = Vec::new();
    entry
        .take(LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(io(format!("reading {path} from the backup")))?;
    if data.len() as u64 > LIMIT {
        return Err(BackupError::NotABackup(
            "the input".into(),
            format!("{path} is larger than any registry writes"),
        ));
    }
    Ok(data)
}

fn chunks(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}
