//! Where in a TOML file something is: byte spans ↔ (line, column) ↔ the
//! dotted field path an operator reads (`services[1].real_servers[0].weight`).
//!
//! Serde errors come with a byte span and no path; semantic checks know the
//! path and no span. Both are resolved against toml's spanned document tree
//! (`toml::de::DeTable`), parsed again only when an error is reported, so
//! the configuration types themselves carry no span bookkeeping.

use core::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineCol {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// The line and column of byte `offset` in `source`.
#[must_use]
pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    LineCol { line, column }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// A key of a table.
    Key(String),
    /// An element of an array.
    Index(usize),
}

/// Renders a path as `services[1].real_servers[0].weight`.
#[must_use]
pub fn render_path(path: &[PathStep]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            PathStep::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathStep::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The deepest field whose key or value contains byte `offset`.
#[must_use]
pub fn path_at(source: &str, offset: usize) -> Vec<PathStep> {
    let mut path = Vec::new();
    if let Ok(doc) = DeTable::parse(source) {
        descend_table(doc.get_ref(), offset, &mut path);
    }
    path
}

fn descend_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<PathStep>) {
    for (key, value) in table.iter() {
        if contains(&key.span(), offset) {
            path.push(PathStep::Key(key.get_ref().to_string()));
            return;
        }
        if value_contains(value, offset) {
            path.push(PathStep::Key(key.get_ref().to_string()));
            descend_value(value, offset, path);
            return;
        }
    }
}

/// Whether a value (or, for tables and arrays, anything inside it)
/// contains `offset`. Tables opened by a `[header]` do not always span
/// their body, so their children are asked too.
fn value_contains(value: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    if contains(&value.span(), offset) {
        return true;
    }
    match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .any(|(k, v)| contains(&k.span(), offset) || value_contains(v, offset)),
        DeValue::Array(a) => a.iter().any(|v| value_contains(v, offset)),
        _ => false,
    }
}

fn descend_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<PathStep>) {
    match value.get_ref() {
        DeValue::Table(t) => descend_table(t, offset, path),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if value_contains(item, offset) {
                    path.push(PathStep::Index(i));
                    descend_value(item, offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// The byte offset where the field at `path` is written: its key for a
/// table field (`weight = -3` → the `w`), the element's own span for an
/// array element. Falls back to the deepest ancestor that exists.
#[must_use]
pub fn offset_of(source: &str, path: &[PathStep]) -> usize {
    let Ok(doc) = DeTable::parse(source) else {
        return 0;
    };
    let mut offset = 0;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for step in path {
        let value = match (step, table, array) {
            (PathStep::Key(k), Some(t), _) => {
                let Some((key, value)) = t.iter().find(|(key, _)| key.get_ref() == k) else {
                    break;
                };
                offset = key.span().start;
                value
            }
            (PathStep::Index(i), _, Some(a)) => {
                let Some(value) = a.get(*i) else {
                    break;
                };
                offset = first_offset(value);
                value
            }
            _ => break,
        };
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    offset
}

/// Where an element starts: for a `[[header]]` table whose own span may
/// not cover its keys, the earliest of its span and its first key.
fn first_offset(value: &Spanned<DeValue<'_>>) -> usize {
    let mut start = value.span().start;
    if let DeValue::Table(t) = value.get_ref() {
        for (k, _) in t.iter() {
            start = start.min(k.span().start);
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), LineCol { line: 1, column: 1 });
        assert_eq!(line_col(s, 6), LineCol { line: 2, column: 1 });
        assert_eq!(line_col(s, 11), LineCol { line: 2, column: 6 });
        assert_eq!(line_col(s, 999), LineCol { line: 3, column: 1 });
    }

    #[test]
    fn paths_render_like_an_operator_writes_them() {
        let p = [
            PathStep::Key("services".into()),
            PathStep::Index(1),
            PathStep::Key("real_servers".into()),
            PathStep::Index(0),
            PathStep::Key("weight".into()),
        ];
        assert_eq!(render_path(&p), "services[1].real_servers[0].weight");
    }

    const DOC: &str = "\
[conn_table]
capacity = 5

[[services]]
vip = \"a\"

[[services]]
vip = \"b\"

[[services.real_servers]]
address = \"x\"
weight = -3
";

    #[test]
    fn a_byte_offset_resolves_to_the_deepest_field() {
        let at = DOC.find("-3").unwrap_or(0);
        assert_eq!(
            render_path(&path_at(DOC, at)),
            "services[1].real_servers[0].weight"
        );
        let at = DOC.find("5").unwrap_or(0);
        assert_eq!(render_path(&path_at(DOC, at)), "conn_table.capacity");
    }

    #[test]
    fn a_path_resolves_to_the_line_it_is_written_on() {
        let path = path_at(DOC, DOC.find("-3").unwrap_or(0));
        assert_eq!(line_col(DOC, offset_of(DOC, &path)).line, 12);
        let rs = &path[..4];
        assert_eq!(
            line_col(DOC, offset_of(DOC, rs)).line,
            10,
            "the element's [[header]]"
        );
        let svc = [PathStep::Key("services".into()), PathStep::Index(0)];
        assert_eq!(line_col(DOC, offset_of(DOC, &svc)).line, 4);
    }
}
