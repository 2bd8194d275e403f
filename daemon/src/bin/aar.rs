use aar::cli::{Cli, Command, ConfigCommand};
use aar::config::{self, Config, LogFormat};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    aar::malloc::tune_for_streaming();
    let Cli {
        config: config_path,
        command,
    } = Cli::parse();
    if let Command::Config(ConfigCommand::Check { file }) = &command {
        return check(file);
    }
    let config = match load(config_path.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(format!("invalid configuration: {e}")),
    };
    // Every command but `serve` prints its own output; AAR_LOG still asks for logs.
    let quiet = |config: &Config| init_tracing("off", config.log.format);
    match command {
        Command::Config(_) => unreachable!("checked above"),
        Command::Serve => serve(config),
        Command::Verify { repair } => {
            quiet(&config);
            let mut stdout = std::io::stdout().lock();
            outcome(block_on(aar::cli::verify::run(
                &config,
                repair,
                &mut stdout,
            )))
        }
        Command::Backup { file, no_blobs } => {
            quiet(&config);
            // The archive may be on stdout: the summary goes to stderr.
            let mut report = std::io::stderr().lock();
            let taken = aar::cli::backup::run_backup(&config, &file, !no_blobs, &mut report);
            outcome(block_on(taken).map(|()| true))
        }
        Command::Restore { file, force } => {
            quiet(&config);
            let mut report = std::io::stdout().lock();
            outcome(block_on(aar::cli::backup::run_restore(
                &config,
                &file,
                force,
                &mut report,
            )))
        }
        Command::Trust(command) => {
            // Only the audit trail of the change and the one-time import of a local store
            // into the bucket, so that the output stays the command's.
            init_tracing(
                "off,aar::audit=info,aar::trust::shared=info",
                config.log.format,
            );
            let mut stdout = std::io::stdout().lock();
            let mut stdin = std::io::stdin().lock();
            let run = aar::cli::trust::run(command, &config, &mut stdin, &mut stdout);
            match block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Status { format } => {
            let mut stdout = std::io::stdout().lock();
            match aar::cli::status::run(&config, format, &mut stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let checked = config::load(file)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            // What parsing cannot see: a CloudFront key that does not sign.
            aar::daemon::check_storage(&config).map_err(|e| format!("{}: {e}", file.display()))
        });
    match checked {
        Ok(()) => {
            println!("{}: valid", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn serve(config: Config) -> ExitCode {
    init_tracing(&config.log.level, config.log.format);
    let served = block_on(aar::daemon::run(config, shutdown_signal(), |ready| {
        println!(
            "aar {} serving https://{} (storage {}, server fingerprint {})",
            env!("CARGO_PKG_VERSION"),
            ready.addr,
            ready.storage,
            ready.fingerprint
        );
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            fail(format!("{e:#}"))
        }
    }
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(work)
}

/// `Ok(true)`: done and clean; `Ok(false)`: done, with findings the output reported.
fn outcome(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(path) => config::load(path),
        None => Ok(Config::default()),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("aar: {message}");
    ExitCode::FAILURE
}

fn init_tracing(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    // rustls warns once per connection about things any client controls (an IP address
    // sent as SNI, say), which would let anyone flood the log; keep only its errors
    // unless the operator asked for rustls by name.
    let level = if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AAR_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One object per line, the event's fields flattened beside its message.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
