//! Credential locks: one run at a time per credential name.
//!
//! Design decision: all of a run's locks are taken in ONE `BEGIN IMMEDIATE`
//! transaction, all or nothing, so two processes can never each hold part of
//! the set (no deadlock) and never both proceed. A lock records the holder's
//! pid, host and process start time; a holder that is provably dead (same
//! host, process gone or pid recycled) loses its locks to the next acquirer,
//! which audits the release. Locks belong to a run, not a process: a resume
//! of the same run takes them over.

use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditEvent};
use crate::db::{self, fmt_time, now};
use crate::process::{Liveness, ProcessId};
use crate::{State, StateError};

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub name: String,
    pub run_id: String,
    pub pid: u32,
    pub host: String,
    pub process_start: String,
    /// RFC 3339.
    pub acquired_at: String,
}

impl LockHolder {
    fn process(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            host: self.host.clone(),
            start: self.process_start.clone(),
        }
    }
}

/// What to do when a lock is held by a live run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with [`StateError::LockHeld`] (`--no-wait`).
    NoWait,
    /// Poll until free; give up with [`StateError::LockTimeout`] after
    /// `timeout` (`None`: wait forever).
    Wait { timeout: Option<Duration> },
}

/// How often a waiting acquirer polls.
pub const LOCK_POLL: Duration = Duration::from_millis(100);

enum Attempt {
    Acquired,
    Blocked(LockHolder),
}

impl State {
    /// Takes every lock in `names` for `run_id`, or none. While blocked,
    /// `on_wait` is called once with the first holder in the way (for a
    /// "waiting for ..." message).
    pub fn acquire_locks(
        &self,
        names: &[String],
        run_id: &str,
        wait: LockWait,
        on_wait: &mut dyn FnMut(&LockHolder),
    ) -> Result<(), StateError> {
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let started = Instant::now();
        let mut told = false;
        loop {
            match self.try_acquire(&names, run_id)? {
                Attempt::Acquired => return Ok(()),
                Attempt::Blocked(holder) => match wait {
                    LockWait::NoWait => return Err(StateError::LockHeld(Box::new(holder))),
                    LockWait::Wait { timeout } => {
                        if timeout.is_some_and(|t| started.elapsed() >= t) {
                            return Err(StateError::LockTimeout(Box::new(holder)));
                        }
                        if !told {
                            on_wait(&holder);
                            told = true;
                        }
                        thread::sleep(LOCK_POLL);
                    }
                },
            }
        }
    }

    fn try_acquire(&self, names: &[&str], run_id: &str) -> Result<Attempt, StateError> {
        // Ordered: other processes see the lock once it commits; it only has
        // to outlive an OS crash once the run has changed something, and the
        // run's first synced write (an intent, a secret) makes it durable.
        self.db.write_with(crate::db::Durability::Ordered, |tx| {
            for name in names {
                let Some(holder) = holder(tx, name)? else { continue };
                let process = holder.process();
                let ours = holder.run_id == run_id && process == self.process;
                if ours {
                    continue;
                }
                if process.liveness() == Liveness::Dead {
                    db::exec(tx, "DELETE FROM locks WHERE name = ?1", [name])?;
                    audit::append(
                        self,
                        tx,
                        &AuditEvent::new("lock.release_dead")
                            .run_id(Some(&holder.run_id))
                            .detail(json!({
                                "lock": name,
                                "pid": holder.pid,
                                "host": holder.host,
                            })),
                    )?;
                    continue;
                }
                // A live holder: the same run elsewhere or another run. Take nothing.
                return Ok(Attempt::Blocked(holder));
            }
            for name in names {
                db::exec(
                    tx,
                    "INSERT INTO locks (name, run_id, pid, host, process_start, acquired_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(name) DO UPDATE SET run_id = excluded.run_id, pid = excluded.pid,
                       host = excluded.host, process_start = excluded.process_start",
                    params![
                        name,
                        run_id,
                        self.process.pid,
                        self.process.host,
                        self.process.start,
                        fmt_time(now())
                    ],
                )?;
            }
            Ok(Attempt::Acquired)
        })
    }

    /// Releases every lock of `run_id` (at run end, or by `rota runs abort`).
    /// Returns how many were held.
    pub fn release_locks(&self, run_id: &str) -> Result<usize, StateError> {
        // Ordered: the run's synced end comes first, and a lock row an OS
        // crash brings back belongs to a dead process, which the next
        // acquire takes over.
        self.db.write_with(crate::db::Durability::Ordered, |tx| {
            Ok(db::exec(tx, "DELETE FROM locks WHERE run_id = ?1", [run_id])?)
        })
    }

    /// Every held lock, by name.
    pub fn locks(&self) -> Result<Vec<LockHolder>, StateError> {
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, run_id, pid, host, process_start, acquired_at FROM locks ORDER BY name",
            )?;
            let rows = stmt.query_map([], holder_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

fn holder_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LockHolder> {
    Ok(LockHolder {
        name: r.get(0)?,
        run_id: r.get(1)?,
        pid: r.get(2)?,
        host: r.get(3)?,
        process_start: r.get(4)?,
        acquired_at: r.get(5)?,
    })
}

fn holder(c: &Connection, name: &str) -> Result<Option<LockHolder>, StateError> {
    Ok(db::row(
        c,
        "SELECT name, run_id, pid, host, process_start, acquired_at FROM locks WHERE name = ?1",
        [name],
        holder_row,
    )
    .optional()?)
}
