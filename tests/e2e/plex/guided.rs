//! plex-api-key-reset as a person runs it against a tenant where rota's
//! modeled actions are off: every Plex and DemandCaster step shows the
//! seed's instructions and asks for what the screen shows. The test is that
//! person: at each prompt it does the documented click through the
//! simulators' admin API and types what appeared, under a real terminal.
//!
//! Design decision: the test answers from what the simulators show, never
//! from what it knows in advance, so a prompt asking for the wrong thing (or
//! in the wrong order) fails here.

use serde_json::Value;

use super::{INPUTS, Rig, reset_done};
use crate::pty::Pty;
use crate::test::repo;

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn guided_reset_through_a_terminal_ends_like_the_automated_one() {
    let mut rig = Rig::start("{}", false);
    let client = rig.fixture.client_id.clone();
    let playbook = repo().join("playbooks/plex-api-key-reset.yaml");
    let playbook = playbook.display().to_string();
    let mut args = vec!["run", playbook.as_str()];
    args.extend(INPUTS);
    args.extend(["--run-id", "g1"]);
    let mut pty = Pty::spawn(&rig.t, &args);
    let sims = rig.sims.clone();
    let admin = |method: &str, system: &str, path: &str, body: Option<Value>| {
        let (status, v) = sims.admin(method, system, path, body.as_ref());
        assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
        v
    };

    // Plex UX: the Client Applications screen.
    pty.expect("Go to Plex UX and type in your user credentials");
    pty.expect("? Client Id of the application (the blue Client Id link): ");
    let app = admin(
        "GET",
        "plex",
        "/admin/ui/client-applications?customerId=123456&name=DemandCaster",
        None,
    );
    pty.type_line(&text(&app, "clientId"));

    // The secrets grid, read row by row.
    pty.expect("(Secrets Grid)");
    let grid = admin(
        "GET",
        "plex",
        &format!("/admin/ui/client-applications/{client}/secrets"),
        None,
    );
    let (expired, old) = (text(&grid, "expiredId"), text(&grid, "nextToExpireId"));
    for (prompt, answer) in [
        (
            "? ID of the expired secret (none if no secret has expired): ",
            text(&grid, "expiredId"),
        ),
        (
            "? Its Created date as the grid shows it (- if none): ",
            text(&grid, "expiredCreated"),
        ),
        (
            "? Its Valid Until date as the grid shows it (- if none): ",
            text(&grid, "expiredValidUntil"),
        ),
        (
            "? ID of the still-valid secret that expires first (none if there is none): ",
            old.clone(),
        ),
        (
            "? Its Created date (- if none): ",
            text(&grid, "nextToExpireCreated"),
        ),
        (
            "? Its Valid Until date (- if none): ",
            text(&grid, "nextToExpireValidUntil"),
        ),
        (
            "? Does it expire within that many days? (yes/no): ",
            "yes".to_owned(),
        ),
    ] {
        pty.expect(prompt);
        pty.type_line(&answer);
    }

    // rota's confirmation names the row; the portal's does not.
    pty.expect(&format!(
        "? Delete the EXPIRED secret {expired} of DemandCaster (PCN 123456), created {}, valid until {}? \
         Plex's own delete confirmation does not say which secret it deletes; rota deletes exactly this ID. [y/N] ",
        text(&grid, "expiredCreated"),
        text(&grid, "expiredValidUntil")
    ));
    pty.type_line("y");
    pty.expect(&format!("Click anywhere in the row of secret {expired}"));
    pty.expect("? Have you completed \"Delete the expired secret\" as described above? [y/N] ");
    admin(
        "DELETE",
        "plex",
        &format!("/admin/ui/client-applications/{client}/secrets/{expired}"),
        None,
    );
    pty.type_line("y");

    // Add: the New Secret is shown once; it is typed without echo.
    pty.expect("this is the ONLY time you see it");
    pty.expect("? The New Secret (input hidden): ");
    let added = admin(
        "POST",
        "plex",
        &format!("/admin/ui/client-applications/{client}/secrets"),
        Some(serde_json::json!({"validDays": 365})),
    );
    let new_secret = text(&added, "secret");
    rig.learned("the new secret, as typed", &new_secret);
    pty.type_line(&new_secret);
    pty.expect("? ID of the new secret: ");
    pty.type_line(&text(&added, "id"));
    pty.expect("? Its Valid Until, as YYYY-MM-DDThh:mm:ssZ: ");
    pty.type_line(&text(&added, "validUntil"));

    // DemandCaster.
    pty.expect("? The business node's name as the list shows it: ");
    let node = admin("GET", "demandcaster", "/admin/ui/business-nodes/1042", None);
    pty.type_line(&text(&node, "name"));
    pty.expect(
        "? DemandCaster asks \"Are you sure you want to enter this company?\": enter business node 1042 \
         (Acme Manufacturing)? [y/N] ",
    );
    pty.type_line("y");
    pty.expect("? Have you completed \"Enter the business node\" as described above? [y/N] ");
    pty.type_line("y");
    pty.expect("Click on the edit icon next to PCN 123456.");
    pty.expect("? Have you completed \"Open the PCN connection in the Data Hub\" as described above? [y/N] ");
    pty.type_line("y");
    pty.expect(&format!("it must be {client}"));
    pty.expect("? Have you completed \"Update the connection's Client Id and Client Secret\" as described above? [y/N] ");
    admin(
        "PUT",
        "demandcaster",
        "/admin/ui/business-nodes/1042/pcns/123456",
        Some(serde_json::json!({"clientId": client, "clientSecret": new_secret})),
    );
    pty.type_line("y");
    pty.expect("? Did the connection test pass? (yes/no): ");
    let test = admin(
        "POST",
        "demandcaster",
        "/admin/ui/business-nodes/1042/pcns/123456/test",
        None,
    );
    assert_eq!(test["ok"], true, "{test}");
    pty.type_line("yes");

    // Last, the old secret, by the ID read from the grid.
    pty.expect(&format!(
        "Delete the OLD secret {old} of DemandCaster (PCN 123456)"
    ));
    pty.type_line("y");
    pty.expect(&format!("not the new secret {}", text(&added, "id")));
    pty.expect("? Have you completed \"(added) Delete the old secret, last\" as described above? [y/N] ");
    admin(
        "DELETE",
        "plex",
        &format!("/admin/ui/client-applications/{client}/secrets/{old}"),
        None,
    );
    pty.type_line("y");
    let (code, seen) = pty.finish();
    rig.keep("the terminal", &seen);
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("run g1 succeeded"), "{seen}");
    assert_eq!(rig.outcome(), reset_done());
    rig.scan();
}

