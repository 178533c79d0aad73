//! `rota secrets export` and `get --reveal`.

use std::process::Command;

use rota_core::{Provenance, SecretStore};
use rota_state::{ExportSelection, create_identity_file};

use crate::common::{T, TestResult};

fn age_binary() -> bool {
    let found = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "\n!!!!!!!!\n!!! SKIPPED: the `age` CLI is not installed (apt-get install age); the export is NOT \
             checked against the real age binary\n!!!!!!!!\n"
        );
    }
    found
}

#[test]
fn the_age_cli_decrypts_an_export() -> TestResult {
    let mut t = T::new();
    let (a1, a2, b) = (t.secret("a1"), t.secret("a2"), t.secret("b"));
    let h1 = t
        .store
        .put("plex/acme/client-secret", &a1, &Provenance::default())?;
    t.store.promote(&h1)?;
    t.store
        .put("plex/acme/client-secret", &a2, &Provenance::default())?;
    t.store.put("soar/key", &b, &Provenance::default())?;

    let other_id = t.dir.path().join("other.txt");
    let other = create_identity_file(&other_id, None, None)?;
    let one = t
        .store
        .export(&ExportSelection::Name("plex/acme/client-secret".into()), &[])?;
    let all = t.store.export(&ExportSelection::All, &[other.to_string()])?;
    assert!(one.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let one_path = t.dir.path().join("one.age");
    let all_path = t.dir.path().join("all.age");
    std::fs::write(&one_path, &one)?;
    std::fs::write(&all_path, &all)?;
    // The export itself is ciphertext: no leak in it.
    t.assert_no_leaks(&[("export one", one.as_bytes()), ("export all", all.as_bytes())]);
    assert!(
        t.store
            .export(&ExportSelection::Name("nope".into()), &[])
            .is_err()
    );

    if !age_binary() {
        return Ok(());
    }
    let identity = t.state_dir().join("identity.txt");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&one_path)
        .output()?;
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["format"], rota_state::EXPORT_FORMAT);
    let secrets = doc["secrets"].as_array().cloned().unwrap_or_default();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0]["value"], a1.expose());
    assert_eq!(secrets[0]["stages"], serde_json::json!(["current"]));
    assert_eq!(secrets[1]["value"], a2.expose());
    assert_eq!(secrets[1]["stages"], serde_json::json!(["pending"]));

    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&other_id)
        .arg(&all_path)
        .output()?;
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let names: Vec<&str> = doc["secrets"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["plex/acme/client-secret", "plex/acme/client-secret", "soar/key"]
    );
    assert_eq!(doc["secrets"][2]["value"], b.expose());
    Ok(())
}

#[test]
fn reveal_returns_the_value_and_audits_who_saw_which_version() -> TestResult {
    let mut t = T::new();
    let v = t.secret("v");
    let h = t.store.put(
        "plex/acme/s",
        &v,
        &Provenance {
            key_id: Some("kid-77".into()),
            ..Provenance::default()
        },
    )?;
    assert_eq!(t.store.reveal(&h)?, v);
    let entries = t.state.audit_entries()?;
    let reveal = entries
        .iter()
        .find(|e| e.action == "secret.reveal")
        .expect("reveal audited");
    assert_eq!(reveal.secret.as_deref(), Some("plex/acme/s@1"));
    assert_eq!(reveal.key_id.as_deref(), Some("kid-77"));
    assert!(!reveal.os_user.is_empty() && !reveal.host.is_empty());
    // get through the trait (the executor's path) does not audit.
    let before = t.state.audit_entries()?.len();
    t.store.get(&h)?;
    assert_eq!(t.state.audit_entries()?.len(), before);
    t.assert_no_leaks(&[]);
    Ok(())
}
