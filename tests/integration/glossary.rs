//! The glossary format and its validation.

use crate::harness::{Sandbox, repo};

#[test]
fn the_shipped_glossary_passes_without_warnings() {
    let (glossary, report) = herald::files::load_glossary(&repo().join("glossary"));
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(report.publication.is_empty(), "{:#?}", report.publication);
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    let generative = glossary
        .find("generative-ai")
        .expect("Generative AI is in the glossary");
    for related in generative.related.iter() {
        assert!(glossary.get(related).is_some(), "{related} exists");
    }
}

#[test]
fn every_kind_of_glossary_error_is_reported_at_once_with_its_line() {
    let s = Sandbox::new();
    std::fs::remove_dir_all(s.path("glossary")).unwrap();
    s.copy_dir(&repo().join("tests/fixtures/broken-glossary"), "glossary");
    let run = s.herald(&["glossary", "check"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = [
        "glossary/bad-toml.md:3: front matter is not valid TOML",
        "glossary/missing-field.md:1: `example`: required field is missing",
        "glossary/empty-body.md:8: the explanation (the Markdown after the front matter) is empty",
        "glossary/dup-b.md:5: `aliases`: `twin` is already used by dup-a.md",
        "glossary/unknown-related.md:5: `related`: unknown term `no-such-term`",
        "glossary/example-lacks-term.md:5: `example`: does not mention `Example lacks term`",
        "glossary/long-summary.md:6: `summary`: 309 characters; at most 300 are allowed",
        "glossary/repeats-name.md:6: `summary`: merely repeats the term's name",
        "glossary/unknown-field.md:5: front matter is not valid TOML: unknown field `relatd`",
    ];
    for line in expected {
        assert!(run.stdout.contains(line), "missing `{line}` in\n{run:?}");
    }
}

#[test]
fn a_broken_related_link_fails_herald_check_naming_file_and_line() {
    let s = Sandbox::new();
    let path = s.path("glossary/chatbot.md");
    let text = std::fs::read_to_string(&path).unwrap();
    s.write(
        "glossary/chatbot.md",
        text.replace(
            "related = [\"large-language-model\"",
            "related = [\"large-langauge-model\"",
        ),
    );
    let line = text.lines().position(|l| l.starts_with("related")).unwrap() + 1;
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "glossary/chatbot.md:{line}: `related`: unknown term `large-langauge-model`"
        )),
        "{run:?}"
    );
}