/// Seed rules at a terminal, with the modeled actions on: rota's delete
/// confirmation names the exact secret and dates (answered yes), and
/// entering DemandCaster's business node waits for its own confirmation
/// (answered no): the run stops there, and since DemandCaster never got the
/// new secret, compensation deletes it at Plex and drops it from the store.
#[test]
fn declining_to_enter_the_business_node_stops_the_run_and_removes_the_unused_secret() {
    let mut rig = Rig::start("{}", true);
    let f = rig.fixture.clone();
    let grid = rig.sims.admin(
        "GET",
        "plex",
        &format!("/admin/ui/client-applications/{}/secrets", f.client_id),
        None,
    );
    let playbook = repo()
        .join("playbooks/plex-api-key-reset.yaml")
        .display()
        .to_string();
    let mut args = vec!["run", playbook.as_str()];
    args.extend(INPUTS);
    args.extend(["--run-id", "d1"]);
    let mut pty = Pty::spawn(&rig.t, &args);
    pty.expect(&format!(
        "? Delete the EXPIRED secret {} of DemandCaster (PCN 123456), created {}, valid until {}? \
         Plex's own delete confirmation does not say which secret it deletes; rota deletes exactly this ID. [y/N] ",
        f.expired.0,
        text(&grid.1, "expiredCreated"),
        text(&grid.1, "expiredValidUntil")
    ));
    pty.type_line("y");
    pty.expect(
        "? DemandCaster asks \"Are you sure you want to enter this company?\": enter business node 1042 \
         (Acme Manufacturing)? [y/N] ",
    );
    pty.type_line("n");
    let (code, seen) = pty.finish();
    rig.keep("the terminal", &seen);
    assert_eq!(code, 3, "declined: {seen}");
    assert!(seen.contains("delete_unused_secret"), "{seen}");
    assert_eq!(
        rig.outcome(),
        serde_json::json!({
            "plex": ["old"],
            "demandcaster": {"client_id": "unchanged", "secret": "old", "last_test_ok": null},
            "store": [],
            "untouched": true,
        })
    );
    let dc = rig.sims.state("demandcaster");
    assert!(
        dc["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["enteredBusinessNode"].is_null()),
        "no business node was entered: {dc}"
    );
    rig.scan();
}
