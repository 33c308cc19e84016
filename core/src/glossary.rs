//! The glossary: one Markdown file per term with TOML front matter between `+++` lines.
//!
//! [`parse_term`] turns one file's text into a [`Term`]; [`validate`] checks the whole set
//! (duplicates, related links, orphans). Both are pure and report every problem they find,
//! each with `path:line`, the field and what is wrong. [`load_dir`] is the one function here
//! that reads files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use serde::Deserialize;

use crate::domain::{Category, LinkPolicy, Slug, Source, Term};
use crate::toml_source::TomlSource;

/// Longest summary accepted, in characters.
pub const MAX_SUMMARY_CHARS: usize = 300;

/// The explanation's length, in words, that a reader of one weekly email expects; outside it
/// `glossary check` warns.
pub const EXPLANATION_WORDS: std::ops::RangeInclusive<usize> = 120..=400;

/// How many related terms an entry should list; outside it `glossary check` warns.
pub const RELATED_TERMS: std::ops::RangeInclusive<usize> = 2..=6;

/// A problem that makes the glossary unusable; `herald glossary check` exits 1 on any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {kind}", path.display())]
pub struct GlossaryError {
    pub path: PathBuf,
    pub line: usize,
    pub kind: ErrorKind,
}

/// What is wrong, by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("reading the file: {0}")]
    Read(String),
    #[error("front matter: {0}")]
    FrontMatter(String),
    #[error("front matter is not valid TOML: {0}")]
    Toml(String),
    #[error("`{0}`: required field is missing")]
    MissingField(&'static str),
    #[error("`{field}`: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("the explanation (the Markdown after the front matter) is empty")]
    EmptyBody,
    #[error("`{field}`: `{name}` is already used by {other}")]
    Duplicate {
        field: &'static str,
        name: String,
        other: String,
    },
    #[error("`related`: unknown term `{slug}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownRelated {
        slug: String,
        suggestion: Option<String>,
    },
    #[error("`related`: a term cannot relate to itself")]
    RelatesToSelf,
    #[error("`example`: does not mention `{0}` or any of its aliases")]
    ExampleLacksTerm(String),
    #[error("`summary`: {0} characters; at most 300 are allowed")]
    SummaryTooLong(usize),
    #[error("`summary`: merely repeats the term's name; say what the term means")]
    SummaryRepeatsTerm,
    #[error(
        "`sources`: none; list one to three primary references (the paper, the specification, the regulation)"
    )]
    NoSources,
    #[error("categories.toml: {0}")]
    Categories(String),
}

/// Something worth fixing that does not stop the glossary from being used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlossaryWarning {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for GlossaryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}",
            self.path.display(),
            self.line,
            self.message
        )
    }
}

/// The outcome of checking a whole glossary.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Problems that make the glossary unusable: sends and previews stop on them.
    pub errors: Vec<GlossaryError>,
    /// What a published glossary needs but a send does not (a term without sources): `herald
    /// glossary check` and `herald check` fail on them, issues still go out.
    pub publication: Vec<GlossaryError>,
    pub warnings: Vec<GlossaryWarning>,
}

/// A validated set of terms, sorted by slug, and the categories' descriptions.
#[derive(Debug, Clone, Default)]
pub struct Glossary {
    terms: Vec<Term>,
    /// From `categories.toml`, in its order; empty without the file.
    described: Vec<Category>,
}

impl Glossary {
    /// Every term, sorted by slug.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The term with this slug.
    pub fn get(&self, slug: &Slug) -> Option<&Term> {
        self.terms
            .binary_search_by(|t| t.slug.cmp(slug))
            .ok()
            .map(|i| &self.terms[i])
    }

    /// Finds a term by slug, name or alias, ignoring case (`LLM`, `large-language-model`).
    pub fn find(&self, name: &str) -> Option<&Term> {
        let wanted = name.trim().to_lowercase();
        self.terms.iter().find(|t| {
            t.slug.as_str() == wanted
                || t.term.to_lowercase() == wanted
                || t.aliases.iter().any(|a| a.to_lowercase() == wanted)
        })
    }

    /// The related terms of `term` that exist, as (slug, display name).
    pub fn related_names(&self, term: &Term) -> Vec<(String, String)> {
        term.related
            .iter()
            .filter_map(|s| self.get(s).map(|r| (s.to_string(), r.term.clone())))
            .collect()
    }

