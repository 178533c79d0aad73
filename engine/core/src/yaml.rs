//! The one module that reads YAML.
//!
//! Design decision: serde_yaml (archived upstream) deserializes the typed
//! playbook and reports syntax and shape errors with positions; a second,
//! span-keeping pass with yaml-rust2's event parser records where every key and
//! value starts, so semantic errors found later (a forward step reference, a
//! bad template) can point at a line and column too. Nothing else in rota
//! touches either crate, so both stay swappable.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostic::{Diagnostic, ErrorKind, Pos};

/// Playbooks larger than this are refused before parsing.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deeper nesting than this is refused (serde_yaml's own limit is 128).
pub const MAX_DEPTH: usize = 48;

/// A loaded file: its display name and its UTF-8 text.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads a file, refusing huge or non-UTF-8 input with a positioned error.
    pub fn read(path: &Path) -> Result<Self, Diagnostic> {
        let name = path.display().to_string();
        let io = |e: std::io::Error| {
            Diagnostic::new(ErrorKind::Io, &name, Pos::default(), format!("cannot read: {e}"))
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_BYTES as u64 {
            return Err(too_large(&name, len));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(name, bytes)
    }

    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Self, Diagnostic> {
        if bytes.len() > MAX_BYTES {
            return Err(too_large(&name, bytes.len() as u64));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self { name, text }),
            Err(e) => {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(bytes.get(..at).unwrap_or_default());
                let line = valid.matches('\n').count() + 1;
                let column = valid.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
                let byte = bytes.get(at).copied().unwrap_or(0);
                Err(Diagnostic::new(
                    ErrorKind::Encoding,
                    name,
                    Pos::new(line, column),
                    format!("invalid UTF-8 (byte 0x{byte:02x} at offset {at}): playbooks must be UTF-8 text"),
                ))
            }
        }
    }
}

fn too_large(name: &str, len: u64) -> Diagnostic {
    Diagnostic::new(
        ErrorKind::TooLarge,
        name,
        Pos::default(),
        format!("file is {len} bytes; playbooks are limited to {MAX_BYTES} bytes (1 MiB)"),
    )
}

/// Where each key and value of a document starts, by path
/// (`steps[2].with.name`, the same notation serde_yaml uses).
#[derive(Clone, Debug, Default)]
pub struct SpanMap {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl SpanMap {
    /// Where the value at `path` starts; falls back to the nearest ancestor.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(&self.values, path)
    }

    /// Where the key naming `path` starts (for "unknown field" style errors);
    /// falls back to the value, then to ancestors.
    pub fn key(&self, path: &str) -> Pos {
        match self.keys.get(path) {
            Some(pos) => *pos,
            None => self.value(path),
        }
    }

    fn lookup(&self, map: &HashMap<String, Pos>, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = map.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return map.get("").copied().unwrap_or(Pos::new(1, 1)),
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashSet<String>,
        first: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct SpanCollector {
    spans: SpanMap,
    stack: Vec<Frame>,
    error: Option<(ErrorKind, Pos, String)>,
}

fn pos_of(mark: &Marker) -> Pos {
    Pos::new(mark.line(), mark.col() + 1)
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl SpanCollector {
    fn fail(&mut self, kind: ErrorKind, pos: Pos, msg: String) {
        if self.error.is_none() {
            self.error = Some((kind, pos, msg));
        }
    }

    /// The path of the value that starts now, and its parent's bookkeeping.
    fn next_value_path(&mut self) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key, .. }) => child(path, key.as_deref().unwrap_or("?")),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                p
            }
        }
    }

    fn value_done(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn start_value(&mut self, pos: Pos) -> String {
        let path = self.next_value_path();
        self.spans.values.insert(path.clone(), pos);
        path
    }
}

