//! JSON Schema checks of action inputs and outputs.
//!
//! Design decision: action schemas use a small part of JSON Schema (type,
//! properties, required, additionalProperties, items, enum, const, string
//! lengths, numeric bounds, pattern; annotations such as `description` or
//! `format`, which draft 2020-12 does not assert), and a run compiles one
//! input and one output schema per action it calls. The `jsonschema` crate
//! checks each schema against the draft 2020-12 meta-schema when compiling
//! it, which measured ~1 ms per schema in a fresh process (28 ms for the Plex
//! plugin's 18 schemas, a third of a whole Plex reset). A schema within that
//! part is compiled here instead, to a tree checked directly (microseconds);
//! anything else (a `$schema`, `$ref`, `oneOf`, `patternProperties`, a pattern
//! the `regex` crate cannot take, ...) is handed to `jsonschema` unchanged,
//! so no schema is ever checked more loosely than the standard says. A
//! plugin file's schemas are still checked against the meta-schema at
//! discovery (`rota_host::manifest::parse`); a test compares both paths on
//! the same schemas and values, and `rota_host` tests that every bundled
//! plugin's schemas take the fast path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

/// A compiled schema.
pub struct Schema(Kind);

enum Kind {
    Subset(Box<Node>),
    Full(Box<jsonschema::Validator>),
}

/// Where a value failed its schema, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 6901 pointer into the value (`""` for the root).
    pub at: String,
    pub message: String,
}

impl Schema {
    /// Compiles `schema`; an error says why it is not a usable JSON Schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        match Node::compile(schema) {
            Some(node) => Ok(Self(Kind::Subset(Box::new(node)))),
            None => jsonschema::validator_for(schema)
                .map(|v| Self(Kind::Full(Box::new(v))))
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether the fast path checks this schema (for tests and benches).
    pub fn is_subset(&self) -> bool {
        matches!(self.0, Kind::Subset(_))
    }