    /// Terms matching a search, best first: the name or an alias equal to the query, then
    /// starting with it, then containing it, then summaries and explanations that contain
    /// every word of it. Case is ignored; an empty query matches nothing.
    pub fn search(&self, query: &str) -> Vec<&Term> {
        let q = query.trim().to_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let words: Vec<&str> = q.split_whitespace().collect();
        let mut hits: Vec<(u32, &Term)> = self
            .terms
            .iter()
            .filter_map(|t| {
                let name = t.term.to_lowercase();
                let aliases: Vec<String> = t.aliases.iter().map(|a| a.to_lowercase()).collect();
                let has_all = |text: &str| {
                    let text = text.to_lowercase();
                    words.iter().all(|w| text.contains(w))
                };
                let score = if name == q || aliases.contains(&q) {
                    100
                } else if name.starts_with(&q) {
                    80
                } else if aliases.iter().any(|a| a.starts_with(&q)) {
                    70
                } else if name.contains(&q) {
                    60
                } else if aliases.iter().any(|a| a.contains(&q)) {
                    50
                } else if has_all(&t.summary) {
                    30
                } else if has_all(&t.body) {
                    10
                } else {
                    return None;
                };
                Some((score, t))
            })
            .collect();
        hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.term.cmp(&b.1.term)));
        hits.into_iter().map(|(_, t)| t).collect()
    }

    /// The `n` terms whose names or aliases are closest to `query` (Jaro-Winkler), for a
    /// search that found nothing, or a misspelt slug.
    pub fn closest(&self, query: &str, n: usize) -> Vec<&Term> {
        let q = query.trim().to_lowercase();
        let mut scored: Vec<(f64, &Term)> = self
            .terms
            .iter()
            .map(|t| {
                let best = std::iter::once(t.term.to_lowercase())
                    .chain(std::iter::once(t.slug.as_str().to_owned()))
                    .chain(t.aliases.iter().map(|a| a.to_lowercase()))
                    .map(|name| strsim::jaro_winkler(&q, &name))
                    .fold(0.0, f64::max);
                (best, t)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.term.cmp(&b.1.term)));
        scored.into_iter().take(n).map(|(_, t)| t).collect()
    }

    /// The terms of `category`, in alphabetical order of their names.
    pub fn in_category(&self, category: &str) -> Vec<&Term> {
        let mut terms: Vec<&Term> = self
            .terms
            .iter()
            .filter(|t| t.category == category)
            .collect();
        terms.sort_by_key(|t| t.term.to_lowercase());
        terms
    }

    /// The terms before and after `term` in its category, alphabetically.
    pub fn neighbours(&self, term: &Term) -> (Option<&Term>, Option<&Term>) {
        let list = self.in_category(&term.category);
        let Some(i) = list.iter().position(|t| t.slug == term.slug) else {
            return (None, None);
        };
        (i.checked_sub(1).map(|j| list[j]), list.get(i + 1).copied())
    }

    /// Every term grouped by the first letter of its name (A-Z; anything else under `#`),
    /// the groups and the terms in each in alphabetical order.
    pub fn by_letter(&self) -> Vec<(char, Vec<&Term>)> {
        let mut groups: BTreeMap<char, Vec<&Term>> = BTreeMap::new();
        for t in &self.terms {
            let first = t
                .term
                .chars()
                .next()
                .map(|c| c.to_ascii_uppercase())
                .filter(char::is_ascii_alphabetic)
                .unwrap_or('#');
            groups.entry(first).or_default().push(t);
        }
        for terms in groups.values_mut() {
            terms.sort_by_key(|t| t.term.to_lowercase());
        }
        groups.into_iter().collect()
    }

    /// The distinct categories: in `categories.toml`'s order when it lists them, else sorted.
    pub fn categories(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.terms.iter().map(|t| t.category.as_str()).collect();
        let order = |name: &str| {
            self.described
                .iter()
                .position(|d| d.name == name)
                .unwrap_or(usize::MAX)
        };
        c.sort_unstable_by(|a, b| order(a).cmp(&order(b)).then(a.cmp(b)));
        c.dedup();
        c
    }

    /// The one-sentence description of `category`, from `categories.toml`.
    pub fn category_description(&self, category: &str) -> Option<&str> {
        self.described
            .iter()
            .find(|d| d.name == category)
            .map(|d| d.description.as_str())
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether there are no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerm {
    term: Option<String>,
    slug: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    category: Option<String>,
    #[serde(default)]
    related: Vec<String>,
    example: Option<String>,
    summary: Option<String>,
    #[serde(default)]
    sources: Vec<Source>,
    #[serde(default)]
    link: LinkPolicy,
}

/// Most sources a term lists: the primary references, not a reading list.
pub const MAX_SOURCES: usize = 3;

/// One term file as read by the caller: its path and its text, or why it could not be read.
pub type SourceFile = (PathBuf, Result<String, String>);

/// Parses and validates a whole glossary from its files (read by the caller, in any order).
///
/// Returns the glossary of the files that parsed, and the report of every problem. Callers
/// must treat a report with errors as a failure.
pub fn from_files(files: Vec<SourceFile>) -> (Glossary, Report) {
    from_files_with_categories(files, None)
}

/// The name of the file in the glossary directory that lists the categories.
pub const CATEGORIES_FILE: &str = "categories.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategories {
    #[serde(default)]
    categories: Vec<Category>,
}

/// Parses `categories.toml`: `[[categories]]` tables with `name` and `description`, each name
/// once, each description one sentence.
///
/// # Errors
/// Every problem found, with the file's path.
pub fn parse_categories(path: &Path, text: &str) -> Result<Vec<Category>, Vec<GlossaryError>> {
    let err = |line: usize, message: String| GlossaryError {
        path: path.to_path_buf(),
        line,
        kind: ErrorKind::Categories(message),
    };
    let raw: RawCategories = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].lines().count().max(1)
        });
        vec![err(line, e.message().trim().to_owned())]
    })?;
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &raw.categories {
        if c.name.trim().is_empty() {
            errors.push(err(0, "a category has an empty `name`".into()));
        } else if !seen.insert(c.name.to_lowercase()) {
            errors.push(err(0, format!("`{}` is listed twice", c.name)));
        }
        if c.description.trim().is_empty() {
            errors.push(err(0, format!("`{}` has no `description`", c.name)));
        }
    }
    if errors.is_empty() {
        Ok(raw.categories)
    } else {
        Err(errors)
    }
}

/// [`from_files`], with the glossary directory's `categories.toml` if it has one: then every
/// term's category must be one it lists, and the glossary page shows their descriptions.
pub fn from_files_with_categories(
    files: Vec<SourceFile>,
    categories: Option<SourceFile>,
) -> (Glossary, Report) {
    let mut report = Report::default();
    let described = match categories {
        None => None,
        Some((path, Err(e))) => {
            report.errors.push(GlossaryError {
                path,
                line: 0,
                kind: ErrorKind::Read(e),
            });
            None
        }
        Some((path, Ok(text))) => match parse_categories(&path, &text) {
            Ok(list) => Some(list),
            Err(errors) => {
                report.errors.extend(errors);
                None
            }
        },
    };
    let mut files = files;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut terms = Vec::new();
    // The slugs of files that do not parse: still known, so that the terms relating to them
    // get no "unknown term" error on top of the broken file's own.
    let mut broken = BTreeSet::new();
    for (path, text) in files {
        if let Ok(text) = &text {
            broken.insert(declared_slug(&path, text));
        }
        let parsed = match text {
            Ok(text) => parse_term(&path, &text),
            Err(e) => Err(vec![GlossaryError {
                path: path.clone(),
                line: 0,
                kind: ErrorKind::Read(e),
            }]),
        };
        match parsed {
            Ok(located) => {
                broken.remove(located.term.slug.as_str());
                terms.push(located);
            }
            Err(errors) => report.errors.extend(errors),
        }
    }
    let (mut glossary, checked) = validate_with(terms, &broken);
    report.errors.extend(checked.errors);
    report.publication.extend(checked.publication);
    report.warnings.extend(checked.warnings);
    if let Some(described) = described {
        check_categories(&glossary, &described, &mut report);
        glossary.described = described;
    }
    report
        .errors
        .sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    (glossary, report)
}

/// Every term's category should be one `categories.toml` lists (a warning: the term still
/// goes out, its group shows without a description); a listed category no term uses is
/// worth a warning too.
fn check_categories(glossary: &Glossary, described: &[Category], report: &mut Report) {
    let names: Vec<&str> = described.iter().map(|c| c.name.as_str()).collect();
    for t in &glossary.terms {
        if !names.contains(&t.category.as_str()) {
            let suggestion = closest_word(&t.category, &names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            report.warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line: 0,
                message: format!(
                    "`category`: `{}` is not in {CATEGORIES_FILE}{suggestion}",
                    t.category
                ),
            });
        }
    }
    for c in described {
        if !glossary.terms.iter().any(|t| t.category == c.name) {
            report.warnings.push(GlossaryWarning {
                path: PathBuf::from(CATEGORIES_FILE),
                line: 0,
                message: format!("category `{}` has no terms", c.name),
            });
        }
    }
}

