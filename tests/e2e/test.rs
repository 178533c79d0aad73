//! The `Test` builder: runs the real `rota` binary in a temp dir.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const ROTA: &str = env!("CARGO_BIN_EXE_rota");

/// The repository root (for examples/ and playbooks/).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Test {
    /// Keeps the directory alive as long as any Test sharing it.
    _owner: std::sync::Arc<tempfile::TempDir>,
    root: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
}

#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        Self {
            root: dir.path().to_path_buf(),
            _owner: std::sync::Arc::new(dir),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    /// Another invocation sharing `other`'s directory and state.
    pub fn new_in(other: &Test) -> Self {
        Self {
            _owner: other._owner.clone(),
            root: other.root.clone(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.root.as_path()
    }

    /// The run's private state directory (database, identity, audit key).
    pub fn state_dir(&self) -> PathBuf {
        self.root.as_path().join(".rota-state")
    }

    pub fn file(self, name: &str, content: impl AsRef<[u8]>) -> Self {
        let p = self.root.as_path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(p, content).expect("write test file");
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn stdin(mut self, s: &str) -> Self {
        self.stdin = Some(s.to_owned());
        self
    }

    pub fn run(&self) -> Output {
        let mut cmd = Command::new(ROTA);
        cmd.args(&self.args)
            .current_dir(self.root.as_path())
            .env_remove("RUST_LOG")
            .env_remove("ROTA_PLAYBOOK_PATH")
            .env("RUST_BACKTRACE", "0")
            .env("ROTA_STATE_DIR", self.state_dir())
            .env_remove("ROTA_IDENTITY_FILE")
            .env_remove("ROTA_CONFIG")
            .env("XDG_CONFIG_HOME", self.root.join(".config"))
            .env_remove("ROTA_PASSPHRASE_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rota");
        if let (Some(mut stdin), Some(input)) = (child.stdin.take(), &self.stdin) {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for rota");
        Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts the exact status, stdout and stderr.
    pub fn expect(&self, status: i32, stdout: &str, stderr: &str) -> Output {
        let out = self.run();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (status, stdout, stderr),
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.stdout,
            out.stderr
        );
        out
    }
}

/// The entries of `rota secrets versions --output json` that carry `stage`.
#[cfg(feature = "crash-points")]
pub fn with_stage<'a>(versions: &'a serde_json::Value, stage: &str) -> Vec<&'a serde_json::Value> {
    versions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["stages"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == stage))
        })
        .collect()
}
