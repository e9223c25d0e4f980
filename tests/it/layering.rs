//! The import rules of ARCHITECTURE.md ("Layers"), read from the source: the
//! pure core (machine, policy, the outcome vocabulary, the confirmation
//! verdict, provider health) imports nothing that does I/O, and the modules below the
//! scheduler never reach back up into it.

use std::path::{Path, PathBuf};

/// Every `.rs` file of `rel` (a file or a directory under `src/`).
fn files(rel: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    if root.is_file() {
        return vec![root];
    }
    assert!(root.is_dir(), "src/{rel} is neither a file nor a directory");
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Code lines only: comments and doc comments may name any module.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

/// Lines of the module(s) at `rel` that use one of `forbidden` (a path
/// prefix such as `crate::provider` or a crate name such as `tokio`).
fn violations(rel: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files(rel) {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, code) in code_lines(&text) {
            for f in forbidden {
                let hit = if f.contains("::") {
                    code.contains(f)
                } else {
                    // a crate used by path (`tokio::`) or imported (`use tokio`)
                    code.contains(&format!("{f}::")) || code.contains(&format!("use {f}"))
                };
                if hit {
                    found.push(format!(
                        "{}:{n}: `{f}` in `{}`",
                        file.display(),
                        code.trim()
                    ));
                }
            }
        }
    }
    found
}

const IO: &[&str] = &[
    "crate::provider",
    "crate::store",
    "crate::http",
    "crate::scheduler",
    "crate::app",
    "crate::metrics",
    "crate::events",
    "crate::alertmanager",
    "crate::sim",
    "crate::reload",
    "crate::service",
    "crate::config",
    "crate::clock::Clock",
    "reqwest",
    "sqlx",
    "axum",
    "hyper",
    "tokio",
    "std::fs",
    "std::net",
    "std::time::SystemTime",
    "std::time::Instant",
    "tracing",
    "rand",
];

#[test]
fn the_pure_core_imports_nothing_with_io() {
    let mut all = Vec::new();
    for module in [
        "machine",
        "policy.rs",
        "outcome.rs",
        "confirm.rs",
        "health.rs",
        "ring.rs",
    ] {
        all.extend(violations(module, IO));
    }
    assert!(
        all.is_empty(),
        "the pure core reaches I/O:\n{}",
        all.join("\n")
    );
}

#[test]
fn providers_do_not_reach_up_into_the_machine_or_the_scheduler() {
    let up = [
        "crate::machine",
        "crate::scheduler",
        "crate::store",
        "crate::http",
        "crate::app",
        "crate::metrics",
    ];
    let found = violations("provider", &up);
    assert!(
        found.is_empty(),
        "provider imports upward:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_http_side_and_the_reloader_talk_to_the_scheduler_not_the_app() {
    let mut found = violations("http.rs", &["crate::app"]);
    found.extend(violations("http", &["crate::app"]));
    found.extend(violations("reload.rs", &["crate::app"]));
    found.extend(violations("scheduler", &["crate::app", "crate::http"]));
    assert!(found.is_empty(), "import circle:\n{}", found.join("\n"));
}

#[test]
fn the_store_takes_only_the_persisted_data_from_the_machine() {
    let found: Vec<String> = violations("store", &["crate::machine"])
        .into_iter()
        .filter(|hit| !hit.contains("use crate::machine::Persisted;"))
        .collect();
    assert!(
        found.is_empty(),
        "the store reaches into the machine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_status_page_reads_the_store_and_registry_never_the_scheduler() {
    let found = violations(
        "status_page",
        &[
            "crate::scheduler",
            "crate::app",
            "crate::http",
            "axum",
            "hyper",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn config_name_rules_live_in_one_module() {
    // resolve.rs and maintenance.rs both use the name rule; neither imports
    // the other for it.
    let found = violations("config/maintenance.rs", &["resolve::"]);
    assert!(found.is_empty(), "config circle:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    // The rules above pass only because the code is clean, not because the
    // checker is blind: it finds the scheduler's own use of the provider.
    assert!(!violations("scheduler", &["crate::provider"]).is_empty());
    assert!(!violations("provider/http.rs", &["reqwest"]).is_empty());
}

/// ARCHITECTURE.md's "Adding a provider" recipe names every source file
/// (tests aside) that matches on a provider kind (`ProviderKind::…`,
/// `Provider::…`) or names a provider's own module (`waha::`,
/// `green_api::`) from outside it; a provider's own files are named with
/// `NAME` for the provider.
#[test]
fn the_adding_a_provider_recipe_names_every_file_that_knows_the_kinds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = arch.find("## Adding a provider").expect("the recipe");
    let recipe = &arch[start..];
    let recipe = &recipe[..recipe[3..].find("\n## ").map_or(recipe.len(), |i| i + 3)];
    let kinds = [
        "ProviderKind::Waha",
        "ProviderKind::GreenApi",
        "Provider::Waha",
        "Provider::GreenApi",
        "waha::",
        "green_api::",
    ];
    let mut missing = Vec::new();
    for file in files("") {
        let rel = file
            .strip_prefix(root)
            .expect("under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        let own = [
            "src/provider/waha",
            "src/provider/green_api",
            "src/sim/waha",
            "src/sim/green_api",
        ]
        .iter()
        .any(|p| rel.starts_with(p));
        if own || rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code: String = code_lines(&text).map(|(_, l)| format!("{l}\n")).collect();
        // `#[cfg(test)]` modules at the end of a file are tests too.
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let knows = kinds.iter().any(|k| {
            code.match_indices(k).any(|(i, _)| {
                // `sim::waha::` or `crate::provider::waha::` — not `fn waha::`-like words.
                i == 0
                    || !code.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && code.as_bytes()[i - 1] != b'_'
            })
        });
        if knows && !recipe.contains(&format!("`{rel}`")) {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's \"Adding a provider\" does not name: {missing:?}"
    );
}
