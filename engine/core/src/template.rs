//! Strict handlebars templating that keeps JSON types and never prints a secret.
//!
//! Design decisions:
//! - Strict: a reference to anything that does not exist is an error, never
//!   an empty string. Helpers check their own arguments the same way.
//! - Typed: a string that is exactly one expression (`"{{inputs.count}}"`)
//!   evaluates to the JSON value, not its text.
//! - Secrets: in the render context every handle `{"$secret": "n@v"}` is
//!   replaced by a marker string. A value that renders to exactly a marker
//!   becomes the handle again; a marker inside other text is an error, so a
//!   secret can never be spliced into a string, even a handle reference.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason, Renderable,
    ScopedJson, StringOutput, Template,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::duration::parse_duration;
use crate::secret::SecretRef;

const MARK: char = '\u{E000}';
const MARK_PREFIX: &str = "\u{E000}secret:";

/// The source of "now" for date helpers: the system clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// What went wrong rendering a template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("unknown variable {0}")]
    Missing(String),
    #[error("unknown helper \"{0}\"; available: {HELPERS}")]
    UnknownHelper(String),
    #[error(
        "a secret cannot be placed inside text; pass the secret as the whole value (\"{{{{ path }}}}\") to a field that takes a secret"
    )]
    SecretInText,
    #[error("{0}")]
    Helper(String),
    #[error("{0}")]
    Other(String),
}

/// Helpers playbooks may call, for messages.
pub const HELPERS: &str = "eq, ne, gt, gte, lt, lte, and, or, not, len, default, json, contains, split, now, date_add, date_sub, before, after";

/// handlebars' own helpers that stay registered.
const BUILTIN_HELPERS: [&str; 16] = [
    "if", "unless", "each", "with", "lookup", "raw", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or",
    "not", "len",
];

/// Roots a template may reference.
pub const ROOTS: [&str; 4] = ["inputs", "steps", "item", "run"];

/// The template engine: one per process, cheap to share.
pub struct Templates {
    hb: Handlebars<'static>,
}

/// `s` compiled, from a process-wide cache by source: validation analyzes
/// every template of a playbook, and a run renders the same few dozen
/// strings (each step's `with`, `describe`, `if`) again and again, for every
/// `for_each` item and `--matrix` entry. The cache holds template sources
/// (playbook text), never rendered values.
fn compiled(s: &str) -> Result<Arc<Template>, TemplateError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Template>>>> = LazyLock::new(Default::default);
    let lock = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = lock().get(s) {
        return Ok(t.clone());
    }
    let t = Arc::new(Templates::compile(s)?);
    lock().insert(s.to_owned(), t.clone());
    Ok(t)
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

type HelperFn = fn(&[Value], &OffsetDateTime) -> Result<Value, String>;

struct ValueHelper {
    name: &'static str,
    arity: std::ops::RangeInclusive<usize>,
    f: HelperFn,
    clock: Clock,
}

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut args = Vec::with_capacity(h.params().len());
        for p in h.params() {
            if p.is_value_missing() {
                return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
            }
            args.push(p.value().clone());
        }
        if !self.arity.contains(&args.len()) {
            let (lo, hi) = (self.arity.start(), self.arity.end());
            let want = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo} to {hi}")
            };
            return Err(RenderErrorReason::Other(format!(
                "helper {} takes {want} argument(s), got {}",
                self.name,
                args.len()
            ))
            .into());
        }
        (self.f)(&args, &(self.clock)())
            .map(ScopedJson::Derived)
            .map_err(|m| RenderErrorReason::Other(format!("{}: {m}", self.name)).into())
    }
}

fn parse_time(v: &Value) -> Result<OffsetDateTime, String> {
    match v {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| format!("{s:?} is not an RFC 3339 date-time such as 2025-01-31T12:00:00Z")),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
            .ok_or_else(|| format!("{n} is not a timestamp in epoch milliseconds")),
        other => Err(format!("expected a date-time, got {}", type_name(other))),
    }
}

