//! `[[ring]]`: the raw schema of one round-trip ring, its validation into a
//! [`RingConfig`], and its rendering for `check-config`. Errors name the ring
//! and the key (`ring "office": members: "waha/a" is listed twice`).
//!
//! A ring is an ordered list of watched sessions (across providers allowed);
//! each member's canary goes to the next member's own number (the last to
//! the first), so every member proves it can send *and* receive. For its
//! members the ring canary replaces the self-canary: one message per member
//! per `interval`, not two.

use std::time::Duration;

use serde::Deserialize;

use super::{NONCE_PLACEHOLDER, ProviderConfig, SessionSelector};

/// Default `ring.interval`: ring canaries are real messages between real
/// numbers, so they are rarer than self-canaries.
pub const DEFAULT_RING_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Default `ring.deadline`: how long the receiver may take to see a ring
/// canary. Above Green-API's journal lag of up to 2 minutes (Green-API
/// docs: getMessage), so reading its incoming journal can still see it.
pub const DEFAULT_RING_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// Default `ring.text`.
pub const DEFAULT_RING_TEXT: &str = "wa-watchdog ring check {nonce}";

/// One resolved `[[ring]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Unique among rings; a metric label.
    pub name: String,
    /// In ring order: member *i* sends to member *i + 1*, the last to the
    /// first. At least two, each a watched session, none twice, none in
    /// another ring.
    pub members: Vec<RingMember>,
    /// Time between one member's ring canaries (each member sends one per
    /// interval, so the ring sends `members` messages per interval).
    pub interval: Duration,
    /// How long after the send the receiver must have seen the canary.
    pub deadline: Duration,
    /// Message text; `{nonce}` (required) is replaced by each canary's nonce.
    pub text: String,
}

/// One member: `provider/session`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingMember {
    pub provider: String,
    pub session: String,
}

impl std::fmt::Display for RingMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.session)
    }
}

impl RingConfig {
    /// The member after `index` (the one its canary goes to).
    pub fn next_of(&self, index: usize) -> &RingMember {
        &self.members[(index + 1) % self.members.len()]
    }

    /// The member before `index` (the one whose canary it receives).
    pub fn prev_of(&self, index: usize) -> &RingMember {
        &self.members[(index + self.members.len() - 1) % self.members.len()]
    }

    /// The position of `provider/session` in the ring.
    pub fn position(&self, provider: &str, session: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.provider == provider && m.session == session)
    }

    /// The canary text for one nonce.
    pub fn render_text(&self, nonce: &str) -> String {
        self.text.replace(NONCE_PLACEHOLDER, nonce)
    }

    /// Messages the ring sends per day (one per member per interval).
    pub fn messages_per_day(&self) -> u64 {
        let per_member = 86_400 / self.interval.as_secs().max(1);
        per_member * self.members.len() as u64
    }
}

/// One `[[ring]]` table as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRing {
    pub name: Option<String>,
    pub members: Option<Vec<String>>,
    #[serde(deserialize_with = "super::raw::duration")]
    pub interval: Option<Duration>,
    #[serde(deserialize_with = "super::raw::duration")]
    pub deadline: Option<Duration>,
    pub text: Option<String>,
}

