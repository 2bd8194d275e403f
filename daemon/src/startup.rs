//! Reaching storage at start. A configuration the storage refuses (credentials, region,
//! bucket, CloudFront key) stops the daemon with the reason. A storage that cannot be
//! reached now (network, timeouts, throttling, 5xx) does not: the daemon serves, answers
//! 503 with Retry-After to everything that needs storage or the index, and keeps trying.
//! Exiting would only trade those 503s for refused connections and a restart loop, and
//! an index that is not loaded is never answered as an empty registry.

use crate::config::{Config, StorageConfig};
use crate::registry::Registry;
use crate::storage::pending::Pending;
use crate::storage::s3::S3Storage;
use crate::storage::{Storage, StorageError, StorageKind};
use std::sync::Arc;
use std::time::Duration;

/// The longest pause between two attempts to reach storage.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The configured storage, or a stand-in answering 503 until it can be reached (then
/// `Some` of it, for [`finish`] to fill in).
pub async fn reach(config: &Config) -> anyhow::Result<(Arc<dyn Storage>, Option<Arc<Pending>>)> {
    let StorageConfig::S3(s3) = &config.storage else {
        return Ok((crate::daemon::open_storage(config).await?, None));
    };
    match S3Storage::open(s3).await {
        Ok(storage) => Ok((Arc::new(storage), None)),
        Err(err) if err.is_transient() => {
            tracing::error!(
                error = %err,
                "storage cannot be reached: serving 503 with Retry-After until it can; retrying"
            );
            let pending = Arc::new(Pending::new(
                StorageKind::S3,
                Some(s3.refresh_interval),
                err.to_string(),
            ));
            Ok((pending.clone(), Some(pending)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Loads the registry if storage answers now; otherwise returns a registry that answers
/// 503 and a task that keeps trying until the storage is reached and the index loaded.
pub async fn open_registry(
    config: &Config,
    storage: Arc<dyn Storage>,
    pending: Option<Arc<Pending>>,
) -> anyhow::Result<(Registry, Option<tokio::task::JoinHandle<()>>)> {
    let registry = Registry::unloaded(storage);
    // Tried even with the storage pending: the failed load is what sets the metrics.
    match registry.start().await {
        Ok(()) => return Ok((registry, None)),
        Err(StorageError::Unavailable(why)) if pending.is_none() => tracing::error!(
            error = %why,
            "the index cannot be loaded from storage: serving 503 with Retry-After until it can; retrying"
        ),
        Err(StorageError::Unavailable(_)) => {}
        Err(err) => {
            return Err(anyhow::Error::new(err).context("loading the registry from storage"))
        }
    }
    let finisher = tokio::spawn(finish(config.clone(), pending, registry.clone()));
    Ok((registry, Some(finisher)))
}

/// Retries, with a growing pause, until the storage is reached and the index loaded.
async fn finish(config: Config, pending: Option<Arc<Pending>>, registry: Registry) {
    let mut wait = Duration::from_secs(1);
    let mut pause = || {
        let now = wait;
        wait = (wait * 2).min(MAX_WAIT);
        tokio::time::sleep(now)
    };
    if let (Some(pending), StorageConfig::S3(s3)) = (pending, &config.storage) {
        loop {
            pause().await;
            match S3Storage::open(s3).await {
                Ok(storage) => {
                    pending.set(Arc::new(storage));
                    break;
                }
                Err(err) if err.is_transient() => {
                    tracing::debug!(error = %err, "storage still unreachable")
                }
                // Reached, but refusing: the operator has something to fix; say it at
                // every attempt rather than serve a storage that will not work.
                Err(err) => tracing::error!(error = %err, "storage refuses the registry"),
            }
        }
    }
    loop {
        match registry.start().await {
            Ok(()) => {
                tracing::info!("storage reached and index loaded: the registry answers again");
                return;
            }
            Err(err) => tracing::warn!(error = %err, "the index still cannot be loaded; retrying"),
        }
        pause().await;
    }
}