/// The slug a term file declares (`slug = "..."` in its front matter), else its file stem:
/// found without parsing the file, so that a broken file's slug is still known.
fn declared_slug(path: &Path, text: &str) -> String {
    text.lines()
        .skip_while(|l| l.trim() != "+++")
        .skip(1)
        .take_while(|l| l.trim() != "+++")
        .filter_map(|l| l.trim().strip_prefix("slug"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
        .next()
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// A report holding one error: the glossary directory itself could not be read.
pub fn unreadable_dir(dir: &Path, error: String) -> Report {
    Report {
        errors: vec![GlossaryError {
            path: dir.to_path_buf(),
            line: 0,
            kind: ErrorKind::Read(error),
        }],
        ..Report::default()
    }
}

/// A parsed term together with the line of each front-matter field, for later checks.
#[derive(Debug, Clone)]
pub struct LocatedTerm {
    pub term: Term,
    lines: HashMap<&'static str, usize>,
    first_line: usize,
}

impl LocatedTerm {
    fn line(&self, field: &'static str) -> usize {
        self.lines.get(field).copied().unwrap_or(self.first_line)
    }
}

/// A required text field's value, trimmed; or that it is missing or empty.
fn required_field(value: Option<String>, field: &'static str) -> Result<String, ErrorKind> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(ErrorKind::InvalidField {
            field,
            message: "must not be empty".into(),
        }),
        None => Err(ErrorKind::MissingField(field)),
    }
}

/// The front matter's TOML (with each key's line) and its fields; or the TOML line and
/// what is wrong.
fn parse_front(front: &str) -> Result<(TomlSource, RawTerm), (usize, ErrorKind)> {
    let source = TomlSource::parse(front).map_err(|e| {
        let at = TomlSource::lines_only(front).line_of(e.span().map_or(0, |s| s.start));
        (at, ErrorKind::Toml(e.message().trim().to_owned()))
    })?;
    let raw: RawTerm = toml::from_str(front).map_err(|e| {
        let at = source.line_of(e.span().map_or(0, |s| s.start));
        (at, ErrorKind::Toml(e.message().trim().to_owned()))
    })?;
    Ok((source, raw))
}

/// What is wrong with a term's summary and example, by field: a summary too long or merely
/// the name, an example that mentions neither the name nor an alias.
fn text_problems(
    name: &str,
    aliases: &[String],
    summary: &str,
    example: &str,
) -> Vec<(&'static str, ErrorKind)> {
    let mut problems = Vec::new();
    let summary_chars = summary.chars().count();
    if summary_chars > MAX_SUMMARY_CHARS {
        problems.push(("summary", ErrorKind::SummaryTooLong(summary_chars)));
    } else if !name.is_empty() && repeats_name(summary, name, aliases) {
        problems.push(("summary", ErrorKind::SummaryRepeatsTerm));
    }
    if !name.is_empty() && !example.is_empty() && !mentions(example, name, aliases) {
        problems.push(("example", ErrorKind::ExampleLacksTerm(name.to_owned())));
    }
    problems
}

/// The term's slug: its `slug` field, else its file's stem; or why it is not a slug.
fn term_slug(declared: Option<&str>, path: &Path) -> Result<Slug, String> {
    let text = declared.map(str::to_owned).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Slug::parse(&text).map_err(|e| {
        if declared.is_some() {
            e.to_string()
        } else {
            format!("{e} (it defaults to the file name; set `slug` or rename the file)")
        }
    })
}

/// The `related` entries that are slugs, and what is wrong with those that are not.
fn related_slugs(raw: &[String]) -> (Vec<Slug>, Vec<String>) {
    let mut slugs = Vec::new();
    let mut problems = Vec::new();
    for r in raw {
        match Slug::parse(r.trim()) {
            Ok(s) => slugs.push(s),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (slugs, problems)
}

/// A term file's front matter and body, and the index of the closing `+++` line; or where and
/// why the file has no front matter. A byte-order mark and CRLF line ends are accepted.
fn split_front_matter(text: &str) -> Result<(String, String, usize), (usize, ErrorKind)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Files saved on Windows end their lines with CRLF: the same file, to an editor.
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.first().map(|l| l.trim_end()) != Some("+++") {
        return Err((
            1,
            ErrorKind::FrontMatter("the file must start with a `+++` line".into()),
        ));
    }
    let Some(close) = lines.iter().skip(1).position(|l| l.trim_end() == "+++") else {
        return Err((1, ErrorKind::FrontMatter("no closing `+++` line".into())));
    };
    let close = close + 1; // index of the closing line
    Ok((
        lines[1..close].join("\n"),
        lines[close + 1..].join("\n"),
        close,
    ))
}

/// The problems found in one term file, each placed at the line of its field.
struct FileProblems<'a> {
    path: &'a Path,
    /// The file line of each front-matter key that is present.
    lines: HashMap<&'static str, usize>,
    errors: Vec<GlossaryError>,
}

impl FileProblems<'_> {
    /// The line of `field`, or the first line when the file has no such key.
    fn line_of(&self, field: &'static str) -> usize {
        self.lines.get(field).copied().unwrap_or(1)
    }

    fn at(&mut self, line: usize, kind: ErrorKind) {
        self.errors.push(GlossaryError {
            path: self.path.to_path_buf(),
            line,
            kind,
        });
    }

    /// `field` is there but its value is wrong.
    fn invalid(&mut self, field: &'static str, message: String) {
        self.at(
            self.line_of(field),
            ErrorKind::InvalidField { field, message },
        );
    }

    /// A required text field's value, trimmed; empty (and an error) when missing or empty.
    fn required(&mut self, value: Option<String>, field: &'static str) -> String {
        required_field(value, field).unwrap_or_else(|kind| {
            let line = if matches!(kind, ErrorKind::MissingField(_)) {
                1
            } else {
                self.line_of(field)
            };
            self.at(line, kind);
            String::new()
        })
    }
}

