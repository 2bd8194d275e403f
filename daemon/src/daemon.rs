//! Wiring: from a validated [`Config`] to a running registry.

use crate::api::{self, AppState, Shared};
use crate::config::{Config, StorageConfig};
use crate::metrics::{self, RedirectKind};
use crate::storage::fs::FsStorage;
use crate::storage::metered::Metered;
use crate::storage::s3::S3Storage;
use crate::storage::Storage;
use crate::trust::Access;
use crate::{fsutil, server, tls};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What a started daemon tells its operator.
pub struct Ready {
    pub addr: SocketAddr,
    pub storage: crate::storage::StorageKind,
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
        StorageConfig::S3(s3) => Ok(Arc::new(S3Storage::open(s3).await?)),
    }
}

/// Binds, prepares storage, TLS and trust, then serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&Ready),
) -> anyhow::Result<()> {
    warn_if_open_to_others(&config.state_directory, "state-directory");
    if let StorageConfig::Fs(fs) = &config.storage {
        // Inside the state directory, the state directory's own mode is what counts.
        if !fs.root_directory.starts_with(&config.state_directory) {
            warn_if_open_to_others(&fs.root_directory, "storage.fs.root-directory");
        }
    }
    fsutil::create_dirs(&config.state_directory).with_context(|| {
        format!(
            "creating state-directory {}",
            config.state_directory.display()
        )
    })?;
    let identity =
        tls::load_or_generate(&config.http.tls, config.http.addr, &config.http.advertise)?;
    let (trust, trust_refresher) = crate::trust_setup::cache(&config).await?;
    let tls_config = Arc::new(tls::server_config(
        &identity,
        config.http.tls.min_version,
        Arc::clone(&trust),
    )?);
    let (storage, pending) = crate::startup::reach(&config).await?;
    let storage: Arc<dyn Storage> = Arc::new(Metered::new(storage, redirect_kind(&config)));
    if let Some(expiry) = identity
        .chain
        .first()
        .and_then(|der| certificate_expiry(der))
    {
        metrics::global().server_certificate_expiry.set(expiry);
    }
    let (registry, finisher) = crate::startup::open_registry(&config, storage, pending).await?;
    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("listening on http.addr {}", config.http.addr))?;
    let addr = listener.local_addr()?;
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
    let scrubber = (!config.gc.scrub_interval.is_zero()).then(|| {
        tokio::spawn(scrub(
            state.clone(),
            config.gc.scrub_interval,
            config.gc.scrub_rate,
        ))
    });
    let refresher = state
        .registry
        .refresh_interval()
        .map(|every| tokio::spawn(refresh_index(state.clone(), every)));
    let metrics_listener = start_metrics(&config, &state).await;
    let trust_location = crate::trust_setup::location(&config).await;
    // Before the ready line, so that the start-up log says it.
    crate::trust_setup::announce_problems(&trust_location).await;
    let announcer = tokio::spawn(crate::trust_setup::announce_problems_daily(trust_location));
    ready(&Ready {
        addr,
        storage: state.registry.storage_kind(),
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
    if let Some(finisher) = finisher {
        finisher.abort();
    }
    if let Some(metrics_listener) = metrics_listener {
        metrics_listener.abort();
    }
    if let Some(scrubber) = scrubber {
        scrubber.abort();
    }
    announcer.abort();
    if let Some(trust_refresher) = trust_refresher {
        trust_refresher.abort();
    }
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    Ok(())
}

/// Which kind of redirect the storage's downloads are, for `aar_redirects_total`.
fn redirect_kind(config: &Config) -> RedirectKind {
    match &config.storage {
        StorageConfig::S3(s3) if s3.cloudfront.is_some() => RedirectKind::CloudFront,
        _ => RedirectKind::Presigned,
    }
}

fn certificate_expiry(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Starts the `/metrics` and `/status` listener on `metrics.addr`, if set. One that cannot
/// bind is logged and skipped: metrics are worth less than the images the registry serves.
async fn start_metrics(config: &Config, state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let addr = config.metrics.addr?;
    let listener = match metrics::listener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(
                "metrics.addr {addr}: cannot listen ({e}); /metrics and /status are not served \
                 (set metrics.addr to a free address, or \"\" to turn them off)"
            );
            return None;
        }
    };
    let bound = listener.local_addr().map_or(addr, |a| a);
    tracing::info!(
        "serving /metrics and /status on http://{bound} (plain HTTP, no authentication)"
    );
    let status: metrics::listener::StatusSource = {
        let state = state.clone();
        Arc::new(move || {
            let m = metrics::global();
            let (applications, versions, blob_bytes) = m.index();
            let (publishers, clients) = state.trust.counts();
            metrics::Status {
                applications,
                versions,
                blob_bytes,
                trusted_clients: clients as u64,
                trusted_publishers: publishers as u64,
                last_publish: m.last_publish().map(|t| {
                    let at = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0));
                    humantime::format_rfc3339_seconds(at).to_string()
                }),
                storage: state.registry.storage_kind().as_str().to_owned(),
                index_loaded: m.storage_is_up(),
            }
        })
    };
    let data = match &config.storage {
        StorageConfig::Fs(fs) => Some(fs.root_directory.clone()),
        StorageConfig::S3(_) => None,
    };
    let before_scrape: metrics::listener::BeforeScrape = Arc::new(move || {
        let Some(data) = &data else { return };
        if let Ok(fs) = rustix::fs::statvfs(data) {
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(fs.f_frsize)).unwrap_or(i64::MAX);
            let m = metrics::global();
            m.fs_available_bytes.set(bytes(fs.f_bavail));
            m.fs_size_bytes.set(bytes(fs.f_blocks));
        }
    });
    Some(tokio::spawn(metrics::listener::serve(
        listener,
        status,
        before_scrape,
    )))
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

/// Directories the daemon creates are 0700; one made earlier (by hand, by an older version:
/// 0755) lets every local user read every image and manifest. Said at each start rather
/// than changed behind the operator's back.
fn warn_if_open_to_others(dir: &std::path::Path, key: &str) {
    if let Some(mode) = fsutil::open_to_others(dir) {
        tracing::warn!(
            "{key} {} is open to other users (mode {mode:o}): any local user may read the \
             images and manifests it holds; fix it with `chmod o-rwx {}`",
            dir.display(),
            dir.display()
        );
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
        if state.registry.refresh_interval().is_some() {
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

/// Every `interval` (the first time one interval after start): hashes every stored image
/// against its digest at no more than `rate` bytes per second, and logs what is damaged.
/// Damaged images stay in place: removing them is `aar verify --repair`, an operator's call.
async fn scrub(state: AppState, interval: std::time::Duration, rate: u64) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // immediate; a scrub right at start would slow the start
    loop {
        ticker.tick().await;
        match state.registry.verify(Some(rate)).await {
            Ok(v) if v.is_clean() => {
                tracing::info!(images = v.images, bytes = v.bytes, "scrub found every image intact")
            }
            Ok(v) => tracing::error!(
                damaged = v.damaged.len(),
                unreadable_records = v.unreadable_records.len(),
                "scrub found damage; run `aar verify` for the list and `aar verify --repair` to remove damaged images"
            ),
            Err(e) => tracing::warn!(error = %e, "scrub could not read storage; will retry"),
        }
    }
}
