//! The run journal: recording, folding into a resumable record, crash and resume.

use std::collections::BTreeMap;

use rota_core::{Provenance, Secret, SecretStore};
use rota_state::{
    EventData, Intent, Iteration, ResumeBlocker, RunOutcome, RunStart, RunStatus, SqliteStore, State,
    StateConfig, StateError, StepEnd, StepError, StepKey, StepOutcome,
};
use serde_json::json;

use crate::common::{T, TestResult, child, orphan_run};

fn start(run_id: &str) -> RunStart {
    RunStart {
        run_id: run_id.to_owned(),
        playbook_name: "plex-rotate".into(),
        playbook_path: "playbooks/plex.yaml".into(),
        playbook_digest: "sha256:aaaa".into(),
        inputs: json!({"customer": "acme", "admin": {"$secret": "plex/acme/admin@1"}}),
        plugin_digests: BTreeMap::from([("plex".to_owned(), "sha256:p1".to_owned())]),
        operator: Some("alice".into()),
    }
}

fn capture(run_id: &str, step: &str, key_id: &str) -> Provenance {
    Provenance {
        run_id: Some(run_id.into()),
        step_id: Some(step.into()),
        source: Some("plex".into()),
        key_id: Some(key_id.into()),
        idempotency_key: None,
    }
}

fn ok(outputs: serde_json::Value) -> StepEnd {
    StepEnd {
        outcome: StepOutcome::Succeeded,
        outputs,
        error: None,
    }
}

#[test]
fn a_finished_run_reads_back_as_a_timeline() -> TestResult {
    let mut t = T::new();
    let s = &t.state.clone();
    s.begin_run(&start("r1"))?;
    let check = StepKey::new("check");
    s.step_started("r1", &check, 1)?;
    s.step_finished("r1", &check, &ok(json!({"ok": true})))?;
    for (i, customer) in ["acme", "globex"].iter().enumerate() {
        let key = StepKey::at("mint", Iteration::Index(i as u64));
        s.step_started("r1", &key, 1)?;
        s.intent(
            "r1",
            &key,
            &Intent {
                action: "plex.create_client_secret".into(),
                input: json!({"customer": customer, "admin": {"$secret": "plex/acme/admin@1"}}),
                idempotency_key: Some(format!("r1/mint/{i}")),
                ..Intent::default()
            },
        )?;
        let value = t.secret(customer);
        let h = t.store.put(
            &format!("plex/{customer}/s"),
            &value,
            &capture("r1", "mint", &format!("kid-{i}")),
        )?;
        s.step_finished(
            "r1",
            &key,
            &ok(json!({"secret": h.to_json(), "key_id": format!("kid-{i}")})),
        )?;
    }
    let skip = StepKey::at("notify", Iteration::Key("ops".into()));
    s.step_started("r1", &skip, 1)?;
    s.step_finished(
        "r1",
        &skip,
        &StepEnd {
            outcome: StepOutcome::Skipped,
            outputs: serde_json::Value::Null,
            error: None,
        },
    )?;
    s.run_finished("r1", RunOutcome::Succeeded)?;

    let run = s.load_run("r1")?;
    assert_eq!(run.summary.status, RunStatus::Succeeded);
    assert_eq!(run.summary.operator.as_deref(), Some("alice"));
    assert_eq!(run.inputs["customer"], "acme");
    assert_eq!(run.steps.len(), 4);
    assert_eq!(run.in_flight().count(), 0);
    let mint1 = run
        .step(&StepKey::at("mint", Iteration::Index(1)))
        .expect("mint[1]");
    assert_eq!(mint1.captures.len(), 1);
    assert_eq!(mint1.captures[0].handle.to_string(), "plex/globex/s@1");
    assert_eq!(mint1.captures[0].key_id.as_deref(), Some("kid-1"));
    assert_eq!(
        mint1.end.as_ref().map(|e| e.outputs["key_id"].clone()),
        Some(json!("kid-1"))
    );
    assert_eq!(mint1.intents[0].idempotency_key.as_deref(), Some("r1/mint/1"));
    assert!(matches!(
        run.events.last().map(|e| &e.data),
        Some(EventData::RunFinished { .. })
    ));

    let text = rota_state::render::run_timeline(&run);
    for want in [
        "run r1  plex-rotate  succeeded",
        "playbook  playbooks/plex.yaml (sha256:aaaa)",
        "by alice (",
        "check: started (attempt 1)",
        "mint[0]:   calling plex.create_client_secret (idempotency key r1/mint/0)",
        "mint[1]:   captured plex/globex/s@1 (key id kid-1)",
        "notify[\"ops\"]: skipped",
        "run succeeded",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let list = s.list_runs()?;
    assert_eq!(list.len(), 1);
    let listed = rota_state::render::runs_list(&list);
    assert!(
        listed.starts_with("RUN  PLAYBOOK") && listed.contains("r1   plex-rotate  succeeded"),
        "{listed}"
    );
    // The capture was audited with its key ID.
    let audit = s.audit_entries()?;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "secret.put" && e.key_id.as_deref() == Some("kid-0"))
    );
    assert!(audit.iter().any(|e| e.action == "run.start") && audit.iter().any(|e| e.action == "run.finish"));
    t.assert_no_leaks(&[("timeline", text.as_bytes()), ("list", listed.as_bytes())]);
    Ok(())
}

