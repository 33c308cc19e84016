//! Term rotation over long simulated histories.

use std::collections::HashSet;

use herald::domain::Slug;
use herald::glossary::Glossary;
use herald::selection::OnExhausted;
use herald::selection::{SentTerm, TermChoice, TermHistory, next_term};

use crate::harness::{Sandbox, repo};

fn shipped() -> Glossary {
    let (g, report) = herald::files::load_glossary(&repo().join("glossary"));
    assert!(report.errors.is_empty());
    g
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

/// Runs `weeks` issues and returns the history.
fn simulate(
    g: &Glossary,
    mut history: TermHistory,
    weeks: u32,
    queue: &[Slug],
    policy: OnExhausted,
) -> TermHistory {
    for _ in 0..weeks {
        let number = history.sent.len() as u32 + 1;
        match next_term(g, &history, queue, policy) {
            TermChoice::Next { term, cycle, .. } => history.sent.push(SentTerm {
                issue_number: number,
                cycle,
                slug: term.slug.clone(),
            }),
            TermChoice::Exhausted { .. } | TermChoice::NoTerms => break,
        }
    }
    history
}

#[test]
fn a_cycle_and_a_half_of_weekly_issues_never_repeat_a_term_within_a_cycle() {
    let g = shipped();
    // More issues than terms, so the rotation crosses into a second cycle.
    let issues = g.len() + g.len() / 2;
    let history = simulate(
        &g,
        TermHistory::default(),
        issues as u32,
        &[],
        OnExhausted::Restart,
    );
    assert_eq!(history.sent.len(), issues);
    let mut per_cycle: std::collections::HashMap<u32, HashSet<&Slug>> = Default::default();
    for s in &history.sent {
        assert!(
            per_cycle.entry(s.cycle).or_default().insert(&s.slug),
            "{} repeated in cycle {}",
            s.slug,
            s.cycle
        );
    }
    // The first cycle covers the whole glossary before the second begins.
    assert_eq!(per_cycle[&1].len(), g.len());
    assert_eq!(per_cycle[&2].len(), issues - g.len());
    // No term is sent twice in a row across the cycle boundary.
    for pair in history.sent.windows(2) {
        assert_ne!(pair[0].slug, pair[1].slug);
    }
    // Consecutive issues vary the category whenever another is available: over two years
    // of weekly issues, at most a handful share one with the issue before.
    let same_category = history.sent[..104]
        .windows(2)
        .filter(|p| g.get(&p[0].slug).unwrap().category == g.get(&p[1].slug).unwrap().category)
        .count();
    assert!(
        same_category <= 4,
        "{same_category} consecutive issues shared a category"
    );
}

#[test]
fn the_rotation_is_deterministic() {
    let g = shipped();
    let a = simulate(&g, TermHistory::default(), 30, &[], OnExhausted::Restart);
    let b = simulate(&g, TermHistory::default(), 30, &[], OnExhausted::Restart);
    assert_eq!(a.sent, b.sent);
}

#[test]
fn queued_terms_come_first_in_queue_order() {
    let g = shipped();
    let queue = [slug("quantization"), slug("agi"), slug("no-such-term")];
    let history = simulate(&g, TermHistory::default(), 3, &queue, OnExhausted::Restart);
    let picked: Vec<&str> = history.sent.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(&picked[..2], ["quantization", "agi"]);
    assert!(!picked[2..].contains(&"quantization"));
}

#[test]
fn covered_related_terms_bring_a_term_forward() {
    let g = shipped();
    let history = TermHistory {
        sent: vec![
            SentTerm {
                issue_number: 1,
                cycle: 1,
                slug: slug("attention"),
            },
            SentTerm {
                issue_number: 2,
                cycle: 1,
                slug: slug("deep-learning"),
            },
        ],
    };
    let TermChoice::Next { term, .. } = next_term(&g, &history, &[], OnExhausted::Restart) else {
        panic!("a term is due");
    };
    assert_eq!(term.slug.as_str(), "transformer");
}

#[test]
fn stop_policy_makes_no_issue_once_every_term_was_sent() {
    let g = shipped();
    let history = simulate(&g, TermHistory::default(), 200, &[], OnExhausted::Stop);
    assert_eq!(history.sent.len(), g.len());
    assert_eq!(
        next_term(&g, &history, &[], OnExhausted::Stop),
        TermChoice::Exhausted { cycle: 1 }
    );
    let TermChoice::Next { cycle, .. } = next_term(&g, &history, &[], OnExhausted::Restart) else {
        panic!("restart starts a new cycle");
    };
    assert_eq!(cycle, 2);
}

#[test]
fn terms_added_later_are_eligible_and_removed_terms_are_never_picked() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path("glossary/quantization.md")).unwrap();
    let (smaller, _) = herald::files::load_glossary(&s.path("glossary"));
    let half = simulate(&smaller, TermHistory::default(), 40, &[], OnExhausted::Stop);
    assert!(half.sent.iter().all(|t| t.slug.as_str() != "quantization"));

    // The term comes back mid-cycle: it is eligible at once.
    let full = shipped();
    let rest = simulate(&full, half, 200, &[], OnExhausted::Stop);
    assert_eq!(rest.sent.len(), full.len());
    assert!(rest.sent.iter().any(|t| t.slug.as_str() == "quantization"));

    // A term deleted after it was sent never stops the cycle from completing.
    let history = simulate(&full, TermHistory::default(), 10, &[], OnExhausted::Stop);
    let removed = history.sent[0].slug.clone();
    std::fs::remove_file(s.path("glossary/quantization.md")).ok();
    std::fs::copy(
        repo().join("glossary/quantization.md"),
        s.path("glossary/quantization.md"),
    )
    .unwrap();
    std::fs::remove_file(s.path(&format!("glossary/{removed}.md"))).unwrap();
    let (without, _) = herald::files::load_glossary(&s.path("glossary"));
    let done = simulate(&without, history, 200, &[], OnExhausted::Stop);
    assert_eq!(done.sent.len(), full.len());
    assert_eq!(done.sent.iter().filter(|t| t.slug == removed).count(), 1);
}
