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

/// The top-level modules of the `herald` crate a file refers to: every `crate::NAME`,
/// including each name of a `use crate::{a, b::c}` group.
fn crate_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

/// The layer of a top-level module (higher is further from the core).
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "domain" | "toml_source" | "glossary" | "subscriber_file" | "news" | "selection"
        | "schedule" | "render" | "compose" => 0,
        "clock" | "config" | "Exit" => 1,
        "store" | "mailer" | "feeds" | "files" => 2,
        "app" => 3,
        "http" => 4,
        "daemon" | "cli" => 5,
        "commands" => 6,
        _ => return None,
    })
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = repo().join("src");
    let mut violations = Vec::new();
    for file in rust_files(&src) {
        let module = module_of(&src, &file);
        if matches!(module.as_str(), "main" | "lib") {
            continue;
        }
        let own = layer(&module).unwrap_or_else(|| panic!("{module} has no layer"));
        for used in crate_modules(&code(&file)) {
            let Some(theirs) = layer(&used) else { continue };
            // A module may use its own layer's peers only within the core and the adapters'
            // shared configuration; above that, never sideways or up.
            let allowed = theirs < own || used == module || (own == 1 && theirs == 1);
            // The daemon starts the web server: the one sideways edge between front ends.
            let daemon_serves_http = module == "daemon" && used == "http";
            if !allowed && !daemon_serves_http {
                violations.push(format!(
                    "{}: {module} (layer {own}) uses {used} (layer {theirs})",
                    file.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_web_server_neither_queries_the_store_nor_sends_mail() {
    // Every file of the web layer (`src/http/`, split by audience).
    let files = rust_files(&repo().join("src/http"));
    assert!(!files.is_empty(), "no files under src/http/");
    for file in files {
        let source = code(&file);
        for forbidden in [".store.", "Mailer", "send_once", "sqlx"] {
            assert!(
                !source.contains(forbidden),
                "{} uses `{forbidden}`: ask the app layer instead",
                file.display()
            );
        }
    }
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
