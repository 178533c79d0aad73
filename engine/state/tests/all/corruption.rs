//! Damaged state: a clear error naming what is damaged, other secrets still
//! readable, nothing silently lost or recreated.

use rota_core::{Provenance, Secret, SecretStore, StoreError};
use rota_state::{SqliteStore, State, StateConfig, StateError};

use crate::common::{T, TestResult, checkpoint, raw};

#[test]
fn corrupt_ciphertext_fails_that_version_only() -> TestResult {
    let mut t = T::new();
    let (a, b) = (t.secret("a"), t.secret("b"));
    let ha = t.store.put("a", &a, &Provenance::default())?;
    let hb = t.store.put("b", &b, &Provenance::default())?;
    let c = raw(&t.state);
    let mut blob: Vec<u8> = c.query_row(
        "SELECT ciphertext FROM secret_versions WHERE name = 'a'",
        [],
        |r| r.get(0),
    )?;
    let last = blob.len() - 1;
    blob[last] ^= 0x01;
    c.execute(
        "UPDATE secret_versions SET ciphertext = ?1 WHERE name = 'a'",
        [blob],
    )?;
    match t.store.get(&ha) {
        Err(StoreError::Corrupt { handle, reason }) => {
            assert_eq!(handle, ha);
            assert!(reason.contains("damaged"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(t.store.get(&hb)?, b);
    // A damaged header is reported the same way.
    c.execute(
        "UPDATE secret_versions SET ciphertext = X'00112233' WHERE name = 'b'",
        [],
    )?;
    assert!(matches!(t.store.get(&hb), Err(StoreError::Corrupt { .. })));
    let report = t.state.check()?;
    assert_eq!(report.versions_checked, 2);
    assert_eq!(report.secrets.len(), 2, "{report:?}");
    assert!(report.database.is_empty());
    let text = rota_state::render::check_report(&report);
    assert!(
        text.starts_with("state DAMAGED:\n  secret a@1: secret a@1 could not be decrypted"),
        "{text}"
    );
    t.assert_no_leaks(&[("check", text.as_bytes())]);
    Ok(())
}

#[test]
fn a_damaged_identity_is_named_and_secrets_come_back_when_it_is_restored() -> TestResult {
    let mut t = T::new();
    let a = t.secret("a");
    let h = t.store.put("a", &a, &Provenance::default())?;
    let id_path = t.state_dir().join("identity.txt");
    let good = std::fs::read(&id_path)?;

    std::fs::write(&id_path, "AGE-SECRET-KEY-1GARBAGE\n")?;
    let err = t.store.get(&h).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains(&id_path.display().to_string()) && err.contains("damaged"),
        "{err}"
    );
    assert!(
        !err.contains("GARBAGE"),
        "the error must not echo key material: {err}"
    );
    assert_eq!(t.store.list()?.len(), 1, "listing needs no identity");

    // Another valid identity is not silently accepted.
    std::fs::remove_file(&id_path)?;
    rota_state::create_identity_file(&id_path, None, None)?;
    let err = t.store.get(&h).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("is not the identity this state's secrets are encrypted to"),
        "{err}"
    );

    // A missing identity is reported, never regenerated, and captures still commit.
    std::fs::remove_file(&id_path)?;
    let err = t.store.get(&h).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("does not exist") && err.contains("backup"), "{err}");
    assert!(!id_path.exists());
    let b = t.secret("b");
    let hb = t.store.put("b", &b, &Provenance::default())?;

    std::fs::write(&id_path, &good)?;
    assert_eq!(t.store.get(&h)?, a);
    assert_eq!(t.store.get(&hb)?, b);
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_corrupted_database_page_is_reported_and_other_secrets_stay_readable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = StateConfig::in_dir(dir.path().join("state"));
    let mut scanner = rota_testkit::LeakScanner::new();
    let small_a = Secret::new("small-secret-A-1234567890");
    let small_b = Secret::new("small-secret-B-0987654321");
    // Large enough to span several overflow pages.
    let big = Secret::new(format!("BIG-{}", "0123456789abcdef".repeat(1500)));
    scanner
        .add("a", small_a.expose())
        .add("b", small_b.expose())
        .add("big", big.expose());
    let (ha, hb, hbig, cipher);
    {
        let state = State::open_with(config.clone())?;
        let store = SqliteStore::new(state.clone());
        ha = store.put("a", &small_a, &Provenance::default())?;
        hbig = store.put("big", &big, &Provenance::default())?;
        hb = store.put("b", &small_b, &Provenance::default())?;
        cipher = raw(&state).query_row(
            "SELECT ciphertext FROM secret_versions WHERE name = 'big'",
            [],
            |r| r.get::<_, Vec<u8>>(0),
        )?;
    }
    let db_path = config.db_path();
    checkpoint(&db_path);
    let mut bytes = std::fs::read(&db_path)?;
    let mid = &cipher[cipher.len() / 2..cipher.len() / 2 + 32];
    let at = bytes
        .windows(mid.len())
        .position(|w| w == mid)
        .expect("ciphertext on disk");
    let page = at - at % 4096;
    // The first 4 bytes of an overflow page point to the next one.
    bytes[page..page + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x00]);
    std::fs::write(&db_path, &bytes)?;

    let state = State::open_with(config.clone())?;
    let store = SqliteStore::new(state.clone());
    assert_eq!(store.get(&ha)?, small_a);
    assert_eq!(store.get(&hb)?, small_b);
    assert_eq!(store.list()?.len(), 3, "nothing disappears from the listing");
    let err = store.get(&hbig).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("is damaged") && err.contains(&db_path.display().to_string()),
        "{err}"
    );
    let report = state.check()?;
    assert!(!report.database.is_empty(), "{report:?}");
    assert_eq!(report.secrets.len(), 1, "{report:?}");
    assert_eq!(report.secrets[0].0, "big@1");
    let mut hits = scanner
        .scan_sqlite(&db_path, &["secret_versions.ciphertext"])
        .unwrap_or_default();
    hits.extend(scanner.scan_dir(state.dir())?);
    rota_testkit::assert_no_leaks(&hits);
    Ok(())
}

#[test]
fn a_database_with_a_damaged_header_fails_to_open_naming_the_file() -> TestResult {
    let t = T::new();
    let config = t.state.config().clone();
    let db_path = config.db_path();
    drop(t.store);
    drop(t.state);
    checkpoint(&db_path);
    let mut bytes = std::fs::read(&db_path)?;
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&db_path, &bytes)?;
    let err = State::open_with(config).err();
    match &err {
        Some(StateError::DatabaseCorrupt { path, .. }) => assert_eq!(path, &db_path),
        other => panic!("expected DatabaseCorrupt, got {other:?}"),
    }
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("is damaged") && text.contains("backup"), "{text}");
    Ok(())
}
