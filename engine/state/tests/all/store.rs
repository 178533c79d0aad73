//! The secret store: MemoryStore's label semantics, durability, files, identity.

use rota_core::{MemoryStore, Provenance, Secret, SecretRef, SecretStore, Stage, StoreError};
use rota_state::{IdentityConfig, SqliteStore, State, StateConfig, StateError, create_identity_file};

use crate::common::{T, TestResult, mode};

fn labels(store: &dyn SecretStore, name: &str) -> Vec<(u64, Vec<Stage>)> {
    store
        .versions(name)
        .map(|v| v.into_iter().map(|i| (i.handle.version, i.stages)).collect())
        .unwrap_or_default()
}

/// Guards the contract: the same operations on MemoryStore and SqliteStore
/// leave the same labels, summaries and errors.
#[test]
fn labels_match_memory_store_step_by_step() -> TestResult {
    let mut t = T::new();
    let mem = MemoryStore::new();
    let p = Provenance::default();
    let values: Vec<Secret> = (0..4).map(|i| t.secret(&format!("v{i}"))).collect();
    type Op = Box<dyn Fn(&dyn SecretStore) -> Result<String, StoreError>>;
    let h = |v: u64| SecretRef::new("plex/acme/client-secret", v);
    let ops: Vec<Op> = vec![
        Box::new({
            let (v, p) = (values[0].clone(), p.clone());
            move |s| s.put("plex/acme/client-secret", &v, &p).map(|h| h.to_string())
        }),
        Box::new(move |s| s.promote(&h(1)).map(|_| "ok".into())),
        Box::new({
            let (v, p) = (values[1].clone(), p.clone());
            move |s| s.put("plex/acme/client-secret", &v, &p).map(|h| h.to_string())
        }),
        Box::new({
            let (v, p) = (values[2].clone(), p.clone());
            move |s| s.put("plex/acme/client-secret", &v, &p).map(|h| h.to_string())
        }),
        Box::new(move |s| s.promote(&h(3)).map(|_| "ok".into())),
        Box::new(move |s| s.promote(&h(3)).map(|_| "ok".into())),
        Box::new(move |s| s.discard(&h(3)).map(|_| "ok".into())),
        Box::new(move |s| s.discard(&h(2)).map(|_| "ok".into())),
        Box::new(move |s| s.promote(&h(1)).map(|_| "ok".into())),
        Box::new(move |s| s.promote(&h(9)).map(|_| "ok".into())),
        Box::new(move |s| s.get(&h(9)).map(|_| "ok".into())),
        Box::new(move |s| s.get(&SecretRef::new("nope", 1)).map(|_| "ok".into())),
        Box::new({
            let (v, p) = (values[3].clone(), p.clone());
            move |s| s.put("bad//name", &v, &p).map(|h| h.to_string())
        }),
    ];
    for (i, op) in ops.iter().enumerate() {
        let a = op(&mem).map_err(|e| std::mem::discriminant(&e));
        let b = op(&t.store).map_err(|e| std::mem::discriminant(&e));
        assert_eq!(a, b, "op {i} differs");
        assert_eq!(
            labels(&mem, "plex/acme/client-secret"),
            labels(&t.store, "plex/acme/client-secret"),
            "op {i}"
        );
        for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
            assert_eq!(
                mem.resolve("plex/acme/client-secret", stage)?,
                t.store.resolve("plex/acme/client-secret", stage)?,
                "op {i} {stage:?}"
            );
        }
        assert_eq!(mem.list()?, t.store.list()?, "op {i}");
    }
    assert_eq!(t.store.get(&h(1))?, values[0]);
    assert_eq!(
        t.store.remove("plex/acme/client-secret")?,
        mem.remove("plex/acme/client-secret")?
    );
    assert!(!t.store.remove("plex/acme/client-secret")?);
    assert!(matches!(
        t.store.versions("plex/acme/client-secret"),
        Err(StoreError::NotFound(_))
    ));
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn values_survive_reopen_and_are_visible_to_other_connections() -> TestResult {
    let mut t = T::new();
    let v1 = t.secret("a");
    let unicode = Secret::new("pässwörd-✓-with\nnewline-and-\"quotes\"-0123456789");
    t.scanner.add("unicode", unicode.expose());
    let h1 = t.store.put("a/one", &v1, &Provenance::default())?;
    let h2 = t.store.put("a/two", &unicode, &Provenance::default())?;
    let other = SqliteStore::new(t.reopen());
    assert_eq!(other.get(&h1)?, v1);
    assert_eq!(other.get(&h2)?, unicode);
    drop(other);
    let t2 = SqliteStore::new(State::open_with(t.state.config().clone())?);
    assert_eq!(t2.list()?.len(), 2);
    t.assert_no_leaks(&[]);
    Ok(())
}