fn format_time(t: OffsetDateTime) -> Result<Value, String> {
    t.format(&Rfc3339).map(Value::String).map_err(|e| e.to_string())
}

fn shift(args: &[Value], sign: i32) -> Result<Value, String> {
    let (Some(date), Some(Value::String(d))) = (args.first(), args.get(1)) else {
        return Err("expected a date-time and a duration such as \"30d\"".to_owned());
    };
    let t = parse_time(date)?;
    let d = time::Duration::try_from(parse_duration(d)?).map_err(|e| e.to_string())?;
    format_time(if sign > 0 { t + d } else { t - d })
}

fn compare_times(args: &[Value]) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    match (args.first(), args.get(1)) {
        (Some(a), Some(b)) => Ok((parse_time(a)?, parse_time(b)?)),
        _ => Err("expected two date-times".to_owned()),
    }
}

/// A JSON type's name, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(s) if s.starts_with(MARK_PREFIX) => "a secret",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(o) if SecretRef::from_json(&Value::Object(o.clone())).is_some() => "a secret",
        Value::Object(_) => "a mapping",
    }
}

fn num(v: Option<&Value>) -> Result<f64, String> {
    v.and_then(Value::as_f64)
        .ok_or_else(|| "expected two numbers".to_owned())
}

fn truthy_bool(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected booleans, got {}", type_name(v)))
}

fn helpers() -> Vec<(&'static str, std::ops::RangeInclusive<usize>, HelperFn)> {
    vec![
        ("eq", 2..=2, |a, _| Ok(Value::Bool(a.first() == a.get(1)))),
        ("ne", 2..=2, |a, _| Ok(Value::Bool(a.first() != a.get(1)))),
        ("gt", 2..=2, |a, _| {
            Ok(Value::Bool(num(a.first())? > num(a.get(1))?))
        }),
        ("gte", 2..=2, |a, _| {
            Ok(Value::Bool(num(a.first())? >= num(a.get(1))?))
        }),
        ("lt", 2..=2, |a, _| {
            Ok(Value::Bool(num(a.first())? < num(a.get(1))?))
        }),
        ("lte", 2..=2, |a, _| {
            Ok(Value::Bool(num(a.first())? <= num(a.get(1))?))
        }),
        ("and", 1..=16, |a, _| {
            a.iter()
                .try_fold(true, |acc, v| Ok(acc & truthy_bool(v)?))
                .map(Value::Bool)
        }),
        ("or", 1..=16, |a, _| {
            a.iter()
                .try_fold(false, |acc, v| Ok(acc | truthy_bool(v)?))
                .map(Value::Bool)
        }),
        ("not", 1..=1, |a, _| {
            Ok(Value::Bool(!truthy_bool(a.first().unwrap_or(&Value::Null))?))
        }),
        ("len", 1..=1, |a, _| match a.first() {
            Some(Value::Array(v)) => Ok(Value::from(v.len())),
            Some(Value::Object(m)) => Ok(Value::from(m.len())),
            Some(Value::String(s)) => Ok(Value::from(s.chars().count())),
            Some(other) => Err(format!(
                "expected a list, mapping or string, got {}",
                type_name(other)
            )),
            None => Err("expected one argument".to_owned()),
        }),
        ("now", 0..=0, |_, now| format_time(*now)),
        ("date_add", 2..=2, |a, _| shift(a, 1)),
        ("date_sub", 2..=2, |a, _| shift(a, -1)),
        ("before", 2..=2, |a, _| {
            compare_times(a).map(|(x, y)| Value::Bool(x < y))
        }),
        ("after", 2..=2, |a, _| {
            compare_times(a).map(|(x, y)| Value::Bool(x > y))
        }),
        ("default", 2..=2, |a, _| match (a.first(), a.get(1)) {
            (Some(Value::Null) | None, Some(fallback)) => Ok(fallback.clone()),
            (Some(v), _) => Ok(v.clone()),
            _ => Err("expected a value and a fallback".to_owned()),
        }),
        ("json", 1..=1, |a, _| {
            let v = a.first().cloned().unwrap_or(Value::Null);
            if type_name(&v) == "a secret" {
                // The marker itself: decode_markers turns it back into a handle
                // when the whole value is this one expression.
                return Ok(v);
            }
            serde_json::to_string(&v)
                .map(Value::String)
                .map_err(|e| e.to_string())
        }),
        // A list typed at a manual step's prompt ("a, b") feeds a for_each
        // like an action's list output would.
        ("split", 1..=2, |a, _| match (a.first(), a.get(1)) {
            (Some(Value::String(s)), sep) => {
                let sep = match sep {
                    None => ",",
                    Some(Value::String(sep)) if !sep.is_empty() => sep.as_str(),
                    Some(other) => {
                        return Err(format!(
                            "the separator must be a non-empty string, got {}",
                            type_name(other)
                        ));
                    }
                };
                Ok(Value::Array(
                    s.split(sep)
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(|x| Value::String(x.to_owned()))
                        .collect(),
                ))
            }
            (Some(other), _) => Err(format!("expected a string, got {}", type_name(other))),
            (None, _) => Err("expected a string".to_owned()),
        }),
        ("contains", 2..=2, |a, _| match (a.first(), a.get(1)) {
            (Some(Value::Array(items)), Some(x)) => Ok(Value::Bool(items.contains(x))),
            (Some(Value::String(s)), Some(Value::String(x))) => Ok(Value::Bool(s.contains(x.as_str()))),
            (Some(Value::Object(m)), Some(Value::String(k))) => Ok(Value::Bool(m.contains_key(k))),
            _ => Err("expected a list and an item, or a string and a substring".to_owned()),
        }),
    ]
}

