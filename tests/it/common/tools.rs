//! The Prometheus tools from Debian's packages (`promtool`, `amtool`,
//! `prometheus`, `prometheus-alertmanager`), found on `PATH` for the tests
//! that run them.
//!
//! Owns: the lookup and the one switch that skips the checks needing them.
//! Must not: install anything, or skip silently — a missing tool fails the
//! test with install instructions unless the switch is set, because a
//! silent skip would hide broken rules.

use std::path::PathBuf;

/// Set to `1` to skip (only) the checks that need the tools.
pub const SKIP_ENV: &str = "WA_WATCHDOG_SKIP_PROMETHEUS_TOOLS";

/// The tool's path on `PATH`; `None` only when skipping is asked for.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
            eprintln!("skipping: `{name}` not found and {SKIP_ENV}=1");
            return None;
        }
        panic!(
            "`{name}` not found on PATH. Run the suite with `scripts/test` (it installs \
             what is missing), or install Debian's Prometheus tools: \
             `apt-get install -y --no-install-recommends prometheus prometheus-alertmanager` \
             (create a /usr/sbin/policy-rc.d that exits 101 first, or the daemons start), \
             or set {SKIP_ENV}=1 to skip the checks that need them"
        );
    }
    found
}
