//! `rota show`: a playbook described for a person about to run it.

use rota_core::core_actions::split_uses;
use rota_core::playbook::{Playbook, Step};
use rota_core::{ActionCatalog, Basis};

use crate::cli::{Output, ShowArgs};
use crate::commands::Env;
use crate::discover;
use crate::exit;

pub struct Show {
    pub args: ShowArgs,
}

impl Show {
    pub fn execute(self) -> anyhow::Result<i32> {
        let env = Env::load()?;
        let loaded = discover::find(&self.args.playbook, env.catalog.as_ref())?;
        if self.args.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&loaded.playbook)?);
            return Ok(exit::OK);
        }
        print!(
            "{}",
            describe(&loaded.playbook, &loaded.source.name, env.catalog.as_ref())
        );
        Ok(exit::OK)
    }
}

fn describe(p: &Playbook, file: &str, catalog: &dyn ActionCatalog) -> String {
    let mut out = format!("{}\n  {}\n", p.name, p.description.trim().replace('\n', "\n  "));
    out.push_str(&format!("  file: {file}\n"));
    if let Some(src) = &p.source {
        out.push_str(&format!("  source: {src}\n"));
    }
    if !p.inputs.is_empty() {
        out.push_str("\ninputs:\n");
        for (name, i) in p.inputs.iter() {
            let need = match (&i.default, i.is_required()) {
                (Some(d), _) => format!("default {d}"),
                (None, true) => "required".to_owned(),
                (None, false) => "optional".to_owned(),
            };
            let extra = if i.values.is_empty() {
                String::new()
            } else {
                format!(" [{}]", i.values.join("|"))
            };
            out.push_str(&format!(
                "  {name} ({}{extra}, {need}){}\n",
                i.kind.as_str(),
                i.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
    }
    if !p.secrets.is_empty() {
        out.push_str("\nsecrets:\n");
        for (id, s) in p.secrets.iter() {
            let lifetime = if s.ephemeral { ", ephemeral" } else { "" };
            let to = if s.send_to.is_empty() {
                String::new()
            } else {
                format!(", sent to {}", s.send_to.join(", "))
            };
            out.push_str(&format!("  {id}: {}{lifetime}{to}\n", s.name));
        }
    }
    if !p.locks.is_empty() {
        out.push_str(&format!("\nlocks: {}\n", p.locks.join(", ")));
    }
    for (title, steps) in [
        ("steps", &p.steps),
        ("on_failure", &p.on_failure),
        ("finally", &p.finally),
    ] {
        if steps.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}:\n"));
        for (n, step) in steps.iter().enumerate() {
            out.push_str(&describe_step(n + 1, step, catalog));
        }
    }
    out
}

fn describe_step(n: usize, step: &Step, catalog: &dyn ActionCatalog) -> String {
    let how = match (&step.uses, &step.manual) {
        (Some(uses), Some(_)) => {
            let basis = split_uses(uses)
                .and_then(|(p, a)| catalog.lookup(p, a))
                .map(|s| {
                    if s.basis == Basis::Modeled {
                        ", modeled"
                    } else {
                        ", documented"
                    }
                })
                .unwrap_or_default();
            format!("{uses}{basis}, with a manual fallback")
        }
        (Some(uses), None) => uses.clone(),
        (None, Some(_)) => "manual".to_owned(),
        (None, None) => "nothing".to_owned(),
    };
    let mut line = format!("  {n}. {} [{}] ({how})\n", step.display_name(), step.id);
    let mut detail = |label: &str, text: String| line.push_str(&format!("       {label}: {text}\n"));
    if let Some(c) = &step.condition {
        detail(
            "if",
            c.as_str().map(str::to_owned).unwrap_or_else(|| c.to_string()),
        );
    }
    if let Some(f) = &step.for_each {
        let c = step
            .concurrency
            .map(|c| format!(" (concurrency {c})"))
            .unwrap_or_default();
        detail(
            "for each",
            format!(
                "{}{c}",
                f.as_str().map(str::to_owned).unwrap_or_else(|| f.to_string())
            ),
        );
    }
    if let Some(d) = &step.describe {
        detail("does", d.clone());
    }
    if let Some(q) = &step.confirm {
        detail("confirm", q.clone());
    }
    if let Some(r) = &step.retry {
        detail(
            "retry",
            format!(
                "{} attempts, from {} x{} up to {}",
                r.attempts, r.delay, r.factor, r.max_delay
            ),
        );
    }
    if let Some(t) = &step.timeout {
        detail("timeout", t.to_string());
    }
    if step.recoverable {
        detail("recoverable", "a failure here does not fail the run".to_owned());
    }
    line
}