/// Guards against a journaled handle coming to mean another value.
#[test]
fn version_numbers_are_never_reused() -> TestResult {
    let mut t = T::new();
    let p = Provenance::default();
    let (a, b, c) = (t.secret("a"), t.secret("b"), t.secret("c"));
    t.store.put("x", &a, &p)?;
    let h2 = t.store.put("x", &b, &p)?;
    t.store.discard(&h2)?;
    assert_eq!(t.store.put("x", &c, &p)?, SecretRef::new("x", 3));
    t.store.remove("x")?;
    assert_eq!(t.store.put("x", &a, &p)?, SecretRef::new("x", 4));
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn provenance_is_stored_with_the_version() -> TestResult {
    let mut t = T::new();
    let v = t.secret("v");
    let p = Provenance {
        run_id: None,
        step_id: Some("mint".into()),
        source: Some("plex".into()),
        key_id: Some("kid-123".into()),
        idempotency_key: None,
    };
    let h = t.store.put("plex/acme/s", &v, &p)?;
    let info = t.store.versions("plex/acme/s")?;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].handle, h);
    assert_eq!(info[0].provenance, p);
    assert_eq!(info[0].stages, vec![Stage::Pending]);
    let text = rota_state::render::versions(&info);
    assert!(
        text.contains("plex/acme/s@1  pending") && text.contains("kid-123"),
        "{text}"
    );
    t.assert_no_leaks(&[("render", text.as_bytes())]);
    Ok(())
}

#[test]
fn files_are_private_and_the_database_is_wal() -> TestResult {
    let mut t = T::new();
    let dir = t.state_dir();
    assert_eq!(mode(&dir), 0o700);
    // The identity is created on first use, not at open.
    assert!(!dir.join("identity.txt").exists());
    let v = t.secret("v");
    t.store.put("x", &v, &Provenance::default())?;
    for f in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "identity.txt",
        "audit.key",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let c = crate::common::raw(&t.state);
    let journal_mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    assert_eq!(journal_mode, "wal");
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(version, rota_state::SCHEMA_VERSION);
    // The identity file is what age-keygen writes.
    let id = std::fs::read_to_string(dir.join("identity.txt"))?;
    assert!(id.contains("# public key: age1") && id.contains("AGE-SECRET-KEY-1"));
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_newer_schema_is_refused() -> TestResult {
    let t = T::new();
    crate::common::raw(&t.state).pragma_update(None, "user_version", 999)?;
    let err = State::open_with(t.state.config().clone())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("schema version 999"), "{err}");
    Ok(())
}

fn passphrase_config(dir: &std::path::Path, pass_file: Option<std::path::PathBuf>) -> StateConfig {
    let mut c = StateConfig::in_dir(dir.join("state"));
    c.identity = IdentityConfig {
        path: dir.join("protected.age"),
        create_if_missing: false,
        passphrase_file: pass_file,
        allow_prompt: false,
    };
    c
}

#[test]
fn passphrase_identity_unlocks_once_per_process() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "correct horse battery staple\n")?;
    let pass = age::secrecy::SecretString::from("correct horse battery staple".to_owned());
    create_identity_file(&dir.path().join("protected.age"), Some(&pass), Some(4))?;
    let before = rota_state::passphrase_unlocks();
    let state = State::open_with(passphrase_config(dir.path(), Some(pass_file.clone())))?;
    let store = SqliteStore::new(state.clone());
    let mut scanner = rota_testkit::LeakScanner::new();
    let values: Vec<Secret> = (0..3)
        .map(|i| Secret::new(format!("protected-value-{i}-XYZ987")))
        .collect();
    let mut handles = Vec::new();
    for (i, v) in values.iter().enumerate() {
        scanner.add(&format!("v{i}"), v.expose());
        handles.push(store.put(&format!("p/{i}"), v, &Provenance::default())?);
    }
    for (h, v) in handles.iter().zip(&values) {
        assert_eq!(&store.get(h)?, v);
    }
    let again = SqliteStore::new(State::open_with(passphrase_config(dir.path(), Some(pass_file)))?);
    assert_eq!(again.get(&handles[0])?, values[0]);
    // Other tests may unlock their own files concurrently; this file was unlocked once.
    assert!(rota_state::passphrase_unlocks() - before >= 1);
    let unlocks = rota_state::passphrase_unlocks();
    for h in &handles {
        store.get(h)?;
    }
    assert_eq!(rota_state::passphrase_unlocks(), unlocks, "no unlock per secret");
    // The passphrase never lands in the state.
    scanner.add("passphrase", "correct horse battery staple");
    let mut hits = scanner.scan_sqlite(state.db_path(), &["secret_versions.ciphertext"])?;
    hits.extend(scanner.scan_dir(state.dir())?);
    rota_testkit::assert_no_leaks(&hits);
    Ok(())
}