/// Parses one term file. `path` is used for the slug default (the file stem) and for errors.
///
/// # Errors
/// Every problem found in this one file.
pub fn parse_term(path: &Path, text: &str) -> Result<LocatedTerm, Vec<GlossaryError>> {
    let one = |line: usize, kind: ErrorKind| {
        vec![GlossaryError {
            path: path.to_path_buf(),
            line,
            kind,
        }]
    };
    let (front, body, close) = split_front_matter(text).map_err(|(line, kind)| one(line, kind))?;
    let offset = 1; // the front matter starts on line 2: TOML line n is file line n + 1
    let (source, raw) = parse_front(&front).map_err(|(at, kind)| one(at + offset, kind))?;
    let mut problems = FileProblems {
        path,
        lines: HashMap::new(),
        errors: Vec::new(),
    };
    for field in [
        "term", "slug", "aliases", "category", "related", "example", "summary", "sources", "link",
    ] {
        if let Some(line) = source.key_line(field) {
            problems.lines.insert(field, line + offset);
        }
    }
    let name = problems.required(raw.term, "term");
    let category = problems.required(raw.category, "category");
    let example = problems.required(raw.example, "example");
    let slug = term_slug(raw.slug.as_deref(), path)
        .map_err(|message| problems.invalid("slug", message))
        .ok();
    let (related, bad_related) = related_slugs(&raw.related);
    for message in bad_related {
        problems.invalid("related", message);
    }
    let aliases: Vec<String> = raw.aliases.iter().map(|a| a.trim().to_owned()).collect();
    if aliases.iter().any(String::is_empty) {
        problems.invalid("aliases", "an alias is empty".into());
    }
    if body.trim().is_empty() {
        problems.at(close + 2, ErrorKind::EmptyBody);
    }
    // Without a `summary`, the body's first paragraph is the lead: it becomes the summary, and
    // the explanation starts at the second paragraph (the lead is not shown twice).
    let (summary, body) = match raw.summary {
        Some(s) => (
            s.split_whitespace().collect::<Vec<_>>().join(" "),
            body.as_str(),
        ),
        None => (first_paragraph_text(&body), after_first_paragraph(&body)),
    };
    let summary_line = problems.lines.get("summary").copied().unwrap_or(close + 2);
    for (field, kind) in text_problems(&name, &aliases, &summary, &example) {
        let line = if field == "summary" {
            summary_line
        } else {
            problems.line_of(field)
        };
        problems.at(line, kind);
    }
    if let Some(slug) = &slug
        && related.contains(slug)
    {
        problems.at(problems.line_of("related"), ErrorKind::RelatesToSelf);
    }
    for message in source_problems(&raw.sources) {
        problems.invalid("sources", message);
    }
    match slug {
        Some(slug) if problems.errors.is_empty() => Ok(LocatedTerm {
            term: Term {
                slug,
                term: name,
                aliases,
                category,
                related,
                example,
                summary,
                body: body.trim().to_owned(),
                sources: raw.sources,
                link: raw.link,
                path: path.to_path_buf(),
            },
            lines: problems.lines,
            first_line: 1,
        }),
        _ => Err(problems.errors),
    }
}

/// What is wrong with a term's `sources`: more than [`MAX_SOURCES`], an empty title or
/// author, an implausible year, a URL that is not an absolute `http(s)` URL with a host.
fn source_problems(sources: &[Source]) -> Vec<String> {
    let mut problems = Vec::new();
    if sources.len() > MAX_SOURCES {
        problems.push(format!(
            "{} sources; list at most {MAX_SOURCES} primary references",
            sources.len()
        ));
    }
    for (i, source) in sources.iter().enumerate() {
        let n = i + 1;
        if source.title.trim().is_empty() {
            problems.push(format!("source {n}: `title` is empty"));
        }
        if source.authors.trim().is_empty() {
            problems.push(format!(
                "source {n}: `authors` is empty (name the authors or the body that issued it)"
            ));
        }
        if !(1900..=2100).contains(&source.year) {
            problems.push(format!(
                "source {n}: `year` {} is not a plausible year",
                source.year
            ));
        }
        match url::Url::parse(source.url.trim()) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some_and(|h| h.contains('.')) => {}
            Ok(_) => problems.push(format!(
                "source {n}: `url` `{}` must be an http(s) URL with a domain name",
                source.url
            )),
            Err(e) => problems.push(format!(
                "source {n}: `url` `{}` is not a URL: {e}",
                source.url
            )),
        }
    }
    problems
}

/// Checks the set: duplicate slugs, names or aliases (case-insensitive), unknown related
/// slugs, and terms that no other term relates to (a warning).
pub fn validate(terms: Vec<LocatedTerm>) -> (Glossary, Report) {
    validate_with(terms, &BTreeSet::new())
}

/// [`validate`], knowing the slugs of files that exist but did not parse.
fn validate_with(terms: Vec<LocatedTerm>, broken: &BTreeSet<String>) -> (Glossary, Report) {
    let mut report = Report::default();
    check_duplicates(&terms, &mut report.errors);
    let slugs: BTreeMap<&Slug, &LocatedTerm> = terms.iter().map(|t| (&t.term.slug, t)).collect();
    let mut related_to: HashMap<&Slug, usize> = HashMap::new();
    for located in &terms {
        for r in &located.term.related {
            if slugs.contains_key(r) {
                *related_to.entry(r).or_default() += 1;
            } else if !broken.contains(r.as_str()) {
                let known: Vec<&str> = slugs.keys().map(|s| s.as_str()).collect();
                report.errors.push(GlossaryError {
                    path: located.term.path.clone(),
                    line: located.line("related"),
                    kind: ErrorKind::UnknownRelated {
                        slug: r.to_string(),
                        suggestion: closest_word(r.as_str(), &known).map(str::to_owned),
                    },
                });
            }
        }
    }
    for located in &terms {
        house_style(located, &mut report.warnings);
    }
    size_warnings(&terms, &mut report.warnings);
    if terms.len() > 1 {
        orphans(&terms, &related_to, &mut report.warnings);
    }
    category_typos(&terms, &mut report.warnings);
    links_both_ways(&terms, &slugs, &mut report.warnings);
    for located in &terms {
        if located.term.sources.is_empty() {
            report.publication.push(GlossaryError {
                path: located.term.path.clone(),
                line: located.line("sources"),
                kind: ErrorKind::NoSources,
            });
        }
    }
    let mut list: Vec<Term> = terms.into_iter().map(|t| t.term).collect();
    list.sort_by(|a, b| a.slug.cmp(&b.slug));
    list.dedup_by(|a, b| a.slug == b.slug);
    (
        Glossary {
            terms: list,
            described: Vec::new(),
        },
        report,
    )
}

