//! `rota state backup`: a consistent online copy, restorable with the identity.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rota_core::{Provenance, Secret, SecretStore};
use rota_state::{SqliteStore, State, StateConfig};

use crate::common::{T, TestResult, mode};

#[test]
fn a_backup_taken_while_another_connection_writes_is_consistent_and_restorable() -> TestResult {
    let mut t = T::new();
    let first = t.secret("first");
    let h = t.store.put("base/secret", &first, &Provenance::default())?;
    t.store.promote(&h)?;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let store = SqliteStore::new(t.reopen());
        std::thread::spawn(move || -> Result<usize, String> {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 200 {
                let v = Secret::new(format!("churn-value-{n}-0123456789"));
                store
                    .put(&format!("churn/{}", n % 7), &v, &Provenance::default())
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok(n)
        })
    };
    for i in 0..200 {
        t.scanner
            .add(&format!("churn{i}"), &format!("churn-value-{i}-0123456789"));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let dest = t.dir.path().join("backup.db");
    t.state.backup(&dest)?;
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().map_err(|_| "writer panicked")??;
    assert!(written > 0);
    assert_eq!(mode(&dest), 0o600);
    assert!(t.state.backup(&dest).is_err(), "never overwrites");

    // Restore: the backup database plus the identity and audit key.
    let restored = t.dir.path().join("restored");
    std::fs::create_dir(&restored)?;
    std::fs::copy(&dest, restored.join("state.db"))?;
    std::fs::copy(t.state_dir().join("identity.txt"), restored.join("identity.txt"))?;
    std::fs::copy(t.state_dir().join("audit.key"), restored.join("audit.key"))?;
    let state = State::open_with(StateConfig::in_dir(&restored))?;
    let report = state.check()?;
    assert!(report.is_ok(), "{report:?}");
    let store = SqliteStore::new(state.clone());
    assert_eq!(store.get(&h)?, first);
    for s in store.list()? {
        for v in store.versions(&s.name)? {
            store.get(&v.handle)?;
        }
    }
    let mut hits = t.scanner.scan_file(&dest)?;
    hits.extend(t.scanner.scan_sqlite(&dest, &["secret_versions.ciphertext"])?);
    rota_testkit::assert_no_leaks(&hits);
    t.assert_no_leaks(&[]);
    Ok(())
}