#[test]
fn misuse_is_refused_with_the_run_named() -> TestResult {
    let t = T::new();
    let s = &t.state;
    let k = StepKey::new("a");
    assert!(matches!(
        s.step_started("ghost", &k, 1),
        Err(StateError::UnknownRun(_))
    ));
    s.begin_run(&start("r"))?;
    assert!(matches!(
        s.begin_run(&start("r")),
        Err(StateError::DuplicateRun(_))
    ));
    let intent = Intent {
        action: "p.a".into(),
        input: json!({}),
        idempotency_key: None,
        ..Intent::default()
    };
    assert!(matches!(
        s.intent("r", &k, &intent),
        Err(StateError::Journal { .. })
    ));
    assert!(s.step_started("r", &k, 0).is_err());
    s.step_started("r", &k, 1)?;
    s.step_finished("r", &k, &ok(json!(null)))?;
    assert!(
        s.step_finished("r", &k, &ok(json!(null))).is_err(),
        "finished twice"
    );
    s.run_finished("r", RunOutcome::Failed)?;
    let err = s
        .step_started("r", &k, 2)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("run r") && err.contains("already finished"), "{err}");
    assert!(s.mark_resumed("r", false).is_err());
    Ok(())
}

#[test]
fn a_retry_starts_a_fresh_attempt() -> TestResult {
    let mut t = T::new();
    let s = t.state.clone();
    s.begin_run(&start("r"))?;
    let k = StepKey::new("mint");
    s.step_started("r", &k, 1)?;
    let v = t.secret("v1");
    t.store.put("x", &v, &capture("r", "mint", "kid-a"))?;
    s.step_finished(
        "r",
        &k,
        &StepEnd {
            outcome: StepOutcome::Failed,
            outputs: json!(null),
            error: Some(StepError {
                kind: "http".into(),
                message: "503 from vendor".into(),
            }),
        },
    )?;
    s.step_started("r", &k, 2)?;
    let run = s.load_run("r")?;
    let step = run.step(&k).expect("step");
    assert_eq!(step.attempt, 2);
    assert!(step.is_in_flight() && step.captures.is_empty() && step.intents.is_empty());
    let text = rota_state::render::run_timeline(&run);
    assert!(text.contains("mint: failed (http: 503 from vendor)"), "{text}");
    assert!(text.contains("in flight: mint (attempt 2)"), "{text}");
    t.assert_no_leaks(&[("timeline", text.as_bytes())]);
    Ok(())
}

