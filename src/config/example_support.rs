//! Test support: resolve config.example.toml with one of its commented-out
//! examples uncommented, so the examples users copy are kept valid.

use super::Config;

/// config.example.toml with the commented-out example that starts at
/// `marker` (e.g. `"# [[ring]]"`) uncommented, resolved with placeholder
/// secrets. The example ends at its first blank line; `# #` lines are its
/// own comments and stay out.
pub(crate) fn resolve_with_example(marker: &str) -> Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).expect("config.example.toml");
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} example"));
    let example: String = text[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("# #"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let full = format!("{}\n{example}\n", &text[..start]);
    let env = |name: &str| match name {
        "WA_WATCHDOG_ADMIN_TOKEN" | "WAHA_API_KEY" | "GREEN_API_TOKEN" => Some("x".to_string()),
        _ => None,
    };
    Config::from_toml_str(&full, &path, &env).unwrap_or_else(|e| panic!("{e}\n{example}"))
}
