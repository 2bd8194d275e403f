//! `aar status`: asks the running daemon's `/status` (on `metrics.addr`, read from the same
//! config file the daemon reads) and prints it.

use crate::config::Config;
use crate::metrics::Status;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("metrics.addr is \"\" in the config, so the daemon serves no status; set metrics.addr (default 127.0.0.1:3001) and restart it")]
    Disabled,
    #[error("nothing answers on metrics.addr {addr} ({source}): is the daemon running with this config? (`systemctl status aar`, or pass its --config)")]
    NotRunning {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the status from {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error("writing the status: {0}")]
    Output(std::io::Error),
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// The address `/status` is asked at: a wildcard listen address is reached on loopback.
fn target(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

/// Fetches the daemon's status.
pub fn fetch(config: &Config) -> Result<Status, StatusError> {
    let addr = target(config.metrics.addr.ok_or(StatusError::Disabled)?);
    let protocol = |reason: String| StatusError::Protocol { addr, reason };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| StatusError::NotRunning { addr, source })?;
    let io = |e: std::io::Error| protocol(e.to_string());
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    // A status is a few hundred bytes; anything much larger is not the daemon.
    stream.take(1 << 20).read_to_end(&mut answer).map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| protocol("the answer is not HTTP".into()))?;
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(protocol(format!(
            "answered {status_line:?}: is metrics.addr the daemon's metrics listener?"
        )));
    }
    serde_json::from_str(body).map_err(|e| protocol(format!("unexpected status JSON: {e}")))
}

/// Prints `status` as JSON (the `/status` document) or as aligned text.
pub fn print(status: &Status, format: Format, out: &mut dyn Write) -> Result<(), StatusError> {
    match format {
        Format::Json => serde_json::to_writer_pretty(&mut *out, status)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Format::Text => {
            let rows = [
                ("storage", status.storage.clone()),
                (
                    "index loaded",
                    if status.index_loaded { "yes" } else { "no" }.to_owned(),
                ),
                ("applications", status.applications.to_string()),
                ("versions", status.versions.to_string()),
                (
                    "image bytes",
                    format!(
                        "{} ({})",
                        status.blob_bytes,
                        crate::config::format_size(status.blob_bytes)
                    ),
                ),
                ("trusted publishers", status.trusted_publishers.to_string()),
                ("trusted clients", status.trusted_clients.to_string()),
                (
                    "last publish",
                    status
                        .last_publish
                        .clone()
                        .unwrap_or_else(|| "never".into()),
                ),
            ];
            rows.iter()
                .try_for_each(|(name, value)| writeln!(out, "{:<20}{value}", format!("{name}:")))
        }
    }
    .map_err(StatusError::Output)
}

/// `aar status`.
pub fn run(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), StatusError> {
    print(&fetch(config)?, format, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            applications: 3,
            versions: 7,
            blob_bytes: 2048,
            trusted_clients: 2,
            trusted_publishers: 1,
            last_publish: None,
            storage: "fs".into(),
            index_loaded: true,
        }
    }

    #[test]
    fn text_lines_up_and_json_reads_back() {
        let mut text = Vec::new();
        print(&sample(), Format::Text, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("applications:       3\n"), "{text}");
        assert!(text.contains("last publish:       never\n"), "{text}");
        assert!(text.contains("image bytes:        2048 (2KiB)\n"), "{text}");
        let mut json = Vec::new();
        print(&sample(), Format::Json, &mut json).unwrap();
        let back: Status = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn disabled_and_absent_daemons_are_told_apart() {
        let mut config = Config::default();
        config.metrics.addr = None;
        assert!(matches!(fetch(&config), Err(StatusError::Disabled)));
        // A port just freed: nothing listens there.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        config.metrics.addr = Some(free);
        let err = fetch(&config).unwrap_err();
        assert!(matches!(err, StatusError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains("is the daemon running"), "{err}");
    }
}