/// Slugs, names and aliases used twice (ignoring case), across terms or in one term's
/// `aliases`.
fn check_duplicates(terms: &[LocatedTerm], errors: &mut Vec<GlossaryError>) {
    let mut names: HashMap<String, (usize, PathBuf)> = HashMap::new();
    for (i, located) in terms.iter().enumerate() {
        let t = &located.term;
        let mut own = vec![("slug", t.slug.as_str().to_owned())];
        own.push(("term", t.term.to_lowercase()));
        own.extend(t.aliases.iter().map(|a| ("aliases", a.to_lowercase())));
        let mut seen_here: Vec<(String, &str)> = Vec::new();
        for (field, name) in own {
            if let Some((_, first_field)) = seen_here.iter().find(|(n, _)| *n == name) {
                // A term may use its own slug or name as an alias; listing an alias twice is
                // a slip worth reporting.
                if field == "aliases" && *first_field == "aliases" {
                    errors.push(GlossaryError {
                        path: t.path.clone(),
                        line: located.line("aliases"),
                        kind: ErrorKind::Duplicate {
                            field,
                            name: name.clone(),
                            other: "this term's own `aliases` list".into(),
                        },
                    });
                }
                continue;
            }
            seen_here.push((name.clone(), field));
            match names.get(&name) {
                Some((j, other)) if *j != i => errors.push(GlossaryError {
                    path: t.path.clone(),
                    line: located.line(field),
                    kind: ErrorKind::Duplicate {
                        field,
                        name,
                        other: other.file_name().map_or_else(
                            || other.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        ),
                    },
                }),
                Some(_) => {}
                None => {
                    names.insert(name, (i, t.path.clone()));
                }
            }
        }
    }
}

/// Explanations outside [`EXPLANATION_WORDS`], `related` lists outside [`RELATED_TERMS`].
fn size_warnings(terms: &[LocatedTerm], warnings: &mut Vec<GlossaryWarning>) {
    for located in terms {
        let t = &located.term;
        let words = t.body.split_whitespace().count();
        if !EXPLANATION_WORDS.contains(&words) {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line: located.first_line,
                message: format!(
                    "the explanation has {words} words; aim for {} to {}",
                    EXPLANATION_WORDS.start(),
                    EXPLANATION_WORDS.end()
                ),
            });
        }
        if terms.len() > RELATED_TERMS.end() + 1 && !RELATED_TERMS.contains(&t.related.len()) {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line: located.line("related"),
                message: format!(
                    "`related` lists {} terms; aim for {} to {}",
                    t.related.len(),
                    RELATED_TERMS.start(),
                    RELATED_TERMS.end()
                ),
            });
        }
    }
}

/// Terms no other term relates to.
fn orphans(
    terms: &[LocatedTerm],
    related_to: &HashMap<&Slug, usize>,
    warnings: &mut Vec<GlossaryWarning>,
) {
    for located in terms {
        if !related_to.contains_key(&located.term.slug) {
            warnings.push(GlossaryWarning {
                path: located.term.path.clone(),
                line: located.line("term"),
                message: format!(
                    "no other term relates to `{}`: add it to the `related` list of a term it belongs with",
                    located.term.slug
                ),
            });
        }
    }
}

/// A category only one term uses, next to a similar, established one, is likely a typo.
fn category_typos(terms: &[LocatedTerm], warnings: &mut Vec<GlossaryWarning>) {
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for located in terms {
        *per_category
            .entry(located.term.category.as_str())
            .or_default() += 1;
    }
    let established: Vec<&str> = per_category
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(c, _)| *c)
        .collect();
    for located in terms {
        let category = located.term.category.as_str();
        if per_category[category] == 1
            && let Some(near) = closest_word(category, &established)
        {
            warnings.push(GlossaryWarning {
                path: located.term.path.clone(),
                line: located.line("category"),
                message: format!(
                    "`category`: `{category}` is used by no other term; did you mean `{near}`?"
                ),
            });
        }
    }
}

/// A related link without its way back: when A lists B, B should list A (a relation between
/// two terms is mutual; a reader on B's page should find A too).
fn links_both_ways(
    terms: &[LocatedTerm],
    slugs: &BTreeMap<&Slug, &LocatedTerm>,
    warnings: &mut Vec<GlossaryWarning>,
) {
    for located in terms {
        let t = &located.term;
        for r in &t.related {
            if let Some(other) = slugs.get(r)
                && !other.term.related.contains(&t.slug)
            {
                warnings.push(GlossaryWarning {
                    path: other.term.path.clone(),
                    line: other.line("related"),
                    message: format!(
                        "`related`: `{}` lists `{}` but `{}` does not list it back",
                        t.slug, r, r
                    ),
                });
            }
        }
    }
}

/// The candidate closest to `word` (Jaro-Winkler, ignoring case), if it is close enough to be
/// what was meant: for "did you mean" hints.
pub fn closest_word<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A new term file for `name`: every front-matter field, with `TODO` where the editor writes,
/// and a body skeleton in the house structure. It parses, and `glossary check` then points at
/// what is still missing (explanation length, related terms).
pub fn skeleton(name: &str, slug: &Slug, category: &str) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "+++\nterm = {term}\nslug = {slug}\naliases = []\ncategory = {category}\nrelated = []\nexample = {example}\nsummary = {summary}\n+++\n\n\
         TODO: one or two sentences that say what {name} is, for someone who has never heard of it.\n\n\
         **How it works.** TODO\n\n\
         **Why it matters.** TODO\n\n\
         **Where it is used.** TODO\n\n\
         **Limits and misconceptions.** TODO\n",
        term = quote(name),
        slug = quote(slug.as_str()),
        category = quote(category),
        example = quote(&format!("TODO: one real sentence that uses {name}.")),
        summary = quote(&format!(
            "TODO: one sentence, at most 300 characters, that says what {name} means."
        )),
    )
}

/// Aliases that are ordinary English words: in running text they would link to the term
/// where nobody meant it ("context", "agent", "loss" ...).
const COMMON_WORDS: &[&str] = &[
    "agent",
    "agents",
    "answer",
    "assistant",
    "bias",
    "block",
    "cache",
    "chat",
    "code",
    "compute",
    "context",
    "control",
    "copyright",
    "cost",
    "data",
    "decoder",
    "encoder",
    "error",
    "example",
    "filter",
    "fine",
    "function",
    "goal",
    "guard",
    "input",
    "layer",
    "learning",
    "loss",
    "memory",
    "model",
    "models",
    "network",
    "noise",
    "output",
    "parameter",
    "parameters",
    "policy",
    "privacy",
    "prompt",
    "prompts",
    "rate",
    "reasoning",
    "reward",
    "risk",
    "safety",
    "sample",
    "sampling",
    "score",
    "search",
    "serving",
    "speech",
    "step",
    "system",
    "task",
    "test",
    "text",
    "token",
    "tokens",
    "tool",
    "tools",
    "training",
    "value",
    "vector",
    "vision",
    "voice",
    "weight",
    "weights",
];