/// A render context with its secret handles already encoded as markers:
/// built once and rendered in any number of times (a run keeps one and
/// updates it as steps finish, instead of re-encoding everything per render).
#[derive(Clone, Debug)]
pub struct EncodedContext(Context);

impl EncodedContext {
    pub fn new(ctx: &Value) -> Self {
        Self(Context::from(encode_markers(ctx)))
    }

    /// Sets the top-level `key` of an object context to `value` (encoded).
    pub fn set(&mut self, key: &str, value: &Value) {
        if let Some(map) = self.0.data_mut().as_object_mut() {
            map.insert(key.to_owned(), encode_markers(value));
        }
    }

    /// Sets `outer.inner` (creating `outer` as an object when missing).
    pub fn set_in(&mut self, outer: &str, inner: &str, value: &Value) {
        if let Some(map) = self.0.data_mut().as_object_mut() {
            let slot = map
                .entry(outer.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = slot.as_object_mut() {
                m.insert(inner.to_owned(), encode_markers(value));
            }
        }
    }

    /// This context with `key` added (a copy: for per-item contexts).
    pub fn with(&self, key: &str, value: &Value) -> Self {
        let mut out = self.clone();
        out.set(key, value);
        out
    }
}

impl Templates {
    pub fn new(clock: Clock) -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        // `log` writes to the process log, a path secrets must never take.
        hb.unregister_helper("log");
        for (name, arity, f) in helpers() {
            hb.register_helper(
                name,
                Box::new(ValueHelper {
                    name,
                    arity,
                    f,
                    clock: clock.clone(),
                }),
            );
        }
        Self { hb }
    }

    pub fn is_template(s: &str) -> bool {
        s.contains("{{")
    }

    pub fn has_helper(name: &str) -> bool {
        BUILTIN_HELPERS.contains(&name) || helpers().iter().any(|(n, _, _)| *n == name)
    }

    /// Compiles without rendering (syntax check).
    pub fn compile(s: &str) -> Result<Template, TemplateError> {
        Template::compile(s).map_err(|e| TemplateError::Syntax(syntax_message(&e)))
    }

    /// Renders `s` to a JSON value: a single expression keeps its type, any
    /// other template renders to a string, a plain string is itself.
    pub fn render_value(&self, s: &str, ctx: &Value) -> Result<Value, TemplateError> {
        if !Self::is_template(s) {
            return Ok(Value::String(s.to_owned()));
        }
        self.render_encoded(s, &Context::from(encode_markers(ctx)))
    }

