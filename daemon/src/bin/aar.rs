use aar::cli::{Cli, Command, ConfigCommand};
use aar::config::{self, Config};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let load = || -> Result<Config, config::ConfigError> {
        match &cli.config {
            Some(path) => config::load(path),
            None => Ok(Config::default()),
        }
    };
    match cli.command {
        Command::Config(ConfigCommand::Check { ref file }) => match config::load(file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => {
            let config = match load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("aar: invalid configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            init_tracing(&config.log.level);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(aar::daemon::run(config, shutdown_signal(), |ready| {
                println!(
                    "aar {} serving https://{} (storage {}, server fingerprint {})",
                    env!("CARGO_PKG_VERSION"),
                    ready.addr,
                    ready.storage,
                    ready.fingerprint
                );
            })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("aar: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Trust(command) => {
            let config = match load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("aar: invalid configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut stdout = std::io::stdout().lock();
            match aar::cli::trust::run(
                command,
                &config.state_directory,
                &mut std::io::stdin().lock(),
                &mut stdout,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("aar: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AAR_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
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
