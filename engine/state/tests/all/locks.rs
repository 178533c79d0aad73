//! Credential locks across connections, threads and real processes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use rota_state::{LockWait, State, StateConfig, StateError};

use crate::common::{T, TestResult, child};

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// Guards "never both proceed": racing acquirers on separate connections.
#[test]
fn of_two_racing_runs_exactly_one_gets_the_lock() -> TestResult {
    let t = T::new();
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(2));
        let winners = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (barrier, winners) = (barrier.clone(), winners.clone());
                let state = t.reopen();
                std::thread::spawn(move || -> Result<(), String> {
                    barrier.wait();
                    let run = format!("run-{round}-{i}");
                    match state.acquire_locks(&names(&["plex/acme/c1"]), &run, LockWait::NoWait, &mut |_| {})
                    {
                        Ok(()) => {
                            winners.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                        Err(StateError::LockHeld(h)) => {
                            assert_eq!(h.name, "plex/acme/c1");
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "thread panicked")??;
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
        let held = t.state.locks()?;
        assert_eq!(held.len(), 1);
        t.state.release_locks(&held[0].run_id)?;
    }
    Ok(())
}

#[test]
fn a_waiting_run_proceeds_after_release_and_never_overlaps() -> TestResult {
    let t = T::new();
    let inside = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (inside, overlap, waited) = (inside.clone(), overlap.clone(), waited.clone());
            let state = t.reopen();
            std::thread::spawn(move || -> Result<(), String> {
                let run = format!("run-{i}");
                state
                    .acquire_locks(
                        &names(&["soar/key"]),
                        &run,
                        LockWait::Wait {
                            timeout: Some(Duration::from_secs(20)),
                        },
                        &mut |holder| {
                            assert_ne!(holder.run_id, format!("run-{i}"));
                            waited.fetch_add(1, Ordering::SeqCst);
                        },
                    )
                    .map_err(|e| e.to_string())?;
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlap.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(150));
                inside.fetch_sub(1, Ordering::SeqCst);
                state.release_locks(&run).map_err(|e| e.to_string())?;
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    assert_eq!(overlap.load(Ordering::SeqCst), 0);
    assert!(waited.load(Ordering::SeqCst) >= 1, "someone had to wait");
    assert!(t.state.locks()?.is_empty());
    Ok(())
}

#[test]
fn locks_are_all_or_nothing_and_reentrant_for_the_same_run() -> TestResult {
    let t = T::new();
    let s = &t.state;
    s.acquire_locks(&names(&["x"]), "a", LockWait::NoWait, &mut |_| {})?;
    s.acquire_locks(&names(&["x", "x"]), "a", LockWait::NoWait, &mut |_| {})?;
    let err = s.acquire_locks(&names(&["w", "x"]), "b", LockWait::NoWait, &mut |_| {});
    let text = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("lock \"x\" is held by run a"), "{text}");
    assert_eq!(
        s.locks()?.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["x"]
    );
    let timeout = s.acquire_locks(
        &names(&["x"]),
        "b",
        LockWait::Wait {
            timeout: Some(Duration::from_millis(250)),
        },
        &mut |_| {},
    );
    assert!(matches!(timeout, Err(StateError::LockTimeout(_))));
    assert_eq!(s.release_locks("a")?, 1);
    s.acquire_locks(&names(&["w", "x"]), "b", LockWait::NoWait, &mut |_| {})?;
    let text = rota_state::render::locks(&s.locks()?);
    assert!(text.contains("w     b") || text.contains("w  "), "{text}");
    Ok(())
}

const CHILD_DIR: &str = "ROTA_STATE_TEST_LOCK_DIR";

/// Child for `a_dead_holder_loses_its_lock`: takes the lock, says so, waits to be killed.
#[test]
#[ignore = "run as a child process by a_dead_holder_loses_its_lock"]
fn child_hold_lock() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return Ok(());
    };
    let state = State::open_with(StateConfig::in_dir(dir))?;
    state.acquire_locks(
        &names(&["plex/acme/c1"]),
        "child-run",
        LockWait::NoWait,
        &mut |_| {},
    )?;
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(120));
    Ok(())
}

#[test]
fn a_dead_holder_loses_its_lock() -> TestResult {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let state_dir = dir.path().join("state");
    let mut proc = child(
        "locks::child_hold_lock",
        &[(CHILD_DIR, state_dir.to_str().unwrap_or_default())],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()?;
    let stdout = proc.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let locked = lines.any(|l| l.is_ok_and(|l| l.contains("LOCKED")));
    assert!(locked, "child never took the lock");

    let state = State::open(&state_dir)?;
    let err = state.acquire_locks(
        &names(&["plex/acme/c1"]),
        "parent-run",
        LockWait::NoWait,
        &mut |_| {},
    );
    match err {
        Err(StateError::LockHeld(h)) => {
            assert_eq!(h.run_id, "child-run");
            assert_eq!(h.pid, proc.id());
        }
        other => panic!("a live child's lock must hold, got {other:?}"),
    }
    proc.kill()?;
    proc.wait()?;
    state.acquire_locks(
        &names(&["plex/acme/c1"]),
        "parent-run",
        LockWait::NoWait,
        &mut |_| {},
    )?;
    assert_eq!(state.locks()?[0].run_id, "parent-run");
    let audit = state.audit_entries()?;
    let released = audit
        .iter()
        .find(|e| e.action == "lock.release_dead")
        .expect("release audited");
    assert_eq!(released.run_id.as_deref(), Some("child-run"));
    assert!(state.audit_verify()?.is_ok());
    Ok(())
}
