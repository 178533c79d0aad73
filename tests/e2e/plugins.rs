//! Plugins through the real binary: the test plugins built from source by
//! rota-host's build script, an operator config granting a loopback origin,
//! and a secret injected by the host into a real HTTP request.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use rota_testkit::{LeakScanner, assert_no_leaks};

use crate::test::Test;

/// A one-request HTTP server on loopback that reports the request it got.
fn one_shot_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let origin = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                request.push_str(&line);
                line.clear();
            }
            let _ = tx.send(request);
            let body = r#"{"ok":true}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    (origin, rx)
}

fn with_echo_plugin(origin: &str) -> Test {
    let t = Test::new();
    let dir = t.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::copy(rota_host::test_plugins::ECHO, dir.join("echo.wasm")).expect("copy the echo plugin");
    let config = format!(
        "plugin_dirs: [{}]\nplugins:\n  echo:\n    targets:\n      - name: local\n        origins: [\"{origin}\"]\n",
        dir.display()
    );
    t.file(".config/rota/rota.yaml", config)
}

#[test]
fn plugins_list_and_inspect_show_declared_and_granted_capabilities() {
    let t = with_echo_plugin("http://127.0.0.1:9");
    let list = Test::new_in(&t).args(&["plugins", "list"]).run();
    assert_eq!(list.status, 0, "{}", list.stderr);
    assert!(
        list.stdout.lines().any(|l| l.starts_with("echo ")),
        "{}",
        list.stdout
    );
    let inspect = Test::new_in(&t).args(&["plugins", "inspect", "echo"]).run();
    assert_eq!(inspect.status, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.contains("http://127.0.0.1:9"),
        "granted origin shown:\n{}",
        inspect.stdout
    );
    assert!(inspect.stdout.contains("echo"), "{}", inspect.stdout);
    let json = Test::new_in(&t)
        .args(&["plugins", "inspect", "echo", "--output", "json"])
        .run();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["name"], "echo");
    let missing = Test::new_in(&t).args(&["plugins", "inspect", "nope"]).run();
    assert_eq!(missing.status, 2);
}

