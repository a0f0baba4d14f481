//! Maps a path inside a TOML document (`tasks[2].timeout`) to the line it is written on,
//! so every validation error can name its line.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub struct Locator<'i> {
    text: &'i str,
    root: Option<Spanned<DeTable<'i>>>,
}

impl<'i> Locator<'i> {
    pub fn new(text: &'i str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of the deepest part of `path` that exists: the key for a key, the element for an
    /// index. Falls back to line 1 when nothing matches.
    pub fn line(&self, path: &[Seg<'_>]) -> usize {
        self.span(path).map_or(1, |s| self.line_of(s.start))
    }

    fn span(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut table: Option<&DeTable<'i>> = Some(root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'i>>]> = None;
        for seg in path {
            let value: &Spanned<DeValue<'i>> = match (*seg, table, array) {
                (Seg::Key(k), Some(t), _) => {
                    let (key, value) = t.get_key_value(k)?;
                    best = Some(key.span());
                    value
                }
                (Seg::Index(i), _, Some(a)) => {
                    let value = a.get(i)?;
                    best = Some(value.span());
                    value
                }
                _ => return best,
            };
            table = None;
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = Some(t),
                DeValue::Array(a) => array = Some(&a[..]),
                _ => {}
            }
        }
        best
    }
}