/// Resolves every ring against the (already resolved) providers.
pub(super) fn resolve(
    raw: Vec<RawRing>,
    providers: &[ProviderConfig],
) -> Result<Vec<RingConfig>, String> {
    let mut out: Vec<RingConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let Some(name) = r.name.clone() else {
            return Err(format!("[[ring]] #{}: name is required", i + 1));
        };
        if !super::name::valid_name(&name) {
            return Err(format!(
                "[[ring]] #{}: name {name:?} must be 1 to 64 characters from A-Z a-z 0-9 _ . -",
                i + 1
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(format!("ring {name:?}: the name is used twice"));
        }
        let ring =
            ring(name.clone(), r, providers, &out).map_err(|e| format!("ring {name:?}: {e}"))?;
        out.push(ring);
    }
    Ok(out)
}

fn ring(
    name: String,
    r: RawRing,
    providers: &[ProviderConfig],
    earlier: &[RingConfig],
) -> Result<RingConfig, String> {
    let Some(list) = r.members else {
        return Err(
            "members is required: at least two sessions as \"provider/session\", in ring order"
                .to_string(),
        );
    };
    if list.len() < 2 {
        return Err(format!(
            "members must list at least two sessions (each one's canary goes to the next \
             member), got {}",
            list.len()
        ));
    }
    let mut members: Vec<RingMember> = Vec::with_capacity(list.len());
    for text in &list {
        let m = member(text, providers)?;
        if members.contains(&m) {
            return Err(format!("members: {text:?} is listed twice"));
        }
        if let Some(other) = earlier.iter().find(|o| o.members.contains(&m)) {
            return Err(format!(
                "members: {text:?} is already a member of ring {:?} (a session sends its \
                 ring canary to one next member only)",
                other.name
            ));
        }
        members.push(m);
    }
    let interval = r.interval.unwrap_or(DEFAULT_RING_INTERVAL);
    if interval.is_zero() {
        return Err("interval must be greater than 0".to_string());
    }
    if interval > super::MAX_DURATION {
        return Err(format!(
            "interval must be at most {}",
            humantime::format_duration(super::MAX_DURATION)
        ));
    }
    let deadline = r.deadline.unwrap_or(DEFAULT_RING_DEADLINE);
    if deadline.is_zero() {
        return Err("deadline must be greater than 0".to_string());
    }
    if deadline >= interval {
        return Err(format!(
            "deadline ({}) must be shorter than interval ({}): a member's next ring canary \
             must not be sent before the last one is judged",
            humantime::format_duration(deadline),
            humantime::format_duration(interval)
        ));
    }
    let text = r.text.unwrap_or_else(|| DEFAULT_RING_TEXT.to_string());
    if !text.contains(NONCE_PLACEHOLDER) {
        return Err(format!(
            "text must contain {NONCE_PLACEHOLDER}: the receiver is recognised by the nonce"
        ));
    }
    Ok(RingConfig {
        name,
        members,
        interval,
        deadline,
        text,
    })
}

/// `"provider/session"`, naming a configured provider and a session it
/// watches (listed, discovered with `["*"]`, or the Green-API instance) and
/// does not turn off.
fn member(text: &str, providers: &[ProviderConfig]) -> Result<RingMember, String> {
    let Some((provider, session)) = text.split_once('/') else {
        return Err(format!(
            "members: {text:?} must be \"provider/session\" (e.g. \"waha-main/sales\")"
        ));
    };
    if session.is_empty() || session.contains('/') {
        return Err(format!("members: {text:?} must be \"provider/session\""));
    }
    let Some(p) = providers.iter().find(|c| c.name == provider) else {
        return Err(format!(
            "members: {text:?}: no [[provider]] is named {provider:?}"
        ));
    };
    if let SessionSelector::Named(names) = &p.sessions
        && !names.iter().any(|n| n == session)
    {
        return Err(format!(
            "members: {text:?}: provider {provider:?} does not watch a session {session:?} \
             (its sessions: {})",
            names.join(", ")
        ));
    }
    if !p.is_enabled(session) {
        return Err(format!(
            "members: {text:?}: the session is turned off ([[provider.session]] enabled = \
             false), so it is not watched"
        ));
    }
    Ok(RingMember {
        provider: provider.to_string(),
        session: session.to_string(),
    })
}

/// The `check-config` form of the rings, valid TOML.
pub(super) fn render(rings: &[RingConfig], quote: fn(&str) -> String) -> String {
    let mut out = String::new();
    if rings.is_empty() {
        out.push_str("\n# [[ring]]: none (canaries go to each session's own chat)\n");
    }
    for r in rings {
        let members: Vec<String> = r.members.iter().map(|m| quote(&m.to_string())).collect();
        out.push_str("\n[[ring]]\n");
        out.push_str(&format!("name = {}\n", quote(&r.name)));
        out.push_str(&format!("members = [{}]\n", members.join(", ")));
        out.push_str(&format!(
            "interval = {}\n",
            quote(&humantime::format_duration(r.interval).to_string())
        ));
        out.push_str(&format!(
            "deadline = {}\n",
            quote(&humantime::format_duration(r.deadline).to_string())
        ));
        out.push_str(&format!("text = {}\n", quote(&r.text)));
        out.push_str(&format!(
            "# {} ring canaries a day; they replace the members' self-canaries\n",
            r.messages_per_day()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const PROVIDERS: &str = r#"
[[provider]]
name = "waha"
kind = "waha"
url = "http://127.0.0.1:3000"
sessions = ["a", "b", "off"]

[[provider.session]]
name = "off"
enabled = false

[[provider]]
name = "all"
kind = "waha"
url = "http://127.0.0.1:3001"

[[provider]]
name = "green"
kind = "green-api"
url = "http://127.0.0.1:3002"
id_instance = "1101000001"
api_token_env = "T"
"#;

    fn parse(rings: &str) -> Result<Config, String> {
        let text = format!("{PROVIDERS}\n{rings}");
        let env = |n: &str| (n == "T").then(|| "x".to_string());
        Config::from_toml_str(&text, "/etc/wa-watchdog/config.toml", &env)
            .map_err(|e| e.to_string())
    }

    fn err(rings: &str) -> String {
        match parse(rings) {
            Ok(_) => panic!("expected an error for {rings}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_ring_resolves_with_defaults_and_renders() {
        let cfg = parse(
            "[[ring]]\nname = \"office\"\nmembers = [\"waha/a\", \"all/x\", \"green/1101000001\"]\n",
        )
        .expect("valid");
        let r = &cfg.rings[0];
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.interval, super::DEFAULT_RING_INTERVAL);
        assert_eq!(r.deadline, super::DEFAULT_RING_DEADLINE);
        assert_eq!(r.next_of(2).to_string(), "waha/a");
        assert_eq!(r.prev_of(0).to_string(), "green/1101000001");
        assert_eq!(r.position("all", "x"), Some(1));
        // 96 per member per day at 15 minutes.
        assert_eq!(r.messages_per_day(), 288);
        assert!(r.render_text("abc").contains("abc"));
        let rendered = crate::config::render_redacted(&cfg);
        assert!(
            rendered.contains(
                "[[ring]]\nname = \"office\"\nmembers = [\"waha/a\", \"all/x\", \"green/1101000001\"]\ninterval = \"15m\"\ndeadline = \"5m\""
            ),
            "{rendered}"
        );
        assert!(rendered.contains("# 288 ring canaries a day"), "{rendered}");
        let env = |n: &str| (n == "T").then(|| "x".to_string());
        let back = Config::from_toml_str(&rendered, "/etc/wa-watchdog/config.toml", &env)
            .map(|c| c.rings)
            .map_err(|e| e.to_string());
        // The rendered Green-API token is a marker, read back as inline text.
        assert_eq!(back, Ok(cfg.rings.clone()), "{rendered}");
    }

    #[test]
    fn errors_name_the_ring_and_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[ring]]\nmembers = [\"waha/a\", \"waha/b\"]\n",
                "[[ring]] #1: name is required",
            ),
            (
                "[[ring]]\nname = \"r\"\n",
                "ring \"r\": members is required",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\"]\n",
                "ring \"r\": members must list at least two sessions (each one's canary goes to the next member), got 1",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/a\"]\n",
                "ring \"r\": members: \"waha/a\" is listed twice",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"nope/b\"]\n",
                "ring \"r\": members: \"nope/b\": no [[provider]] is named \"nope\"",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/zz\"]\n",
                "ring \"r\": members: \"waha/zz\": provider \"waha\" does not watch a session \"zz\"",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"green/42\"]\n",
                "provider \"green\" does not watch a session \"42\"",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/off\"]\n",
                "ring \"r\": members: \"waha/off\": the session is turned off",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"b\"]\n",
                "ring \"r\": members: \"b\" must be \"provider/session\"",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/b\"]\ninterval = \"0s\"\n",
                "ring \"r\": interval must be greater than 0",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/b\"]\ninterval = \"5m\"\ndeadline = \"5m\"\n",
                "ring \"r\": deadline (5m) must be shorter than interval (5m)",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/b\"]\ntext = \"hello\"\n",
                "ring \"r\": text must contain {nonce}",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/b\"]\n[[ring]]\nname = \"s\"\nmembers = [\"waha/b\", \"all/c\"]\n",
                "ring \"s\": members: \"waha/b\" is already a member of ring \"r\"",
            ),
            (
                "[[ring]]\nname = \"r\"\nmembers = [\"waha/a\", \"waha/b\"]\n[[ring]]\nname = \"r\"\nmembers = [\"all/c\", \"all/d\"]\n",
                "ring \"r\": the name is used twice",
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
        let unknown = err("[[ring]]\nname = \"r\"\nmember = [\"waha/a\"]\n");
        assert!(unknown.contains("unknown field `member`"), "{unknown}");
    }
}

#[cfg(test)]
mod example {
    /// The commented-out example in config.example.toml is valid once
    /// uncommented (with the example's providers).
    #[test]
    fn the_example_ring_in_config_example_toml_resolves() {
        let cfg = crate::config::example_support::resolve_with_example("# [[ring]]");
        assert_eq!(cfg.rings.len(), 1);
        assert_eq!(cfg.rings[0].name, "office");
        assert_eq!(cfg.rings[0].members.len(), 3);
        assert_eq!(cfg.rings[0].messages_per_day(), 288);
    }
}
