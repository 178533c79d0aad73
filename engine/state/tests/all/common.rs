//! The test harness: a fresh state directory, the store over it, and a leak
//! scanner that knows every secret value the test used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_core::Secret;
use rota_state::{SqliteStore, State, StateConfig};
use rota_testkit::{LeakScanner, assert_no_leaks};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub struct T {
    pub dir: tempfile::TempDir,
    pub state: Arc<State>,
    pub store: SqliteStore,
    pub scanner: LeakScanner,
    counter: usize,
}

impl T {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(edit: impl FnOnce(&mut StateConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StateConfig::in_dir(dir.path().join("state"));
        edit(&mut config);
        let state = State::open_with(config).expect("open state");
        Self {
            store: SqliteStore::new(state.clone()),
            state,
            dir,
            scanner: LeakScanner::new(),
            counter: 0,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.dir().to_path_buf()
    }

    /// A fresh, distinctive secret value, registered with the scanner.
    pub fn secret(&mut self, label: &str) -> Secret {
        self.counter += 1;
        let value = format!(
            "{label}-S3cr3t/{}+{}-{}",
            self.counter,
            uuid::Uuid::new_v4().simple(),
            "q&z"
        );
        self.scanner.add(label, &value);
        Secret::new(value)
    }

    /// Another connection on the same state directory (as another process would have).
    pub fn reopen(&self) -> Arc<State> {
        State::open_with(self.state.config().clone()).expect("reopen state")
    }

    /// Scans everything this state produced: every database column except
    /// ciphertext (through SQL), every file in the state directory (raw),
    /// the audit export, each run's record and timeline, and `extra` blobs.
    pub fn assert_no_leaks(&self, extra: &[(&str, &[u8])]) {
        let mut hits = self
            .scanner
            .scan_rota_state(self.state.dir())
            .expect("scan state");
        let mut audit = Vec::new();
        self.state.audit_export_jsonl(&mut audit).expect("audit export");
        hits.extend(self.scanner.scan_bytes("audit export", &audit));
        for run in self.state.list_runs().expect("list runs") {
            let record = self.state.load_run(&run.id).expect("load run");
            let json = serde_json::to_vec(&record).expect("serialize run");
            hits.extend(self.scanner.scan_bytes("run record json", &json));
            let text = rota_state::render::run_timeline(&record);
            hits.extend(self.scanner.scan_bytes("run timeline", text.as_bytes()));
        }
        use rota_core::SecretStore;
        if let Ok(list) = self.store.list() {
            let text = rota_state::render::secrets_list(&list);
            hits.extend(self.scanner.scan_bytes("secrets list", text.as_bytes()));
            for s in list {
                if let Ok(v) = self.store.versions(&s.name) {
                    let text = rota_state::render::versions(&v);
                    hits.extend(self.scanner.scan_bytes("versions", text.as_bytes()));
                }
            }
        }
        for (name, bytes) in extra {
            hits.extend(self.scanner.scan_bytes(name, bytes));
        }
        assert_no_leaks(&hits);
    }
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// Raw SQL on the state database, as an attacker or a damaged disk would change it.
pub fn raw(state: &State) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(state.db_path()).expect("raw connection");
    c.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// Moves everything committed in the WAL into the database file (rota's
/// own connections do not checkpoint on close), for tests that damage the
/// database file itself.
pub fn checkpoint(db: &std::path::Path) {
    rusqlite::Connection::open(db)
        .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
        .expect("checkpoint");
}

/// Makes the run look as if its process died (a pid that exited).
pub fn orphan_run(state: &State, run_id: &str) {
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait true");
    raw(state)
        .execute(
            "UPDATE runs SET pid = ?1, process_start = '' WHERE id = ?2",
            rusqlite::params![pid, run_id],
        )
        .expect("orphan run");
}

/// Re-runs this test binary for one `#[ignore]`d child test, with env vars
/// (the child's own environment: nothing here mutates ours).
pub fn child(test: &str, envs: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}