#[test]
fn an_interrupted_run_shows_what_to_reconcile_and_resumes() -> TestResult {
    let mut t = T::new();
    let s = t.state.clone();
    s.begin_run(&start("r"))?;
    let done = StepKey::new("check");
    s.step_started("r", &done, 1)?;
    s.step_finished("r", &done, &ok(json!({"n": 1})))?;
    let k = StepKey::at("mint", Iteration::Key("acme".into()));
    s.step_started("r", &k, 1)?;
    s.intent(
        "r",
        &k,
        &Intent {
            action: "plex.create_client_secret".into(),
            input: json!({"customer": "acme"}),
            idempotency_key: None,
            ..Intent::default()
        },
    )?;
    let v = t.secret("minted");
    t.store.put("plex/acme/s", &v, &capture("r", "mint", "kid-9"))?;
    assert_eq!(s.load_run("r")?.summary.status, RunStatus::Running);
    orphan_run(&s, "r");

    let other = t.reopen();
    let run = other.load_run("r")?;
    assert_eq!(run.summary.status, RunStatus::Interrupted);
    let flying: Vec<_> = run.in_flight().collect();
    assert_eq!(flying.len(), 1);
    assert_eq!(flying[0].key, k);
    assert_eq!(
        flying[0].last_intent().map(|i| i.action.as_str()),
        Some("plex.create_client_secret")
    );
    assert_eq!(flying[0].captures[0].key_id.as_deref(), Some("kid-9"));
    assert_eq!(
        SqliteStore::new(other.clone()).get(&flying[0].captures[0].handle)?,
        v
    );
    assert_eq!(run.completed().count(), 1);

    let same = run.plugin_digests.clone();
    assert!(run.resume_blockers("sha256:aaaa", &same).is_empty());
    let changed = BTreeMap::from([("plex".to_owned(), "sha256:p2".to_owned())]);
    let blockers = run.resume_blockers("sha256:bbbb", &changed);
    assert_eq!(blockers.len(), 2);
    assert!(blockers.iter().all(ResumeBlocker::forceable));
    assert!(
        blockers[1].to_string().contains("plugin plex changed"),
        "{}",
        blockers[1]
    );

    other.mark_resumed("r", true)?;
    let run = other.load_run("r")?;
    assert_eq!(run.summary.status, RunStatus::Running);
    assert_eq!(run.summary.resumes, 1);
    other.step_started("r", &k, 2)?;
    other.step_finished(
        "r",
        &k,
        &StepEnd {
            outcome: StepOutcome::Recovered,
            outputs: json!({"adopted": "kid-9"}),
            error: None,
        },
    )?;
    other.run_finished("r", RunOutcome::Succeeded)?;
    let run = other.load_run("r")?;
    assert_eq!(run.summary.status, RunStatus::Succeeded);
    let finished = run.resume_blockers("sha256:aaaa", &same);
    assert!(matches!(
        finished.as_slice(),
        [ResumeBlocker::Finished(RunStatus::Succeeded)]
    ));
    let text = rota_state::render::run_timeline(&run);
    assert!(
        text.contains("run resumed (forced") && text.contains("mint[\"acme\"]: recovered"),
        "{text}"
    );
    t.assert_no_leaks(&[("timeline", text.as_bytes())]);
    Ok(())
}

#[test]
fn a_live_run_cannot_be_taken_over() -> TestResult {
    let t = T::new();
    t.state.begin_run(&start("r"))?;
    // Pretend it runs in another live process: pid 1 with its real start time.
    let init_start = std::fs::read_to_string("/proc/1/stat")
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(19))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    crate::common::raw(&t.state).execute("UPDATE runs SET pid = 1, process_start = ?1", [init_start])?;
    let err = t
        .state
        .mark_resumed("r", false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("still running (pid 1"), "{err}");
    let run = t.state.load_run("r")?;
    assert_eq!(run.summary.status, RunStatus::Running);
    assert!(matches!(
        run.resume_blockers("sha256:aaaa", &run.plugin_digests).as_slice(),
        [ResumeBlocker::StillRunning { pid: 1, .. }]
    ));
    Ok(())
}

const CHILD_DIR: &str = "ROTA_STATE_TEST_CHILD_DIR";
const CHILD_SECRET: &str = "child-captured-V4lue/+=-0123456789";

/// Child process for `kill_after_capture_loses_nothing`: journals a step up to
/// the capture, then is killed with SIGKILL.
#[test]
#[ignore = "run as a child process by kill_after_capture_loses_nothing"]
fn child_capture_then_abort() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return Ok(());
    };
    let state = State::open_with(StateConfig::in_dir(dir))?;
    let store = SqliteStore::new(state.clone());
    state.begin_run(&start("crash"))?;
    let k = StepKey::new("mint");
    state.step_started("crash", &k, 1)?;
    state.intent(
        "crash",
        &k,
        &Intent {
            action: "plex.create_client_secret".into(),
            input: json!({}),
            idempotency_key: None,
            ..Intent::default()
        },
    )?;
    store.put(
        "plex/acme/s",
        &Secret::new(CHILD_SECRET),
        &capture("crash", "mint", "kid-crash"),
    )?;
    // kill -9 ourselves: no unwinding, no destructors, no connection close.
    std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status()?;
    std::thread::sleep(std::time::Duration::from_secs(30));
    Err("still alive after kill -9".into())
}

