//! A running `aar serve` of an [`Instance`], on `127.0.0.1:0`; the ready line gives the port
//! and the server fingerprint. Dropping it kills the process.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{
    client_id, publisher, revoked, Client, Identity, Instance, ALL_VERSIONS, BIN, READY_TIMEOUT,
    VERSION,
};

pub struct DaemonBuilder {
    overrides: String,
    storage: Option<String>,
    trust: bool,
    revoked: bool,
    root_dir: Option<PathBuf>,
    env: Vec<(String, Option<String>)>,
}

impl DaemonBuilder {
    /// Do not trust the publisher and client identities before starting.
    pub fn no_trust(mut self) -> Self {
        self.trust = false;
        self
    }
    /// Trust then revoke [`revoked()`] before starting.
    pub fn with_revoked(mut self) -> Self {
        self.revoked = true;
        self
    }
    pub fn root_dir(mut self, p: &Path) -> Self {
        self.root_dir = Some(p.to_path_buf());
        self
    }
    /// A whole `storage:` section in place of the file-system storage.
    pub fn storage(mut self, section: &str) -> Self {
        self.storage = Some(section.to_string());
        self
    }
    /// Sets `k` to `v` in the daemon's environment, or removes it for `None`.
    pub fn env<'a>(mut self, k: &str, v: impl Into<Option<&'a str>>) -> Self {
        self.env.push((k.into(), v.into().map(str::to_string)));
        self
    }
    /// Writes the config and trusts the identities asked for; the daemon is not started.
    pub fn prepare(self) -> Daemon {
        let mut inst = match &self.storage {
            Some(section) => Instance::with_storage(&self.overrides, section),
            None => Instance::new(&self.overrides, self.root_dir.as_deref()),
        };
        inst.env = self.env.clone();
        if self.trust {
            inst.trust_add(publisher(), true);
            inst.trust_add(client_id(), false);
        }
        if self.revoked {
            inst.trust_add(revoked(), false);
            inst.trust_revoke(&revoked().fingerprint);
        }
        Daemon {
            inst,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            fingerprint: String::new(),
            ready_line: String::new(),
            env: self.env,
        }
    }
    pub fn start(self) -> Daemon {
        let mut d = self.prepare();
        d.spawn();
        d
    }
}

pub struct Daemon {
    pub inst: Instance,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub ready_line: String,
    env: Vec<(String, Option<String>)>,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Daemon({}, {})",
            self.addr,
            self.inst.dir.path().display()
        )
    }
}

impl Deref for Daemon {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.inst
    }
}

/// Parses `aar <version> serving https://<ip>:<port> (storage fs, server fingerprint <hex>)`.
pub fn parse_ready_line(line: &str) -> Option<(String, SocketAddr, String, String)> {
    let rest = line.strip_prefix("aar ")?;
    let (version, rest) = rest.split_once(" serving https://")?;
    let (addr, rest) = rest.split_once(" (storage ")?;
    let (storage, rest) = rest.split_once(", server fingerprint ")?;
    let fp = rest.strip_suffix(')')?;
    if fp.len() != 64
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Some((
        version.to_string(),
        addr.parse().ok()?,
        storage.to_string(),
        fp.to_string(),
    ))
}

impl Daemon {
    pub fn builder(overrides: &str) -> DaemonBuilder {
        DaemonBuilder {
            overrides: overrides.to_string(),
            storage: None,
            trust: true,
            revoked: false,
            root_dir: None,
            env: Vec::new(),
        }
    }

    /// Starts a daemon with the base config plus `overrides`, publisher and client trusted.
    pub fn start(overrides: &str) -> Daemon {
        Daemon::builder(overrides).start()
    }

    /// A daemon on the S3 backend `section` (see [`s3_storage`](super::s3_storage)), with
    /// the debug log: S3 failures are told from it, and the checks that no secret is shown
    /// then cover every line the daemon writes.
    pub fn s3(section: &str) -> DaemonBuilder {
        Daemon::builder("")
            .storage(section)
            .env("AAR_LOG", "info,aar=debug")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.inst.dir.path().join("daemon.stderr")
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_start() {
            panic!(
                "aar serve did not print its ready line: {e}\n--- config\n{}",
                self.inst.config_text
            );
        }
    }

    /// Starts `aar serve`; `Err("exit <status>: <stderr>")` if it ends, or is still silent
    /// after [`READY_TIMEOUT`], before its ready line.
    pub fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "daemon already running");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.inst.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env_remove("AAR_CONFIG");
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().expect("spawn aar serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if first {
                    let _ = tx.send(line);
                    first = false;
                } else {
                    eprintln!("[aar stdout] {line}");
                }
            }
        });
        let Ok(line) = rx.recv_timeout(READY_TIMEOUT) else {
            let _ = child.kill();
            let status = child.wait().expect("wait for aar serve");
            return Err(format!("exit {status}: {}", self.stderr()));
        };
        self.child = Some(child);
        let Some((version, addr, storage, fp)) = parse_ready_line(&line) else {
            panic!(
                "unexpected ready line: {line:?}\n--- stderr\n{}",
                self.stderr()
            );
        };
        assert_eq!(version, VERSION, "version in ready line {line:?}");
        assert_eq!(storage, self.inst.storage, "storage in ready line {line:?}");
        if !self.fingerprint.is_empty() {
            assert_eq!(
                fp, self.fingerprint,
                "server fingerprint changed across restarts"
            );
        }
        self.addr = addr;
        self.fingerprint = fp;
        self.ready_line = line;
        Ok(())
    }

    /// Sends `signal` (name as for `kill -s`, e.g. `TERM`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -s {signal} failed");
    }

    /// Waits for the daemon to exit (up to `timeout`); `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits (30 s at most) for the daemon to exit.
    pub fn stop_with(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        match self.wait_exit(Duration::from_secs(30)) {
            Some(st) => st,
            None => panic!(
                "daemon still running 30 s after SIG{signal}\n--- stderr\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Starts the daemon again with the same config and directories (stops it first with
    /// SIGTERM if it is still running). The port may change.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop_with("TERM");
        }
        self.child = None;
        self.spawn();
    }

    pub fn client(&self, id: Option<&Identity>) -> Client {
        Client::new(self.addr, &self.fingerprint, id, ALL_VERSIONS)
    }
    pub fn publisher(&self) -> Client {
        self.client(Some(publisher()))
    }
    pub fn reader(&self) -> Client {
        self.client(Some(client_id()))
    }
    pub fn anonymous(&self) -> Client {
        self.client(None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let s = self.stderr();
            let tail: String = if s.len() > 8000 {
                s[s.len() - 8000..].to_string()
            } else {
                s
            };
            eprintln!(
                "--- aar daemon stderr (tail) [{}]\n{tail}",
                self.inst.dir.path().display()
            );
        }
    }
}
