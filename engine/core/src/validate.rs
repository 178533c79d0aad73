//! Static checks of a parsed playbook: everything that can be known without
//! running anything.
//!
//! Design decision: validation collects every problem it finds (not just the
//! first), each as a [`Diagnostic`] located through the [`SpanMap`], and it
//! only reads [`ActionSpec`]s, never runs an action: `rota validate` cannot
//! change anything anywhere.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde_json::Value;

use crate::action::{ActionCatalog, ActionSpec};
use crate::core_actions::{self, is_closed, json_type, properties, required, split_uses, takes_secret};
use crate::diagnostic::{Diagnostic, ErrorKind, Pos};
use crate::playbook::{Input, InputType, Playbook, Step};
use crate::template::{ROOTS, Reference, Templates, analyze};
use crate::yaml::SpanMap;

/// Which list a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Steps,
    OnFailure,
    Finally,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Steps => "steps",
            Section::OnFailure => "on_failure",
            Section::Finally => "finally",
        }
    }
}

/// Where a template sits, which decides what it may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// A `with` field; `secret` says whether the field takes a secret.
    With { secret: Option<bool> },
    /// `if`, `confirm`, instructions, log text: plain values only.
    Plain,
    /// `for_each`: the list itself (no `item` yet).
    ForEach,
}

struct StepInfo<'a> {
    section: Section,
    index: usize,
    step: &'a Step,
    spec: Option<ActionSpec>,
}

struct Checker<'a> {
    file: &'a str,
    spans: &'a SpanMap,
    playbook: &'a Playbook,
    catalog: &'a dyn ActionCatalog,
    steps: HashMap<&'a str, StepInfo<'a>>,
    out: Vec<Diagnostic>,
}

/// Whether `p` is a valid pattern: parsed, not compiled (compiling every
/// pattern of a playbook was a quarter of `rota validate`); the value is
/// matched with a compiled `regex` when it is checked.
fn check_pattern(p: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(p)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn ident_re() -> Option<&'static Regex> {
    static RE: std::sync::LazyLock<Option<Regex>> =
        std::sync::LazyLock::new(|| Regex::new("^[a-z][a-z0-9_]*$").ok());
    RE.as_ref()
}

/// Checks a parsed playbook; returns every problem found, in source order.
pub fn validate(
    file: &str,
    playbook: &Playbook,
    spans: &SpanMap,
    catalog: &dyn ActionCatalog,
) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        spans,
        playbook,
        catalog,
        steps: HashMap::new(),
        out: Vec::new(),
    };
    c.check_header();
    c.check_inputs();
    c.check_secrets();
    c.index_steps();
    for (section, list) in sections(playbook) {
        for (i, step) in list.iter().enumerate() {
            c.check_step(section, i, step);
        }
    }
    let mut out = c.out;
    out.sort_by_key(|d| d.pos);
    out.dedup();
    out
}

pub fn sections(p: &Playbook) -> [(Section, &Vec<Step>); 3] {
    [
        (Section::Steps, &p.steps),
        (Section::OnFailure, &p.on_failure),
        (Section::Finally, &p.finally),
    ]
}

impl<'a> Checker<'a> {
    fn err(&mut self, kind: ErrorKind, pos: Pos, msg: impl Into<String>) {
        self.out.push(Diagnostic::new(kind, self.file, pos, msg));
    }

    fn at(&self, path: &str) -> Pos {
        self.spans.value(path)
    }

    fn key_at(&self, path: &str) -> Pos {
        self.spans.key(path)
    }

    fn check_header(&mut self) {
        static NAME: std::sync::LazyLock<Option<Regex>> =
            std::sync::LazyLock::new(|| Regex::new("^[a-z0-9][a-z0-9-]*$").ok());
        let ok = NAME.as_ref().is_some_and(|re| re.is_match(&self.playbook.name));
        if !ok {
            let pos = self.at("name");
            self.err(
                ErrorKind::InvalidValue,
                pos,
                format!(
                    "invalid playbook name \"{}\": expected lowercase letters, digits and dashes, e.g. plex-api-key-reset",
                    self.playbook.name
                ),
            );
        }
        for (i, lock) in self.playbook.locks.iter().enumerate() {
            let path = format!("locks[{i}]");
            self.check_template_refs(lock, &path, None, Slot::Plain, true);
        }
        if self.playbook.steps.is_empty() {
            let pos = self.at("steps");
            self.err(ErrorKind::InvalidValue, pos, "a playbook needs at least one step");
        }
    }