/// Guards capture-before-anything: a process that dies right after the
/// capture commit leaves the secret, its key ID and the journal record.
#[test]
fn kill_after_capture_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state_dir = dir.path().join("state");
    let status = child(
        "journal::child_capture_then_abort",
        &[(CHILD_DIR, state_dir.to_str().unwrap_or_default())],
    )
    .output()?;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.status.signal(), Some(9), "the child must die by SIGKILL");
    let state = State::open(&state_dir)?;
    let run = state.load_run("crash")?;
    assert_eq!(
        run.summary.status,
        RunStatus::Interrupted,
        "the dead child's run is resumable"
    );
    let step = run.in_flight().next().expect("mint in flight");
    assert_eq!(step.captures.len(), 1);
    assert_eq!(step.captures[0].key_id.as_deref(), Some("kid-crash"));
    let value = SqliteStore::new(state.clone()).get(&step.captures[0].handle)?;
    assert_eq!(value.expose(), CHILD_SECRET);
    let mut scanner = rota_testkit::LeakScanner::new();
    scanner.add("child", CHILD_SECRET);
    let mut hits = scanner.scan_sqlite(state.db_path(), &["secret_versions.ciphertext"])?;
    hits.extend(scanner.scan_dir(state.dir())?);
    hits.extend(scanner.scan_bytes("child stdout", &status.stdout));
    hits.extend(scanner.scan_bytes("child stderr", &status.stderr));
    rota_testkit::assert_no_leaks(&hits);
    Ok(())
}

#[test]
fn put_captured_attaches_to_the_exact_iteration() -> TestResult {
    let mut t = T::new();
    let s = t.state.clone();
    s.begin_run(&start("r"))?;
    let (k0, k1) = (
        StepKey::at("mint", Iteration::Index(0)),
        StepKey::at("mint", Iteration::Index(1)),
    );
    // Two iterations in flight at once: the latest-started rule would pick k1.
    s.step_started("r", &k0, 1)?;
    s.step_started("r", &k1, 1)?;
    let v = t.secret("iter0");
    let h = t
        .store
        .put_captured("plex/acme/s", &v, &capture("r", "mint", "kid-0"), &k0)?;
    let run = s.load_run("r")?;
    assert_eq!(run.step(&k0).map(|st| st.captures.len()), Some(1));
    assert_eq!(run.step(&k0).map(|st| st.captures[0].handle.clone()), Some(h));
    assert_eq!(run.step(&k1).map(|st| st.captures.len()), Some(0));
    t.assert_no_leaks(&[]);
    Ok(())
}

#[test]
fn abort_marks_the_run_and_releases_its_locks_at_once() -> TestResult {
    let t = T::new();
    let s = &t.state;
    s.begin_run(&start("r"))?;
    s.acquire_locks(
        &["plex/acme/c1".to_owned()],
        "r",
        rota_state::LockWait::NoWait,
        &mut |_| {},
    )?;
    orphan_run(s, "r");
    let other = t.reopen();
    assert_eq!(other.abort_run("r")?, 1);
    assert!(other.locks()?.is_empty());
    let run = other.load_run("r")?;
    assert_eq!(run.summary.status, RunStatus::Aborted);
    assert!(other.audit_entries()?.iter().any(|e| e.action == "run.abort"));
    assert!(other.abort_run("r").is_err(), "already finished");
    Ok(())
}

