//! `[[maintenance]]`: the raw schema of one window, its validation into a
//! [`maintenance::Window`](crate::maintenance::Window), and its rendering for
//! `check-config`. Kept apart from `resolve.rs` so the window keys live in
//! one file. Errors name the window and the key
//! (`maintenance "nightly": start must be ...`).

use std::time::Duration;

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer};

use super::{ProviderConfig, SessionSelector};
use crate::maintenance::{self, SessionRef, Weekdays, Window};

/// One `[[maintenance]]` table as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub name: Option<String>,
    /// `"daily"`, `"weekdays"`, `"weekends"`, one day name, or a list of day
    /// names (`["mon", "thu"]`); default `"daily"`.
    #[serde(deserialize_with = "string_or_list")]
    pub weekdays: Option<Vec<String>>,
    pub start: Option<String>,
    #[serde(deserialize_with = "super::raw::duration")]
    pub duration: Option<Duration>,
    pub timezone: Option<String>,
    pub providers: Option<Vec<String>>,
    pub sessions: Option<Vec<String>>,
}

/// Resolves every window against the (already resolved) providers.
pub(super) fn resolve(
    raw: Vec<RawMaintenance>,
    providers: &[ProviderConfig],
) -> Result<Vec<Window>, String> {
    let mut out: Vec<Window> = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        let Some(name) = w.name.clone() else {
            return Err(format!("[[maintenance]] #{}: name is required", i + 1));
        };
        if !super::name::valid_name(&name) {
            return Err(format!(
                "[[maintenance]] #{}: name {name:?} must be 1 to 64 characters from \
                 A-Z a-z 0-9 _ . -",
                i + 1
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(format!("maintenance {name:?}: the name is used twice"));
        }
        let window =
            window(name.clone(), w, providers).map_err(|e| format!("maintenance {name:?}: {e}"))?;
        out.push(window);
    }
    Ok(out)
}

fn window(name: String, w: RawMaintenance, providers: &[ProviderConfig]) -> Result<Window, String> {
    let weekdays = match w.weekdays {
        None => Weekdays::ALL,
        Some(list) => weekdays(&list)?,
    };
    let Some(start) = w.start.as_deref() else {
        return Err("start is required (local time \"HH:MM\", e.g. \"02:00\")".to_string());
    };
    let start = start_time(start)?;
    let Some(duration) = w.duration else {
        return Err("duration is required (e.g. \"1h\")".to_string());
    };
    if duration.is_zero() {
        return Err("duration must be greater than 0".to_string());
    }
    if duration > maintenance::MAX_DURATION {
        return Err(format!(
            "duration must be at most {} (pause the session instead), got {}",
            humantime::format_duration(maintenance::MAX_DURATION),
            humantime::format_duration(duration)
        ));
    }
    let timezone = match w.timezone.as_deref() {
        None => chrono_tz::UTC,
        Some(text) => text.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(
                "timezone {text:?} is not an IANA time zone name (e.g. \"Europe/Berlin\", \
                 \"America/Sao_Paulo\", \"UTC\"; fixed offsets are \"Etc/GMT-3\" for UTC+3)"
            )
        })?,
    };

    let scope_providers = w.providers.unwrap_or_default();
    for (i, p) in scope_providers.iter().enumerate() {
        if !providers.iter().any(|c| &c.name == p) {
            return Err(format!("providers: no [[provider]] is named {p:?}"));
        }
        if scope_providers[..i].contains(p) {
            return Err(format!("providers: {p:?} is listed twice"));
        }
    }
    let mut sessions: Vec<SessionRef> = Vec::new();
    for text in w.sessions.unwrap_or_default() {
        let r = session_ref(&text, providers)?;
        if sessions.contains(&r) {
            return Err(format!("sessions: {text:?} is listed twice"));
        }
        sessions.push(r);
    }
    Ok(Window {
        name,
        weekdays,
        start,
        duration,
        timezone,
        providers: scope_providers,
        sessions,
    })
}

fn weekdays(list: &[String]) -> Result<Weekdays, String> {
    const HELP: &str = "\"daily\", \"weekdays\", \"weekends\" or a list of \"mon\" \"tue\" \
                        \"wed\" \"thu\" \"fri\" \"sat\" \"sun\"";
    if let [one] = list {
        match one.as_str() {
            "daily" => return Ok(Weekdays::ALL),
            "weekdays" => return Ok(Weekdays::WORKDAYS),
            "weekends" => return Ok(Weekdays::WEEKEND),
            _ => {}
        }
    }
    if list.is_empty() {
        return Err(format!("weekdays must not be empty; use {HELP}"));
    }
    let mut set = Weekdays::none();
    for name in list {
        let Some(day) = Weekdays::day(name) else {
            return Err(format!("weekdays: {name:?} is not a day; use {HELP}"));
        };
        if set.contains(day) {
            return Err(format!("weekdays: {name:?} is listed twice"));
        }
        set = set.with(day);
    }
    Ok(set)
}

