//! `contrib/grafana/wa-watchdog.json` checked structurally, the way Grafana
//! would reject or silently break it on import: a uid and schemaVersion,
//! unique panel ids, a datasource variable that every panel and query uses,
//! provider and session variables, every `$variable` defined, every query
//! naming only metrics the daemon exports, and no two panels overlapping.
//! `tests/it/monitoring_e2e.rs` evaluates every query against a real
//! Prometheus scraping a real daemon.

use std::collections::BTreeSet;

use crate::common::grafana;
use std::time::Duration;

use wa_watchdog::clock::Timestamp;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::{Metrics, RestartResult};
use wa_watchdog::provider::Outcome;

#[test]
fn the_dashboard_is_importable_and_every_variable_is_defined() {
    let d = grafana::load();
    assert_eq!(d["uid"], "wa-watchdog-fleet");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{}",
        d["schemaVersion"]
    );
    assert!(
        d["id"].is_null(),
        "an exported dashboard has no id (import assigns one)"
    );

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names.len(), vars.len(), "duplicate variable names");
    for want in ["datasource", "provider", "session"] {
        assert!(names.contains(want), "variable {want} missing: {names:?}");
    }
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{v}");
        assert_eq!(v["includeAll"], true, "{v}");
        assert_eq!(v["allValue"], ".*", "{v}");
    }

    // Every $variable anywhere in the file is defined or a Grafana built-in.
    let text = serde_json::to_string(&d).expect("re-encode");
    for v in grafana::variables_in(&text) {
        assert!(
            names.contains(v.as_str()) || v.starts_with("__"),
            "${v} is used but not defined"
        );
    }

    let panels = grafana::panels(&d);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in &panels {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without id: {p}"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel {id} has no title");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "panel {title}: {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {title} overlaps another at {cx},{cy}"
                );
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {title}: {t}"
            );
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {title}: {t}"
            );
        }
    }

    // Every metric a query names is one the daemon exports.
    // A registry with a provider and one of everything, so that every
    // family has a series and therefore a `# TYPE` line.
    let m = Metrics::new();
    m.add_provider("waha");
    m.set_provider("waha", true, false);
    m.set_restart_budget("waha", 3);
    m.set_session(
        "waha",
        "s1",
        State::Healthy,
        0,
        Some(Timestamp::from_millis(1)),
    );
    m.observe_probe("waha", &Outcome::Delivered, Duration::from_millis(20));
    m.desync_detected("waha");
    m.recovered("waha", Duration::from_secs(60));
    m.restart_result("waha", RestartResult::Ok);
    m.webhook_event("waha", "message");
    let exported = m.encode().expect("encode");
    let exported: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let exports = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| exported.contains(base))
            })
    };
    let exprs = grafana::expressions(&d);
    assert!(exprs.len() >= 15, "{exprs:?}");
    for (title, _, expr) in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("wa_watchdog_") {
                assert!(
                    exports(word),
                    "panel {title}: {word} is not a metric the daemon exports"
                );
            }
        }
    }
    // Every core panel exists.
    for core in grafana::CORE_PANELS {
        assert!(
            exprs.iter().any(|(t, _, _)| t == core),
            "core panel {core} missing"
        );
    }
}

#[test]
fn variables_are_found_in_both_spellings() {
    assert_eq!(
        grafana::variables_in("a{p=~\"$provider\"}[$__rate_interval] ${datasource} $5"),
        ["provider", "__rate_interval", "datasource", "5"]
    );
}