#[test]
fn a_protected_identity_without_a_passphrase_source_says_how_to_give_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pass = age::secrecy::SecretString::from("pw-for-this-test".to_owned());
    create_identity_file(&dir.path().join("protected.age"), Some(&pass), Some(4))?;
    let state = State::open_with(passphrase_config(dir.path(), None))?;
    // Encrypting needs the public key, which a fresh state learns from the identity.
    let err =
        SqliteStore::new(state.clone()).put("x", &Secret::new("v-123456-unstored"), &Provenance::default());
    let err = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("passphrase-protected") && err.contains("ROTA_PASSPHRASE_FILE"),
        "{err}"
    );

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it")?;
    let state = State::open_with(passphrase_config(dir.path(), Some(wrong)))?;
    let err = state.recipient().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("wrong passphrase") && err.contains("protected.age"),
        "{err}"
    );
    Ok(())
}

#[test]
fn an_identity_file_from_the_environment_is_never_created() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = StateConfig::in_dir(dir.path().join("state"));
    c.identity.path = dir.path().join("missing.txt");
    c.identity.create_if_missing = false;
    let state = State::open_with(c)?;
    let err = state.recipient().err();
    assert!(matches!(err, Some(StateError::Identity { .. })), "{err:?}");
    assert!(!dir.path().join("missing.txt").exists());
    Ok(())
}

/// Guards concurrent first use: many processes opening a fresh state at once
/// agree on one schema and one identity.
#[test]
fn concurrent_first_use_creates_one_identity() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = StateConfig::in_dir(dir.path().join("state"));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (config, barrier) = (config.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<SecretRef, String> {
                barrier.wait();
                let state = State::open_with(config).map_err(|e| e.to_string())?;
                let store = SqliteStore::new(state);
                store
                    .put(
                        &format!("c/{i}"),
                        &Secret::new(format!("concurrent-{i}-value")),
                        &Provenance::default(),
                    )
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut handles_out = Vec::new();
    for h in handles {
        handles_out.push(h.join().map_err(|_| "thread panicked")??);
    }
    let store = SqliteStore::new(State::open_with(config)?);
    for (i, h) in handles_out.iter().enumerate() {
        assert_eq!(store.get(h)?.expose(), format!("concurrent-{i}-value"));
    }
    assert!(store.state().check()?.is_ok());
    let mut scanner = rota_testkit::LeakScanner::new();
    for i in 0..4 {
        scanner.add(&format!("c{i}"), &format!("concurrent-{i}-value"));
    }
    let mut hits = scanner.scan_sqlite(store.state().db_path(), &["secret_versions.ciphertext"])?;
    hits.extend(scanner.scan_dir(store.state().dir())?);
    rota_testkit::assert_no_leaks(&hits);
    Ok(())
}

/// Child for `the_environment_configures_the_state`: prints what it resolved.
#[test]
#[ignore = "run as a child process by the_environment_configures_the_state"]
fn child_print_config() -> TestResult {
    if std::env::var("ROTA_STATE_TEST_PRINT_CONFIG").is_err() {
        return Ok(());
    }
    let c = StateConfig::from_env()?;
    println!("dir={}", c.dir.display());
    println!("identity={}", c.identity.path.display());
    println!("create={}", c.identity.create_if_missing);
    println!("passfile={:?}", c.identity.passphrase_file);
    println!("operator={:?}", c.operator);
    println!("prompt={}", c.identity.allow_prompt);
    Ok(())
}

#[test]
fn the_environment_configures_the_state() -> TestResult {
    let run = |envs: &[(&str, &str)]| -> Result<String, Box<dyn std::error::Error>> {
        let mut cmd = crate::common::child("store::child_print_config", &[]);
        cmd.env("ROTA_STATE_TEST_PRINT_CONFIG", "1")
            .env_remove("ROTA_STATE_DIR")
            .env_remove("ROTA_IDENTITY_FILE")
            .env_remove("ROTA_PASSPHRASE_FILE")
            .env_remove("ROTA_OPERATOR")
            .stdin(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Ok(String::from_utf8(cmd.output()?.stdout)?)
    };
    let out = run(&[
        ("ROTA_STATE_DIR", "/srv/rota"),
        ("ROTA_IDENTITY_FILE", "/keys/rota.age"),
        ("ROTA_PASSPHRASE_FILE", "/keys/pass"),
        ("ROTA_OPERATOR", "alice"),
    ])?;
    for want in [
        "dir=/srv/rota\n",
        "identity=/keys/rota.age\n",
        "create=false\n",
        "passfile=Some(\"/keys/pass\")\n",
        "operator=Some(\"alice\")\n",
        "prompt=false\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    let out = run(&[("HOME", "/home/tester"), ("XDG_DATA_HOME", "/xdg")])?;
    assert!(
        out.contains("dir=/xdg/rota\n") && out.contains("identity=/xdg/rota/identity.txt\n"),
        "{out}"
    );
    assert!(
        out.contains("create=true\n") && out.contains("operator=None\n"),
        "{out}"
    );
    Ok(())
}
