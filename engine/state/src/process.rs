//! Who is acting and whether a recorded process is still alive.
//!
//! Design decision: a process is identified by pid, host AND its start time
//! (from `/proc/<pid>/stat`), so a recycled pid never keeps a dead run's lock.
//! A holder on another host, or on a system without `/proc`, is assumed alive:
//! releasing a live run's lock is worse than waiting.

use serde::{Deserialize, Serialize};

/// A process as recorded in locks and runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub host: String,
    /// Start time in clock ticks since boot (Linux), empty when unknown.
    pub start: String,
}

/// Whether a recorded process still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// On another host or without `/proc`: treated as alive.
    Unknown,
}

impl ProcessId {
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            host: hostname(),
            start: start_time(pid).unwrap_or_default(),
        }
    }

    pub fn liveness(&self) -> Liveness {
        if self.host != hostname() || !std::path::Path::new("/proc/self/stat").exists() {
            return Liveness::Unknown;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => Liveness::Dead,
            Ok(stat) => match parse_stat(&stat) {
                Some((state, start)) if state != "Z" && state != "X" => {
                    if self.start.is_empty() || self.start == start {
                        Liveness::Alive
                    } else {
                        Liveness::Dead
                    }
                }
                Some(_) => Liveness::Dead,
                None => Liveness::Unknown,
            },
        }
    }

    pub fn is_dead(&self) -> bool {
        self.liveness() == Liveness::Dead
    }
}

/// (state, starttime) from a `/proc/<pid>/stat` line. The command name may
/// contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(String, String)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of stat is `state` (index 0 here); field 22 is `starttime`.
    Some(((*fields.first()?).to_owned(), (*fields.get(19)?).to_owned()))
}

fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(uid_from_proc)
        .unwrap_or_else(|| "unknown-user".to_owned())
}

fn uid_from_proc() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    Some(format!("uid {}", line.split_whitespace().nth(1)?))
}

/// Who performs an action: recorded in the audit log and on runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub os_user: String,
    pub host: String,
    pub operator: Option<String>,
}

impl Actor {
    pub fn current(operator: Option<String>) -> Self {
        Self {
            os_user: os_user(),
            host: hostname(),
            operator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let me = ProcessId::current();
        assert!(!me.start.is_empty());
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn a_recycled_pid_is_dead() {
        let mut me = ProcessId::current();
        me.start = "1".to_owned();
        assert_eq!(me.liveness(), Liveness::Dead);
    }

    #[test]
    fn an_exited_process_is_dead() -> std::io::Result<()> {
        let mut child = std::process::Command::new("true").spawn()?;
        let pid = child.id();
        child.wait()?;
        let gone = ProcessId {
            pid,
            host: hostname(),
            start: String::new(),
        };
        assert_eq!(gone.liveness(), Liveness::Dead);
        Ok(())
    }

    #[test]
    fn stat_with_parens_in_name_parses() {
        let line = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 999 20";
        assert_eq!(parse_stat(line), Some(("S".to_owned(), "999".to_owned())));
    }

    #[test]
    fn another_host_is_unknown() {
        let mut me = ProcessId::current();
        me.host = "elsewhere.invalid".to_owned();
        assert_eq!(me.liveness(), Liveness::Unknown);
    }
}
