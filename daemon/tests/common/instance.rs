//! A daemon's files before it runs: the config, the state directory and the storage, and
//! the CLI run against them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{Identity, BIN};

fn merge_yaml(base: &mut serde_yaml_ng::Value, over: serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) if bv.is_mapping() && v.is_mapping() => merge_yaml(bv, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub root_dir: PathBuf,
    pub config_text: String,
    /// The backend the config names (`fs` or `s3`), as the ready line reports it.
    pub storage: String,
    /// Environment of the CLI runs, as of the daemon's (with S3 the CLI reaches the
    /// bucket too: `AWS_CA_BUNDLE` matters to both).
    pub env: Vec<(String, Option<String>)>,
}

impl Instance {
    /// A temp dir holding `config.yaml`, `state/` and `data/`; `overrides` (YAML) is merged
    /// over the base config. `root_dir` replaces the storage root when given.
    pub fn new(overrides: &str, root_dir: Option<&Path>) -> Instance {
        Instance::build(overrides, root_dir, None)
    }

    /// As [`Instance::new`], with `storage` (a whole `storage:` section, e.g. from
    /// [`s3_storage`](super::s3_storage)) in place of the base config's file-system storage.
    pub fn with_storage(overrides: &str, storage: &str) -> Instance {
        Instance::build(overrides, None, Some(storage))
    }

    fn build(overrides: &str, root_dir: Option<&Path>, storage: Option<&str>) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("aar-test-")
            .tempdir()
            .unwrap();
        let state_dir = dir.path().join("state");
        let root = root_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        fs::create_dir_all(&state_dir).unwrap();
        fs::create_dir_all(&root).unwrap();
        let base = format!(
            r#"
http:
  addr: 127.0.0.1:0
  shutdown-timeout: 5s
  tls:
    min-version: "1.3"
  limits:
    header-timeout: 10s
    body-timeout: 10s
    max-metadata-size: 64KiB
    max-image-size: 2GiB
state-directory: {state}
storage:
  fs:
    root-directory: {root}
    min-free: 0
gc:
  interval: 1h
  upload-expiry: 24h
# Tests run many daemons at once: none takes the default metrics port unless it asks.
metrics:
  addr: ""
"#,
            state = state_dir.display(),
            root = root.display()
        );
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&base).unwrap();
        if !overrides.trim().is_empty() {
            let o: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(overrides).expect("overrides must be valid YAML");
            merge_yaml(&mut value, o);
        }
        if let Some(section) = storage {
            let section: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(section).expect("storage section must be valid YAML");
            value["storage"] = section["storage"].clone();
        }
        let backend = value["storage"]
            .as_mapping()
            .and_then(|m| m.keys().next())
            .and_then(|k| k.as_str())
            .expect("a storage backend")
            .to_string();
        let config_text = serde_yaml_ng::to_string(&value).unwrap();
        let config_path = dir.path().join("config.yaml");
        fs::write(&config_path, &config_text).unwrap();
        Instance {
            dir,
            config_path,
            state_dir,
            root_dir: root,
            config_text,
            storage: backend,
            env: Vec::new(),
        }
    }

    /// `aar <words...> --config FILE` with stdin closed (not a tty).
    pub fn cmd(&self, words: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(words)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .env_remove("AAR_CONFIG");
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    pub fn run(&self, words: &[&str], extra: &[&str]) -> Output {
        let out = self.cmd(words).args(extra).output().expect("run aar");
        out
    }

    pub fn trust_add(&self, id: &Identity, publisher: bool) {
        let path = id.write_pem(self.dir.path());
        let mut c = self.cmd(&["trust", "add"]);
        c.arg(&path);
        if publisher {
            c.arg("--publisher");
        }
        let out = c.output().unwrap();
        assert_success(&out, &format!("aar trust add {}", id.name));
    }

    pub fn trust_revoke(&self, fp: &str) {
        let out = self.run(&["trust", "revoke"], &[fp, "--yes"]);
        assert_success(&out, "aar trust revoke --yes");
    }

    pub fn trust_remove(&self, fp: &str) {
        let out = self.run(&["trust", "remove"], &[fp]);
        assert_success(&out, "aar trust remove");
    }

    /// `aar trust list --format json [--revoked]`, parsed.
    pub fn trust_list_json(&self, revoked: bool) -> Value {
        let mut extra = vec!["--format", "json"];
        if revoked {
            extra.push("--revoked");
        }
        let out = self.run(&["trust", "list"], &extra);
        assert_success(&out, "aar trust list --format json");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "trust list json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

pub fn out_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", out_text(out));
}

/// Every path under `dir`, recursively, each with whether it is a directory (links are
/// not followed).
fn paths_under(dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, t.is_dir()));
        }
    }
    out
}

/// Every file (not directory) under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths_under(dir)
        .into_iter()
        .filter_map(|(p, is_dir)| (!is_dir).then_some(p))
        .collect();
    out.sort();
    out
}

/// Every path (files and directories) under `dir` whose name starts with `.tmp-`.
pub fn tmp_files_under(dir: &Path) -> Vec<PathBuf> {
    paths_under(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}