    fn check_inputs(&mut self) {
        let ident = ident_re();
        let inputs = &self.playbook.inputs;
        for (name, input) in inputs.iter() {
            let path = format!("inputs.{name}");
            if !ident.as_ref().is_some_and(|re| re.is_match(name)) || name == "manual" {
                let pos = self.key_at(&path);
                let why = if name == "manual" {
                    "\"manual\" is reserved for manual-step answers in --inputs files".to_owned()
                } else {
                    "expected lowercase letters, digits and underscores, starting with a letter".to_owned()
                };
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    format!("invalid input name \"{name}\": {why}"),
                );
            }
            self.check_input(name, input, &path);
        }
        self.check_default_cycles();
    }

    fn check_input(&mut self, name: &str, input: &Input, path: &str) {
        let misplaced = |field: &str, only: &str| {
            format!(
                "\"{field}\" only applies to {only} inputs (\"{name}\" is {})",
                input.kind.as_str()
            )
        };
        if input.kind == InputType::Enum && input.values.is_empty() {
            let pos = self.at(path);
            self.err(
                ErrorKind::MissingField,
                pos,
                format!("enum input \"{name}\" needs \"values\", the list of allowed values"),
            );
        }
        if input.kind != InputType::Enum && !input.values.is_empty() {
            let pos = self.key_at(&format!("{path}.values"));
            self.err(ErrorKind::InvalidValue, pos, misplaced("values", "enum"));
        }
        if input.kind != InputType::Integer && (input.minimum.is_some() || input.maximum.is_some()) {
            let field = if input.minimum.is_some() {
                "minimum"
            } else {
                "maximum"
            };
            let pos = self.key_at(&format!("{path}.{field}"));
            self.err(ErrorKind::InvalidValue, pos, misplaced(field, "integer"));
        }
        if input.kind != InputType::Secret && !input.send_to.is_empty() {
            let pos = self.key_at(&format!("{path}.send_to"));
            self.err(ErrorKind::InvalidValue, pos, misplaced("send_to", "secret"));
        }
        if let Some(pattern) = &input.pattern {
            let ppath = format!("{path}.pattern");
            if input.kind != InputType::String {
                let pos = self.key_at(&ppath);
                self.err(ErrorKind::InvalidValue, pos, misplaced("pattern", "string"));
            } else if let Err(e) = check_pattern(pattern) {
                let pos = self.at(&ppath);
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    format!("invalid pattern: {}", first_line(&e.to_string())),
                );
            }
        }
        if input.required == Some(true) && input.default.is_some() {
            let pos = self.key_at(&format!("{path}.required"));
            self.err(
                ErrorKind::InvalidValue,
                pos,
                format!("input \"{name}\" has a default, so it cannot be required"),
            );
        }
        self.check_send_to(&input.send_to, &format!("{path}.send_to"));
        if let Some(default) = &input.default {
            let dpath = format!("{path}.default");
            if let Some(s) = default.as_str().filter(|s| Templates::is_template(s)) {
                self.check_template_refs(s, &dpath, None, Slot::Plain, true);
            } else if let Err(msg) = check_input_value(name, input, default) {
                let pos = self.at(&dpath);
                self.err(ErrorKind::WrongType, pos, msg);
            }
        }
    }

    fn check_default_cycles(&mut self) {
        let mut graph: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, input) in self.playbook.inputs.iter() {
            if let Some(s) = input.default.as_ref().and_then(Value::as_str)
                && let Ok((refs, _)) = analyze(s, &Templates::has_helper)
            {
                let deps = refs
                    .iter()
                    .filter(|r| r.segments.first().map(String::as_str) == Some("inputs"))
                    .filter_map(|r| r.segments.get(1).cloned())
                    .collect();
                graph.insert(name, deps);
            }
        }
        let mut reported = HashSet::new();
        for start in graph.keys().copied() {
            let mut stack = vec![(start, vec![start.to_owned()])];
            let mut seen = HashSet::new();
            while let Some((node, trail)) = stack.pop() {
                for dep in graph.get(node).into_iter().flatten() {
                    if dep == start {
                        if reported.insert(start) {
                            let mut cycle = trail.clone();
                            cycle.push(start.to_owned());
                            let pos = self.at(&format!("inputs.{start}.default"));
                            self.err(
                                ErrorKind::Cycle,
                                pos,
                                format!(
                                    "input defaults refer to each other in a cycle: {}",
                                    cycle.join(" -> ")
                                ),
                            );
                        }
                    } else if seen.insert(dep.clone())
                        && let Some((k, _)) = graph.get_key_value(dep.as_str())
                    {
                        let mut t = trail.clone();
                        t.push(dep.clone());
                        stack.push((k, t));
                    }
                }
            }
        }
    }

    fn check_send_to(&mut self, plugins: &[String], path: &str) {
        let known = self.catalog.plugins();
        for (i, p) in plugins.iter().enumerate() {
            if !known.contains(p) {
                let pos = self.at(&format!("{path}[{i}]"));
                self.err(
                    ErrorKind::UnknownReference,
                    pos,
                    format!(
                        "unknown plugin \"{p}\" in send_to; installed plugins: {}",
                        list_or_none(&known)
                    ),
                );
            }
        }
    }

    fn check_secrets(&mut self) {
        let ident = ident_re();
        for (id, decl) in self.playbook.secrets.iter() {
            let path = format!("secrets.{id}");
            if !ident.as_ref().is_some_and(|re| re.is_match(id)) {
                let pos = self.key_at(&path);
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    format!("invalid secret id \"{id}\": expected lowercase letters, digits and underscores"),
                );
            }
            self.check_template_refs(&decl.name, &format!("{path}.name"), None, Slot::Plain, true);
            if !Templates::is_template(&decl.name)
                && let Err(e) = crate::secret::validate_secret_name(&decl.name)
            {
                let pos = self.at(&format!("{path}.name"));
                self.err(ErrorKind::InvalidValue, pos, e);
            }
            self.check_send_to(&decl.send_to, &format!("{path}.send_to"));
        }
    }

    fn index_steps(&mut self) {
        let ident = ident_re();
        let mut first_seen: HashMap<&str, String> = HashMap::new();
        for (section, list) in sections(self.playbook) {
            for (index, step) in list.iter().enumerate() {
                let path = format!("{}[{index}]", section.key());
                if !ident.as_ref().is_some_and(|re| re.is_match(&step.id)) {
                    let pos = self.at(&format!("{path}.id"));
                    self.err(
                        ErrorKind::InvalidValue,
                        pos,
                        format!(
                            "invalid step id \"{}\": expected lowercase letters, digits and underscores, starting with a letter",
                            step.id
                        ),
                    );
                }
                if let Some(first) = first_seen.get(step.id.as_str()) {
                    let pos = self.at(&format!("{path}.id"));
                    let first_line = self.at(first).line;
                    self.err(
                        ErrorKind::DuplicateId,
                        pos,
                        format!(
                            "duplicate step id \"{}\" (first used on line {first_line})",
                            step.id
                        ),
                    );
                    continue;
                }
                first_seen.insert(&step.id, format!("{path}.id"));
                let spec = step.uses.as_deref().and_then(|u| self.resolve_uses(u));
                self.steps.insert(
                    &step.id,
                    StepInfo {
                        section,
                        index,
                        step,
                        spec,
                    },
                );
            }
        }
    }

    fn resolve_uses(&self, uses: &str) -> Option<ActionSpec> {
        let (plugin, action) = split_uses(uses)?;
        if plugin == "core" {
            core_actions::lookup(action)
        } else {
            self.catalog.lookup(plugin, action)
        }
    }

    fn check_step(&mut self, section: Section, index: usize, step: &'a Step) {
        let path = format!("{}[{index}]", section.key());
        let here = (section, index);
        if step.uses.is_none() && step.manual.is_none() {
            let pos = self.at(&path);
            self.err(
                ErrorKind::MissingField,
                pos,
                format!(
                    "step \"{}\" needs \"uses\" (an action) or \"manual\" (instructions), or both",
                    step.id
                ),
            );
        }
        let spec = step.uses.as_deref().and_then(|u| self.resolve_uses(u));
        if let Some(uses) = &step.uses {
            self.check_uses(uses, &format!("{path}.uses"), spec.is_some());
        }
        if !step.with.is_empty() && step.uses.is_none() {
            let pos = self.key_at(&format!("{path}.with"));
            self.err(
                ErrorKind::InvalidValue,
                pos,
                "\"with\" needs \"uses\": it is the input of the action",
            );
        }
        let has_item = step.for_each.is_some();
        if let Some(spec) = &spec {
            self.check_with(step, spec, &path, here, has_item);
        } else {
            for (k, v) in &step.with {
                self.check_value_templates(
                    v,
                    &format!("{path}.with.{k}"),
                    here,
                    has_item,
                    Slot::With { secret: None },
                );
            }
        }
        if let Some(cond) = &step.condition {
            self.check_condition(cond, &format!("{path}.if"), here, has_item);
        }
        if let Some(fe) = &step.for_each {
            let fpath = format!("{path}.for_each");
            match fe {
                Value::Array(_) => {}
                Value::String(s) if Templates::is_template(s) => {
                    self.check_template_refs(s, &fpath, Some((here, false)), Slot::ForEach, false);
                }
                other => {
                    let pos = self.at(&fpath);
                    self.err(
                        ErrorKind::WrongType,
                        pos,
                        format!(
                            "for_each must be a list or a template that yields one, got {}",
                            crate::template::type_name(other)
                        ),
                    );
                }
            }
        }
        if let Some(c) = step.concurrency {
            let cpath = format!("{path}.concurrency");
            if step.for_each.is_none() {
                let pos = self.key_at(&cpath);
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    "\"concurrency\" only applies to a step with \"for_each\"",
                );
            } else if c == 0 {
                let pos = self.at(&cpath);
                self.err(ErrorKind::InvalidValue, pos, "concurrency must be at least 1");
            }
        }
        if let Some(r) = &step.retry {
            let rpath = format!("{path}.retry");
            if r.attempts == 0 {
                let pos = self.at(&format!("{rpath}.attempts"));
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    "retry.attempts counts the first attempt too: it must be at least 1",
                );
            }
            if !(r.factor.is_finite() && r.factor >= 1.0) {
                let pos = self.at(&format!("{rpath}.factor"));
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    "retry.factor must be a number of at least 1",
                );
            }
            if r.max_delay < r.delay {
                let pos = self.at(&format!("{rpath}.max_delay"));
                self.err(
                    ErrorKind::BadDuration,
                    pos,
                    format!(
                        "retry.max_delay ({}) is shorter than retry.delay ({})",
                        r.max_delay, r.delay
                    ),
                );
            }
        }
        if let Some(t) = &step.timeout
            && t.0.is_zero()
        {
            let pos = self.at(&format!("{path}.timeout"));
            self.err(ErrorKind::BadDuration, pos, "timeout must be longer than 0s");
        }
        for (field, text) in [("confirm", &step.confirm), ("describe", &step.describe)] {
            if let Some(q) = text {
                self.check_template_refs(
                    q,
                    &format!("{path}.{field}"),
                    Some((here, has_item)),
                    Slot::Plain,
                    false,
                );
            }
        }
        if let Some(manual) = &step.manual {
            self.check_manual(step, spec.as_ref(), &path, here, has_item);
            let _ = manual;
        }
        self.check_captures(step, spec.as_ref(), &path);
    }

    fn check_uses(&mut self, uses: &str, path: &str, resolved: bool) {
        if resolved {
            return;
        }
        let pos = self.at(path);
        let Some((plugin, action)) = split_uses(uses) else {
            self.err(
                ErrorKind::UnknownAction,
                pos,
                format!("invalid action \"{uses}\": expected <plugin>.<action>, e.g. core.log or plex.list_secrets"),
            );
            return;
        };
        let msg = if plugin == "core" {
            let names: Vec<String> = core_actions::specs().iter().map(|s| s.action.clone()).collect();
            format!("unknown action \"{uses}\": core has {}", names.join(", "))
        } else if self.catalog.plugins().iter().any(|p| p == plugin) {
            format!("unknown action \"{uses}\": plugin {plugin} has no action \"{action}\"")
        } else {
            format!(
                "unknown action \"{uses}\": no plugin named \"{plugin}\" is installed (installed: {})",
                list_or_none(&self.catalog.plugins())
            )
        };
        self.err(ErrorKind::UnknownAction, pos, msg);
    }

    fn check_with(
        &mut self,
        step: &Step,
        spec: &ActionSpec,
        path: &str,
        here: (Section, usize),
        has_item: bool,
    ) {
        let schema = &spec.input_schema;
        let props = properties(schema);
        for (k, v) in &step.with {
            let fpath = format!("{path}.with.{k}");
            let prop = props.and_then(|p| p.get(k));
            if prop.is_none() && props.is_some() && is_closed(schema) {
                let pos = self.key_at(&fpath);
                let expected: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                self.err(
                    ErrorKind::UnknownField,
                    pos,
                    format!(
                        "unknown field \"{k}\" for {}, expected one of: {}",
                        spec.qualified_name(),
                        expected.join(", ")
                    ),
                );
                continue;
            }
            let secret = prop.map(takes_secret);
            if let (Some(true), Some(s)) = (secret, v.as_str())
                && !Templates::is_template(s)
            {
                let pos = self.at(&fpath);
                self.err(
                    ErrorKind::SecretMisuse,
                    pos,
                    format!(
                        "field \"{k}\" of {} takes a secret handle, not a literal: pass a secret input or a captured secret (\"{{{{inputs.<name>}}}}\")",
                        spec.qualified_name()
                    ),
                );
                continue;
            }
            if let (Some(prop), Some(_)) = (prop, json_type(prop.unwrap_or(&Value::Null)))
                && !Templates::is_template(v.as_str().unwrap_or("{{"))
                && let Err(msg) = literal_matches(prop, v)
            {
                let pos = self.at(&fpath);
                self.err(
                    ErrorKind::WrongType,
                    pos,
                    format!("field \"{k}\" of {}: {msg}", spec.qualified_name()),
                );
                continue;
            }
            self.check_value_templates(v, &fpath, here, has_item, Slot::With { secret });
        }
        for req in required(schema) {
            if !step.with.contains_key(&req) {
                let pos = if step.with.is_empty() {
                    self.at(&format!("{path}.uses"))
                } else {
                    self.at(&format!("{path}.with"))
                };
                self.err(
                    ErrorKind::MissingField,
                    pos,
                    format!(
                        "missing field \"{req}\" in \"with\": {} requires it",
                        spec.qualified_name()
                    ),
                );
            }
        }
    }

    fn check_condition(&mut self, cond: &Value, path: &str, here: (Section, usize), has_item: bool) {
        match cond {
            Value::Bool(_) => {}
            Value::String(s) if Templates::is_template(s) => {
                if let Some(refs) =
                    self.check_template_refs(s, path, Some((here, has_item)), Slot::Plain, false)
                    && let [only] = refs.as_slice()
                    && only.whole
                    && let Some(t) = self.static_type(only)
                    && t != "boolean"
                {
                    let pos = self.at(path);
                    self.err(
                        ErrorKind::NotBoolean,
                        pos,
                        format!(
                            "\"if\" must be a boolean, but {} is {t}; compare it, e.g. {{{{eq {} \"...\"}}}}",
                            only.dotted(),
                            only.dotted()
                        ),
                    );
                }
            }
            other => {
                let pos = self.at(path);
                let shown = match other {
                    Value::String(s) => format!("the string \"{s}\""),
                    v => crate::template::type_name(v).to_owned(),
                };
                self.err(
                    ErrorKind::NotBoolean,
                    pos,
                    format!("\"if\" must be true, false or a template that yields a boolean, got {shown}"),
                );
            }
        }
    }

    /// The statically known type of a reference, as a JSON-Schema type name.
    fn static_type(&self, r: &Reference) -> Option<&'static str> {
        let seg = |i: usize| r.segments.get(i).map(String::as_str);
        match seg(0)? {
            "inputs" => {
                let input = self.playbook.inputs.get(seg(1)?)?;
                if r.segments.len() > 2 {
                    return None;
                }
                Some(match input.kind {
                    InputType::String | InputType::Enum => "a string",
                    InputType::Integer => "an integer",
                    InputType::Boolean => "boolean",
                    InputType::Secret => "a secret",
                })
            }
            "steps" => {
                let info = self.steps.get(seg(1)?)?;
                match (seg(2)?, r.segments.len()) {
                    ("status", 3) => Some("a string"),
                    ("outputs", 4) if info.step.for_each.is_none() => {
                        let field = seg(3)?;
                        if let Some(out) = info.step.manual.as_ref().and_then(|m| m.outputs.get(field))
                            && info.spec.is_none()
                        {
                            return Some(match out.kind {
                                InputType::Boolean => "boolean",
                                InputType::Integer => "an integer",
                                InputType::Secret => "a secret",
                                _ => "a string",
                            });
                        }
                        let prop = info
                            .spec
                            .as_ref()
                            .and_then(|s| properties(&s.output_schema)?.get(field))?;
                        if takes_secret(prop) {
                            return Some("a secret");
                        }
                        Some(match json_type(prop)? {
                            "boolean" => "boolean",
                            "integer" => "an integer",
                            "number" => "a number",
                            "string" => "a string",
                            "array" => "a list",
                            "object" => "a mapping",
                            _ => return None,
                        })
                    }
                    _ => None,
                }
            }
            "run" => match seg(1)? {
                "dry_run" => Some("boolean"),
                "id" => Some("a string"),
                _ => None,
            },
            _ => None,
        }
    }

    fn check_value_templates(
        &mut self,
        v: &Value,
        path: &str,
        here: (Section, usize),
        has_item: bool,
        slot: Slot,
    ) {
        match v {
            Value::String(s) => {
                self.check_template_refs(s, path, Some((here, has_item)), slot, false);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_value_templates(item, &format!("{path}[{i}]"), here, has_item, slot);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.check_value_templates(item, &format!("{path}.{k}"), here, has_item, slot);
                }
            }
            _ => {}
        }
    }

    /// Checks one template string. `step` is the step it belongs to and
    /// whether `item` is in scope; `inputs_only` for templates rendered
    /// before any step runs (defaults, secret names, locks).
    fn check_template_refs(
        &mut self,
        s: &str,
        path: &str,
        step: Option<((Section, usize), bool)>,
        slot: Slot,
        inputs_only: bool,
    ) -> Option<Vec<Reference>> {
        let pos = self.at(path);
        let (refs, helpers) = match analyze(s, &Templates::has_helper) {
            Ok(r) => r,
            Err(e) => {
                self.err(ErrorKind::BadTemplate, pos, format!("bad template: {e}"));
                return None;
            }
        };
        for h in &helpers {
            if !Templates::has_helper(h) {
                self.err(
                    ErrorKind::BadTemplate,
                    pos,
                    format!("unknown helper \"{h}\"; available: {}", crate::template::HELPERS),
                );
            }
        }
        for r in &refs {
            self.check_reference(r, pos, step, slot, inputs_only);
        }
        Some(refs)
    }

    fn check_reference(
        &mut self,
        r: &Reference,
        pos: Pos,
        step: Option<((Section, usize), bool)>,
        slot: Slot,
        inputs_only: bool,
    ) {
        let Some(root) = r.segments.first().map(String::as_str) else {
            return;
        };
        if !ROOTS.contains(&root) {
            if !r.in_block {
                self.err(
                    ErrorKind::UnknownReference,
                    pos,
                    format!("unknown variable \"{}\": templates can read inputs.*, steps.<id>.outputs.*, item and run.*", r.dotted()),
                );
            }
            return;
        }
        if inputs_only && root != "inputs" {
            self.err(
                ErrorKind::UnknownReference,
                pos,
                format!(
                    "\"{}\" is not known yet here: only inputs.* can be used before the steps run",
                    r.dotted()
                ),
            );
            return;
        }
        match root {
            "inputs" => {
                if let Some(name) = r.segments.get(1)
                    && !self.playbook.inputs.contains_key(name)
                {
                    let known: Vec<String> = self.playbook.inputs.keys().cloned().collect();
                    self.err(
                        ErrorKind::UnknownReference,
                        pos,
                        format!(
                            "unknown input \"{name}\"; declared inputs: {}",
                            list_or_none(&known)
                        ),
                    );
                    return;
                }
            }
            "steps" if !self.check_step_reference(r, pos, step.map(|s| s.0)) => return,
            "item" => {
                let in_scope = step.is_some_and(|(_, has_item)| has_item) && slot != Slot::ForEach;
                if !in_scope {
                    self.err(
                        ErrorKind::UnknownReference,
                        pos,
                        "\"item\" is only defined inside a step with for_each (and not in for_each itself)",
                    );
                }
                return;
            }
            "run" => {
                if let Some(field) = r.segments.get(1)
                    && !["id", "dry_run", "failure"].contains(&field.as_str())
                {
                    self.err(
                        ErrorKind::UnknownReference,
                        pos,
                        format!(
                            "unknown variable \"{}\": run has id, dry_run and failure",
                            r.dotted()
                        ),
                    );
                }
                return;
            }
            _ => {}
        }
        if self.static_type(r) == Some("a secret") {
            let problem = match slot {
                Slot::With { secret: Some(true) } if r.whole => None,
                Slot::With { secret: None } if r.whole => None,
                Slot::With { secret: Some(false) } if r.whole => {
                    Some("it goes to a field that does not take a secret".to_owned())
                }
                Slot::With { .. } => {
                    Some("it cannot be placed inside text; pass it as the whole value".to_owned())
                }
                Slot::Plain | Slot::ForEach => {
                    Some("secrets cannot be shown, compared or placed in text".to_owned())
                }
            };
            if let Some(problem) = problem {
                self.err(
                    ErrorKind::SecretMisuse,
                    pos,
                    format!("{} is a secret: {problem}", r.dotted()),
                );
            }
        }
    }

    /// Returns whether the reference is well-formed and in order.
    fn check_step_reference(&mut self, r: &Reference, pos: Pos, here: Option<(Section, usize)>) -> bool {
        let Some(id) = r.segments.get(1) else {
            return true;
        };
        let Some(target) = self.steps.get(id.as_str()) else {
            let mut known: Vec<&str> = self.steps.keys().copied().collect();
            known.sort_unstable();
            self.err(
                ErrorKind::UnknownReference,
                pos,
                format!("unknown step \"{id}\"; steps are: {}", known.join(", ")),
            );
            return false;
        };
        let (tsec, tidx) = (target.section, target.index);
        if let Some((sec, idx)) = here {
            if sec == tsec && idx == tidx {
                self.err(
                    ErrorKind::Cycle,
                    pos,
                    format!("step \"{id}\" refers to its own outputs"),
                );
                return false;
            }
            let later = match (sec, tsec) {
                (a, b) if a == b => tidx > idx,
                (Section::Steps, _) => true,
                (Section::OnFailure, Section::Finally) => true,
                _ => false,
            };
            if later {
                self.err(
                    ErrorKind::ForwardReference,
                    pos,
                    format!(
                        "step \"{id}\" runs after this one ({}[{tidx}]), so its outputs are not known yet",
                        tsec.key()
                    ),
                );
                return false;
            }
        }
        match r.segments.get(2).map(String::as_str) {
            None | Some("outputs" | "status" | "error") => {}
            Some(other) => {
                self.err(
                    ErrorKind::UnknownReference,
                    pos,
                    format!("unknown field \"{other}\" of steps.{id}: expected outputs, status or error"),
                );
                return false;
            }
        }
        if r.segments.get(2).map(String::as_str) == Some("outputs")
            && let Some(field) = r.segments.get(3)
            && target.step.for_each.is_none()
            && let Some(known) = self.known_outputs(id)
            && !known.contains(field)
        {
            self.err(
                ErrorKind::UnknownReference,
                pos,
                format!(
                    "step \"{id}\" has no output \"{field}\"; its outputs are: {}",
                    list_or_none(&known)
                ),
            );
            return false;
        }
        true
    }

    fn known_outputs(&self, id: &str) -> Option<Vec<String>> {
        let info = self.steps.get(id)?;
        if let Some(spec) = &info.spec {
            let props = properties(&spec.output_schema)?;
            if !is_closed(&spec.output_schema) && info.step.manual.is_none() {
                return None;
            }
            let mut names: Vec<String> = props.keys().cloned().collect();
            if let Some(m) = &info.step.manual {
                names.extend(
                    m.outputs
                        .keys()
                        .filter(|k| !names.contains(k))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
            return Some(names);
        }
        info.step
            .manual
            .as_ref()
            .map(|m| m.outputs.keys().cloned().collect())
    }

    fn check_manual(
        &mut self,
        step: &Step,
        spec: Option<&ActionSpec>,
        path: &str,
        here: (Section, usize),
        has_item: bool,
    ) {
        let Some(manual) = &step.manual else { return };
        let mpath = format!("{path}.manual");
        self.check_template_refs(
            &manual.instructions,
            &format!("{mpath}.instructions"),
            Some((here, has_item)),
            Slot::Plain,
            false,
        );
        let ident = ident_re();
        let out_props = spec.and_then(|s| properties(&s.output_schema));
        for (name, out) in manual.outputs.iter() {
            let opath = format!("{mpath}.outputs.{name}");
            if !ident.as_ref().is_some_and(|re| re.is_match(name)) {
                let pos = self.key_at(&opath);
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    format!(
                        "invalid output name \"{name}\": expected lowercase letters, digits and underscores"
                    ),
                );
            }
            if out.kind == InputType::Enum {
                let pos = self.at(&format!("{opath}.type"));
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    "manual outputs are string, integer, boolean or secret",
                );
            }
            match (out.kind, &out.secret) {
                (InputType::Secret, None) => {
                    let pos = self.at(&opath);
                    self.err(
                        ErrorKind::MissingField,
                        pos,
                        format!("secret output \"{name}\" needs \"secret\": the secrets id the typed value is stored as"),
                    );
                }
                (InputType::Secret, Some(id)) if !self.playbook.secrets.contains_key(id) => {
                    let pos = self.at(&format!("{opath}.secret"));
                    let known: Vec<String> = self.playbook.secrets.keys().cloned().collect();
                    self.err(
                        ErrorKind::UnknownReference,
                        pos,
                        format!(
                            "unknown secret \"{id}\"; declared secrets: {}",
                            list_or_none(&known)
                        ),
                    );
                }
                (kind, Some(_)) if kind != InputType::Secret => {
                    let pos = self.key_at(&format!("{opath}.secret"));
                    self.err(
                        ErrorKind::InvalidValue,
                        pos,
                        format!(
                            "\"secret\" only applies to outputs of type secret (\"{name}\" is {})",
                            kind.as_str()
                        ),
                    );
                }
                _ => {}
            }
            if let Some(p) = &out.pattern
                && let Err(e) = check_pattern(p)
            {
                let pos = self.at(&format!("{opath}.pattern"));
                self.err(
                    ErrorKind::InvalidValue,
                    pos,
                    format!("invalid pattern: {}", first_line(&e.to_string())),
                );
            }
            if let (Some(spec), Some(props)) = (spec, out_props) {
                match props.get(name) {
                    None => {
                        let pos = self.key_at(&opath);
                        let expected: Vec<String> = props.keys().cloned().collect();
                        self.err(
                            ErrorKind::UnknownField,
                            pos,
                            format!(
                                "manual output \"{name}\" is not an output of {}; expected one of: {}",
                                spec.qualified_name(),
                                list_or_none(&expected)
                            ),
                        );
                    }
                    Some(prop) => {
                        let want = if takes_secret(prop) {
                            Some("secret")
                        } else {
                            json_type(prop)
                        };
                        let have = out.kind.as_str();
                        let compatible = match want {
                            None => true,
                            Some("secret") => have == "secret",
                            Some("string") => have == "string",
                            Some("integer" | "number") => have == "integer",
                            Some("boolean") => have == "boolean",
                            Some(_) => false,
                        };
                        if !compatible {
                            let pos = self.at(&format!("{opath}.type"));
                            self.err(
                                ErrorKind::WrongType,
                                pos,
                                format!(
                                    "manual output \"{name}\" is {have}, but {} outputs {}",
                                    spec.qualified_name(),
                                    want.unwrap_or("another type")
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(spec) = spec {
            for req in required(&spec.output_schema) {
                if !manual.outputs.contains_key(&req) {
                    let pos = self.at(&mpath);
                    self.err(
                        ErrorKind::MissingField,
                        pos,
                        format!(
                            "the manual fallback must provide output \"{req}\": {} returns it and later steps may use it",
                            spec.qualified_name()
                        ),
                    );
                }
            }
        }
    }

    fn check_captures(&mut self, step: &Step, spec: Option<&ActionSpec>, path: &str) {
        for (capture, secret_id) in step.captures.iter() {
            let cpath = format!("{path}.captures.{capture}");
            if let Some(spec) = spec
                && !spec.captures.contains(capture)
            {
                let pos = self.key_at(&cpath);
                self.err(
                    ErrorKind::UnknownField,
                    pos,
                    format!(
                        "{} captures no \"{capture}\"; it captures: {}",
                        spec.qualified_name(),
                        list_or_none(&spec.captures)
                    ),
                );
            }
            if !self.playbook.secrets.contains_key(secret_id) {
                let pos = self.at(&cpath);
                let known: Vec<String> = self.playbook.secrets.keys().cloned().collect();
                self.err(
                    ErrorKind::UnknownReference,
                    pos,
                    format!(
                        "unknown secret \"{secret_id}\"; declared secrets: {}",
                        list_or_none(&known)
                    ),
                );
            }
        }
        if let Some(spec) = spec {
            for capture in &spec.captures {
                if !step.captures.contains_key(capture) {
                    let pos = self.at(&format!("{path}.uses"));
                    self.err(
                        ErrorKind::MissingField,
                        pos,
                        format!(
                            "{} captures a secret \"{capture}\": map it to a declared secret with captures: {{{capture}: <secret id>}}",
                            spec.qualified_name()
                        ),
                    );
                }
            }
        }
    }
}

/// Checks a literal against a property schema's type.
fn literal_matches(prop: &Value, v: &Value) -> Result<(), String> {
    let want = json_type(prop).unwrap_or("any");
    let ok = match want {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    };
    if !ok {
        return Err(format!("expected {want}, got {}", crate::template::type_name(v)));
    }
    if let Some(allowed) = prop.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map(str::to_owned).unwrap_or_else(|| a.to_string()))
            .collect();
        return Err(format!("{v} is not one of: {}", list.join(", ")));
    }
    if prop.get("format").and_then(Value::as_str) == Some("duration")
        && let Some(s) = v.as_str()
    {
        crate::duration::parse_duration(s)?;
    }
    Ok(())
}

/// `^(?:p)$` compiled, once per pattern per process (a `--matrix` checks
/// the same input patterns for every entry).
fn anchored(p: &str) -> Result<Regex, String> {
    static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(p) {
        return Ok(re.clone());
    }
    let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| first_line(&e.to_string()))?;
    cache.insert(p.to_owned(), re.clone());
    Ok(re)
}

/// Checks a concrete input value against its declaration.
pub fn check_input_value(name: &str, input: &Input, v: &Value) -> Result<(), String> {
    let got = crate::template::type_name(v);
    match input.kind {
        InputType::String => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("input \"{name}\" is a string, got {got}"))?;
            if let Some(p) = &input.pattern {
                let re = anchored(p)?;
                if !re.is_match(s) {
                    return Err(format!("input \"{name}\" must match {p}, got \"{s}\""));
                }
            }
        }
        InputType::Integer => {
            let n = v
                .as_i64()
                .ok_or_else(|| format!("input \"{name}\" is an integer, got {got}"))?;
            if let Some(min) = input.minimum
                && n < min
            {
                return Err(format!("input \"{name}\" must be at least {min}, got {n}"));
            }
            if let Some(max) = input.maximum
                && n > max
            {
                return Err(format!("input \"{name}\" must be at most {max}, got {n}"));
            }
        }
        InputType::Boolean => {
            v.as_bool()
                .ok_or_else(|| format!("input \"{name}\" is a boolean (true or false), got {got}"))?;
        }
        InputType::Enum => {
            let s = v.as_str().ok_or_else(|| {
                format!(
                    "input \"{name}\" is one of {}, got {got}",
                    input.values.join(", ")
                )
            })?;
            if !input.values.iter().any(|x| x == s) {
                return Err(format!(
                    "input \"{name}\" must be one of: {}; got \"{s}\"",
                    input.values.join(", ")
                ));
            }
        }
        InputType::Secret => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("input \"{name}\" is the name of a stored secret, got {got}"))?;
            crate::secret::validate_secret_name(s).map_err(|e| format!("input \"{name}\": {e}"))?;
        }
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_owned()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