impl MarkedEventReceiver for SpanCollector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(value, ..) => {
                if self.expecting_key() {
                    let mut duplicate = None;
                    let mut earlier_first_key = None;
                    if let Some(Frame::Map {
                        path,
                        key,
                        seen,
                        first,
                    }) = self.stack.last_mut()
                    {
                        let full = child(path, &value);
                        if !seen.insert(value.clone()) {
                            duplicate = Some(full.clone());
                        }
                        if *first {
                            *first = false;
                            earlier_first_key = Some(path.clone());
                        }
                        self.spans.keys.insert(full, pos);
                        *key = Some(value.clone());
                    }
                    // Block mappings report their start after the first key:
                    // the mapping really starts at that key.
                    if let Some(map_path) = earlier_first_key {
                        let entry = self.spans.values.entry(map_path).or_insert(pos);
                        if pos < *entry {
                            *entry = pos;
                        }
                    }
                    if let Some(full) = duplicate {
                        self.fail(
                            ErrorKind::DuplicateKey,
                            pos,
                            format!("duplicate key \"{value}\" (at {full})"),
                        );
                    }
                } else {
                    self.start_value(pos);
                    self.value_done();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.expecting_key() {
                    self.fail(
                        ErrorKind::Syntax,
                        pos,
                        "mapping keys must be plain strings".to_owned(),
                    );
                    return;
                }
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(
                        ErrorKind::TooDeep,
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels; playbooks are not that deep"),
                    );
                    return;
                }
                let path = self.start_value(pos);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        key: None,
                        seen: HashSet::new(),
                        first: true,
                    }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => {
                self.fail(
                    ErrorKind::Syntax,
                    pos,
                    "YAML aliases (*name) are not supported in playbooks; write the value out".to_owned(),
                );
            }
            _ => {}
        }
    }
}

