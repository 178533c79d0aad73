//! The commands around a run: validate, list, show, schema, completions, and
//! the README's first command.

use crate::test::{Test, repo};

const OK: &str = "name: hello\ndescription: Says hello.\nsteps:\n  - id: greet\n    uses: core.log\n    with: {message: hello}\n";

#[test]
fn a_10_mb_playbook_is_refused_before_parsing() {
    let big = format!("{OK}# {}\n", "x".repeat(10 * 1024 * 1024));
    Test::new().file("playbook.yaml", &big).args(&["validate", "playbook.yaml"]).expect(
        2,
        "invalid playbook.yaml\n",
        &format!(
            "error: playbook.yaml: file is {} bytes; playbooks are limited to 1048576 bytes (1 MiB)\n\nerror: 1 of 1 playbooks are invalid\n",
            big.len()
        ),
    );
}

#[test]
fn a_10_mb_file_of_many_lines_is_refused_too() {
    let big = format!(
        "{OK}{}",
        "# padding line of a playbook that is far too long\n".repeat(210_000)
    );
    let out = Test::new()
        .file("playbook.yaml", &big)
        .args(&["validate", "playbook.yaml"])
        .run();
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.starts_with("error: playbook.yaml: file is 10500"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_without_arguments_checks_the_search_path() {
    Test::new()
        .file("playbooks/hello.yaml", OK)
        .args(&["validate"])
        .expect(0, "ok      playbooks/hello.yaml (hello)\n1 playbook valid\n", "");
}

#[test]
fn the_repository_playbooks_and_examples_validate() {
    let repo = repo();
    for dir in ["playbooks", "examples"] {
        let out = Test::new()
            .args(&["validate", &repo.join(dir).to_string_lossy()])
            .run();
        assert_eq!(out.status, 0, "{dir}: {}{}", out.stdout, out.stderr);
    }
}

#[test]
fn list_shows_names_and_descriptions_and_flags_invalid_files() {
    Test::new()
        .file("playbooks/hello.yaml", OK)
        .file("playbooks/broken.yaml", "name: broken\n")
        .file("playbooks/hello.rehearse.yaml", "not: a playbook\n")
        .args(&["list"])
        .expect(
            0,
            "broken  invalid: playbooks/broken.yaml:1:1: missing field \"description\"\nhello   Says hello.\n",
            "",
        );
}

#[test]
fn playbooks_are_found_by_name_on_rota_playbook_path() {
    let t = Test::new().file("elsewhere/hello.yaml", OK);
    let dir = t.path().join("elsewhere").to_string_lossy().into_owned();
    t.env("ROTA_PLAYBOOK_PATH", &dir)
        .args(&["run", "hello", "--run-id", "t1"])
        .expect(
            0,
            "run t1: hello\n  greet: hello\nok        greet\nrun t1 succeeded\n",
            "",
        );
}

#[test]
fn show_describes_inputs_secrets_and_steps() {
    let example = repo().join("examples/key-handover.yaml");
    let out = Test::new().args(&["show", &example.to_string_lossy()]).run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    for expected in [
        "key-handover-drill\n",
        "  owner (string, default \"ops-team\"): Team that receives the new key\n",
        "  drill_key: drill/{{inputs.owner}}/key\n",
        "  2. Mint the key in the vendor console [mint] (manual)\n",
        "       confirm: Make key {{steps.mint.outputs.key_id}} the current key of {{inputs.owner}}?\n",
        "on_failure:\n  1. Drop the unused key (added for safety) [discard] (core.secret.discard)\n",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn schema_is_json_schema_generated_from_the_playbook_types() {
    let out = Test::new().args(&["schema"]).run();
    assert_eq!(out.status, 0);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(schema["title"], "Playbook");
    assert_eq!(
        schema["required"],
        serde_json::json!(["name", "description", "steps"])
    );
    assert_eq!(schema["additionalProperties"], false);
    let step = &schema["$defs"]["Step"];
    assert_eq!(step["additionalProperties"], false);
    for field in [
        "id",
        "uses",
        "with",
        "if",
        "for_each",
        "retry",
        "timeout",
        "confirm",
        "recoverable",
        "manual",
        "captures",
    ] {
        assert!(
            step["properties"].get(field).is_some(),
            "Step schema lacks {field}"
        );
    }
}

#[test]
fn completions_are_generated_for_bash() {
    let out = Test::new().args(&["completions", "bash"]).run();
    assert_eq!(out.status, 0);
    assert!(out.stdout.contains("_rota()"), "{}", out.stdout);
}

#[test]
fn the_readme_demo_runs_end_to_end() {
    let example = repo().join("examples/key-handover.yaml");
    let inputs = repo().join("examples/key-handover.inputs.yaml");
    Test::new()
        .args(&[
            "run",
            &example.to_string_lossy(),
            "--inputs",
            &inputs.to_string_lossy(),
            "--yes",
            "--run-id",
            "t1",
        ])
        .expect(
            0,
            "run t1: key-handover-drill
  announce: handing a new key to ops-team for 2 consumers
ok        announce
ok        mint
ok        check_id
  switch: consumer billing now uses key k-7f3a-drill
  switch: consumer reporting now uses key k-7f3a-drill
ok        switch
  promote: confirmed by --yes: Make key k-7f3a-drill the current key of ops-team?
ok        promote
  summary: drill t1 finished
ok        summary
run t1 succeeded
",
            "",
        );
}

#[test]
fn a_yes_piped_into_stdin_is_not_a_confirmation() {
    // Regression guard: only a person at a terminal (or --yes) confirms.
    let out = Test::new()
        .file(
            "p.yaml",
            "name: t\ndescription: t\nsteps:\n  - id: delete\n    confirm: Delete secret 8a1f?\n    uses: core.log\n    with: {message: deleted}\n",
        )
        .args(&["run", "p.yaml", "--run-id", "t1"])
        .stdin("y\n")
        .run();
    assert_eq!(out.status, 1);
    assert!(!out.stdout.contains("deleted"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("needs a confirmation and no one can answer (not a terminal)"),
        "{}",
        out.stderr
    );
}

#[test]
fn sims_serve_prints_every_origin_and_serves_until_killed() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(crate::test::ROTA)
        .args(["sims", "serve", "--seed", "7"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rota sims serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(6)
        .map(|l| l.expect("a line"))
        .collect();
    let systems: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(
        systems,
        vec![
            "plex",
            "demandcaster",
            "plytix",
            "soar",
            "constellix",
            "consumers"
        ]
    );
    let plex_api = lines
        .first()
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("api=")))
        .expect("plex api origin")
        .to_owned();
    assert!(plex_api.starts_with("http://127.0.0.1:"), "{plex_api}");
    // The vendor API answers on loopback (an unauthenticated call is refused the Plex way).
    let addr = plex_api.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the Plex simulator");
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /platform/v1/client-applications HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send a request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("REQUEST_NOT_AUTHENTICATED"), "{reply}");
}
