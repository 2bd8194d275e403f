//! Wiring: from a validated [`Config`] to a running registry.

use crate::api::{self, AppState, Shared};
use crate::config::{Config, StorageConfig};
use crate::registry::Registry;
use crate::storage::fs::FsStorage;
use crate::storage::Storage;
use crate::trust::TrustCache;
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
        StorageConfig::S3(_) => {
            anyhow::bail!("storage.s3 is not available in this build yet; use storage.fs")
        }
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
    ready(&Ready {
        addr,
        storage: state.registry.storage().kind(),
        fingerprint: identity.fingerprint,
    });
    let router = api::router(state);
    server::serve(
        listener,
        tls_config,
        router,
        config.http.limits.clone(),
        config.http.shutdown_timeout,
        shutdown,
    )
    .await;
    collector.abort();
    Ok(())
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
        if let Err(e) = state.registry.collect_garbage(grace).await {
            tracing::warn!(error = %e, "garbage collection failed; will retry");
        }
    }
}
