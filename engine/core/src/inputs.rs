//! Turning what the operator passed (`-i key=value`, `--inputs file.yaml`)
//! into typed input values.
//!
//! Design decision: a `secret` input's value is the NAME of a stored secret,
//! so a secret value never travels through argv; the run sees a handle to its
//! current version. Manual-step answers ride in the inputs file under the
//! reserved key `manual`, keyed by step id, because a non-interactive run has
//! no other safe place to get them from.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::playbook::{InputType, Playbook};
use crate::template::Templates;
use crate::validate::check_input_value;

/// What the operator supplied before the run.
#[derive(Clone, Debug, Default)]
pub struct Supplied {
    /// Input name -> value. `-i` values arrive as strings and are coerced.
    pub values: Map<String, Value>,
    /// Which supplied values came from `-i` (strings to coerce).
    pub from_cli: Vec<String>,
    /// Step id -> output name -> answer, for manual steps.
    pub manual: BTreeMap<String, Map<String, Value>>,
}

impl Supplied {
    /// Adds `key=value` from the command line.
    pub fn add_cli(&mut self, pair: &str) -> Result<(), String> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("-i expects key=value, got \"{pair}\""))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("-i expects key=value, got \"{pair}\""));
        }
        if let Some(rest) = k.strip_prefix("manual.") {
            let (step, field) = rest
                .split_once('.')
                .ok_or_else(|| format!("-i manual answers are manual.<step>.<output>=value, got \"{k}\""))?;
            self.manual
                .entry(step.to_owned())
                .or_default()
                .insert(field.to_owned(), Value::String(v.to_owned()));
            return Ok(());
        }
        self.values.insert(k.to_owned(), Value::String(v.to_owned()));
        self.from_cli.push(k.to_owned());
        Ok(())
    }

    /// Merges an `--inputs` file (already parsed). Command-line values win.
    pub fn add_file(&mut self, doc: Value) -> Result<(), String> {
        let Value::Object(map) = doc else {
            return Err("an --inputs file must be a mapping of input names to values".to_owned());
        };
        for (k, v) in map {
            if k == "manual" {
                let Value::Object(steps) = v else {
                    return Err("\"manual\" in an --inputs file maps step ids to their answers".to_owned());
                };
                for (step, answers) in steps {
                    let Value::Object(answers) = answers else {
                        return Err(format!("manual.{step} must map output names to values"));
                    };
                    let entry = self.manual.entry(step).or_default();
                    for (name, value) in answers {
                        entry.entry(name).or_insert(value);
                    }
                }
            } else if !self.values.contains_key(&k) {
                self.values.insert(k, v);
            }
        }
        Ok(())
    }
}

/// Coerces a command-line string to the input's type.
fn coerce(kind: InputType, v: &Value) -> Value {
    let Some(s) = v.as_str() else { return v.clone() };
    match kind {
        InputType::Integer => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| v.clone()),
        InputType::Boolean => match s.trim() {
            "true" | "yes" => Value::Bool(true),
            "false" | "no" => Value::Bool(false),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

/// Resolves every declared input: supplied values, then defaults (which may
/// be templates over other inputs). Returns every problem at once.
pub fn resolve(
    playbook: &Playbook,
    supplied: &Supplied,
    templates: &Templates,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut errors = Vec::new();
    for k in supplied.values.keys() {
        if !playbook.inputs.contains_key(k) {
            let known: Vec<&str> = playbook.inputs.keys().map(String::as_str).collect();
            errors.push(format!(
                "unknown input \"{k}\"; {} takes: {}",
                playbook.name,
                if known.is_empty() {
                    "no inputs".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let mut values = Map::new();
    let mut pending = Vec::new();
    for (name, input) in playbook.inputs.iter() {
        match supplied.values.get(name) {
            Some(v) => {
                let v = if supplied.from_cli.contains(name) { coerce(input.kind, v) } else { v.clone() };
                match check_input_value(name, input, &v) {
                    Ok(()) => {
                        values.insert(name.clone(), v);
                    }
                    Err(e) => errors.push(e),
                }
            }
            None => match &input.default {
                Some(d) => pending.push((name, input, d)),
                None if input.is_required() => errors.push(format!(
                    "missing required input \"{name}\" ({}{}): pass -i {name}=... or put it in an --inputs file",
                    input.kind.as_str(),
                    input.description.as_deref().map(|d| format!(", {d}")).unwrap_or_default()
                )),
                None => {
                    values.insert(name.clone(), Value::Null);
                }
            },
        }
    }
    // Defaults may refer to other inputs: resolve in passes (validation has
    // ruled out cycles, so each pass makes progress or reports an error).
    while !pending.is_empty() {
        let ctx = serde_json::json!({ "inputs": values });
        let mut next = Vec::new();
        let mut progressed = false;
        for (name, input, d) in pending {
            let rendered = match d.as_str() {
                Some(s) if Templates::is_template(s) => match templates.render_value(s, &ctx) {
                    Ok(v) => v,
                    Err(crate::template::TemplateError::Missing(_)) => {
                        next.push((name, input, d));
                        continue;
                    }
                    Err(e) => {
                        errors.push(format!("default of input \"{name}\": {e}"));
                        continue;
                    }
                },
                _ => d.clone(),
            };
            let rendered = coerce(input.kind, &rendered);
            match check_input_value(name, input, &rendered) {
                Ok(()) => {
                    values.insert(name.clone(), rendered);
                    progressed = true;
                }
                Err(e) => errors.push(format!("default of {e}")),
            }
        }
        if !progressed && !next.is_empty() {
            for (name, _, _) in next {
                errors.push(format!(
                    "default of input \"{name}\" refers to an input that has no value"
                ));
            }
            break;
        }
        pending = next;
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}