/// A resume reads, per idempotency key, the latest call, the captures made
/// for that exact call (each for_each item its own) and the revokes not
/// known to have finished, across every attempt since the step last ended.
#[test]
fn in_flight_calls_are_settled_per_idempotency_key_across_attempts() -> TestResult {
    use rota_core::reconcile::{Decision, Reconciled, RevokeOutcome, Revoked};
    let mut t = T::new();
    let s = t.state.clone();
    s.begin_run(&start("r"))?;
    let mint = StepKey::new("mint");
    let call = |key: &str, snapshot: Option<serde_json::Value>| Intent {
        action: "keys.create-key".into(),
        input: json!({"name": key}),
        idempotency_key: Some(key.into()),
        snapshot,
        revokes: None,
    };
    let revoke = |key: &str, id: &str| Intent {
        action: "keys.revoke-key".into(),
        input: json!({"input": {"name": key}, "key_id": id}),
        idempotency_key: Some(key.into()),
        snapshot: None,
        revokes: Some(id.into()),
    };
    s.step_started("r", &mint, 1)?;
    s.intent("r", &mint, &call("r/mint/0", Some(json!({"ids": ["k1"]}))))?;
    s.intent("r", &mint, &call("r/mint/1", None))?;
    // Item 1 commits first: the capture must still attach to item 1, not to
    // the step's latest call.
    let captured = |item: usize, key_id: &str| Provenance {
        idempotency_key: Some(format!("r/mint/{item}")),
        ..capture("r", "mint", key_id)
    };
    let v1 = t.secret("item-1-secret");
    let h1 = t.store.put("keys/fleet/key", &v1, &captured(1, "k3"))?;
    let v0 = t.secret("item-0-secret");
    let h0 = t.store.put("keys/fleet/key", &v0, &captured(0, "k2"))?;
    // An interrupted resume: item 1 was found orphaned, one revoke finished,
    // the other did not, and the call was redone (no capture yet).
    s.step_started("r", &mint, 1)?;
    s.reconciled(
        "r",
        &mint,
        &Reconciled {
            action: "keys.create-key".into(),
            idempotency_key: "r/mint/1".into(),
            decision: Decision::Orphaned,
            key_ids: vec!["k3".into(), "k4".into()],
        },
    )?;
    s.intent("r", &mint, &revoke("r/mint/1", "k3"))?;
    s.revoked(
        "r",
        &mint,
        &Revoked {
            action: "keys.revoke-key".into(),
            idempotency_key: "r/mint/1".into(),
            key_id: "k3".into(),
            outcome: RevokeOutcome::Revoked,
            error: None,
        },
    )?;
    s.intent("r", &mint, &revoke("r/mint/1", "k4"))?;
    s.intent("r", &mint, &call("r/mint/1", Some(json!({"ids": ["k1", "k2"]}))))?;

    let run = s.load_run("r")?;
    let calls = run.in_flight_calls(&mint);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].idempotency_key, "r/mint/0");
    assert_eq!(
        calls[0].call,
        Some(call("r/mint/0", Some(json!({"ids": ["k1"]}))))
    );
    let handles: Vec<_> = calls[0]
        .captures
        .iter()
        .map(|c| (c.handle.clone(), c.key_id.clone()))
        .collect();
    assert_eq!(handles, vec![(h0, Some("k2".to_owned()))]);
    assert_eq!(calls[1].idempotency_key, "r/mint/1");
    assert_eq!(
        calls[1].call,
        Some(call("r/mint/1", Some(json!({"ids": ["k1", "k2"]})))),
        "the redo is the call to settle"
    );
    assert!(
        calls[1].captures.is_empty(),
        "{h1} was captured before the redo: it belongs to the orphan"
    );
    assert_eq!(calls[1].pending_revokes, vec![revoke("r/mint/1", "k4")]);
    let timeline = rota_state::render::run_timeline(&run);
    for line in [
        "mint:   calling keys.create-key (idempotency key r/mint/0, vendor state snapshot taken)",
        "mint:   reconciled keys.create-key (idempotency key r/mint/1): left orphan key(s) k3, k4; revoking them, then redoing it",
        "mint:   calling keys.revoke-key to revoke key k3 (idempotency key r/mint/1)",
        "mint:   revoked key k3 (keys.revoke-key)",
    ] {
        assert!(timeline.contains(line), "no {line:?} in:\n{timeline}");
    }
    s.step_finished("r", &mint, &ok(json!([])))?;
    assert!(
        s.load_run("r")?.in_flight_calls(&mint).is_empty(),
        "a finished step has nothing in flight"
    );
    t.assert_no_leaks(&[]);
    Ok(())
}

/// A step that changed nothing is recorded whole: started and finished in
/// one write, read back as a completed step and never as one in flight.
#[test]
fn a_step_recorded_whole_reads_back_as_completed() -> TestResult {
    let t = T::new();
    let s = t.state.clone();
    s.begin_run(&start("r"))?;
    let look = StepKey::new("look");
    s.step_done("r", &look, 1, &ok(json!({"seen": 2})))?;
    assert!(
        s.step_done("r", &StepKey::new("zero"), 0, &ok(json!({})))
            .is_err(),
        "attempts count from 1"
    );
    assert!(
        s.intent("r", &look, &Intent::default()).is_err(),
        "a step recorded whole is not in flight"
    );
    orphan_run(&s, "r");
    let run = t.reopen().load_run("r")?;
    assert_eq!(run.in_flight().count(), 0);
    let done: Vec<_> = run.completed().collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].key, look);
    Ok(())
}
