//! Playbook errors that point at a place: file, line, column, what was expected.
//!
//! Design decision: every error found in a playbook, from YAML syntax to a
//! forward step reference, becomes one [`Diagnostic`] with a machine-checkable
//! [`ErrorKind`] and a span, and ONE function ([`Diagnostic::render`]) turns it
//! into text. Tests assert the kind and span apart from the rendered message.

use std::fmt;

use serde::Serialize;

/// What class of mistake a diagnostic reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Io,
    Encoding,
    TooLarge,
    TooDeep,
    Syntax,
    UnknownField,
    MissingField,
    WrongType,
    InvalidValue,
    DuplicateKey,
    DuplicateId,
    UnknownAction,
    BadTemplate,
    UnknownReference,
    ForwardReference,
    Cycle,
    BadDuration,
    NotBoolean,
    SecretMisuse,
}

/// A 1-based position in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    /// The file as the user named it.
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl Diagnostic {
    pub fn new(kind: ErrorKind, file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            kind,
            file: file.into(),
            pos,
            message: message.into(),
        }
    }

    /// `file:line:col: message`, then the offending line with a caret under the
    /// column. `source` is the file's text (absent for I/O errors).
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = format!("{self}\n");
        let Some(text) = source.and_then(|s| s.lines().nth(self.pos.line.saturating_sub(1))) else {
            return out;
        };
        if self.pos.line == 0 {
            return out;
        }
        // Long lines (a 10 MB one-liner) are cut around the column.
        let chars: Vec<char> = text.chars().collect();
        let col = self.pos.column.max(1) - 1;
        let start = col.saturating_sub(60);
        let end = (col + 60).min(chars.len());
        let shown: String = chars
            .get(start..end)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let prefix = if start > 0 { "..." } else { "" };
        let suffix = if end < chars.len() { "..." } else { "" };
        let gutter = self.pos.line.to_string();
        let pad = " ".repeat(gutter.len());
        let caret_at = prefix.len() + col - start;
        out.push_str(&format!(
            "{pad} |\n{gutter} | {prefix}{shown}{suffix}\n{pad} | {}^\n",
            " ".repeat(caret_at)
        ));
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.pos.line, self.pos.column, self.message
            )
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Several diagnostics from one file, in source order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub source: Option<String>,
}

impl Diagnostics {
    pub fn render(&self) -> String {
        self.items
            .iter()
            .map(|d| format!("error: {}", d.render(self.source.as_deref())))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret() {
        let d = Diagnostic::new(
            ErrorKind::UnknownField,
            "p.yaml",
            Pos::new(2, 5),
            "unknown field \"x\"",
        );
        assert_eq!(
            d.render(Some("a: 1\nb:  x: 2\n")),
            "p.yaml:2:5: unknown field \"x\"\n  |\n2 | b:  x: 2\n  |     ^\n"
        );
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let line = "x".repeat(500);
        let d = Diagnostic::new(ErrorKind::Syntax, "p.yaml", Pos::new(1, 300), "bad");
        let out = d.render(Some(&line));
        assert!(out.lines().all(|l| l.len() < 140), "{out}");
        let caret_line = out.lines().last().unwrap_or_default();
        assert_eq!(caret_line.find('^'), Some(4 + 3 + 60));
    }
}
