//! The daemon's trust store set up from the config: where it is (the state directory's
//! file with fs storage, the bucket's document with S3), the cache requests are judged
//! by with its refresh task, and the daily audit of certificates about to expire.

use crate::config::{Config, StorageConfig};
use crate::storage::s3::S3TrustDocument;
use crate::trust::{SharedDocument, SharedStore, TrustCache, TrustLocation};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The trust store's document in shared storage, when the storage is shared.
async fn shared_document(config: &Config) -> Option<Arc<dyn SharedDocument>> {
    match &config.storage {
        StorageConfig::S3(s3) => Some(Arc::new(S3TrustDocument::new(s3).await)),
        StorageConfig::Fs(_) => None,
    }
}

/// Where `aar trust …`, backup and restore read and change trust.
pub async fn location(config: &Config) -> TrustLocation {
    TrustLocation::new(&config.state_directory, shared_document(config).await)
}

/// The cache requests are judged by, read once now, and with shared storage the task
/// that keeps it current. A damaged `trust.json` stops the daemon, as it always has; a
/// bucket that cannot be reached does not: until it can, requests get 503s.
pub async fn cache(config: &Config) -> anyhow::Result<(Arc<TrustCache>, Option<JoinHandle<()>>)> {
    let StorageConfig::S3(s3) = &config.storage else {
        let cache = Arc::new(TrustCache::new(&config.state_directory));
        cache.refresh().context("reading the trust store")?;
        return Ok((cache, None));
    };
    let doc = shared_document(config).await.expect("S3 storage is shared");
    let store = SharedStore::new(doc, &config.state_directory);
    let cache = Arc::new(TrustCache::shared(store, s3.trust_stale_after));
    // A failure is logged by the cache, and retried by the task.
    let _ = cache.refresh_shared().await;
    let task = tokio::spawn(refresh(Arc::clone(&cache), s3.trust_refresh_interval));
    Ok((cache, Some(task)))
}

/// Every `interval`: checks the shared store for changes made on other units.
async fn refresh(cache: Arc<TrustCache>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // immediate: the store was just read
    loop {
        ticker.tick().await;
        let _ = cache.refresh_shared().await;
    }
}

/// Warns about trusted certificates that expire within 30 days, have expired, or can never
/// connect, so the operator hears of it before (or as soon as) an AMS is locked out.
pub async fn announce_problems(location: &TrustLocation) {
    // A store that cannot be read is reported by the trust cache already.
    let Ok(file) = location.list().await else {
        return;
    };
    for warning in crate::trust::audit(&file, crate::trust::unix_now()) {
        tracing::warn!("{warning}");
    }
}

/// [`announce_problems`] once a day after the one at start.
pub async fn announce_problems_daily(location: TrustLocation) {
    let day = Duration::from_secs(24 * 3600);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        announce_problems(&location).await;
    }
}
