//! The guided path: modeled actions disabled (as for a tenant that has not
//! enabled them), so every key-management step shows the seed's
//! instructions and asks for what the portal shows. At each prompt the test
//! does what the operator would, through the simulators' admin API (the
//! portal's screens), and types the value shown; the secret key goes in
//! without echo. The end state must be the automated run's. Also the
//! rehearsed guided path (`--rehearse --guided --yes`) against the
//! automated rehearsal.
//!
//! Design decision: the only automated step left on this path is the
//! documented one (verifying the new key by a signed request), so the run
//! proves the typed secret key is the real one before anything is deleted.

use serde_json::{Value, json};

use super::{
    ALICE_SECRET, BOB_SECRET, Tenant, add_months, assert_rolled_over, audit_of, events, keys_of,
    scan_rehearsal,
};
use crate::pty::Pty;
use crate::test::{Output, Test};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "never".to_owned(),
        other => other.to_string(),
    }
}

#[test]
fn guided_rollover_through_a_terminal_ends_like_the_automated_one() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, false);
    let t = Test::new_in(&tenant.t).file("inputs.yaml", tenant.bob_inputs(""));
    let pb = super::playbook();
    let mut pty = Pty::spawn(&t, &["run", &pb, "--inputs", "inputs.yaml", "--run-id", "g1"]);
    let profile = |s: &Tenant| {
        s.sims
            .admin("GET", "constellix", "/admin/ui/users/102/apikeys", None)
            .1
    };

    // 1. Manage Profile: the keys and their expiry, read off the profile.
    pty.expect("--- manual step keys ---");
    let keys = profile(&tenant);
    let old = keys["data"][0].clone();
    for (prompt, value) in [
        (
            "How many API keys does your profile list (1 or 2)",
            "1".to_owned(),
        ),
        ("ID of the key being replaced", text(&old["id"])),
        ("Its creation date", text(&old["createdAt"])),
        ("Its expiry date (RFC 3339), or never", text(&old["expiresAt"])),
        ("ID of the other key, or none", "none".to_owned()),
        ("The other key's API key, or none", "none".to_owned()),
        ("The other key's creation date, or none", "none".to_owned()),
        ("The other key's expiry date, never, or none", "none".to_owned()),
    ] {
        pty.expect(prompt);
        pty.type_line(&value);
    }

    // 2 and 3. Generate API Keys, 12 months: the portal shows the new key once.
    pty.expect("Generate a second API key for bob expiring in 12 months");
    pty.type_line("y");
    pty.expect("--- manual step generate ---");
    pty.expect("Click Generate API Keys on the left-hand side of the User window.");
    let (status, shown) = tenant.sims.admin(
        "POST",
        "constellix",
        "/admin/ui/users/102/apikeys",
        Some(&json!({"expiration": "12"})),
    );
    assert_eq!(status, 201, "{shown}");
    let new = shown["data"].clone();
    let secret = text(&new["secretKey"]);
    for (prompt, value) in [
        ("ID of the new key", text(&new["id"])),
        ("Its API key", text(&new["apiKey"])),
        ("Its creation date (RFC 3339)", text(&new["createdAt"])),
        ("Its expiry date (RFC 3339), or never", text(&new["expiresAt"])),
    ] {
        pty.expect(prompt);
        pty.type_line(&value);
    }
    pty.expect("Its secret key (input hidden)");
    pty.type_line(&secret);

    // 4. Two keys on the profile now.
    pty.expect("--- manual step listed ---");
    let keys = profile(&tenant);
    let (a, b) = (keys["data"][0].clone(), keys["data"][1].clone());
    for (prompt, value) in [
        ("How many API keys does your profile list now", "2".to_owned()),
        ("ID of the key being replaced", text(&a["id"])),
        ("Its creation date", text(&a["createdAt"])),
        ("Its expiry date, or never", text(&a["expiresAt"])),
        ("ID of the new key", text(&b["id"])),
        ("The new key's API key", text(&b["apiKey"])),
        ("The new key's creation date", text(&b["createdAt"])),
        ("The new key's expiry date, or never", text(&b["expiresAt"])),
    ] {
        pty.expect(prompt);
        pty.type_line(&value);
    }

    // The integration gets the new key pasted in, and is checked.
    pty.expect("--- manual step switch_by_hand ---");
    pty.expect("Have you completed");
    let (status, switched) = tenant.sims.admin(
        "POST",
        "consumers",
        "/admin/ui/consumers/switch",
        Some(&json!({"vendor": "constellix", "from_key": tenant.bob_api_key, "to_key_id": text(&new["id"])})),
    );
    assert_eq!(
        (status, switched),
        (200, json!({"switched": ["constellix-dns-sync"]}))
    );
    pty.type_line("y");
    pty.expect("--- manual step check_by_hand ---");
    let (_, call) = tenant.sims.admin(
        "POST",
        "consumers",
        "/admin/consumers/constellix-dns-sync/tick",
        None,
    );
    assert_eq!(call["ok"], true, "{call}");
    pty.expect("Does every switched integration work");
    pty.type_line("yes");

    // The old key, deleted last, on the profile.
    pty.expect("Delete API key 1003 of bob");
    pty.type_line("y");
    pty.expect("--- manual step delete_old ---");
    let (status, _) = tenant
        .sims
        .admin("DELETE", "constellix", "/admin/ui/users/102/apikeys/1003", None);
    assert_eq!(status, 204);
    pty.expect("ID of the key you deleted");
    pty.type_line("1003");

    // The administrator's export of the audit log.
    pty.expect("--- manual step audit ---");
    let (_, export) = tenant.sims.admin(
        "GET",
        "constellix",
        &format!("/admin/ui/audit/apikeys?apiKeyIds=1003,{}", text(&new["id"])),
        None,
    );
    for (prompt, field) in [
        ("How many creates", "create"),
        ("How many views", "view"),
        ("How many deletes", "delete"),
    ] {
        pty.expect(prompt);
        pty.type_line(&text(&export["counts"][field]));
    }
    let (code, screen) = pty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("run g1 succeeded"), "{screen}");
    assert!(
        screen.contains("find_users (")
            && screen.contains("consumers.list-consumers is not enabled for this target"),
        "{screen}"
    );

    assert_rolled_over(&tenant, 12);
    let stored = tenant.reveal(BOB_SECRET, 2);
    assert_eq!(stored, secret, "the typed secret key went to the store");
    let transcript = Output {
        status: code,
        stdout: screen,
        stderr: String::new(),
    };
    tenant.scan(&[&transcript], &[("the secret key typed", &secret)]);
}