    /// The first failure of `value`, if any.
    pub fn check(&self, value: &Value) -> Option<Failure> {
        match &self.0 {
            Kind::Subset(node) => {
                let mut at = Vec::new();
                node.check(value, &mut at)
            }
            Kind::Full(v) => {
                if v.is_valid(value) {
                    return None;
                }
                v.iter_errors(value).next().map(|e| Failure {
                    at: e.instance_path.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Ty {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "null" => Self::Null,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "string" => Self::String,
            "array" => Self::Array,
            "object" => Self::Object,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    fn holds(self, v: &Value) -> bool {
        match self {
            Self::Null => v.is_null(),
            Self::Boolean => v.is_boolean(),
            // Draft 2020-12: a number with a zero fractional part is an integer.
            Self::Integer => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            Self::Number => v.is_number(),
            Self::String => v.is_string(),
            Self::Array => v.is_array(),
            Self::Object => v.is_object(),
        }
    }
}

enum Additional {
    Any,
    Never,
    Schema(Box<Node>),
}

/// A schema within the subset. `None` fields do not constrain.
struct Node {
    /// The schema `false`.
    never: bool,
    types: Option<Vec<Ty>>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional: Additional,
    items: Option<Box<Node>>,
    one_of_values: Option<Vec<Value>>,
    constant: Option<Value>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    pattern: Option<(String, Arc<regex::Regex>)>,
}

/// Keywords that assert nothing in draft 2020-12 (`format` is an annotation
/// unless a vocabulary says otherwise).
fn annotation(key: &str) -> bool {
    matches!(
        key,
        "description"
            | "title"
            | "default"
            | "examples"
            | "$comment"
            | "format"
            | "readOnly"
            | "writeOnly"
            | "deprecated"
    ) || key.starts_with("x-")
}

impl Node {
    fn empty() -> Self {
        Self {
            never: false,
            types: None,
            properties: Vec::new(),
            required: Vec::new(),
            additional: Additional::Any,
            items: None,
            one_of_values: None,
            constant: None,
            min_length: None,
            max_length: None,
            minimum: None,
            maximum: None,
            pattern: None,
        }
    }

    /// `None` when the schema leaves the subset (the caller uses jsonschema).
    fn compile(schema: &Value) -> Option<Self> {
        let obj = match schema {
            Value::Bool(b) => {
                let mut n = Self::empty();
                n.never = !b;
                return Some(n);
            }
            Value::Object(o) => o,
            _ => return None,
        };
        let mut n = Self::empty();
        for (key, v) in obj {
            match key.as_str() {
                "type" => n.types = Some(types(v)?),
                "properties" => {
                    for (name, sub) in v.as_object()? {
                        n.properties.push((name.clone(), Self::compile(sub)?));
                    }
                }
                "required" => {
                    for r in v.as_array()? {
                        n.required.push(r.as_str()?.to_owned());
                    }
                }
                "additionalProperties" => {
                    n.additional = match v {
                        Value::Bool(true) => Additional::Any,
                        Value::Bool(false) => Additional::Never,
                        other => Additional::Schema(Box::new(Self::compile(other)?)),
                    }
                }
                "items" => n.items = Some(Box::new(Self::compile(v)?)),
                "enum" => n.one_of_values = Some(v.as_array()?.clone()),
                "const" => n.constant = Some(v.clone()),
                "minLength" => n.min_length = Some(v.as_u64()?),
                "maxLength" => n.max_length = Some(v.as_u64()?),
                "minimum" => n.minimum = Some(v.as_f64()?),
                "maximum" => n.maximum = Some(v.as_f64()?),
                "pattern" => n.pattern = Some((v.as_str()?.to_owned(), pattern(v.as_str()?)?)),
                k if annotation(k) => {}
                _ => return None,
            }
        }
        Some(n)
    }

    fn check(&self, v: &Value, at: &mut Vec<String>) -> Option<Failure> {
        let fail = |at: &Vec<String>, message: String| {
            Some(Failure {
                at: pointer(at),
                message,
            })
        };
        if self.never {
            return fail(at, format!("False schema does not allow {v}"));
        }
        if let Some(types) = &self.types
            && !types.iter().any(|t| t.holds(v))
        {
            let names: Vec<String> = types.iter().map(|t| format!("\"{}\"", t.name())).collect();
            return fail(
                at,
                if names.len() == 1 {
                    format!("{v} is not of type {}", names[0])
                } else {
                    format!("{v} is not of types {}", names.join(", "))
                },
            );
        }
        if let Some(c) = &self.constant
            && !json_equal(c, v)
        {
            return fail(at, format!("{c} was expected"));
        }
        if let Some(values) = &self.one_of_values
            && !values.iter().any(|e| json_equal(e, v))
        {
            return fail(at, format!("{v} is not one of {}", Value::Array(values.clone())));
        }
        match v {
            Value::String(s) => {
                let chars = || s.chars().count() as u64;
                if let Some(min) = self.min_length
                    && chars() < min
                {
                    return fail(at, format!("{v} is shorter than {min} character{}", plural(min)));
                }
                if let Some(max) = self.max_length
                    && chars() > max
                {
                    return fail(at, format!("{v} is longer than {max} character{}", plural(max)));
                }
                if let Some((p, re)) = &self.pattern
                    && !re.is_match(s)
                {
                    return fail(at, format!("{v} does not match \"{p}\""));
                }
            }
            Value::Number(num) => {
                let f = num.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = self.minimum
                    && f < min
                {
                    return fail(
                        at,
                        format!("{v} is less than the minimum of {}", Value::from(min)),
                    );
                }
                if let Some(max) = self.maximum
                    && f > max
                {
                    return fail(
                        at,
                        format!("{v} is greater than the maximum of {}", Value::from(max)),
                    );
                }
            }
            Value::Object(o) => return self.check_object(o, at),
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for (i, x) in items.iter().enumerate() {
                        at.push(i.to_string());
                        let r = item.check(x, at);
                        at.pop();
                        if r.is_some() {
                            return r;
                        }
                    }
                }
            }
            _ => {}
        }
        None
    }

    fn check_object(&self, o: &Map<String, Value>, at: &mut Vec<String>) -> Option<Failure> {
        if let Some(missing) = self.required.iter().find(|r| !o.contains_key(*r)) {
            return Some(Failure {
                at: pointer(at),
                message: format!("\"{missing}\" is a required property"),
            });
        }
        for (name, sub) in &self.properties {
            if let Some(x) = o.get(name) {
                at.push(name.clone());
                let r = sub.check(x, at);
                at.pop();
                if r.is_some() {
                    return r;
                }
            }
        }
        let extra = || {
            o.iter()
                .filter(|(k, _)| !self.properties.iter().any(|(p, _)| p == *k))
        };
        match &self.additional {
            Additional::Any => None,
            Additional::Never => {
                let unexpected: Vec<String> = extra().map(|(k, _)| format!("'{k}'")).collect();
                (!unexpected.is_empty()).then(|| Failure {
                    at: pointer(at),
                    message: format!(
                        "Additional properties are not allowed ({} {} unexpected)",
                        unexpected.join(", "),
                        if unexpected.len() == 1 { "was" } else { "were" }
                    ),
                })
            }
            Additional::Schema(sub) => {
                for (k, x) in extra() {
                    at.push(k.clone());
                    let r = sub.check(x, at);
                    at.pop();
                    if r.is_some() {
                        return r;
                    }
                }
                None
            }
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn types(v: &Value) -> Option<Vec<Ty>> {
    match v {
        Value::String(s) => Some(vec![Ty::parse(s)?]),
        Value::Array(a) => a.iter().map(|t| Ty::parse(t.as_str()?)).collect(),
        _ => None,
    }
}

/// JSON Schema equality: numbers by value (1 equals 1.0), the rest as JSON.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(p), Some(q), _, _) => p == q,
            (_, _, Some(p), Some(q)) => p == q,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| json_equal(p, q)))
        }
        _ => a == b,
    }
}

/// RFC 6901 pointer of a path.
fn pointer(at: &[String]) -> String {
    at.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// A schema `pattern` (ECMA-262, unanchored) as a Rust regex, compiled once
/// per process: the same few patterns recur across actions. `None` for a
/// pattern whose meaning could differ between the two dialects (the schema
/// then goes to jsonschema, which translates ECMA-262 itself).
fn pattern(p: &str) -> Option<Arc<regex::Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<regex::Regex>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(p) {
        return hit.clone();
    }
    let compiled = ecma_to_rust(p)
        .and_then(|r| regex::Regex::new(&r).ok())
        .map(Arc::new);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p.to_owned(), compiled.clone());
    compiled
}

/// ECMA-262 whitespace (`\s`), spelled out: Rust's Unicode `\s` differs
/// (it has U+0085 and lacks U+FEFF).
const ECMA_SPACE: &str =
    r"\t\n\x0B\x0C\r \u{A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}\u{FEFF}";

/// Translates an ECMA-262 pattern to the `regex` crate's syntax, or `None`
/// where the two could differ: `\d`, `\w` and `\s` are spelled out (ASCII
/// digits and word characters, ECMA whitespace; `.` is left as jsonschema
/// leaves it, any character but `\n`); lookarounds, backreferences, `\b`, named groups, Rust's class
/// set operators and any escape not listed give `None`.
fn ecma_to_rust(p: &str) -> Option<String> {
    if ["&&", "--", "~~", "[["].iter().any(|op| p.contains(op)) {
        return None;
    }
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let e = chars.next()?;
                match (e, in_class) {
                    ('d', false) => out.push_str("[0-9]"),
                    ('D', false) => out.push_str("[^0-9]"),
                    ('w', false) => out.push_str("[A-Za-z0-9_]"),
                    ('W', false) => out.push_str("[^A-Za-z0-9_]"),
                    ('s', false) => out.push_str(&format!("[{ECMA_SPACE}]")),
                    ('S', false) => out.push_str(&format!("[^{ECMA_SPACE}]")),
                    ('d', true) => out.push_str("0-9"),
                    ('w', true) => out.push_str("A-Za-z0-9_"),
                    ('s', true) => out.push_str(ECMA_SPACE),
                    (
                        'n' | 'r' | 't' | '.' | '-' | '\\' | '/' | '^' | '$' | '*' | '+' | '?' | '(' | ')'
                        | '[' | ']' | '{' | '}' | '|',
                        _,
                    ) => {
                        out.push('\\');
                        out.push(e);
                    }
                    _ => return None,
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                // A `]` first in an ECMA class closes it (an empty class).
                if chars.peek() == Some(&']') {
                    return None;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '(' if !in_class && chars.peek() == Some(&'?') => return None,
            c => out.push(c),
        }
    }
    (!in_class).then_some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Both paths agree on every (schema, value) pair: the subset is never
    /// looser or stricter than jsonschema.
    #[test]
    fn the_subset_agrees_with_jsonschema() {
        let schemas = [
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 4}}, "additionalProperties": false}),
            json!({"type": "integer", "minimum": 1, "maximum": 10}),
            json!({"type": ["string", "null"], "pattern": "^[0-9]{1,12}$"}),
            json!({"type": "string", "pattern": "\\S"}),
            json!({"type": "string", "pattern": "^\\d+$"}),
            json!({"type": "string", "pattern": "^a.b$"}),
            json!({"type": "string", "pattern": "^[^,]+$"}),
            json!({"type": "string", "pattern": "^[\\w-]+$"}),
            json!({"enum": ["a", 1, null]}),
            json!({"const": true}),
            json!({"const": 1}),
            json!({"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}),
            json!({"type": "object", "additionalProperties": {"type": "boolean"}}),
            json!({"type": "object", "properties": {"s": {"x-rota-secret": true, "description": "handle"}, "t": {"format": "date-time", "type": "string"}}}),
            json!(false),
            json!(true),
        ];
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(1),
            json!(1.0),
            json!(1.5),
            json!(11),
            json!(-3),
            json!(""),
            json!("a"),
            json!("ab"),
            json!("abcde"),
            json!("éé"),
            json!("123"),
            json!("١٢٣"),
            json!(" "),
            json!("\u{feff}"),
            json!("\u{85}"),
            json!("a\rb"),
            json!("a\nb"),
            json!("axb"),
            json!("a,b"),
            json!("a_b-c"),
            json!("12a"),
            json!([]),
            json!([{"id": 1}, {"id": "x"}]),
            json!([{"id": 2}]),
            json!({}),
            json!({"a": "ab"}),
            json!({"a": "ab", "b": 1}),
            json!({"a": 3}),
            json!({"x": true, "y": false}),
            json!({"x": 1}),
            json!({"s": {"$secret": "a@1"}, "t": "not a date"}),
        ];
        for schema in &schemas {
            let ours = Schema::compile(schema).expect("compiles");
            assert!(ours.is_subset(), "{schema} takes the fast path");
            let theirs = jsonschema::validator_for(schema).expect("jsonschema compiles");
            for v in &values {
                let failure = ours.check(v);
                assert_eq!(
                    failure.is_none(),
                    theirs.is_valid(v),
                    "{schema} on {v}: ours {failure:?}"
                );
                if let (Some(f), Some(e)) = (&failure, theirs.iter_errors(v).next()) {
                    assert_eq!(f.at, e.instance_path.to_string(), "{schema} on {v}");
                }
            }
        }
    }

    #[test]
    fn schemas_outside_the_subset_use_jsonschema_and_still_check() {
        for schema in [
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}),
            json!({"type": "string", "pattern": "^(?!x)"}),
            json!({"type": "string", "pattern": "\\bword"}),
            json!({"patternProperties": {"^a": {"type": "string"}}}),
        ] {
            let s = Schema::compile(&schema).expect("compiles");
            assert!(!s.is_subset(), "{schema}");
            assert!(
                s.check(&json!(1.5)).is_some()
                    || s.check(&json!({"a": 1})).is_some()
                    || s.check(&json!("x")).is_some(),
                "{schema} checks something"
            );
        }
        assert!(Schema::compile(&json!({"type": "no-such-type"})).is_err());
    }

    #[test]
    fn failures_name_the_place_and_the_rule() {
        let s = Schema::compile(&json!({
            "type": "object",
            "required": ["pcn"],
            "properties": {"pcn": {"type": "string", "pattern": "^[0-9]{1,12}$"}, "n": {"type": "integer"}},
            "additionalProperties": false
        }))
        .expect("compiles");
        let f = |v: Value| s.check(&v).map(|f| (f.at, f.message));
        assert_eq!(
            f(json!({})),
            Some((String::new(), "\"pcn\" is a required property".into()))
        );
        assert_eq!(
            f(json!({"pcn": "12x"})),
            Some(("/pcn".into(), "\"12x\" does not match \"^[0-9]{1,12}$\"".into()))
        );
        assert_eq!(
            f(json!({"pcn": "1", "n": "2"})),
            Some(("/n".into(), "\"2\" is not of type \"integer\"".into()))
        );
        assert_eq!(
            f(json!({"pcn": "1", "zz": 1})),
            Some((
                String::new(),
                "Additional properties are not allowed ('zz' was unexpected)".into()
            ))
        );
        assert_eq!(f(json!({"pcn": "1", "n": 2})), None);
    }
}