/// British spellings and their American forms: the glossary is written in American English.
/// Matched at the start of a word, ignoring case; [`BRITISH_WORDS`] are matched whole (their
/// stems begin other, American words: "analyses" is also the plural of "analysis").
const BRITISH: &[(&str, &str)] = &[
    ("optimis", "optimiz"),
    ("normalis", "normaliz"),
    ("generalis", "generaliz"),
    ("regularis", "regulariz"),
    ("organis", "organiz"),
    ("recognis", "recogniz"),
    ("summaris", "summariz"),
    ("minimis", "minimiz"),
    ("maximis", "maximiz"),
    ("parallelis", "paralleliz"),
    ("tokenis", "tokeniz"),
    ("quantis", "quantiz"),
    ("memoris", "memoriz"),
    ("characteris", "characteriz"),
    ("prioritis", "prioritiz"),
    ("behaviour", "behavior"),
    ("colour", "color"),
    ("favour", "favor"),
    ("labour", "labor"),
    ("neighbour", "neighbor"),
    ("labelled", "labeled"),
    ("labelling", "labeling"),
    ("modelling", "modeling"),
    ("modelled", "modeled"),
    ("travelled", "traveled"),
    ("centre", "center"),
    ("analysed", "analyzed"),
    ("analysing", "analyzing"),
    ("catalogue", "catalog"),
    ("defence", "defense"),
    ("licence", "license"),
    ("programme", "program"),
];

/// The house style's one spelling of words written several ways (checked in the term, its
/// summary, example and explanation; source titles keep their published spelling).
const HOUSE_SPELLINGS: &[(&str, &str)] = &[
    ("non-linear", "nonlinear"),
    ("under-represented", "underrepresented"),
    ("per cent", "percent"),
    ("machine-learning model", "machine learning model"),
    ("machine-learning system", "machine learning system"),
    ("finetun", "fine-tun"),
    ("fine tun", "fine-tun"),
];

/// British spellings matched as whole words only.
const BRITISH_WORDS: &[(&str, &str)] = &[("analyse", "analyze"), ("analyser", "analyzer")];

/// House-style warnings for one term: aliases that are common words, British spellings.
fn house_style(located: &LocatedTerm, warnings: &mut Vec<GlossaryWarning>) {
    let t = &located.term;
    let warn = |warnings: &mut Vec<GlossaryWarning>, field: &'static str, message: String| {
        warnings.push(GlossaryWarning {
            path: t.path.clone(),
            line: located.line(field),
            message,
        });
    };
    if t.link == LinkPolicy::Any && is_everyday_word(&t.term) {
        warn(
            warnings,
            "term",
            format!(
                "`{}` is an everyday word: auto-linking would link ordinary prose; set `link = \"exact\"` (only the capitalized headword and multi-word aliases link) or `link = \"never\"`",
                t.term
            ),
        );
    }
    for alias in &t.aliases {
        if is_plural_of(alias, &t.term) {
            warn(
                warnings,
                "aliases",
                format!(
                    "alias `{alias}` is a plural of the headword: aliases name the same concept, not its inflections (the linker matches plurals itself)"
                ),
            );
        }
    }
    for alias in &t.aliases {
        if COMMON_WORDS.contains(&alias.to_lowercase().as_str()) {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line: located.line("aliases"),
                message: format!(
                    "alias `{alias}` is a common English word: it would mis-link ordinary text; use a name only this term has"
                ),
            });
        }
    }
    let fields = [
        ("term", t.term.as_str()),
        ("summary", t.summary.as_str()),
        ("example", t.example.as_str()),
        ("body", t.body.as_str()),
    ];
    for (field, text) in fields {
        let line = if field == "body" {
            located.first_line
        } else {
            located.line(field)
        };
        if text.contains("TODO") {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line,
                message: format!("`{field}` still has a TODO"),
            });
        }
        let lower = text.to_lowercase();
        for (variant, house) in HOUSE_SPELLINGS {
            if lower.contains(variant) {
                warnings.push(GlossaryWarning {
                    path: t.path.clone(),
                    line,
                    message: format!("`{field}`: `{variant}`: the glossary writes `{house}`"),
                });
            }
        }
        if field != "term" && text.contains(|c: char| c.is_ascii_digit()) && text.contains('%') {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line,
                message: format!("`{field}`: `%`: the glossary writes `percent`"),
            });
        }
        for (british, american) in other_spellings(text) {
            warnings.push(GlossaryWarning {
                path: t.path.clone(),
                line,
                message: format!(
                    "`{field}`: `{british}` is British spelling; the glossary uses American (`{american}`)"
                ),
            });
        }
    }
}

/// Whether a headword is an everyday word (one word, common in ordinary prose): "Bias",
/// "Prompt", "Inference", "Attention", "Parameters".
fn is_everyday_word(headword: &str) -> bool {
    const EVERYDAY: &[&str] = &[
        "attention",
        "benchmark",
        "bias",
        "evaluation",
        "guardrails",
        "hallucination",
        "inference",
        "parameters",
        "prompt",
        "regularization",
        "tokenization",
    ];
    let lower = headword.to_lowercase();
    !lower.contains(' ')
        && (EVERYDAY.contains(&lower.as_str()) || COMMON_WORDS.contains(&lower.as_str()))
}

/// Whether `alias` is `headword` in the plural (or the other way round), ignoring case:
/// `-s`, `-es`, `-y` to `-ies`.
fn is_plural_of(alias: &str, headword: &str) -> bool {
    let (a, h) = (alias.to_lowercase(), headword.to_lowercase());
    let plural = |one: &str, many: &str| {
        many == format!("{one}s")
            || many == format!("{one}es")
            || one
                .strip_suffix('y')
                .is_some_and(|stem| many == format!("{stem}ies"))
    };
    plural(&h, &a) || plural(&a, &h)
}

/// The British spellings in `text`, each once, with the American form of the word.
fn other_spellings(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let lower = word.to_lowercase();
        // An `-is` stem is British only before `e`, `a` or `i` (optimise, optimisation,
        // optimising): parallelism, organism and characteristic are American too.
        let prefix = BRITISH.iter().find(|(british, _)| {
            lower.starts_with(british)
                && (!british.ends_with("is") || lower[british.len()..].starts_with(['e', 'a', 'i']))
        });
        let whole = BRITISH_WORDS.iter().find(|(british, _)| lower == *british);
        if let Some((british, american)) = prefix.or(whole)
            && !found.iter().any(|(w, _)| *w == lower)
        {
            let fixed = format!("{american}{}", &lower[british.len()..]);
            found.push((lower.clone(), fixed));
        }
    }
    found
}

