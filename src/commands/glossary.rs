//! `herald glossary check | list | show`.

use anyhow::bail;
use serde::Serialize;

use crate::Exit;
use crate::cli::GlossaryCommand;
use crate::config::Config;
use crate::glossary::{Glossary, Report};

/// Where problems are printed: standard output when the report is what was asked for
/// (`check`), standard error when it accompanies other output (`list`, `show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportTo {
    /// `herald glossary check`: the report is what was asked for.
    Stdout,
    /// `list`, `show`: the report accompanies other output.
    Stderr,
    /// `herald check`: on standard output, among the other checks.
    Check,
}

/// Loads the glossary and prints every error and warning; what a published glossary still
/// lacks ([`Report::publication`]) is an error for `glossary check` (standard output) and a
/// warning elsewhere (`herald check`: issues still go out without it).
pub(super) fn load_and_report(config: &Config, to: ReportTo) -> (Glossary, Report) {
    let (glossary, report) = crate::files::load_glossary(&config.glossary_dir);
    let publication = report.publication.iter().map(|e| match to {
        ReportTo::Stdout => e.to_string(),
        ReportTo::Stderr | ReportTo::Check => {
            format!("{}:{}: warning: {}", e.path.display(), e.line, e.kind)
        }
    });
    let lines = report
        .errors
        .iter()
        .map(ToString::to_string)
        .chain(publication.filter(|_| to != ReportTo::Stderr))
        .chain(report.warnings.iter().map(ToString::to_string));
    for line in lines {
        match to {
            ReportTo::Stdout | ReportTo::Check => crate::say!("{}", relative(line)),
            ReportTo::Stderr => crate::complain!("{}", relative(line)),
        }
    }
    (glossary, report)
}

/// Shortens absolute paths at the start of a message to paths relative to the working
/// directory, so that messages read `glossary/x.md:3: ...`.
fn relative(message: String) -> String {
    match std::env::current_dir() {
        Ok(cwd) => {
            let prefix = format!("{}/", cwd.display());
            message
                .strip_prefix(&prefix)
                .map(str::to_owned)
                .unwrap_or(message)
        }
        Err(_) => message,
    }
}

#[derive(Serialize)]
struct ListedTerm<'a> {
    slug: &'a str,
    term: &'a str,
    category: &'a str,
    aliases: &'a [String],
    related: Vec<&'a str>,
    summary: &'a str,
}

/// Errors `glossary check` counts: the unusable and the unpublishable.
fn check_errors(report: &Report) -> usize {
    report.errors.len() + report.publication.len()
}

pub(super) fn run(config: &Config, cmd: GlossaryCommand) -> anyhow::Result<Exit> {
    if let GlossaryCommand::New { name, category } = cmd {
        let (glossary, _) = crate::files::load_glossary(&config.glossary_dir);
        return new_term(config, &glossary, &name, category);
    }
    let to = match cmd {
        GlossaryCommand::Check => ReportTo::Stdout,
        _ => ReportTo::Stderr,
    };
    let (glossary, report) = load_and_report(config, to);
    match cmd {
        GlossaryCommand::Check => {
            crate::say!(
                "{} terms in {} categories: {} errors, {} warnings",
                glossary.len(),
                glossary.categories().len(),
                check_errors(&report),
                report.warnings.len()
            );
            Ok(if check_errors(&report) == 0 {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        GlossaryCommand::List(flag) => {
            let listed: Vec<ListedTerm> = glossary
                .terms()
                .iter()
                .map(|t| ListedTerm {
                    slug: t.slug.as_str(),
                    term: &t.term,
                    category: &t.category,
                    aliases: &t.aliases,
                    related: t.related.iter().map(|s| s.as_str()).collect(),
                    summary: &t.summary,
                })
                .collect();
            if flag.json {
                crate::say!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                let width = listed
                    .iter()
                    .map(|t| t.slug.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                crate::say!("{:width$}  {:40}  CATEGORY", "SLUG", "TERM");
                for t in &listed {
                    crate::say!("{:width$}  {:40}  {}", t.slug, t.term, t.category);
                }
            }
            Ok(if report.errors.is_empty() {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        GlossaryCommand::New { .. } => unreachable!("handled above"),
        GlossaryCommand::Show { slug } => {
            let Some(t) = glossary.find(&slug) else {
                bail!(
                    "no term `{slug}` in {} (try `herald glossary list`)",
                    config.glossary_dir.display()
                );
            };
            crate::say!("{} ({})", t.term, t.slug);
            if !t.aliases.is_empty() {
                crate::say!("aliases:  {}", t.aliases.join(", "));
            }
            crate::say!("category: {}", t.category);
            let related: Vec<&str> = t.related.iter().map(|s| s.as_str()).collect();
            crate::say!("related:  {}", related.join(", "));
            crate::say!("file:     {}", super::shown(&t.path).display());
            crate::say!(
                "\nSummary: {}\n\nExample: {}\n\n{}",
                t.summary,
                t.example,
                t.body
            );
            Ok(Exit::Success)
        }
    }
}

/// `herald glossary new NAME [--category C]`.
fn new_term(
    config: &Config,
    glossary: &Glossary,
    name: &str,
    category: Option<String>,
) -> anyhow::Result<Exit> {
    let name = name.trim();
    let Some(slug) = crate::domain::Slug::from_name(name) else {
        bail!("`{name}` has no letters or digits to make a file name from");
    };
    if let Some(existing) = glossary.find(name).or_else(|| glossary.get(&slug)) {
        bail!(
            "the glossary already has `{}` ({}): edit {}",
            existing.term,
            existing.slug,
            super::shown(&existing.path).display()
        );
    }
    let categories = glossary.categories();
    let category = match category {
        Some(c) => {
            if !categories.is_empty() && !categories.contains(&c.as_str()) {
                let near = crate::glossary::closest_word(&c, &categories);
                crate::complain!(
                    "note: `{c}` is a new category{}",
                    near.map_or(String::new(), |n| format!(" (did you mean `{n}`?)"))
                );
            }
            c
        }
        // The smallest category, so the rotation stays varied.
        None => categories
            .iter()
            .min_by_key(|c| glossary.in_category(c).len())
            .map_or("Fundamentals".to_owned(), |c| (*c).to_owned()),
    };
    let path = config.glossary_dir.join(format!("{slug}.md"));
    crate::files::create_new(&path, &crate::glossary::skeleton(name, &slug, &category))?;
    crate::say!("{}", super::shown(&path).display());
    crate::complain!(
        "category: {category}; fill in the TODOs, add related terms, then run `herald glossary check`"
    );
    Ok(Exit::Success)
}
