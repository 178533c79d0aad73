//! The HMAC-chained audit log: verify catches every kind of tampering.

use rota_core::{Provenance, SecretStore};
use rota_state::{AuditEvent, AuditProblem, State, StateError};
use serde_json::json;

use crate::common::{T, TestResult, raw};

fn populated() -> T {
    let mut t = T::new();
    for i in 0..5 {
        let v = t.secret(&format!("v{i}"));
        let h = t
            .store
            .put(
                "plex/acme/s",
                &v,
                &Provenance {
                    key_id: Some(format!("kid-{i}")),
                    ..Provenance::default()
                },
            )
            .expect("put");
        t.store.promote(&h).expect("promote");
    }
    t
}

/// Lets the test play the attacker: the triggers only stop honest mistakes.
fn tamper(state: &State, sql: &str) {
    let c = raw(state);
    c.execute_batch(&format!(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {sql}"
    ))
    .expect("tamper");
}

#[test]
fn an_untouched_log_verifies_and_exports_names_and_key_ids_only() -> TestResult {
    let t = populated();
    t.state.audit_append(
        &AuditEvent::new("secret.rm")
            .secret("old/thing")
            .detail(json!({"reason": "cleanup"})),
    )?;
    let report = t.state.audit_verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 11);
    assert!(rota_state::render::audit_report(&report).starts_with("audit log intact: 11 entries"));
    let mut out = Vec::new();
    assert_eq!(t.state.audit_export_jsonl(&mut out)?, 11);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.clone())?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines[0]["action"], "secret.put");
    assert_eq!(lines[0]["secret"], "plex/acme/s@1");
    assert_eq!(lines[0]["key_id"], "kid-0");
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[1]["prev_mac"], lines[0]["mac"]);
    assert_eq!(lines[10]["detail"]["reason"], "cleanup");
    t.assert_no_leaks(&[("audit export", &out)]);
    Ok(())
}

#[test]
fn the_log_refuses_plain_updates_and_deletes() -> TestResult {
    let t = populated();
    let c = raw(&t.state);
    assert!(
        c.execute("UPDATE audit SET action = 'x' WHERE seq = 1", [])
            .is_err()
    );
    assert!(c.execute("DELETE FROM audit WHERE seq = 1", []).is_err());
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn an_edited_entry_is_detected() -> TestResult {
    let t = populated();
    tamper(&t.state, "UPDATE audit SET key_id = 'kid-forged' WHERE seq = 3;");
    let report = t.state.audit_verify()?;
    assert_eq!(report.problems, vec![AuditProblem::Edited { seq: 3 }]);
    let text = rota_state::render::audit_report(&report);
    assert!(
        text.contains("TAMPERED") && text.contains("entry 3 was altered"),
        "{text}"
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_deleted_entry_is_detected() -> TestResult {
    let t = populated();
    tamper(&t.state, "DELETE FROM audit WHERE seq = 4;");
    let problems = t.state.audit_verify()?.problems;
    assert!(
        problems.contains(&AuditProblem::Gap { after: 3, next: 5 }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&AuditProblem::BrokenChain { seq: 5 }),
        "{problems:?}"
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_cut_off_tail_is_detected() -> TestResult {
    let t = populated();
    tamper(&t.state, "DELETE FROM audit WHERE seq >= 9;");
    let problems = t.state.audit_verify()?.problems;
    assert_eq!(
        problems,
        vec![AuditProblem::HeadMismatch {
            last_seq: 8,
            head_seq: Some(10)
        }]
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn reordered_entries_are_detected() -> TestResult {
    let t = populated();
    // Swap the contents of entries 2 and 3, keeping their sequence numbers.
    tamper(
        &t.state,
        "CREATE TEMP TABLE s AS SELECT * FROM audit WHERE seq IN (2, 3);
         UPDATE audit SET at = (SELECT at FROM s WHERE seq = 5 - audit.seq),
                          action = (SELECT action FROM s WHERE seq = 5 - audit.seq),
                          secret = (SELECT secret FROM s WHERE seq = 5 - audit.seq),
                          key_id = (SELECT key_id FROM s WHERE seq = 5 - audit.seq),
                          detail = (SELECT detail FROM s WHERE seq = 5 - audit.seq),
                          prev_mac = (SELECT prev_mac FROM s WHERE seq = 5 - audit.seq),
                          mac = (SELECT mac FROM s WHERE seq = 5 - audit.seq)
         WHERE seq IN (2, 3);",
    );
    let problems = t.state.audit_verify()?.problems;
    assert!(
        problems.contains(&AuditProblem::Edited { seq: 2 }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&AuditProblem::Edited { seq: 3 }),
        "{problems:?}"
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_forged_entry_without_the_key_is_detected() -> TestResult {
    let t = populated();
    tamper(
        &t.state,
        "INSERT INTO audit (seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac, mac)
         SELECT seq + 1, at, os_user, host, operator, 'secret.promote', secret, key_id, run_id, detail, mac,
                'f00d' FROM audit WHERE seq = 10;",
    );
    let problems = t.state.audit_verify()?.problems;
    assert!(
        problems.contains(&AuditProblem::Edited { seq: 11 }),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, AuditProblem::HeadMismatch { .. })),
        "{problems:?}"
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn a_missing_audit_key_is_an_error_not_a_new_chain() -> TestResult {
    let t = populated();
    let config = t.state.config().clone();
    std::fs::remove_file(config.audit_key_path())?;
    let fresh = State::open_with(config.clone())?;
    let err = fresh.audit_verify().err();
    assert!(matches!(err, Some(StateError::AuditKey { .. })), "{err:?}");
    assert!(!config.audit_key_path().exists());
    t.assert_no_leaks(&[]);
    Ok(())
}