/// The Markdown after the first paragraph (white space at its start removed); the whole text
/// when it has no paragraph.
fn after_first_paragraph(markdown: &str) -> &str {
    Parser::new(markdown)
        .into_offset_iter()
        .find(|(event, _)| matches!(event, Event::End(TagEnd::Paragraph)))
        .map_or(markdown, |(_, range)| markdown[range.end..].trim_start())
}

/// The plain text of the first paragraph of a Markdown document, white space collapsed.
pub fn first_paragraph_text(markdown: &str) -> String {
    let mut text = String::new();
    let mut inside = false;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Paragraph) => inside = true,
            Event::End(TagEnd::Paragraph) => break,
            Event::Text(t) | Event::Code(t) if inside => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak if inside => text.push(' '),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn normalise_words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `text` mentions `name` or an alias as whole words (a plural `s`/`es` allowed).
fn mentions(text: &str, name: &str, aliases: &[String]) -> bool {
    let words = normalise_words(text);
    std::iter::once(name)
        .chain(aliases.iter().map(String::as_str))
        .map(normalise_words)
        .filter(|needle| !needle.is_empty())
        .any(|needle| {
            words.windows(needle.len()).any(|window| {
                window.iter().zip(&needle).enumerate().all(|(k, (w, n))| {
                    w == n
                        || (k == needle.len() - 1
                            && (w.strip_suffix('s') == Some(n) || w.strip_suffix("es") == Some(n)))
                })
            })
        })
}

