//! What a run reports as it goes: the stream progress displays, JSON output
//! and (later) the journal consume.
//!
//! Design decision: events carry ids, names, statuses and handles only. A
//! value that reaches an event has already been through templating, which
//! cannot produce a secret's text, and through the run's redaction backstop.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// Failed, but marked `recoverable`: the run went on.
    Recovered,
    /// Its `if` was false.
    Skipped,
    /// A plan showed what it would do without doing it.
    Planned,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Recovered => "recovered",
            StepStatus::Skipped => "skipped",
            StepStatus::Planned => "planned",
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The operator answered no to a confirmation.
    Declined,
    /// A plan (`--dry-run`) finished.
    Planned,
    /// A resume stopped before it could settle a call the interrupted run
    /// left in flight: nothing was compensated and the run can be resumed
    /// again or aborted.
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        dry_run: bool,
    },
    StepStarted {
        id: String,
        name: String,
        section: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        iteration: Option<usize>,
        /// `automated`, `manual` or `core`.
        path: &'static str,
    },
    StepRetrying {
        id: String,
        attempt: u32,
        #[serde(serialize_with = "as_secs")]
        delay: Duration,
        error: String,
    },
    Message {
        id: String,
        level: String,
        message: String,
    },
    /// In a plan: what the step would do.
    WouldDo {
        id: String,
        description: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    StepFinished {
        id: String,
        status: StepStatus,
        #[serde(serialize_with = "as_secs")]
        duration: Duration,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    RunFinished {
        run_id: String,
        outcome: Outcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Receives events as they happen.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// Discards events.
#[derive(Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _: &Event) {}
}

/// Keeps events, for tests.
#[derive(Debug, Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn event(&self, event: &Event) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
