//! The architecture, checked: each layer imports only the layers below it, the pure core
//! does no I/O, and state names are spelled only where the store maps them.
//!
//! Layers, bottom to top: the core crate (`core/`), then `clock` and `config`, then the
//! adapters (`store`, `mailer`, `feeds`, `files`), then `app`, then the front ends (`http`,
//! `daemon`, `commands`, `cli`, `main`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::repo;

/// Every `.rs` file below `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The source without comments (line comments and doc comments), so prose that names a
/// module does not count as an import.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file of `src/` below the crate root: `src/app/delivery.rs` is
/// `["app", "delivery"]`, `src/app/mod.rs` is `["app"]`, `src/lib.rs` is `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The items of the `{...}` group at the start of `s` (nested groups kept whole).
fn group_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 1usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                items.push(s[start..i].trim());
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    items.into_iter().filter(|i| !i.is_empty()).collect()
}

/// The top-level modules of the `herald` crate that the code of the file at `module` refers
/// to: every `crate::NAME`, every `super::` and `self::` path resolved from the file's place
/// (`super::super::http` from `app/x.rs` is `http`), each item of a `use` group, nested
/// groups included (`crate::{domain::{Slug, Term}, app::App}`).
fn crate_modules_at(module: &[String], source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = source.as_bytes();
    let mut at = 0;
    while at < source.len() {
        let rest = &source[at..];
        let boundary = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b':');
        let mut base: Option<Vec<String>> = None;
        let mut tail = rest;
        if boundary && rest.starts_with("crate::") {
            base = Some(Vec::new());
            tail = &rest["crate::".len()..];
        } else if boundary && (rest.starts_with("super::") || rest.starts_with("self::")) {
            let mut path = module.to_vec();
            if let Some(t) = rest.strip_prefix("self::") {
                tail = t;
            }
            while let Some(t) = tail.strip_prefix("super::") {
                path.pop();
                tail = t;
            }
            base = Some(path);
        }
        let Some(base) = base else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let top = |first: &str| base.first().cloned().unwrap_or_else(|| first.to_owned());
        if tail.starts_with('{') {
            for item in group_items(tail) {
                let name = ident(item);
                if !name.is_empty() && name != "self" {
                    found.insert(top(name));
                }
            }
        } else {
            let name = ident(tail);
            if !name.is_empty() {
                found.insert(top(name));
            }
        }
        at = source.len() - tail.len();
    }
    found
}

/// [`crate_modules_at`] for a file at the crate root.
fn crate_modules(source: &str) -> BTreeSet<String> {
    crate_modules_at(&[], source)
}

/// The layer of a top-level module (higher is further from the core).
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "domain" | "toml_source" | "glossary" | "subscriber_file" | "news" | "selection"
        | "schedule" | "render" | "compose" | "dkim" | "feedback" => 0,
        "clock" | "config" | "Exit" => 1,
        "store" | "mailer" | "feeds" | "files" => 2,
        "app" => 3,
        "http" => 4,
        "daemon" | "cli" => 5,
        "commands" => 6,
        _ => return None,
    })
}

/// One file of `src/`: its path below `src/` and its code without comments.
struct Source {
    rel: PathBuf,
    code: String,
}

/// Every file of the crate's `src/`.
fn sources() -> Vec<Source> {
    let src = repo().join("src");
    rust_files(&src)
        .into_iter()
        .map(|file| Source {
            rel: file.strip_prefix(&src).unwrap().to_path_buf(),
            code: code(&file),
        })
        .collect()
}

/// Imports that break the layering: a module uses only the layers below it (and, in the
/// core and the configuration, its peers); every module it names has a layer.
fn layer_violations(files: &[Source]) -> Vec<String> {
    let mut violations = Vec::new();
    for file in files {
        let path = module_path(&file.rel);
        let Some(module) = path.first() else { continue };
        let Some(own) = layer(module) else {
            violations.push(format!("{}: `{module}` has no layer", file.rel.display()));
            continue;
        };
        for used in crate_modules_at(&path, &file.code) {
            // The CLI's output macros are exported at the crate root from `commands::output`.
            let used = match used.as_str() {
                "say" | "complain" => "commands".to_owned(),
                _ => used,
            };
            let Some(theirs) = layer(&used) else {
                violations.push(format!(
                    "{}: uses `{used}`, which has no layer",
                    file.rel.display()
                ));
                continue;
            };
            // A module may use its own layer's peers only within the core and the adapters'
            // shared configuration; above that, never sideways or up.
            if !(theirs < own || used == *module || (own == 1 && theirs == 1)) {
                violations.push(format!(
                    "{}: {module} (layer {own}) uses {used} (layer {theirs})",
                    file.rel.display()
                ));
            }
        }
    }
    violations
}

/// `.store` (the application's store) used outside the application layer and the store: a
/// front end asks `App`. The configuration's own `[store]` section is not the store.
fn store_outside_app(files: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let path = module_path(&file.rel);
        if matches!(
            path.first().map(String::as_str),
            Some("app" | "store" | "config")
        ) {
            continue;
        }
        let mut rest = file.code.as_str();
        while let Some(i) = rest.find(".store") {
            let after = &rest[i + ".store".len()..];
            // `.store(` is a method (an atomic's), not the field.
            if !after.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '(') {
                found.push(format!(
                    "{}: uses `.store`: ask the app layer instead",
                    file.rel.display()
                ));
                break;
            }
            rest = after;
        }
    }
    found
}