/// What a rollover leaves at the vendors, without the timestamps and
/// addresses that differ between two runs.
fn essence(rehearsal: &Value) -> Value {
    let c = &rehearsal["vendors"]["constellix"]["state"];
    let keys: Vec<Value> = c["apiKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let expires_as_chosen = match &k["expiresAt"] {
                Value::Null => json!("never"),
                Value::String(e) => {
                    json!(add_months(k["createdAt"].as_str().unwrap_or_default(), 12) == *e)
                }
                other => other.clone(),
            };
            json!({"id": k["id"], "user": k["userId"], "apiKey": k["apiKey"], "twelveMonths": expires_as_chosen,
                   "secret": k["secretKeyFingerprint"]})
        })
        .collect();
    let log: Vec<Value> = [1001, 1002, 1003, 1004]
        .iter()
        .map(|id| json!([id, audit_of(c, *id)]))
        .collect();
    let consumers: Vec<Value> = rehearsal["vendors"]["consumers"]["state"]["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| json!({"id": x["id"], "credential": x["credential"], "failedCalls": x["failedCalls"]}))
        .collect();
    json!({"keys": keys, "log": log, "consumers": consumers})
}

#[test]
fn rehearsed_guided_path_reaches_the_automated_rehearsals_vendor_state() {
    let t = Test::new();
    let pb = super::playbook();
    let run = |guided: bool| -> (Output, Value) {
        let mut args = vec!["run", pb.as_str(), "--rehearse", "--yes", "--output", "json"];
        if guided {
            args.push("--guided");
        }
        let out = Test::new_in(&t).args(&args).run();
        assert_eq!(out.status, 0, "guided={guided}: {}\n{}", out.stdout, out.stderr);
        let last = events(&out).last().cloned().unwrap_or_default();
        (out, last)
    };
    let (auto_out, automated) = run(false);
    let (guided_out, guided) = run(true);
    assert!(
        guided_out.stdout.contains("\"path\":\"manual\""),
        "the guided run took manual paths"
    );
    let a = essence(&automated);
    assert_eq!(essence(&guided), a);
    assert_eq!(
        keys_of(&automated["vendors"]["constellix"]["state"], 102).len(),
        1,
        "{a}"
    );
    // Both runs stored bob's secret key (versions 1, 3) and a new one (2, 4).
    scan_rehearsal(
        &t,
        &[&auto_out, &guided_out],
        &[(BOB_SECRET, 4), (ALICE_SECRET, 2)],
    );
}