/// Records where every key and value starts. Fails on syntax errors,
/// duplicate keys, aliases and excessive nesting.
pub fn spans(source: &Source) -> Result<SpanMap, Diagnostic> {
    let mut collector = SpanCollector {
        spans: SpanMap::default(),
        stack: Vec::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(&source.text);
    if let Err(e) = parser.load(&mut collector, false) {
        // libyaml (through serde_yaml) usually places syntax errors better
        // (at the opening bracket, not at the end of the file): prefer it.
        if let Err(se) = serde_yaml::from_str::<serde_yaml::Value>(&source.text)
            && let Some(loc) = se.location()
        {
            let msg = se.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            return Err(Diagnostic::new(
                ErrorKind::Syntax,
                &source.name,
                Pos::new(loc.line(), loc.column()),
                format!("YAML syntax error: {msg}"),
            ));
        }
        let m = e.marker();
        return Err(Diagnostic::new(
            ErrorKind::Syntax,
            &source.name,
            pos_of(m),
            format!("YAML syntax error: {}", e.info()),
        ));
    }
    if let Some((kind, pos, msg)) = collector.error {
        return Err(Diagnostic::new(kind, &source.name, pos, msg));
    }
    Ok(collector.spans)
}

/// Parses a typed document and its span map.
pub fn parse<T: DeserializeOwned>(source: &Source) -> Result<(T, SpanMap), Diagnostic> {
    let spans = spans(source)?;
    if source.text.trim().is_empty() {
        return Err(Diagnostic::new(
            ErrorKind::Syntax,
            &source.name,
            Pos::new(1, 1),
            "the file is empty",
        ));
    }
    let value = serde_yaml::from_str::<T>(&source.text).map_err(|e| from_serde(&source.name, &spans, &e))?;
    Ok((value, spans))
}

/// Parses a YAML document into JSON (for `--inputs` files and the like).
pub fn parse_value(source: &Source) -> Result<serde_json::Value, Diagnostic> {
    parse(source).map(|(v, _)| v)
}

fn from_serde(file: &str, spans: &SpanMap, e: &serde_yaml::Error) -> Diagnostic {
    let raw = e.to_string();
    let pos = e
        .location()
        .map(|l| Pos::new(l.line(), l.column()))
        .unwrap_or(Pos::new(1, 1));
    let mut msg = raw.as_str();
    if let Some(i) = msg.rfind(" at line ") {
        msg = &msg[..i];
    }
    // serde_yaml prefixes the path (`steps[0]: ...`); the position says it.
    let mut path = "";
    if let Some((prefix, rest)) = msg.split_once(": ")
        && !prefix.contains(' ')
    {
        path = prefix;
        msg = rest;
    }
    let kind = if msg.starts_with("unknown field") {
        ErrorKind::UnknownField
    } else if msg.starts_with("missing field") {
        ErrorKind::MissingField
    } else if msg.starts_with("duplicate field") || msg.starts_with("duplicate entry") {
        ErrorKind::DuplicateKey
    } else if msg.starts_with("invalid type") {
        ErrorKind::WrongType
    } else if msg.contains("invalid duration") {
        ErrorKind::BadDuration
    } else if msg.starts_with("unknown variant") || msg.starts_with("invalid value") {
        ErrorKind::InvalidValue
    } else if e.location().is_some() && msg.contains("did not find expected") {
        ErrorKind::Syntax
    } else {
        ErrorKind::InvalidValue
    };
    // An unknown field is reported at its key; serde_yaml points there too,
    // but a missing field has no key: point at the mapping that lacks it.
    let pos = if kind == ErrorKind::MissingField && !path.is_empty() {
        spans.value(path)
    } else {
        pos
    };
    Diagnostic::new(kind, file, pos, plain_types(&humanize(msg)))
}

/// serde's "unknown field `x`, expected one of `a`, `b`" ->
/// `unknown field "x", expected one of: a, b`.
fn humanize(msg: &str) -> String {
    let (head, expected) = match msg.split_once(", expected ") {
        Some((h, e)) => (h, Some(e)),
        None => (msg, None),
    };
    let head = quote_ticks(head);
    match expected {
        None => head,
        Some(e) => {
            if let Some(list) = e.strip_prefix("one of ") {
                format!("{head}, expected one of: {}", list.replace('`', ""))
            } else {
                format!("{head}, expected {}", e.replace('`', ""))
            }
        }
    }
}

fn quote_ticks(s: &str) -> String {
    s.replace('`', "\"")
}

/// serde's Rust type names, in words a playbook author uses.
fn plain_types(s: &str) -> String {
    let mut out = s.to_owned();
    for (from, to) in [
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        ("invalid type: map", "invalid type: mapping"),
        ("invalid type: sequence", "invalid type: list"),
    ] {
        if out.ends_with(from) || out.contains(&format!("{from} ")) || out.contains(&format!("{from},")) {
            out = out.replace(from, to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() -> Result<(), Diagnostic> {
        let src = Source::new("p.yaml", "name: x\nsteps:\n  - id: a\n    with: {b: 1}\n");
        let s = spans(&src)?;
        assert_eq!(s.value("name"), Pos::new(1, 7));
        assert_eq!(s.value("steps[0]"), Pos::new(3, 5));
        assert_eq!(s.key("steps[0].with"), Pos::new(4, 5));
        assert_eq!(s.value("steps[0].with"), Pos::new(4, 11));
        assert_eq!(s.value("steps[0].with.b"), Pos::new(4, 15));
        assert_eq!(s.value("steps[0].nothing.here"), Pos::new(3, 5));
        Ok(())
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let src = Source::new("p.yaml", "a: 1\nb: 2\na: 3\n");
        let e = spans(&src).err();
        assert_eq!(
            e.map(|d| (d.kind, d.pos)),
            Some((ErrorKind::DuplicateKey, Pos::new(3, 1)))
        );
    }

    #[test]
    fn non_utf8_is_located() {
        let e = Source::from_bytes("p.yaml".into(), b"a: 1\nb: \xff\n".to_vec()).err();
        assert_eq!(
            e.map(|d| (d.kind, d.pos)),
            Some((ErrorKind::Encoding, Pos::new(2, 4)))
        );
    }

    #[test]
    fn serde_messages_are_humanized() {
        assert_eq!(
            humanize("unknown field `retires`, expected one of `id`, `name`"),
            "unknown field \"retires\", expected one of: id, name"
        );
    }
}
