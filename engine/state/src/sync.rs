//! Group commit: one fsync of the WAL makes every commit before it durable.
//!
//! Design decision: SQLite runs with `synchronous=NORMAL` (a commit is
//! atomic and survives the process being killed, but waits for no disk),
//! and a [`Durability::Synced`](crate::db::Durability::Synced) write, once
//! committed and the connection released, waits here until the WAL file has
//! been fsynced past its commit. Writers that commit while an fsync is
//! running are covered by the next one, which a single leader makes for all
//! of them: with many runs in one process (`--matrix`) the disk sees one
//! fsync per batch of commits instead of one per commit, and no fsync is
//! ever made while the database is locked. WAL replays a prefix of the
//! commits after a crash, so a synced commit also makes every commit before
//! it durable.
//!
//! The WAL file is opened beside the database and checked against the path
//! at each sync: SQLite only replaces or removes the WAL after a checkpoint,
//! which syncs the database file first, so a commit no longer in the file
//! the path names is already durable in the database.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::StateError;

/// What makes the commits so far durable (the WAL's fsync; a test double in
/// unit tests).
pub(crate) trait Flush: Send {
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Fsyncs the WAL file the path currently names.
pub(crate) struct WalFile {
    path: PathBuf,
    open: Option<(File, u64, u64)>,
}

impl WalFile {
    pub(crate) fn beside(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        Self {
            path: PathBuf::from(name),
            open: None,
        }
    }
}

impl Flush for WalFile {
    fn flush(&mut self) -> std::io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            // Removed after a full checkpoint: everything is in the synced
            // database file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let id = (meta.dev(), meta.ino());
        if !matches!(&self.open, Some((_, dev, ino)) if (*dev, *ino) == id) {
            let file = File::open(&self.path)?;
            // A WAL created since the last sync: its directory entry must
            // survive too.
            if let Some(dir) = self.path.parent() {
                File::open(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                })?
                .sync_all()?;
            }
            self.open = Some((file, id.0, id.1));
        }
        match &self.open {
            Some((file, _, _)) => file.sync_data(),
            None => Ok(()),
        }
    }
}

struct Progress {
    /// Commits made (numbered from 1).
    committed: u64,
    /// Every commit up to this one is durable.
    synced: u64,
    /// A writer is fsyncing for everyone.
    leading: bool,
    /// An fsync failed: what was written since may be lost, so no later
    /// synced write is ever reported durable.
    failed: Option<String>,
    syncs: u64,
}

pub(crate) struct GroupSync {
    flush: Mutex<Box<dyn Flush>>,
    progress: Mutex<Progress>,
    done: Condvar,
}

impl GroupSync {
    pub(crate) fn new(flush: Box<dyn Flush>) -> Self {
        Self {
            flush: Mutex::new(flush),
            progress: Mutex::new(Progress {
                committed: 0,
                synced: 0,
                leading: false,
                failed: None,
                syncs: 0,
            }),
            done: Condvar::new(),
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers a commit; called while the database is still locked by it, so
    /// numbers follow commit order.
    pub(crate) fn committed(&self) -> u64 {
        let mut p = self.progress();
        p.committed += 1;
        p.committed
    }

    /// How many fsyncs were made.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.progress().syncs
    }

    /// Commits numbered and fsyncs made so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let p = self.progress();
        (p.committed, p.syncs)
    }

    /// Returns once commit `seq` is durable: made durable by another
    /// writer's fsync, or by this one's as the leader of everyone waiting.
    pub(crate) fn wait(&self, seq: u64) -> Result<(), StateError> {
        let mut p = self.progress();
        loop {
            if let Some(why) = &p.failed {
                return Err(StateError::Invalid(format!(
                    "the state database's log could not be synced to disk ({why}); \
                     recent writes may not be durable, so no write is reported durable \
                     until rota is restarted"
                )));
            }
            if p.synced >= seq {
                return Ok(());
            }
            if p.leading {
                p = self.done.wait(p).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            p.leading = true;
            let upto = p.committed;
            drop(p);
            let flushed = self.flush.lock().unwrap_or_else(|e| e.into_inner()).flush();
            p = self.progress();
            p.leading = false;
            p.syncs += 1;
            match flushed {
                Ok(()) => p.synced = p.synced.max(upto),
                Err(e) => p.failed = Some(e.to_string()),
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Holds its first fsync until `expect` commits are numbered, so the
    /// writers that commit meanwhile must share the next one.
    struct Gate {
        sync: Arc<GroupSyncSlot>,
        expect: u64,
        calls: Arc<AtomicU64>,
        fail: bool,
    }

    #[derive(Default)]
    struct GroupSyncSlot(std::sync::OnceLock<Arc<GroupSync>>);

    impl Flush for Gate {
        fn flush(&mut self) -> std::io::Result<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n == 0
                && let Some(sync) = self.sync.0.get()
            {
                let deadline = Instant::now() + Duration::from_secs(10);
                while sync.progress().committed < self.expect && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if self.fail {
                Err(std::io::Error::other("disk gone"))
            } else {
                Ok(())
            }
        }
    }

    fn gated(expect: u64, fail: bool) -> (Arc<GroupSync>, Arc<AtomicU64>) {
        let slot = Arc::new(GroupSyncSlot::default());
        let calls = Arc::new(AtomicU64::new(0));
        let sync = Arc::new(GroupSync::new(Box::new(Gate {
            sync: slot.clone(),
            expect,
            calls: calls.clone(),
            fail,
        })));
        let _ = slot.0.set(sync.clone());
        (sync, calls)
    }

    #[test]
    fn writers_that_commit_during_an_fsync_share_the_next_one() {
        let n = 8;
        let (sync, calls) = gated(n, false);
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || {
                    let seq = sync.committed();
                    sync.wait(seq)
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok_and(|r| r.is_ok()));
        }
        // The first leader's fsync may cover only itself; every writer that
        // committed while it ran is covered by the one after it.
        let made = calls.load(Ordering::SeqCst);
        assert!((1..=2).contains(&made), "{made} fsyncs for {n} commits");
        assert_eq!(sync.syncs(), made);
        // Already durable: no further fsync.
        assert!(sync.wait(n).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), made);
    }

    #[test]
    fn a_failed_fsync_fails_every_writer_it_covered_and_every_later_one() {
        let (sync, _) = gated(1, true);
        let seq = sync.committed();
        let err = sync.wait(seq).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("could not be synced") && err.contains("disk gone"),
            "{err}"
        );
        let later = sync.committed();
        assert!(sync.wait(later).is_err());
    }

    #[test]
    fn the_wal_file_is_synced_and_a_missing_one_means_checkpointed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("s.db");
        let mut wal = WalFile::beside(&db);
        wal.flush()?;
        assert!(wal.open.is_none(), "no WAL yet, nothing to sync");
        std::fs::write(dir.path().join("s.db-wal"), b"frames")?;
        wal.flush()?;
        let first = wal.open.as_ref().map(|(_, d, i)| (*d, *i));
        assert!(first.is_some());
        // Replaced (a checkpoint restarted it as a new file): reopened.
        std::fs::remove_file(dir.path().join("s.db-wal"))?;
        std::fs::write(dir.path().join("s.db-wal.new"), b"more")?;
        std::fs::rename(dir.path().join("s.db-wal.new"), dir.path().join("s.db-wal"))?;
        wal.flush()?;
        let second = wal.open.as_ref().map(|(_, d, i)| (*d, *i));
        assert_ne!(first, second);
        Ok(())
    }
}
