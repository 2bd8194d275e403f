//! Wiring: from a validated [`Config`] to a running registry.

use crate::api::{self, AppState, Shared};
use crate::config::{Config, StorageConfig};
use crate::registry::Registry;
use crate::storage::fs::FsStorage;
use crate::storage::s3::{S3Storage, SharedS3};
use crate::storage::Storage;
use crate::trust::{Access, TrustCache};
use crate::{fsutil, server, tls};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What a started daemon tells its operator.
pub struct Ready {
    pub addr: SocketAddr,
    pub storage: &'static str,
    pub fingerprint: String,
}

/// What can be known about the storage configuration without reaching the storage (for
/// `aar config check`): today, that a CloudFront key pair can sign.
pub fn check_storage(config: &Config) -> Result<(), crate::cloudfront::CloudFrontError> {
    match &config.storage {
        StorageConfig::S3(s3) => s3
            .cloudfront
            .as_ref()
            .map_or(Ok(()), crate::cloudfront::check),
        StorageConfig::Fs(_) => Ok(()),
    }
}

pub async fn open_storage(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    match &config.storage {
        StorageConfig::Fs(fs) => Ok(Arc::new(
            FsStorage::new(&fs.root_directory, fs.min_free).with_context(|| {
                format!(
                    "opening storage.fs.root-directory {}",
                    fs.root_directory.display()
                )
            })?,
        )),
        StorageConfig::S3(s3) => Ok(Arc::new(SharedS3::new(S3Storage::open(s3).await?))),
    }
}

/// Binds, prepares storage, TLS and trust, then serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&Ready),
) -> anyhow::Result<()> {
    fsutil::create_dirs(&config.state_directory).with_context(|| {
        format!(
            "creating state-directory {}",
            config.state_directory.display()
        )
    })?;
    let identity =
        tls::load_or_generate(&config.http.tls, config.http.addr, &config.http.advertise)?;
    let tls_config = Arc::new(tls::server_config(&identity, config.http.tls.min_version)?);
    let storage = open_storage(&config).await?;
    let registry = Registry::open(storage)
        .await
        .context("loading the registry from storage")?;
    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("listening on http.addr {}", config.http.addr))?;
    let addr = listener.local_addr()?;
    let trust = TrustCache::new(&config.state_directory);
    trust.refresh().context("reading the trust store")?;
    let state = AppState::new(Shared {
        trust,
        limits: config.http.limits.clone(),
        server_fingerprint: identity.fingerprint.clone(),
        registry,
    });
    let collector = tokio::spawn(collect_garbage(
        state.clone(),
        config.gc.interval,
        config.gc.upload_expiry,
    ));
    let refresher = state
        .registry
        .storage()
        .refresh_interval()
        .map(|every| tokio::spawn(refresh_index(state.clone(), every)));
    ready(&Ready {
        addr,
        storage: state.registry.storage().kind(),
        fingerprint: identity.fingerprint,
    });
    let trusted: server::TrustCheck = {
        let state = state.clone();
        Arc::new(move |fingerprint| matches!(state.trust.lookup(fingerprint), Access::Trusted(_)))
    };
    let router = api::router(state);
    server::serve(
        listener,
        tls_config,
        router,
        trusted,
        config.http.limits.clone(),
        config.http.shutdown_timeout,
        shutdown,
    )
    .await;
    collector.abort();
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    Ok(())
}

/// Every `interval`: re-reads the index from storage, so that versions other daemons
/// published or deleted on a shared bucket appear here within that time. A failure keeps
/// the index as it is (metadata is still served) and is retried at the next tick.
async fn refresh_index(state: AppState, interval: std::time::Duration) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate: the index was just loaded
    loop {
        ticker.tick().await;
        if let Err(e) = state.registry.refresh().await {
            tracing::warn!(error = %e, "refreshing the index from storage failed; serving the last one");
        }
    }
}

/// At start and then every `interval`: expire idle uploads and unreferenced blobs.
async fn collect_garbage(
    state: AppState,
    interval: std::time::Duration,
    grace: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    loop {
        ticker.tick().await;
        // On a shared bucket, another daemon may have published a version referencing a
        // blob this index thinks unreferenced: look again right before collecting.
        if state.registry.storage().refresh_interval().is_some() {
            if let Err(e) = state.registry.refresh().await {
                tracing::warn!(error = %e, "garbage collection skipped: the index could not be refreshed");
                continue;
            }
        }
        if let Err(e) = state.registry.collect_garbage(grace).await {
            tracing::warn!(error = %e, "garbage collection failed; will retry");
        }
    }
}
