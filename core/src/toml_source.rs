//! Where things are in a TOML document: byte offsets to line numbers, and the line of every
//! key, so that configuration and glossary errors can name `path:line`.
//!
//! Pure: works on text already read.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A TOML document's text with its line index and the position of every key.
#[derive(Debug, Clone)]
pub struct TomlSource {
    line_starts: Vec<usize>,
    keys: BTreeMap<String, Range<usize>>,
}

impl TomlSource {
    /// Indexes `text`. Keys are recorded by dotted path (`news.feeds[0].url`), each with the
    /// span from the key to the end of its value.
    ///
    /// # Errors
    /// The TOML syntax error, if the text does not parse.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        let table = DeTable::parse(text)?;
        let mut keys = BTreeMap::new();
        walk_table(table.get_ref(), "", &mut keys);
        Ok(Self::with_keys(text, keys))
    }

    /// Indexes only the lines of `text`, for text that did not parse.
    pub fn lines_only(text: &str) -> Self {
        Self::with_keys(text, BTreeMap::new())
    }

    fn with_keys(text: &str, keys: BTreeMap<String, Range<usize>>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { line_starts, keys }
    }

    /// The 1-based line that holds byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The 1-based line of the key at `path`, if the document has it.
    pub fn key_line(&self, path: &str) -> Option<usize> {
        self.keys.get(path).map(|span| self.line_of(span.start))
    }

    /// The dotted path of the innermost key whose span holds byte `offset`.
    pub fn key_at(&self, offset: usize) -> Option<&str> {
        self.keys
            .iter()
            .filter(|(_, span)| span.start <= offset && offset < span.end.max(span.start + 1))
            .min_by_key(|(_, span)| span.end - span.start)
            .map(|(path, _)| path.as_str())
    }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, keys: &mut BTreeMap<String, Range<usize>>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        let key_span = key.span();
        let value_span = value.span();
        let span = key_span.start.min(value_span.start)..key_span.end.max(value_span.end);
        keys.insert(path.clone(), span);
        walk_value(value.get_ref(), &path, keys);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, keys: &mut BTreeMap<String, Range<usize>>) {
    match value {
        DeValue::Table(table) => walk_table(table, path, keys),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                keys.insert(item_path.clone(), item.span());
                walk_value(item.get_ref(), &item_path, keys);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_nested_keys_and_array_tables() {
        let text = "[a]\nx = 1\n\n[[b.c]]\nname = \"one\"\n\n[[b.c]]\nname = \"two\"\n";
        let source = TomlSource::parse(text).unwrap();
        assert_eq!(source.key_line("a.x"), Some(2));
        assert_eq!(source.key_line("b.c[0].name"), Some(5));
        assert_eq!(source.key_line("b.c[1].name"), Some(8));
        assert_eq!(source.key_line("a.y"), None);
        let offset = text.find("\"two\"").unwrap();
        assert_eq!(source.key_at(offset), Some("b.c[1].name"));
        assert_eq!(source.line_of(0), 1);
        assert_eq!(source.line_of(text.len() - 1), 8);
    }
}