#[test]
fn a_playbook_step_runs_a_plugin_action() {
    let t = with_echo_plugin("http://127.0.0.1:9").file(
        "p.yaml",
        "name: t\ndescription: t\nsteps:\n  - id: say\n    uses: echo.echo\n    with: {message: hello from a component}\n  - id: show\n    uses: core.log\n    with: {message: \"echo said {{steps.say.outputs.message}} on attempt {{steps.say.outputs.attempt}}\"}\n",
    );
    let run = Test::new_in(&t).args(&["run", "p.yaml", "--run-id", "t1"]).run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("echo said hello from a component on attempt 1"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_host_injects_a_stored_secret_into_a_granted_request_and_nowhere_else() {
    const TOKEN: &str = "bearer-token-value-0b7d";
    let (origin, requests) = one_shot_server();
    let t = with_echo_plugin(&origin).file(
        "p.yaml",
        format!(
            "name: t\ndescription: t\ninputs:\n  token: {{type: secret, send_to: [echo]}}\nsteps:\n  - id: call\n    uses: echo.get\n    with:\n      url: \"{origin}/v1/things\"\n      token: \"{{{{inputs.token}}}}\"\n"
        ),
    );
    assert_eq!(
        Test::new_in(&t)
            .args(&["secrets", "put", "demo/token"])
            .stdin(TOKEN)
            .run()
            .status,
        0
    );
    let run = Test::new_in(&t)
        .args(&[
            "run",
            "p.yaml",
            "-i",
            "token=demo/token",
            "--run-id",
            "t1",
            "-vvv",
        ])
        .run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let request = requests
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the server got a request");
    assert!(request.starts_with("GET /v1/things"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {}", TOKEN.to_ascii_lowercase())),
        "the host injected the token: {request}"
    );
    let mut scanner = LeakScanner::new();
    scanner.add("token", TOKEN);
    let mut hits = scanner.scan_bytes("stdout", run.stdout.as_bytes());
    hits.extend(scanner.scan_bytes("stderr", run.stderr.as_bytes()));
    hits.extend(scanner.scan_rota_state(&t.state_dir()).expect("scan state"));
    assert_no_leaks(&hits);
}

#[test]
fn a_secret_not_bound_to_the_plugin_is_refused() {
    let (origin, _requests) = one_shot_server();
    let t = with_echo_plugin(&origin).file(
        "p.yaml",
        format!(
            "name: t\ndescription: t\ninputs:\n  token: {{type: secret}}\nsteps:\n  - id: call\n    uses: echo.get\n    with:\n      url: \"{origin}/v1/things\"\n      token: \"{{{{inputs.token}}}}\"\n"
        ),
    );
    assert_eq!(
        Test::new_in(&t)
            .args(&["secrets", "put", "demo/token"])
            .stdin("unbound-secret-1")
            .run()
            .status,
        0
    );
    let run = Test::new_in(&t)
        .args(&["run", "p.yaml", "-i", "token=demo/token", "--run-id", "t1"])
        .run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("echo"), "{}", run.stderr);
    assert!(!run.stdout.contains("unbound-secret-1") && !run.stderr.contains("unbound-secret-1"));
}

/// A plugin replaced between the crash and the resume refuses the resume
/// (naming the plugin and both digests) unless forced.
#[cfg(feature = "crash-points")]
#[test]
fn a_changed_plugin_refuses_the_resume_unless_forced() {
    let t = with_echo_plugin("http://127.0.0.1:9").file(
        "p.yaml",
        "name: t\ndescription: t\nsteps:\n  - id: say\n    uses: echo.echo\n    with: {message: one}\n  - id: again\n    uses: echo.echo\n    with: {message: two}\n",
    );
    let crashed = Test::new_in(&t)
        .env("ROTA_CRASH_AT", "again:start")
        .args(&["run", "p.yaml", "--run-id", "r1"])
        .run();
    assert!(
        crashed.stderr.contains("crash point again:start reached"),
        "{}",
        crashed.stderr
    );
    let recorded = Test::new_in(&t)
        .args(&["runs", "show", "r1", "--output", "json"])
        .run();
    let v: serde_json::Value = serde_json::from_str(&recorded.stdout).expect("JSON");
    let digest = v["plugin_digests"]["echo"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        digest.len(),
        64,
        "the run journaled the plugin digest: {}",
        recorded.stdout
    );

    // Same plugin, one more custom section: a different digest.
    let wasm = t.path().join("plugins/echo.wasm");
    let mut bytes = std::fs::read(&wasm).expect("read the plugin");
    bytes.extend_from_slice(&[0, 6, 5, b'x', b'-', b'n', b'e', b'w']);
    std::fs::write(&wasm, bytes).expect("rewrite the plugin");
    let refused = Test::new_in(&t).args(&["runs", "resume", "r1"]).run();
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("echo"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&digest),
        "names the recorded digest: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let forced = Test::new_in(&t).args(&["runs", "resume", "r1", "--force"]).run();
    assert_eq!(forced.status, 0, "{}{}", forced.stdout, forced.stderr);
}

/// The compiled-plugin cache through the real binary: a run compiles the
/// plugin; once the artifact has settled, the next run checks it in full and
/// records its stamp, the one after loads it on the stamp, and an artifact
/// replaced by one with a flipped bit is refused and recompiled. Every run
/// succeeds.
#[test]
fn a_settled_cache_entry_is_stamped_and_a_replaced_one_recompiled() {
    let t = with_echo_plugin("http://127.0.0.1:9").file(
        "p.yaml",
        "name: t\ndescription: t\nsteps:\n  - id: say\n    uses: echo.echo\n    with: {message: cached}\n",
    );
    let cache = t.state_dir().join("plugin-cache");
    let run = |id: &str| {
        let out = Test::new_in(&t).args(&["run", "p.yaml", "--run-id", id]).run();
        assert_eq!(out.status, 0, "{id}: {}{}", out.stdout, out.stderr);
    };
    let entry = || {
        let found: Vec<_> = std::fs::read_dir(&cache)
            .expect("the plugin cache")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    };
    let mac_len = |artifact: &std::path::Path| {
        let mut name = artifact.as_os_str().to_owned();
        name.push(".mac");
        std::fs::read(name).expect("the entry's MAC").len()
    };
    run("c1");
    let artifact = entry();
    assert_eq!(mac_len(&artifact), 32, "a fresh entry has its MAC only");
    // Past the settling time (rota_host::cache::SETTLED), not a timing assertion.
    std::thread::sleep(rota_host::cache::SETTLED + std::time::Duration::from_millis(200));
    run("c2");
    assert_eq!(mac_len(&artifact), 32 + 56 + 32, "checked in full and stamped");
    let stamped = std::fs::read(&artifact).expect("artifact");
    run("c3");
    assert_eq!(
        std::fs::read(&artifact).expect("artifact"),
        stamped,
        "loaded, not rewritten"
    );

    let mut flipped = stamped.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    let tmp = artifact.with_extension("replacing");
    std::fs::write(&tmp, &flipped).expect("write");
    std::fs::rename(&tmp, &artifact).expect("replace the artifact");
    run("c4");
    let after = std::fs::read(entry()).expect("artifact");
    assert_ne!(after, flipped, "the damaged artifact was recompiled, not used");
    assert_eq!(mac_len(&entry()), 32, "and re-signed as a fresh entry");
}