/// `"HH:MM"`, 24-hour.
fn start_time(text: &str) -> Result<NaiveTime, String> {
    let err = || format!("start must be a local time \"HH:MM\" (00:00 to 23:59), got {text:?}");
    let (h, m) = text.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let (h, m) = (
        h.parse::<u32>().map_err(|_| err())?,
        m.parse::<u32>().map_err(|_| err())?,
    );
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(err)
}

/// `"provider/session"`, naming a configured provider, and a session it
/// watches when it lists its sessions (a window that can never apply is a typo).
fn session_ref(text: &str, providers: &[ProviderConfig]) -> Result<SessionRef, String> {
    let Some((provider, session)) = text.split_once('/') else {
        return Err(format!(
            "sessions: {text:?} must be \"provider/session\" (e.g. \"waha-main/sales\")"
        ));
    };
    let Some(p) = providers.iter().find(|c| c.name == provider) else {
        return Err(format!(
            "sessions: {text:?}: no [[provider]] is named {provider:?}"
        ));
    };
    if session.is_empty() || session.contains('/') {
        return Err(format!("sessions: {text:?} must be \"provider/session\""));
    }
    if let SessionSelector::Named(names) = &p.sessions
        && !names.iter().any(|n| n == session)
    {
        return Err(format!(
            "sessions: {text:?}: provider {provider:?} does not watch a session {session:?} \
             (its sessions: {})",
            names.join(", ")
        ));
    }
    Ok(SessionRef {
        provider: provider.to_string(),
        session: session.to_string(),
    })
}

/// A string or an array of strings, as a list.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("\"daily\", \"weekdays\", \"weekends\" or a list of day names")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![v.to_string()]))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Visitor)
}

