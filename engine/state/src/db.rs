//! The SQLite connection, its pragmas and the schema migrations.
//!
//! Design decision: every write runs in a `BEGIN IMMEDIATE` transaction, so
//! concurrent `rota` processes serialize on SQLite's write lock (waiting up to
//! the busy timeout) instead of failing on a read-to-write upgrade.
//! Migrations are an append-only list indexed by `user_version`.
//!
//! Design decision: not every record needs its own fsync. A write is
//! [`Durability::Synced`] (the default: secrets, intents of calls that
//! cannot simply be repeated, a run's end) or [`Durability::Ordered`] (a
//! step's start and end, locks, the intent of a call that is harmless to
//! repeat). Both are atomic and survive the process being killed at any
//! point; a synced write also returns only once it is durable across an OS
//! crash, through group commit (`crate::sync`: the WAL is fsynced once for
//! every commit made while the previous fsync ran, and never while the
//! database is locked). After an OS crash or power loss, WAL replays a prefix
//! of the commits that includes every synced one: at most the ordered records
//! after the last synced commit are lost, and that is exactly what a resume
//! handles (a step not recorded as finished is reconciled or repeated).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StateError;
use crate::fsutil;
use crate::sync::{GroupSync, WalFile};

/// Rolls back the open transaction when dropped (a write that failed or
/// panicked); forgotten once the transaction committed.
struct Rollback<'a>(&'a Connection);

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

/// Whether a commit waits for the disk (see the module's design decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Durable across an OS crash before the write returns (an fsync,
    /// shared with the writers committing meanwhile).
    Synced,
    /// Atomic and ordered, durable once any later synced commit returns.
    Ordered,
}

/// How long a write waits for another process's transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema migrations; entry `i` takes `user_version` from `i` to `i + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Version numbers are never reused for a name, even after discard or rm.
CREATE TABLE secret_counters (
    name         TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);

-- ciphertext is last so listing rows never reads its overflow pages.
CREATE TABLE secret_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    is_current  INTEGER NOT NULL DEFAULT 0,
    is_pending  INTEGER NOT NULL DEFAULT 0,
    is_previous INTEGER NOT NULL DEFAULT 0,
    run_id      TEXT,
    step_id     TEXT,
    source      TEXT,
    key_id      TEXT,
    recipient   TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX one_current  ON secret_versions(name) WHERE is_current = 1;
CREATE UNIQUE INDEX one_pending  ON secret_versions(name) WHERE is_pending = 1;
CREATE UNIQUE INDEX one_previous ON secret_versions(name) WHERE is_previous = 1;

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    playbook_name   TEXT NOT NULL,
    playbook_path   TEXT NOT NULL,
    playbook_digest TEXT NOT NULL,
    inputs          TEXT NOT NULL,
    plugin_digests  TEXT NOT NULL,
    operator        TEXT,
    os_user         TEXT NOT NULL,
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    process_start   TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    outcome         TEXT,
    resumes         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE journal (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    iteration TEXT,
    attempt   INTEGER,
    payload   TEXT NOT NULL
);
CREATE INDEX journal_by_run ON journal(run_id, seq);

CREATE TABLE locks (
    name          TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    process_start TEXT NOT NULL,
    acquired_at   TEXT NOT NULL
);

CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    os_user  TEXT NOT NULL,
    host     TEXT NOT NULL,
    operator TEXT,
    action   TEXT NOT NULL,
    secret   TEXT,
    key_id   TEXT,
    run_id   TEXT,
    detail   TEXT NOT NULL,
    prev_mac TEXT NOT NULL,
    mac      TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE inventory (
    vendor     TEXT NOT NULL,
    account    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_at TEXT,
    expires_at TEXT,
    consumers  TEXT NOT NULL,
    status     TEXT NOT NULL,
    secret     TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    PRIMARY KEY (vendor, account, key_id)
);
"#];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
    sync: GroupSync,
}

impl Drop for Db {
    fn drop(&mut self) {
        let (commits, fsyncs) = self.sync.counts();
        tracing::debug!(commits, fsyncs, "state database closed");
    }
}

