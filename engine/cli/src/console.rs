//! What the operator sees: progress per step and the questions a run asks.
//!
//! Design decision: one [`Console`] is both the run's [`Reporter`] and its
//! [`Operator`], so a spinner is always suspended while a question or manual
//! instructions are on screen. Three modes: spinners on a terminal, plain
//! lines when stdout is not a terminal, JSON lines with `--output json`.
//! Questions always go to stderr, so stdout stays parseable.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rota_core::Secret;
use rota_core::event::{Event, Outcome, Reporter, StepStatus};
use rota_core::operator::Operator;

use crate::cli::Output;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Terminal,
    Plain,
    Json,
}

pub struct Console {
    mode: Mode,
    bar: Mutex<Option<ProgressBar>>,
    interactive: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Console {
    pub fn new(output: Output) -> Self {
        let mode = match output {
            Output::Json => Mode::Json,
            Output::Text if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() => {
                Mode::Terminal
            }
            Output::Text => Mode::Plain,
        };
        Self {
            mode,
            bar: Mutex::new(None),
            interactive: std::io::stdin().is_terminal(),
        }
    }

    /// A line on stdout. A closed pipe (`rota run ... | head`) is not an
    /// error worth dying for mid-run: the run goes on and is journaled.
    fn out(&self, line: &str) {
        let print = || {
            let _ = writeln!(std::io::stdout(), "{line}");
        };
        let bar = lock(&self.bar);
        match bar.as_ref() {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    /// Runs `f` with any spinner hidden.
    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        let bar = lock(&self.bar).clone();
        match bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    fn status_word(status: StepStatus) -> &'static str {
        match status {
            StepStatus::Succeeded => "ok",
            StepStatus::Failed => "FAILED",
            StepStatus::Recovered => "recovered",
            StepStatus::Skipped => "skipped",
            StepStatus::Planned => "planned",
        }
    }

    fn finish_line(
        id: &str,
        status: StepStatus,
        duration: Duration,
        error: Option<&str>,
        terminal: bool,
    ) -> String {
        let mark = if terminal {
            match status {
                StepStatus::Succeeded => "\u{2714}",
                StepStatus::Failed => "\u{2718}",
                StepStatus::Recovered => "\u{21BA}",
                StepStatus::Skipped => "-",
                StepStatus::Planned => "\u{2026}",
            }
        } else {
            Self::status_word(status)
        };
        let mut line = format!("{mark:<9} {id}");
        if terminal && status != StepStatus::Skipped {
            line.push_str(&format!(" ({:.1}s)", duration.as_secs_f64()));
        }
        if let Some(e) = error {
            line.push_str(&format!(": {e}"));
        }
        line
    }
}

impl Reporter for Console {
    fn event(&self, event: &Event) {
        if self.mode == Mode::Json {
            if let Ok(line) = serde_json::to_string(event) {
                self.out(&line);
            }
            return;
        }
        let terminal = self.mode == Mode::Terminal;
        match event {
            Event::RunStarted {
                run_id,
                playbook,
                dry_run,
            } => {
                let what = if *dry_run { "plan" } else { "run" };
                self.out(&format!("{what} {run_id}: {playbook}"));
            }
            Event::StepStarted {
                id,
                name,
                path,
                iteration,
                ..
            } => {
                if terminal && iteration.is_none() {
                    let bar = ProgressBar::new_spinner();
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                        bar.set_style(style);
                    }
                    let label = if name == id {
                        id.clone()
                    } else {
                        format!("{id}: {name}")
                    };
                    bar.set_message(if *path == "manual" {
                        format!("{label} (manual)")
                    } else {
                        label
                    });
                    bar.enable_steady_tick(Duration::from_millis(100));
                    *lock(&self.bar) = Some(bar);
                }
            }
            Event::StepRetrying {
                id,
                attempt,
                delay,
                error,
            } => {
                self.out(&format!(
                    "  retry   {id}: attempt {attempt} in {:.1}s after: {error}",
                    delay.as_secs_f64()
                ));
            }
            Event::Message { id, level, message } => {
                let prefix = if level == "warn" { "warning: " } else { "" };
                self.out(&format!("  {id}: {prefix}{message}"));
            }
            Event::WouldDo {
                id,
                description,
                input,
            } => {
                let input = input
                    .as_ref()
                    .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                self.out(&format!("  {id}: {description}{input}"));
            }
            Event::StepFinished {
                id,
                status,
                duration,
                error,
            } => {
                if let Some(bar) = lock(&self.bar).take() {
                    bar.finish_and_clear();
                }
                self.out(&Self::finish_line(
                    id,
                    *status,
                    *duration,
                    error.as_deref(),
                    terminal,
                ));
            }
            Event::RunFinished { run_id, outcome, .. } => {
                let line = match outcome {
                    Outcome::Succeeded => format!("run {run_id} succeeded"),
                    Outcome::Failed => format!("run {run_id} failed"),
                    Outcome::Declined => format!("run {run_id} stopped: the operator declined"),
                    Outcome::Planned => format!("plan {run_id} finished: nothing was changed"),
                    Outcome::Interrupted => format!("run {run_id} stopped: it is still interrupted"),
                };
                self.out(&line);
            }
        }
    }
}

fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "stdin closed",
        ));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

impl Operator for Console {
    fn is_interactive(&self) -> bool {
        self.interactive
    }

    fn confirm(&self, question: &str) -> std::io::Result<bool> {
        self.suspend(|| {
            eprint!("? {question} [y/N] ");
            std::io::stderr().flush()?;
            let answer = read_line()?;
            Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
        })
    }

    fn instructions(&self, step: &str, text: &str) {
        self.suspend(|| {
            eprintln!("\n--- manual step {step} ---");
            for line in text.trim_end().lines() {
                eprintln!("  {line}");
            }
            eprintln!("---");
        });
    }

    fn ask(&self, prompt: &str) -> std::io::Result<String> {
        self.suspend(|| {
            eprint!("? {prompt}: ");
            std::io::stderr().flush()?;
            read_line()
        })
    }

    fn ask_secret(&self, prompt: &str) -> std::io::Result<Secret> {
        self.suspend(|| rpassword::prompt_password(format!("? {prompt} (input hidden): ")).map(Secret::new))
    }
}