#[test]
fn a_term_nobody_relates_to_is_a_warning_not_an_error() {
    let s = Sandbox::new();
    s.write(
        "glossary/orphan.md",
        "+++\nterm = \"Orphan\"\ncategory = \"Fundamentals\"\nrelated = [\"chatbot\"]\nexample = \"The orphan term stands alone.\"\n[[sources]]\ntitle = \"On orphans\"\nauthors = \"Doe et al.\"\nyear = 2020\nurl = \"https://example.org/orphans\"\n+++\nA term that no other term links to.\n",
    );
    let run = s.herald(&["glossary", "check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("glossary/orphan.md:2: warning: no other term relates to `orphan`"),
        "{run:?}"
    );
}

#[test]
fn glossary_list_json_has_the_contract_fields_and_show_finds_aliases() {
    let s = Sandbox::new();
    let run = s.herald(&["glossary", "list", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let list = list.as_array().unwrap();
    let (glossary, _) = herald::files::load_glossary(&repo().join("glossary"));
    assert_eq!(list.len(), glossary.len());
    for item in list {
        for field in ["slug", "term", "category", "related"] {
            assert!(item.get(field).is_some(), "{field} in {item}");
        }
    }
    let show = s.herald(&["glossary", "show", "LLM"]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(
        show.stdout
            .starts_with("Large language model (large-language-model)"),
        "{show:?}"
    );
    assert_eq!(s.herald(&["glossary", "show", "nothing-like-this"]).code, 1);
}

#[test]
fn the_shipped_glossary_has_at_least_80_connected_terms_in_4_categories() {
    let (glossary, report) = herald::files::load_glossary(&repo().join("glossary"));
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(glossary.len() >= 80, "only {} terms", glossary.len());
    assert!(
        glossary.categories().len() >= 4,
        "{:?}",
        glossary.categories()
    );

    // Every related link resolves, and the related graph is one connected whole.
    let mut neighbours: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for t in glossary.terms() {
        for r in &t.related {
            assert!(
                glossary.get(r).is_some(),
                "{} relates to missing {r}",
                t.slug
            );
            neighbours
                .entry(t.slug.as_str())
                .or_default()
                .push(r.as_str());
            neighbours
                .entry(r.as_str())
                .or_default()
                .push(t.slug.as_str());
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec!["generative-ai"];
    while let Some(slug) = stack.pop() {
        if seen.insert(slug) {
            stack.extend(neighbours.get(slug).into_iter().flatten().copied());
        }
    }
    let islands: Vec<&str> = glossary
        .terms()
        .iter()
        .map(|t| t.slug.as_str())
        .filter(|s| !seen.contains(s))
        .collect();
    assert!(islands.is_empty(), "not connected to the rest: {islands:?}");
}

#[test]
fn generative_ai_relates_to_the_terms_the_newsletter_promises() {
    let (glossary, _) = herald::files::load_glossary(&repo().join("glossary"));
    let term = glossary.find("Generative AI").unwrap();
    let related: Vec<&str> = term.related.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        related,
        // The third edition keeps only relations that go both ways.
        [
            "large-language-model",
            "diffusion-model",
            "chatbot",
            "agi",
            "deepfake",
            "ai-copyright"
        ]
    );
    for abbreviation in ["LLM", "RAG", "RLHF", "GAN", "VAE", "MoE", "AGI"] {
        assert!(
            glossary.find(abbreviation).is_some(),
            "no term answers to {abbreviation}"
        );
    }
}

#[test]
fn glossary_new_writes_a_complete_skeleton_that_check_walks_the_editor_through() {
    let s = Sandbox::new();
    let run = s.herald(&["glossary", "new", "Mixture of depths"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.trim(), "glossary/mixture-of-depths.md");
    let text = std::fs::read_to_string(s.path("glossary/mixture-of-depths.md")).unwrap();
    for field in [
        "term = ",
        "slug = ",
        "aliases = ",
        "category = ",
        "related = ",
        "example = ",
        "summary = ",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    // No category given: the smallest one, so the rotation stays varied.
    let (glossary, _) = herald::files::load_glossary(&repo().join("glossary"));
    let smallest = glossary
        .categories()
        .into_iter()
        .min_by_key(|c| glossary.in_category(c).len())
        .unwrap();
    assert!(
        text.contains(&format!("category = \"{smallest}\"")),
        "{text}"
    );
    // It parses: the check's one error is the missing source (a published glossary cites
    // one for every term), and its warnings say what else is left to do.
    let check = s.herald(&["glossary", "check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stdout.contains(
            "mixture-of-depths.md:1: `sources`: none; list one to three primary references"
        ),
        "{check:?}"
    );
    assert!(check.stdout.contains(": 1 errors,"), "{check:?}");
    assert!(
        check
            .stdout
            .contains("mixture-of-depths.md:7: warning: `example` still has a TODO"),
        "{check:?}"
    );
    assert!(
        check
            .stdout
            .contains("mixture-of-depths.md:6: warning: `related` lists 0 terms"),
        "{check:?}"
    );

    // A name, alias or slug that exists is refused; so is overwriting a file.
    let again = s.herald(&["glossary", "new", "LLM"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("already has `Large language model`"),
        "{again:?}"
    );
    let typo = s.herald(&[
        "glossary",
        "new",
        "Test-time training",
        "--category",
        "Fundamentls",
    ]);
    assert_eq!(typo.code, 0, "{typo:?}");
    assert!(
        typo.stderr.contains("did you mean `Fundamentals`?"),
        "{typo:?}"
    );
}

#[test]
fn one_broken_file_does_not_cascade_and_unknown_names_get_a_suggestion() {
    let s = Sandbox::new();
    // Break attention.md's front matter: the terms that relate to `attention` are still right.
    let path = s.path("glossary/attention.md");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("category = ", "category = = ", 1)).unwrap();
    // A typo in a related slug, and a category nobody else uses that is close to a real one.
    let path = s.path("glossary/dropout.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("\"overfitting\"", "\"overfiting\"", 1);
    std::fs::write(
        &path,
        text.replacen(
            "category = \"Fundamentals\"",
            "category = \"Fundamentls\"",
            1,
        ),
    )
    .unwrap();

    let run = s.herald(&["glossary", "check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("glossary/attention.md:"), "{run:?}");
    assert!(
        !run.stdout.contains("unknown term `attention`"),
        "the broken file's slug is still known: {run:?}"
    );
    assert!(
        run.stdout
            .contains("`related`: unknown term `overfiting` (did you mean `overfitting`?)"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("`Fundamentls` is used by no other term; did you mean `Fundamentals`?"),
        "{run:?}"
    );
    let errors = run
        .stdout
        .lines()
        .filter(|l| !l.contains("warning") && l.contains(".md:"))
        .count();
    assert_eq!(
        errors, 2,
        "one error for the broken file, one for the typo: {run:?}"
    );
}
