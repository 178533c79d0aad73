//! Secret values never reach stdout or stderr, at any log level, in any
//! output format. (The state issue's scanner extends this to the journal,
//! the audit log and the database.)

use base64::Engine;

use crate::test::{Test, repo};

/// Every form in which a value could leak: raw, base64 at each alignment,
/// URL-encoded, JSON-escaped.
pub fn leak_forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![
        secret.to_owned(),
        serde_json::to_string(secret).unwrap_or_default(),
    ];
    for pad in 0..3 {
        let padded = format!("{}{secret}", "x".repeat(pad));
        let enc = b64.encode(padded.as_bytes());
        // Skip the characters that depend on the prefix and the tail.
        let start = (pad * 4).div_ceil(3) + 1;
        let inner: String = enc
            .chars()
            .skip(start)
            .take(enc.len().saturating_sub(start + 4))
            .collect();
        if inner.len() >= 8 {
            forms.push(inner);
        }
    }
    forms.push(
        secret
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    );
    forms
}

pub fn assert_no_leak(secret: &str, haystacks: &[(&str, &str)]) {
    for form in leak_forms(secret) {
        for (name, text) in haystacks {
            assert!(
                !text.contains(&form),
                "secret leaked into {name} as {form:?}:\n{text}"
            );
        }
    }
}

#[test]
fn the_scanner_catches_every_form_it_looks_for() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = "planted-secret-value-123";
    for leaked in [
        secret.to_owned(),
        format!("prefix {}", b64.encode(format!("a{secret}"))),
        format!("Authorization: Basic {}", b64.encode(format!("id:{secret}"))),
        "planted%2Dsecret%2Dvalue%2D123".to_owned(),
    ] {
        let caught = std::panic::catch_unwind(|| assert_no_leak(secret, &[("planted", &leaked)]));
        assert!(caught.is_err(), "missed a leak: {leaked}");
    }
    assert_no_leak(secret, &[("clean", "nothing to see here")]);
}

#[test]
fn the_drill_never_prints_its_secret_at_any_log_level_or_format() {
    let secret = "drill-secret-7f3a9c";
    for args in [
        vec!["run", "--yes", "-vvv"],
        vec!["run", "--yes", "--output", "json", "-vvv"],
        vec!["plan", "-vvv"],
    ] {
        let mut full = args.clone();
        let example = repo().join("examples/key-handover.yaml");
        let inputs = repo().join("examples/key-handover.inputs.yaml");
        let (example, inputs) = (
            example.to_string_lossy().into_owned(),
            inputs.to_string_lossy().into_owned(),
        );
        full.extend([example.as_str(), "--inputs", inputs.as_str()]);
        let out = Test::new().env("RUST_LOG", "trace").args(&full).run();
        assert_eq!(out.status, 0, "{args:?}: {}", out.stderr);
        assert_no_leak(secret, &[("stdout", &out.stdout), ("stderr", &out.stderr)]);
    }
}

#[test]
fn a_failed_run_with_a_secret_never_prints_it() {
    let secret = "failing-run-secret-99";
    let out = Test::new()
        .file(
            "p.yaml",
            "name: t\ndescription: t\nsecrets:\n  s: {name: demo/s}\nsteps:\n  - id: ask\n    manual:\n      instructions: paste\n      outputs:\n        secret: {prompt: secret, type: secret, secret: s}\n  - id: boom\n    uses: core.assert\n    with: {that: false, message: boom}\non_failure:\n  - id: drop\n    uses: core.secret.discard\n    with: {secret: \"{{steps.ask.outputs.secret}}\"}\n",
        )
        .file("in.yaml", format!("manual:\n  ask:\n    secret: {secret}\n"))
        .args(&["run", "p.yaml", "--inputs", "in.yaml", "--output", "json", "-vvv"])
        .run();
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(r#""id":"drop","name":"drop","section":"on_failure""#),
        "{}",
        out.stdout
    );
    assert_no_leak(secret, &[("stdout", &out.stdout), ("stderr", &out.stderr)]);
}