    /// [`Templates::render_value`] in an [`EncodedContext`].
    pub fn render_value_in(&self, s: &str, ctx: &EncodedContext) -> Result<Value, TemplateError> {
        self.render_encoded(s, &ctx.0)
    }

    /// [`Templates::render_text`] in an [`EncodedContext`].
    pub fn render_text_in(&self, s: &str, ctx: &EncodedContext) -> Result<String, TemplateError> {
        Self::as_text(self.render_encoded(s, &ctx.0)?)
    }

    /// [`Templates::render_tree`] in an [`EncodedContext`].
    pub fn render_tree_in(
        &self,
        value: &Value,
        ctx: &EncodedContext,
    ) -> Result<Value, (String, TemplateError)> {
        if !has_template(value) {
            return Ok(value.clone());
        }
        self.render_tree_at(value, &ctx.0, String::new())
    }

    /// [`Templates::render_value`] in a context whose secret handles are
    /// already encoded as markers (once per tree, not once per string).
    fn render_encoded(&self, s: &str, ctx: &Context) -> Result<Value, TemplateError> {
        if !Self::is_template(s) {
            return Ok(Value::String(s.to_owned()));
        }
        let compiled = compiled(s)?;
        if let Some(expr) = single_expression(s, &compiled) {
            let wrapped = if self.is_helper_call(&compiled) {
                format!("{{{{json ({expr})}}}}")
            } else {
                format!("{{{{json {expr}}}}}")
            };
            let text = self.render_raw(&wrapped, ctx)?;
            if text.starts_with(MARK_PREFIX) {
                return decode_marker(&text).ok_or(TemplateError::SecretInText);
            }
            let value: Value =
                serde_json::from_str(&text).map_err(|e| TemplateError::Other(e.to_string()))?;
            let value = decode_markers(value);
            if has_stray_marker(&value) {
                return Err(TemplateError::SecretInText);
            }
            return Ok(value);
        }
        let text = self.render_raw(s, ctx)?;
        if text.contains(MARK) {
            return Err(TemplateError::SecretInText);
        }
        Ok(Value::String(text))
    }

    /// Renders to text; a non-string single expression is shown as JSON.
    pub fn render_text(&self, s: &str, ctx: &Value) -> Result<String, TemplateError> {
        Self::as_text(self.render_value(s, ctx)?)
    }

    fn as_text(v: Value) -> Result<String, TemplateError> {
        match v {
            Value::String(s) => Ok(s),
            v if SecretRef::from_json(&v).is_some() => Err(TemplateError::SecretInText),
            v => Ok(v.to_string()),
        }
    }

    /// Renders every string inside `value` (keys are left alone).
    pub fn render_tree(&self, value: &Value, ctx: &Value) -> Result<Value, (String, TemplateError)> {
        if !has_template(value) {
            return Ok(value.clone());
        }
        self.render_tree_at(value, &Context::from(encode_markers(ctx)), String::new())
    }