/// What the web server must not do itself, in every file of `http`: query the store or the
/// database, or send mail.
fn web_server_violations(files: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files
        .iter()
        .filter(|f| module_path(&f.rel).first().is_some_and(|m| m == "http"))
    {
        for forbidden in [".store", "Mailer", "send_once", "sqlx"] {
            if file.code.contains(forbidden) {
                found.push(format!(
                    "{} uses `{forbidden}`: ask the app layer instead",
                    file.rel.display()
                ));
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let violations = layer_violations(&sources());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn only_the_app_layer_and_the_store_touch_the_store() {
    let found = store_outside_app(&sources());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_web_server_neither_queries_the_store_nor_sends_mail() {
    let found = web_server_violations(&sources());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn each_layer_rule_catches_the_break_it_is_for() {
    // Deliberately broken files: each rule must see its own break, and clean code passes.
    let file = |rel: &str, code: &str| Source {
        rel: PathBuf::from(rel),
        code: code.to_owned(),
    };
    let broken = [
        // Up through `super::`: the app layer reaching the CLI.
        file("app/x.rs", "use super::super::commands::run;\n"),
        // A nested group hiding an upward import.
        file(
            "mailer/x.rs",
            "use crate::{domain::{Slug, Term}, app::{App}};\n",
        ),
        // A module with no layer.
        file("store/y.rs", "let s = crate::nonsense::f();\n"),
        // A front end reaching into the store, in a file below `http/`.
        file("http/site.rs", "let issue = s.store.issue(1).await;\n"),
        // The web server sending mail from a file below `http/`.
        file(
            "http/api.rs",
            "crate::mailer::Mailer::send_once(t, f, to, m);\n",
        ),
    ];
    let layers = layer_violations(&broken);
    for expected in [
        "app/x.rs: app (layer 3) uses commands (layer 6)",
        "mailer/x.rs: mailer (layer 2) uses app (layer 3)",
        "store/y.rs: uses `nonsense`, which has no layer",
    ] {
        assert!(
            layers.iter().any(|v| v == expected),
            "{expected} in {layers:?}"
        );
    }
    let store = store_outside_app(&broken);
    assert_eq!(
        store,
        ["http/site.rs: uses `.store`: ask the app layer instead"]
    );
    let web = web_server_violations(&broken);
    assert!(
        web.iter()
            .any(|v| v.starts_with("http/site.rs uses `.store`")),
        "{web:?}"
    );
    assert!(
        web.iter()
            .any(|v| v.starts_with("http/api.rs uses `Mailer`")),
        "{web:?}"
    );

    let clean = [
        file(
            "app/x.rs",
            "use super::delivery::Silent;\nuse crate::{store::{Store, Mark}, dkim};\n",
        ),
        file(
            "store/x.rs",
            "use super::Pool;\nlet url = config.store_url;\n",
        ),
        file(
            "commands/x.rs",
            "use crate::app::App;\napp.issue_stats(None);\nflag.store(true, SeqCst);\n",
        ),
    ];
    assert!(
        layer_violations(&clean).is_empty(),
        "{:?}",
        layer_violations(&clean)
    );
    assert!(store_outside_app(&clean).is_empty());
    assert!(web_server_violations(&clean).is_empty());
}

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let manifest = std::fs::read_to_string(repo().join("core/Cargo.toml")).unwrap();
    for adapter in ["tokio", "sqlx", "reqwest", "axum", "hyper"] {
        assert!(
            !manifest.contains(&format!("\n{adapter} ")),
            "the core depends on {adapter}"
        );
    }
    for file in rust_files(&repo().join("core/src")) {
        let source = code(&file);
        for forbidden in [
            "std::fs",
            "std::net",
            "std::env",
            "Utc::now",
            "SystemTime::now",
            "Instant::now",
            "tokio::",
        ] {
            assert!(
                !source.contains(forbidden),
                "{} uses `{forbidden}`",
                file.display()
            );
        }
    }
}

#[test]
fn state_names_are_spelled_only_where_the_store_maps_them() {
    const STATES: [&str; 14] = [
        "pending",
        "sending",
        "sent",
        "failed",
        "bounced",
        "skipped",
        "frozen",
        "held",
        "cancelled",
        "claimed",
        "missed",
        "exhausted",
        "confirmed",
        "unsubscribed",
    ];
    let mut files = rust_files(&repo().join("src"));
    files.extend(rust_files(&repo().join("core/src")));
    let allowed = |f: &Path| {
        let s = f.to_string_lossy();
        s.contains("/src/store/")
            || s.ends_with("domain/status.rs")
            || s.ends_with("domain/subscriber.rs")
            // Reads other services' exports, whose own vocabulary (Buttondown's
            // `subscriber_type = unsubscribed`) happens to share words with ours.
            || s.ends_with("core/src/subscriber_file.rs")
            // Reads delivery status notifications, whose RFC 3464 vocabulary
            // (`Action: failed`) is not Herald's ledger state.
            || s.ends_with("core/src/feedback.rs")
    };
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !allowed(f)) {
        let source = code(file);
        for state in STATES {
            if source.contains(&format!("\"{state}\"")) {
                found.push(format!("{}: \"{state}\"", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "status literals outside the store; use the domain's state enums:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layer_check_sees_imports() {
    // The checks above are only as good as the import scanner: it must see plain paths and
    // grouped imports, and ignore comments.
    let source =
        "use crate::{app::App, store};\nlet x = crate::http::router();\n// crate::commands\n";
    let file = std::env::temp_dir().join(format!("herald-layers-{}.rs", std::process::id()));
    std::fs::write(&file, source).unwrap();
    let found = crate_modules(&code(&file));
    std::fs::remove_file(&file).unwrap();
    let expected: BTreeSet<String> = ["app", "store", "http"].map(String::from).into();
    assert_eq!(found, expected);
}