/// The `check-config` form of the windows, valid TOML.
pub(super) fn render(windows: &[Window], quote: fn(&str) -> String) -> String {
    let mut out = String::new();
    if windows.is_empty() {
        out.push_str("\n# [[maintenance]]: none\n");
    }
    for w in windows {
        let list = |items: Vec<String>| {
            let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
            format!("[{}]", quoted.join(", "))
        };
        out.push_str("\n[[maintenance]]\n");
        out.push_str(&format!("name = {}\n", quote(&w.name)));
        out.push_str(&format!("weekdays = {}\n", w.weekdays));
        out.push_str(&format!(
            "start = {}\n",
            quote(&w.start.format("%H:%M").to_string())
        ));
        out.push_str(&format!(
            "duration = {}\n",
            quote(&humantime::format_duration(w.duration).to_string())
        ));
        out.push_str(&format!("timezone = {}\n", quote(w.timezone.name())));
        if w.providers.is_empty() && w.sessions.is_empty() {
            out.push_str("# scope: every session of every provider\n");
        }
        if !w.providers.is_empty() {
            out.push_str(&format!("providers = {}\n", list(w.providers.clone())));
        }
        if !w.sessions.is_empty() {
            let names = w
                .sessions
                .iter()
                .map(|s| format!("{}/{}", s.provider, s.session))
                .collect();
            out.push_str(&format!("sessions = {}\n", list(names)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const PROVIDERS: &str = r#"
[[provider]]
name = "waha-main"
kind = "waha"
url = "http://127.0.0.1:3000"

[[provider]]
name = "waha-named"
kind = "waha"
url = "http://127.0.0.1:3001"
sessions = ["sales", "support"]
"#;

    fn parse(maintenance: &str) -> Result<Config, String> {
        let text = format!("{PROVIDERS}\n{maintenance}");
        Config::from_toml_str(&text, "/etc/wa-watchdog/config.toml", &|_| None)
            .map_err(|e| e.to_string())
    }

    fn err(maintenance: &str) -> String {
        match parse(maintenance) {
            Ok(_) => panic!("expected an error for {maintenance}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_key_resolves_and_defaults_are_daily_utc_all_sessions() {
        let cfg = parse(
            r#"
[[maintenance]]
name = "nightly"
start = "02:00"
duration = "1h"

[[maintenance]]
name = "upgrade"
weekdays = ["sun", "wed"]
start = "23:30"
duration = "2h 30m"
timezone = "Europe/Berlin"
providers = ["waha-main"]
sessions = ["waha-named/sales"]
"#,
        )
        .expect("valid");
        assert_eq!(cfg.maintenance.len(), 2);
        let n = &cfg.maintenance[0];
        assert_eq!(n.weekdays, crate::maintenance::Weekdays::ALL);
        assert_eq!(n.timezone, chrono_tz::UTC);
        assert!(n.providers.is_empty() && n.sessions.is_empty());
        let u = &cfg.maintenance[1];
        assert_eq!(u.weekdays.to_string(), r#"["wed", "sun"]"#);
        assert_eq!(u.start.format("%H:%M").to_string(), "23:30");
        assert_eq!(u.duration, std::time::Duration::from_secs(9000));
        assert_eq!(u.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(u.providers, ["waha-main"]);
        assert_eq!(u.sessions[0].session, "sales");
        let rendered = crate::config::render_redacted(&cfg);
        assert!(rendered.contains("[[maintenance]]\nname = \"upgrade\"\nweekdays = [\"wed\", \"sun\"]\nstart = \"23:30\"\nduration = \"2h 30m\"\ntimezone = \"Europe/Berlin\""), "{rendered}");
        assert!(rendered.contains("weekdays = \"daily\""), "{rendered}");
        for (spelling, expected) in [("\"weekdays\"", 5), ("\"weekends\"", 2), ("\"fri\"", 1)] {
            let cfg = parse(&format!(
                "[[maintenance]]\nname = \"x\"\nweekdays = {spelling}\nstart = \"00:00\"\nduration = \"1m\"\n"
            ))
            .expect(spelling);
            let days = (0..7)
                .filter(|d| {
                    cfg.maintenance[0]
                        .weekdays
                        .contains(chrono::Weekday::try_from(*d as u8).expect("weekday"))
                })
                .count();
            assert_eq!(days, expected, "{spelling}");
        }
    }

    #[test]
    fn errors_name_the_window_and_the_key() {
        let base = "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\n";
        let cases: &[(&str, &str)] = &[
            (
                "[[maintenance]]\nstart = \"02:00\"\n",
                "[[maintenance]] #1: name is required",
            ),
            (
                "[[maintenance]]\nname = \"a b\"\n",
                "[[maintenance]] #1: name \"a b\" must be",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nduration = \"1h\"\n",
                "maintenance \"w\": start is required",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"2:00\"\nduration = \"1h\"\n",
                "maintenance \"w\": start must be a local time \"HH:MM\"",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"24:00\"\nduration = \"1h\"\n",
                "start must be a local time",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:60\"\nduration = \"1h\"\n",
                "start must be a local time",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\n",
                "maintenance \"w\": duration is required",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"0s\"\n",
                "maintenance \"w\": duration must be greater than 0",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"8d\"\n",
                "maintenance \"w\": duration must be at most 7days",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nweekdays = \"monday\"\nstart = \"02:00\"\nduration = \"1h\"\n",
                "maintenance \"w\": weekdays: \"monday\" is not a day",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nweekdays = []\nstart = \"02:00\"\nduration = \"1h\"\n",
                "weekdays must not be empty",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nweekdays = [\"mon\", \"mon\"]\nstart = \"02:00\"\nduration = \"1h\"\n",
                "weekdays: \"mon\" is listed twice",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\ntimezone = \"Europe/Berln\"\n",
                "maintenance \"w\": timezone \"Europe/Berln\" is not an IANA time zone name",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\nproviders = [\"nope\"]\n",
                "maintenance \"w\": providers: no [[provider]] is named \"nope\"",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\nsessions = [\"sales\"]\n",
                "sessions: \"sales\" must be \"provider/session\"",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\nsessions = [\"nope/sales\"]\n",
                "no [[provider]] is named \"nope\"",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\nsessions = [\"waha-named/salse\"]\n",
                "provider \"waha-named\" does not watch a session \"salse\"",
            ),
            (
                "[[maintenance]]\nname = \"w\"\nstart = \"02:00\"\nduration = \"1h\"\nsessions = [\"waha-main/a\", \"waha-main/a\"]\n",
                "is listed twice",
            ),
        ];
        for (text, expected) in cases {
            let e = err(text);
            assert!(
                e.contains(expected),
                "{text}\nexpected {expected:?} in {e:?}"
            );
            assert!(e.starts_with("/etc/wa-watchdog/config.toml: "), "{e}");
        }
        let twice = err(&format!("{base}{base}"));
        assert!(
            twice.contains("maintenance \"w\": the name is used twice"),
            "{twice}"
        );
        // Unknown keys are parse errors with a position.
        let unknown = err("[[maintenance]]\nname = \"w\"\nstrat = \"02:00\"\n");
        assert!(unknown.contains("unknown field `strat`"), "{unknown}");
        // Discovered providers accept any session name.
        assert!(parse(&format!("{base}sessions = [\"waha-main/anything\"]\n")).is_ok());
    }
}

#[cfg(test)]
mod example {
    /// The commented-out example in config.example.toml is valid once
    /// uncommented (with the example's providers).
    #[test]
    fn the_example_window_in_config_example_toml_resolves() {
        let cfg = crate::config::example_support::resolve_with_example("# [[maintenance]]");
        assert_eq!(cfg.maintenance.len(), 1);
        assert_eq!(cfg.maintenance[0].name, "waha-upgrade");
        assert_eq!(cfg.maintenance[0].timezone, chrono_tz::Europe::Berlin);
    }
}