/// Whether a summary says nothing beyond the term's own name.
fn repeats_name(summary: &str, name: &str, aliases: &[String]) -> bool {
    const FILLER: [&str; 12] = [
        "a", "an", "the", "is", "are", "of", "and", "or", "it", "this", "term", "means",
    ];
    let own: Vec<String> = std::iter::once(name)
        .chain(aliases.iter().map(String::as_str))
        .flat_map(normalise_words)
        .collect();
    let rest = normalise_words(summary)
        .into_iter()
        .filter(|w| !own.contains(w) && !FILLER.contains(&w.as_str()))
        .count();
    rest < 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "+++\nterm = \"Large language model\"\naliases = [\"LLM\"]\ncategory = \"Architectures\"\nrelated = []\nexample = \"We fine-tuned an LLM on support tickets.\"\n+++\n\nA **large** language model predicts the next token.\n\nMore text.\n";

    #[test]
    fn parses_front_matter_and_derives_slug_and_summary() {
        let t = parse_term(Path::new("glossary/large-language-model.md"), GOOD)
            .unwrap()
            .term;
        assert_eq!(t.slug.as_str(), "large-language-model");
        assert_eq!(t.summary, "A large language model predicts the next token.");
        // The lead became the summary, so the explanation starts at the second paragraph.
        assert_eq!(t.body, "More text.");
        assert_eq!(t.aliases, ["LLM"]);
    }

    #[test]
    fn mentions_accepts_aliases_and_plurals_but_not_substrings() {
        assert!(mentions(
            "Two LLMs disagreed.",
            "Large language model",
            &["LLM".into()]
        ));
        assert!(mentions("Neural networks learn.", "Neural network", &[]));
        assert!(!mentions("A networking talk.", "Network", &[]));
    }

    #[test]
    fn summary_that_only_names_the_term_is_caught() {
        assert!(repeats_name(
            "Large language model.",
            "Large language model",
            &[]
        ));
        assert!(repeats_name(
            "The LLM.",
            "Large language model",
            &["LLM".into()]
        ));
        assert!(!repeats_name(
            "A model trained on text to predict the next token.",
            "Large language model",
            &[]
        ));
    }

    #[test]
    fn toml_errors_point_at_the_file_line() {
        let text = "+++\nterm = \"X\"\ncategory = oops\n+++\nbody\n";
        let errors = parse_term(Path::new("x.md"), text).unwrap_err();
        assert_eq!(errors[0].line, 3, "{errors:?}");
        assert!(matches!(errors[0].kind, ErrorKind::Toml(_)));
    }

    fn sample() -> Glossary {
        let file = |slug: &str, term: &str, aliases: &str, category: &str, summary: &str| {
            let text = format!(
                "+++\nterm = \"{term}\"\naliases = [{aliases}]\ncategory = \"{category}\"\nexample = \"We use {term} daily.\"\nsummary = \"{summary}\"\n+++\n\nBody about {term}.\n"
            );
            (PathBuf::from(format!("{slug}.md")), Ok(text))
        };
        let (g, report) = from_files(vec![
            file(
                "large-language-model",
                "Large language model",
                "\"LLM\"",
                "A",
                "A model trained on text.",
            ),
            file(
                "language-model",
                "Language model",
                "",
                "A",
                "Predicts words.",
            ),
            file(
                "attention",
                "Attention",
                "",
                "B",
                "Lets a model weigh tokens.",
            ),
            file(
                "tokenization",
                "Tokenization",
                "",
                "A",
                "Splits text into tokens.",
            ),
        ]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        g
    }

    #[test]
    fn search_ranks_exact_names_first_then_prefixes_then_summaries() {
        let g = sample();
        let slugs =
            |q: &str| -> Vec<String> { g.search(q).iter().map(|t| t.slug.to_string()).collect() };
        assert_eq!(slugs("llm"), ["large-language-model"]);
        assert_eq!(
            slugs("language model"),
            ["language-model", "large-language-model"]
        );
        assert_eq!(slugs("tokens"), ["attention", "tokenization"]);
        assert!(slugs("  ").is_empty());
        assert_eq!(g.closest("atention", 1)[0].slug.as_str(), "attention");
    }

    #[test]
    fn neighbours_and_letters_follow_the_alphabet() {
        let g = sample();
        let lm = g.find("language model").unwrap();
        let (prev, next) = g.neighbours(lm);
        assert_eq!(prev.map(|t| t.slug.as_str()), None);
        assert_eq!(next.map(|t| t.slug.as_str()), Some("large-language-model"));
        let letters: Vec<char> = g.by_letter().iter().map(|(c, _)| *c).collect();
        assert_eq!(letters, ['A', 'L', 'T']);
    }

    #[test]
    fn one_house_spelling_for_words_written_several_ways() {
        let text = "+++\nterm = \"Widget\"\ncategory = \"A\"\nexample = \"A widget.\"\nsummary = \"A non-linear widget that is under-represented in 5% of data.\"\n+++\n\nBody.\n";
        let (_, report) = from_files(vec![(PathBuf::from("widget.md"), Ok(text.into()))]);
        let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
        for wanted in [
            "`non-linear`: the glossary writes `nonlinear`",
            "`under-represented`",
            "`%`: the glossary writes `percent`",
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(wanted)),
                "{wanted}: {warnings:?}"
            );
        }
    }

    #[test]
    fn is_stems_are_british_only_before_e_a_or_i() {
        let found: Vec<String> = other_spellings(
            "parallelism, an organism, a characteristic; parallelise, organisation, optimising",
        )
        .into_iter()
        .map(|(w, _)| w)
        .collect();
        assert_eq!(found, ["parallelise", "organisation", "optimising"]);
    }

    #[test]
    fn house_style_flags_common_word_aliases_and_british_spelling() {
        let text = "+++\nterm = \"Context window\"\naliases = [\"context\"]\ncategory = \"A\"\nexample = \"The context window filled up.\"\nsummary = \"How much text a model can consider at once, and its behaviour at the limit.\"\n+++\n\nThe window is analysed here, and analyses are American too.\n";
        let (_, report) = from_files(vec![(PathBuf::from("context-window.md"), Ok(text.into()))]);
        let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("alias `context` is a common English word")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`behaviour` is British spelling") && w.contains("`behavior`")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("`analysed`")),
            "{warnings:?}"
        );
        assert!(
            !warnings.iter().any(|w| w.contains("`analyses`")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_new_term_skeleton_parses_and_names_the_term() {
        let slug = Slug::from_name("Speculative \"decoding\"").unwrap();
        let text = skeleton("Speculative \"decoding\"", &slug, "Using models");
        let located = parse_term(Path::new("speculative-decoding.md"), &text).unwrap();
        assert_eq!(located.term.term, "Speculative \"decoding\"");
        assert_eq!(located.term.slug.as_str(), "speculative-decoding");
        assert_eq!(located.term.category, "Using models");
        assert!(located.term.body.contains("**How it works.**"));
    }

    #[test]
    fn a_file_with_crlf_line_ends_reads_like_one_with_lf() {
        let crlf = GOOD.replace('\n', "\r\n");
        let a = parse_term(Path::new("glossary/large-language-model.md"), GOOD).unwrap();
        let b = parse_term(Path::new("glossary/large-language-model.md"), &crlf).unwrap();
        assert_eq!(a.term, b.term);
    }

    /// A term file with `extra` front matter (before the sources) and one valid source.
    fn term_file(slug: &str, name: &str, extra: &str, related: &str) -> SourceFile {
        (
            PathBuf::from(format!("glossary/{slug}.md")),
            Ok(format!(
                "+++\nterm = \"{name}\"\ncategory = \"A\"\nrelated = [{related}]\nexample = \"We use {name} daily.\"\nsummary = \"What {slug} means, in one sentence for a reader.\"\n{extra}\n[[sources]]\ntitle = \"On {name}\"\nauthors = \"Doe et al.\"\nyear = 2020\nurl = \"https://example.org/{slug}\"\n+++\n\nBody about {name}.\n"
            )),
        )
    }

    fn warnings_of(report: &Report) -> Vec<String> {
        report.warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_term_without_sources_fails_the_check_but_not_the_send_and_bad_sources_are_errors() {
        let bare = "+++\nterm = \"Widget\"\ncategory = \"A\"\nexample = \"A widget.\"\nsummary = \"A small device that does one thing well.\"\n+++\n\nBody.\n";
        let (glossary, report) =
            from_files(vec![(PathBuf::from("glossary/widget.md"), Ok(bare.into()))]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(glossary.len(), 1, "the term is usable");
        assert!(matches!(
            report.publication[..],
            [GlossaryError {
                kind: ErrorKind::NoSources,
                ..
            }]
        ));

        let bad = "+++\nterm = \"Widget\"\ncategory = \"A\"\nexample = \"A widget.\"\n[[sources]]\ntitle = \"\"\nauthors = \"X\"\nyear = 1066\nurl = \"ftp://example.org/x\"\n+++\n\nBody.\n";
        let errors = parse_term(Path::new("glossary/widget.md"), bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for wanted in [
            "source 1: `title` is empty",
            "`year` 1066",
            "must be an http(s) URL",
        ] {
            assert!(
                text.iter().any(|e| e.contains(wanted) && e.contains(":5:")),
                "{wanted}: {text:?}"
            );
        }
    }

    #[test]
    fn a_one_way_related_link_a_plural_alias_and_an_everyday_headword_are_warned_about() {
        let (_, report) = from_files(vec![
            term_file(
                "alpha",
                "Alpha model",
                "aliases = [\"alpha models\"]",
                "\"bias\"",
            ),
            term_file("bias", "Bias", "", "\"gamma\""),
            term_file("gamma", "Gamma", "link = \"exact\"", "\"bias\""),
        ]);
        let warnings = warnings_of(&report);
        let has = |s: &str| warnings.iter().any(|w| w.contains(s));
        assert!(
            has(
                "glossary/bias.md:4: warning: `related`: `alpha` lists `bias` but `bias` does not list it back"
            ),
            "{warnings:?}"
        );
        assert!(!has("`gamma` lists `bias` but"), "mutual: {warnings:?}");
        assert!(
            has("alias `alpha models` is a plural of the headword"),
            "{warnings:?}"
        );
        assert!(has("`Bias` is an everyday word"), "{warnings:?}");
        assert!(!has("`Gamma` is an everyday word"), "{warnings:?}");
    }

    #[test]
    fn categories_toml_names_the_categories_and_a_term_outside_them_is_warned_about() {
        let categories = "[[categories]]\nname = \"A\"\ndescription = \"Terms of the first kind.\"\n\n[[categories]]\nname = \"Empty\"\ndescription = \"Nothing here yet.\"\n";
        let mut b = term_file("beta", "Beta", "", "\"alpha\"");
        b.1 =
            b.1.map(|t| t.replace("category = \"A\"", "category = \"a\""));
        let (glossary, report) = from_files_with_categories(
            vec![term_file("alpha", "Alpha", "", "\"beta\""), b],
            Some((
                PathBuf::from("glossary/categories.toml"),
                Ok(categories.into()),
            )),
        );
        assert_eq!(
            glossary.category_description("A"),
            Some("Terms of the first kind.")
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let warnings = warnings_of(&report);
        assert!(
            warnings.iter().any(|w| w
                == "glossary/beta.md:0: warning: `category`: `a` is not in categories.toml (did you mean `A`?)"),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("category `Empty` has no terms")),
            "{warnings:?}"
        );

        let twice = "[[categories]]\nname = \"A\"\ndescription = \"x.\"\n[[categories]]\nname = \"A\"\ndescription = \"y.\"\n";
        let errors = parse_categories(Path::new("categories.toml"), twice).unwrap_err();
        assert!(
            errors[0].to_string().contains("`A` is listed twice"),
            "{errors:?}"
        );
    }
}
