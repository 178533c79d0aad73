//! The person at the terminal: confirmations, manual instructions, prompts.
//!
//! Design decision: the executor talks to the operator only through this
//! trait, so the CLI can use a real terminal (no-echo secret prompts), tests
//! can script answers, and a non-interactive run refuses clearly instead of
//! blocking on a closed stdin.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::secret::Secret;

/// Stands in for the operator's hands at manual steps: in a rehearsal, the
/// simulator admin call that the documented clicks would make, and the
/// values the operator would then type.
pub trait StandIn: Send + Sync + std::fmt::Debug {
    /// The answers for manual step `step` (rendered against the run's
    /// template `context`), or `None` when it has nothing for this step (the
    /// step then asks as usual). An error fails the step.
    fn perform(&self, step: &str, context: &Value) -> BoxFuture<'static, Result<Option<Performed>, String>>;
}

/// What a [`StandIn`] did at a manual step.
#[derive(Clone, Default)]
pub struct Performed {
    /// Output name -> value, as an `--inputs` file's `manual:` answers
    /// (secret values go straight to the store, never to output).
    pub answers: Map<String, Value>,
    /// What was done, for the run's output (never a secret value).
    pub note: String,
}

/// Answer names only: an answer may be a secret value.
impl std::fmt::Debug for Performed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Performed")
            .field("answers", &self.answers.keys().collect::<Vec<_>>())
            .field("note", &self.note)
            .finish()
    }
}

pub trait Operator: Send + Sync {
    /// Whether a person can answer (a terminal on stdin).
    fn is_interactive(&self) -> bool;
    /// Asks a yes/no question; `Ok(false)` means the operator said no.
    fn confirm(&self, question: &str) -> io::Result<bool>;
    /// Shows a manual step's documented instructions.
    fn instructions(&self, step: &str, text: &str);
    /// Asks for a plain value.
    fn ask(&self, prompt: &str) -> io::Result<String>;
    /// Asks for a secret value without echo.
    fn ask_secret(&self, prompt: &str) -> io::Result<Secret>;
}

/// An operator who is not there: every question is refused.
#[derive(Debug, Default)]
pub struct Absent;

impl Operator for Absent {
    fn is_interactive(&self) -> bool {
        false
    }
    fn confirm(&self, _: &str) -> io::Result<bool> {
        Err(io::Error::other("no operator is attached to this run"))
    }
    fn instructions(&self, _: &str, _: &str) {}
    fn ask(&self, _: &str) -> io::Result<String> {
        Err(io::Error::other("no operator is attached to this run"))
    }
    fn ask_secret(&self, _: &str) -> io::Result<Secret> {
        Err(io::Error::other("no operator is attached to this run"))
    }
}

/// Scripted answers, for tests: confirmations and values in order.
#[derive(Debug, Default)]
pub struct Scripted {
    pub confirms: Mutex<VecDeque<bool>>,
    pub answers: Mutex<VecDeque<String>>,
    pub transcript: Mutex<Vec<String>>,
}

impl Scripted {
    pub fn new(confirms: &[bool], answers: &[&str]) -> Self {
        Self {
            confirms: Mutex::new(confirms.iter().copied().collect()),
            answers: Mutex::new(answers.iter().map(|s| s.to_string()).collect()),
            transcript: Mutex::new(Vec::new()),
        }
    }

    fn note(&self, line: String) {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    pub fn transcript(&self) -> Vec<String> {
        self.transcript.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn next_answer(&self) -> io::Result<String> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .ok_or_else(|| io::Error::other("script has no more answers"))
    }
}

impl Operator for Scripted {
    fn is_interactive(&self) -> bool {
        true
    }
    fn confirm(&self, question: &str) -> io::Result<bool> {
        self.note(format!("confirm: {question}"));
        self.confirms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .ok_or_else(|| io::Error::other("script has no more confirmations"))
    }
    fn instructions(&self, step: &str, text: &str) {
        self.note(format!("instructions for {step}: {text}"));
    }
    fn ask(&self, prompt: &str) -> io::Result<String> {
        self.note(format!("ask: {prompt}"));
        self.next_answer()
    }
    fn ask_secret(&self, prompt: &str) -> io::Result<Secret> {
        self.note(format!("ask secret: {prompt}"));
        self.next_answer().map(Secret::new)
    }
}