    fn render_tree_at(
        &self,
        value: &Value,
        ctx: &Context,
        path: String,
    ) -> Result<Value, (String, TemplateError)> {
        Ok(match value {
            Value::String(s) => self.render_encoded(s, ctx).map_err(|e| (path, e))?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.render_tree_at(v, ctx, format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) if SecretRef::from_json(value).is_none() => {
                let mut out = Map::new();
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.insert(k.clone(), self.render_tree_at(v, ctx, p)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn is_helper_call(&self, t: &Template) -> bool {
        match t.elements.first() {
            Some(TemplateElement::Expression(h)) => {
                !h.params.is_empty()
                    || !h.hash.is_empty()
                    || simple_name(&h.name).is_some_and(Self::has_helper)
            }
            _ => false,
        }
    }

    fn render_raw(&self, s: &str, ctx: &Context) -> Result<String, TemplateError> {
        let template = compiled(s)?;
        let mut rc = RenderContext::new(None);
        let mut out = StringOutput::new();
        template
            .render(&self.hb, ctx, &mut rc, &mut out)
            .map_err(|e| from_render_error(&e))?;
        out.into_string().map_err(|e| TemplateError::Other(e.to_string()))
    }
}

/// Whether any string inside `v` is a template (keys are not rendered).
fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => Templates::is_template(s),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

/// The name of a helper-or-variable position when it is one plain word.
fn simple_name(p: &Parameter) -> Option<&str> {
    match p {
        Parameter::Name(n) => Some(n),
        Parameter::Path(handlebars::Path::Relative((_, raw))) if !raw.contains(['.', '/', '[']) => Some(raw),
        _ => None,
    }
}

/// If `s` is exactly one `{{expression}}`, its inner text.
fn single_expression<'a>(s: &'a str, t: &Template) -> Option<&'a str> {
    let trimmed = s.trim();
    if t.elements.len() != 1 || trimmed.starts_with("{{{") || trimmed.starts_with("{{!") {
        return None;
    }
    if !matches!(t.elements.first(), Some(TemplateElement::Expression(_))) {
        return None;
    }
    let inner = trimmed.strip_prefix("{{")?.strip_suffix("}}")?;
    Some(inner.trim_matches('~').trim())
}

fn syntax_message(e: &handlebars::TemplateError) -> String {
    let reason = e.reason().to_string();
    let reason = reason.lines().next().unwrap_or_default().to_owned();
    match e.pos() {
        Some((l, c)) => format!("{reason} (template line {l}, column {c})"),
        _ => reason,
    }
}

fn from_render_error(e: &RenderError) -> TemplateError {
    match e.reason() {
        RenderErrorReason::MissingVariable(path) => {
            TemplateError::Missing(path.clone().unwrap_or_else(|| "(unnamed)".to_owned()))
        }
        RenderErrorReason::HelperNotFound(name) => TemplateError::UnknownHelper(name.clone()),
        RenderErrorReason::ParamNotFoundForIndex(helper, i) => TemplateError::Helper(format!(
            "helper {helper}: argument {} is missing or unknown",
            i + 1
        )),
        RenderErrorReason::Other(m) => TemplateError::Helper(m.clone()),
        RenderErrorReason::TemplateError(t) => TemplateError::Syntax(syntax_message(t)),
        other => TemplateError::Other(other.to_string()),
    }
}

/// Replaces handles by marker strings and neutralizes stray marker chars.
pub fn encode_markers(v: &Value) -> Value {
    if let Some(h) = SecretRef::from_json(v) {
        return Value::String(format!("{MARK_PREFIX}{h}{MARK}"));
    }
    match v {
        Value::String(s) if s.contains(MARK) => Value::String(s.replace(MARK, "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.iter().map(encode_markers).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), encode_markers(v))).collect())
        }
        other => other.clone(),
    }
}

fn decode_marker(s: &str) -> Option<Value> {
    let handle = s.strip_prefix(MARK_PREFIX)?.strip_suffix(MARK)?;
    handle.parse::<SecretRef>().ok().map(|h| h.to_json())
}

fn has_stray_marker(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(MARK),
        Value::Array(items) => items.iter().any(has_stray_marker),
        Value::Object(map) => map.values().any(has_stray_marker),
        _ => false,
    }
}

/// Turns marker strings back into handles.
pub fn decode_markers(v: Value) -> Value {
    match v {
        Value::String(s) if s.starts_with(MARK_PREFIX) => decode_marker(&s).unwrap_or(Value::String(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(decode_markers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, decode_markers(v))).collect()),
        other => other,
    }
}

/// A variable a template reads, e.g. `steps.list.outputs.secrets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub segments: Vec<String>,
    /// Inside a block (`#each`, `#with`) where `this` changes: only paths that
    /// start at a known root are checked.
    pub in_block: bool,
    /// The reference is the whole template (its type survives).
    pub whole: bool,
}

impl Reference {
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// Every variable `s` reads and every helper it calls, without rendering.
pub fn analyze(
    s: &str,
    has_helper: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Reference>, Vec<String>), TemplateError> {
    if !Templates::is_template(s) {
        return Ok((Vec::new(), Vec::new()));
    }
    let t = compiled(s)?;
    let whole = single_expression(s, &t).is_some();
    let mut refs = Vec::new();
    let mut helpers = Vec::new();
    walk_template(&t, false, has_helper, &mut refs, &mut helpers);
    if whole
        && refs.len() == 1
        && helpers.is_empty()
        && let Some(r) = refs.first_mut()
    {
        r.whole = true;
    }
    Ok((refs, helpers))
}

fn walk_template(
    t: &Template,
    in_block: bool,
    has_helper: &dyn Fn(&str) -> bool,
    refs: &mut Vec<Reference>,
    helpers: &mut Vec<String>,
) {
    for el in &t.elements {
        walk_element(el, in_block, has_helper, refs, helpers);
    }
}

fn walk_element(
    el: &TemplateElement,
    in_block: bool,
    has_helper: &dyn Fn(&str) -> bool,
    refs: &mut Vec<Reference>,
    helpers: &mut Vec<String>,
) {
    let (TemplateElement::Expression(h)
    | TemplateElement::HtmlExpression(h)
    | TemplateElement::HelperBlock(h)) = el
    else {
        return;
    };
    let is_call = !h.params.is_empty() || !h.hash.is_empty() || h.template.is_some();
    match simple_name(&h.name) {
        Some(n) if is_call || has_helper(n) => helpers.push(n.to_owned()),
        _ => walk_param(&h.name, in_block, has_helper, refs, helpers),
    }
    for p in h.params.iter().chain(h.hash.values()) {
        walk_param(p, in_block, has_helper, refs, helpers);
    }
    let block_changes_scope = matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
    for inner in [&h.template, &h.inverse].into_iter().flatten() {
        walk_template(inner, in_block || block_changes_scope, has_helper, refs, helpers);
    }
}

fn walk_param(
    p: &Parameter,
    in_block: bool,
    has_helper: &dyn Fn(&str) -> bool,
    refs: &mut Vec<Reference>,
    helpers: &mut Vec<String>,
) {
    match p {
        Parameter::Name(n) => refs.push(Reference {
            segments: vec![n.clone()],
            in_block,
            whole: false,
        }),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => {
            let segments = split_path(raw);
            if segments
                .first()
                .is_some_and(|s| s != "this" && !s.starts_with('@'))
            {
                refs.push(Reference {
                    segments,
                    in_block,
                    whole: false,
                });
            }
        }
        Parameter::Subexpression(sub) => walk_element(&sub.element, in_block, has_helper, refs, helpers),
        Parameter::Literal(_) => {}
        _ => {}
    }
}

/// `steps.a.outputs.[0].b` / `steps/a` -> segments.
fn split_path(raw: &str) -> Vec<String> {
    raw.split(['.', '/'])
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches('[').trim_end_matches(']').to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t() -> Templates {
        let fixed = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Templates::new(Arc::new(move || fixed))
    }

    fn ctx() -> Value {
        json!({
            "inputs": {"count": 3, "name": "acme", "flag": true, "opt": null, "key": {"$secret": "plex/key@2"}},
            "steps": {"list": {"outputs": {"ids": ["a", "b"], "valid_until": "2023-11-01T00:00:00Z"}}},
        })
    }

    #[test]
    fn single_expression_keeps_its_type() -> Result<(), TemplateError> {
        let t = t();
        assert_eq!(t.render_value("{{inputs.count}}", &ctx())?, json!(3));
        assert_eq!(t.render_value("{{ inputs.flag }}", &ctx())?, json!(true));
        assert_eq!(t.render_value(" {{inputs.flag}}", &ctx())?, json!(" true"));
        assert_eq!(
            t.render_value("{{steps.list.outputs.ids}}", &ctx())?,
            json!(["a", "b"])
        );
        assert_eq!(
            t.render_value("{{eq inputs.name \"acme\"}}", &ctx())?,
            json!(true)
        );
        assert_eq!(t.render_value("{{default inputs.opt 5}}", &ctx())?, json!(5));
        assert_eq!(t.render_value("n={{inputs.count}}", &ctx())?, json!("n=3"));
        Ok(())
    }

    #[test]
    fn missing_variables_are_errors_not_empty_strings() {
        let t = t();
        assert_eq!(
            t.render_value("x{{inputs.nope}}", &ctx()),
            Err(TemplateError::Missing("inputs.nope".into()))
        );
        assert!(matches!(
            t.render_value("{{inputs.nope}}", &ctx()),
            Err(TemplateError::Missing(_))
        ));
        assert!(t.render_value("{{eq inputs.nope 1}}", &ctx()).is_err());
        assert!(matches!(
            t.render_value("{{default inputs.nope 1}}", &ctx()),
            Err(TemplateError::Missing(_))
        ));
    }

    #[test]
    fn secrets_stay_handles_and_never_enter_text() -> Result<(), TemplateError> {
        let t = t();
        assert_eq!(
            t.render_value("{{inputs.key}}", &ctx())?,
            json!({"$secret": "plex/key@2"})
        );
        assert_eq!(
            t.render_value("Bearer {{inputs.key}}", &ctx()),
            Err(TemplateError::SecretInText)
        );
        assert_eq!(
            t.render_value("{{json inputs}}", &ctx()),
            Err(TemplateError::SecretInText)
        );
        Ok(())
    }

    #[test]
    fn stray_marker_characters_cannot_forge_a_handle() -> Result<(), TemplateError> {
        let c = json!({"inputs": {"s": "\u{E000}secret:x@1\u{E000}"}});
        assert_eq!(
            t().render_value("{{inputs.s}}", &c)?,
            json!("\u{FFFD}secret:x@1\u{FFFD}")
        );
        Ok(())
    }

    #[test]
    fn date_helpers_use_the_clock() -> Result<(), TemplateError> {
        let t = t();
        assert_eq!(t.render_value("{{now}}", &ctx())?, json!("2023-11-14T22:13:20Z"));
        assert_eq!(
            t.render_value(
                "{{before steps.list.outputs.valid_until (date_add (now) \"30d\")}}",
                &ctx()
            )?,
            json!(true)
        );
        assert_eq!(
            t.render_value("{{date_sub \"2024-01-31T00:00:00Z\" \"30d\"}}", &ctx())?,
            json!("2024-01-01T00:00:00Z")
        );
        assert!(matches!(
            t.render_value("{{before \"x\" (now)}}", &ctx()),
            Err(TemplateError::Helper(_))
        ));
        Ok(())
    }

    #[test]
    fn split_turns_typed_text_into_a_list() -> Result<(), TemplateError> {
        let t = t();
        let c = json!({"inputs": {"apps": " fn_a, fn_b,,fn_c ", "empty": "", "n": 3}});
        assert_eq!(
            t.render_value("{{split inputs.apps}}", &c)?,
            json!(["fn_a", "fn_b", "fn_c"])
        );
        assert_eq!(t.render_value("{{split inputs.empty}}", &c)?, json!([]));
        assert_eq!(t.render_value("{{split \"a;b\" \";\"}}", &c)?, json!(["a", "b"]));
        assert!(matches!(
            t.render_value("{{split inputs.n}}", &c),
            Err(TemplateError::Helper(m)) if m.contains("expected a string, got an integer")
        ));
        Ok(())
    }

    #[test]
    fn analysis_finds_references_and_helpers() -> Result<(), TemplateError> {
        let (refs, helpers) = analyze(
            "{{#each steps.list.outputs.ids}}{{this}} {{inputs.name}}{{/each}} {{eq (len item) 2}}",
            &|n| n == "len" || n == "eq",
        )?;
        let dotted: Vec<_> = refs.iter().map(|r| (r.dotted(), r.in_block)).collect();
        assert_eq!(
            dotted,
            vec![
                ("steps.list.outputs.ids".into(), false),
                ("inputs.name".into(), true),
                ("item".into(), false)
            ]
        );
        assert_eq!(helpers, vec!["each".to_owned(), "eq".into(), "len".into()]);
        Ok(())
    }
}