impl Db {
    pub(crate) fn open(dir: &Path, path: &Path) -> Result<Self, StateError> {
        fsutil::ensure_private_dir(dir)?;
        // Created 0600 before SQLite sees it; SQLite gives -wal and -shm the
        // database file's mode.
        fsutil::touch_private(path)?;
        let db = Self {
            path: path.to_path_buf(),
            conn: Mutex::new(
                Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| Self::classify(path, e.into()))?,
            ),
            sync: GroupSync::new(Box::new(WalFile::beside(path))),
        };
        db.with(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // Every statement of a run stays parsed (rusqlite keeps 16).
            conn.set_prepared_statement_cache_capacity(128);
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StateError::Invalid(format!(
                    "cannot switch {} to WAL mode",
                    path.display()
                )));
            }
            // Commits wait for no disk; synced writes wait for the group
            // fsync instead (see the module's design decision).
            conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
            // A short-lived process (every `rota` command) would otherwise
            // checkpoint the WAL into the database and delete it at every
            // exit: three more fsyncs and an unlink per command. The WAL is
            // kept instead (committed data in it is as durable as in the
            // database file) and SQLite checkpoints it every 1000 pages.
            conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
            Ok(())
        })?;
        db.migrate()?;
        Ok(db)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Attaches the database path to an error coming out of SQLite.
    fn classify(path: &Path, e: StateError) -> StateError {
        match e {
            StateError::DatabaseCorrupt { detail, .. } => StateError::DatabaseCorrupt {
                path: path.to_path_buf(),
                detail,
            },
            StateError::Database { detail, .. } => StateError::Database {
                path: path.to_path_buf(),
                detail,
            },
            other => other,
        }
    }

    /// Runs `f` on the connection (reads, or statements that need no transaction).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        // A poisoned mutex means a panic mid-call; SQLite rolled back any open
        // transaction when the Transaction guard dropped, so the connection is sound.
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|e| Self::classify(&self.path, e))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed (and synced)
    /// only if it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.write_with(Durability::Synced, f)
    }

    /// [`Db::write`] with the given durability.
    pub(crate) fn write_with<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // BEGIN and COMMIT as cached statements (rusqlite's Transaction
        // parses both for every write); the guard rolls back on an error or
        // a panic, as Transaction's drop does.
        let committed = (|| -> Result<(T, u64), StateError> {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            let guard = Rollback(&conn);
            let out = f(guard.0)?;
            guard.0.prepare_cached("COMMIT")?.execute([])?;
            std::mem::forget(guard);
            Ok((out, self.sync.committed()))
        })();
        drop(conn);
        let (out, seq) = committed.map_err(|e| Self::classify(&self.path, e))?;
        if durability == Durability::Synced {
            // Waiting for the disk must not stall the other runs of this
            // process that share the runtime's workers.
            let wait = || self.sync.wait(seq);
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi_thread {
                tokio::task::block_in_place(wait)?;
            } else {
                wait()?;
            }
        }
        Ok(out)
    }

    fn migrate(&self) -> Result<(), StateError> {
        self.write(|tx| {
            let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if found > SCHEMA_VERSION {
                return Err(StateError::SchemaTooNew {
                    path: self.path.clone(),
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            for (i, sql) in MIGRATIONS
                .iter()
                .enumerate()
                .skip(usize::try_from(found).unwrap_or(0))
            {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)?;
            }
            Ok(())
        })
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite found.
    pub(crate) fn integrity_check(&self) -> Result<Vec<String>, StateError> {
        self.with(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut problems = Vec::new();
            for row in rows {
                let row = row?;
                if row != "ok" {
                    problems.push(row);
                }
            }
            Ok(problems)
        })
    }
}

/// `conn.execute` through the connection's statement cache: the run's hot
/// statements are parsed once per process, not once per write.
pub(crate) fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `conn.query_row` through the connection's statement cache.
pub(crate) fn row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

pub(crate) fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Timestamps are stored as RFC 3339 text in UTC with exactly nine
/// fractional digits, so text order is time order.
pub(crate) fn fmt_time(t: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

pub(crate) fn parse_time(s: &str) -> Result<time::OffsetDateTime, StateError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StateError::Invalid(format!("stored timestamp {s:?} is unreadable: {e}")))
}

pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StateError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StateError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_mode_with_a_busy_timeout_and_synced_writes_through_group_commit() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::io("tempdir", "", e))?;
        let db = Db::open(dir.path(), &dir.path().join("s.db"))?;
        db.with(|c| {
            let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let busy: i64 = c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
            assert_eq!(mode, "wal");
            assert_eq!(sync, 1, "synchronous=NORMAL: the group sync fsyncs");
            assert_eq!(busy, BUSY_TIMEOUT.as_millis() as i64);
            Ok(())
        })?;
        let before = db.sync.syncs();
        db.write(|tx| meta_set(tx, "k", "synced"))?;
        assert_eq!(db.sync.syncs(), before + 1, "a synced write fsyncs the WAL");
        db.write_with(Durability::Ordered, |tx| meta_set(tx, "k", "ordered"))?;
        assert_eq!(db.sync.syncs(), before + 1, "an ordered write does not");
        Ok(())
    }

    /// An ordered write commits (without an fsync); a failed one leaves
    /// nothing behind.
    #[test]
    fn an_ordered_write_commits_and_a_failed_one_rolls_back() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::io("tempdir", "", e))?;
        let db = Db::open(dir.path(), &dir.path().join("s.db"))?;
        db.write_with(Durability::Ordered, |tx| meta_set(tx, "k", "ordered"))?;
        let failed: Result<(), StateError> = db.write_with(Durability::Ordered, |tx| {
            meta_set(tx, "k", "rolled back")?;
            Err(StateError::Invalid("no".into()))
        });
        assert!(failed.is_err());
        drop(db);
        let db = Db::open(dir.path(), &dir.path().join("s.db"))?;
        assert_eq!(db.with(|c| meta_get(c, "k"))?.as_deref(), Some("ordered"));
        Ok(())
    }

    /// Synced writes from a multi-threaded runtime's tasks wait for the disk
    /// without blocking each other's workers, and all of them commit.
    #[test]
    fn synced_writes_from_many_tasks_all_commit() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::io("tempdir", "", e))?;
        let db = std::sync::Arc::new(Db::open(dir.path(), &dir.path().join("s.db"))?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(|e| StateError::io("runtime", "", e))?;
        let n = 64;
        rt.block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let db = db.clone();
                    tokio::spawn(async move { db.write(|tx| meta_set(tx, &format!("k{i}"), "v")) })
                })
                .collect();
            for t in tasks {
                assert!(matches!(t.await, Ok(Ok(()))));
            }
        });
        let count: i64 =
            db.with(|c| Ok(c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| r.get(0))?))?;
        assert_eq!(count, n);
        assert!(db.sync.syncs() <= n as u64 + 1);
        Ok(())
    }

    #[test]
    fn migrations_are_idempotent_across_opens() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::io("tempdir", "", e))?;
        let path = dir.path().join("s.db");
        for _ in 0..2 {
            let db = Db::open(dir.path(), &path)?;
            let v: i64 = db.with(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))?;
            assert_eq!(v, SCHEMA_VERSION);
        }
        Ok(())
    }
}
