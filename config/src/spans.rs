//! Maps a path inside the configuration (`venues[0].cameras[1].lines`) to a line and column of
//! the TOML source, so that semantic errors point where the operator must edit.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a path into the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Renders a path as `venues[0].zones[2].capacity`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The span of the deepest value along `path` that exists in the source (a path into a
/// default that the file does not spell out resolves to its closest written ancestor).
pub(crate) fn locate(root: &Spanned<DeTable<'_>>, path: &[Seg]) -> Range<usize> {
    let mut span = root.span();
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        let next = match (seg, table, value) {
            (Seg::Key(key), Some(t), _) => t.iter().find(|(k, _)| k.get_ref().as_ref() == *key).map(|(_, v)| v),
            (Seg::Index(i), _, Some(v)) => match v.get_ref() {
                DeValue::Array(items) => items.get(*i),
                _ => None,
            },
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next);
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}
