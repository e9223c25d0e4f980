//! Unit tests of the config module: defaults, merging, every validation rule,
//! secret resolution, redaction, and the fixtures under tests/fixtures/config/.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The secret value used to prove redaction: it must never show up in output.
const SEKRET: &str = "sekret-XYZ-123";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// An environment lookup backed by a map, so tests never touch the process env.
fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

const WAHA: &str = r#"
[[provider]]
name = "waha-main"
kind = "waha"
url = "http://127.0.0.1:3000"
"#;

const GREEN: &str = r#"
[[provider]]
name = "green-1"
kind = "green-api"
url = "https://api.green-api.com"
id_instance = "1101000001"
api_token_env = "GREEN_API_TOKEN"
"#;

fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "/etc/wa-watchdog/config.toml", env)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &env_of(&[("GREEN_API_TOKEN", "tok")]))
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_every_default() {
    let cfg = parse_ok(WAHA);
    assert_eq!(cfg.daemon, DaemonConfig::default());
    assert_eq!(
        cfg.daemon.database,
        Database::Sqlite(PathBuf::from("/var/lib/wa-watchdog/wa-watchdog.db"))
    );
    assert_eq!(cfg.daemon.listen.to_string(), "127.0.0.1:9797");
    assert_eq!(cfg.daemon.log_format, LogFormat::Text);
    assert_eq!(cfg.daemon.discovery_interval, secs(60));
    assert_eq!(cfg.daemon.retention, secs(30 * 86400));
    assert_eq!(cfg.daemon.shutdown_grace, secs(10));
    assert!(cfg.daemon.session_metrics);
    assert!(cfg.daemon.admin_token.is_none());
    assert!(cfg.alertmanager.is_none());
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    let p = &cfg.providers[0];
    assert_eq!(p.name, "waha-main");
    assert_eq!(p.kind, ProviderKind::Waha);
    assert_eq!(p.url, "http://127.0.0.1:3000");
    assert!(p.api_key.is_none());
    assert_eq!(p.sessions, SessionSelector::All);
    assert!(p.session_overrides.is_empty());
    assert_eq!(p.max_concurrent_probes, 4);
    assert_eq!(p.connect_timeout, secs(5));
    assert!(!p.reboot_on_yellow_card);

    let c = &p.canary;
    assert_eq!(c, &CanaryConfig::default());
    assert_eq!(c.interval, secs(300));
    assert_eq!(c.jitter, 0.1);
    assert_eq!(c.timeout, secs(20));
    assert_eq!(c.ack_timeout, secs(120));
    assert_eq!(c.text, "wa-watchdog canary {nonce}");
    assert_eq!(c.chat, ChatTarget::SelfChat);
    assert_eq!(p.policy, PolicyConfig::default());
}

#[test]
fn example_file_parses_to_the_documented_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).expect("config.example.toml is readable");
    let env = env_of(&[
        ("WA_WATCHDOG_ADMIN_TOKEN", "admin-tok-0123456789abcdef"),
        ("WAHA_API_KEY", "waha-key"),
        ("GREEN_API_TOKEN", "green-tok"),
    ]);
    let cfg = match Config::from_toml_str(&text, &path, &env) {
        Ok(c) => c,
        Err(e) => panic!("config.example.toml: {e}"),
    };
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    let mut daemon = cfg.daemon.clone();
    let token = daemon.admin_token.take().expect("admin token");
    assert_eq!(token.expose(), "admin-tok-0123456789abcdef");
    assert_eq!(
        token.source(),
        &SecretSource::Env("WA_WATCHDOG_ADMIN_TOKEN".into())
    );
    assert_eq!(daemon, DaemonConfig::default());
    assert!(cfg.alertmanager.is_none());

    assert_eq!(cfg.providers.len(), 2);
    for p in &cfg.providers {
        let mut canary = CanaryConfig::default();
        if p.kind == ProviderKind::GreenApi {
            canary.ack_timeout = secs(180);
        }
        assert_eq!(p.canary, canary, "{}", p.name);
        assert_eq!(p.policy, PolicyConfig::default(), "{}", p.name);
        assert_eq!(p.max_concurrent_probes, DEFAULT_MAX_CONCURRENT_PROBES);
        assert_eq!(p.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert!(!p.reboot_on_yellow_card);
    }
    let waha = &cfg.providers[0];
    assert_eq!(
        (waha.name.as_str(), waha.kind, waha.url.as_str()),
        ("waha-main", ProviderKind::Waha, "http://127.0.0.1:3000")
    );
    assert_eq!(waha.api_key.as_ref().map(Secret::expose), Some("waha-key"));
    assert_eq!(waha.sessions, SessionSelector::All);
    assert_eq!(
        waha.session_overrides,
        vec![SessionOverride {
            name: "sales".into(),
            chat: Some(ChatTarget::Id("5511999990001@c.us".into())),
            interval: Some(secs(60)),
            enabled: true,
        }]
    );
    let green = &cfg.providers[1];
    assert_eq!(green.kind, ProviderKind::GreenApi);
    assert_eq!(green.id_instance.as_deref(), Some("1101000001"));
    assert_eq!(
        green.api_token.as_ref().map(Secret::expose),
        Some("green-tok")
    );
    assert_eq!(
        green.sessions,
        SessionSelector::Named(vec!["1101000001".into()])
    );
}

/// Every key of the schema appears in config.example.toml, live or in a
/// comment, so a key added to the schema without documentation fails here.
#[test]
fn example_file_documents_every_key() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .expect("config.example.toml is readable");
    let keys = [
        "database",
        "listen",
        "log_format",
        "discovery_interval",
        "retire_after_rounds",
        "retire_after",
        "retention",
        "database_url_env",
        "database_url_file",
        "replica",
        "lease_ttl",
        "admin_token_env",
        "admin_token_file",
        "admin_token",
        "shutdown_grace",
        "session_metrics",
        "worker_threads",
        "interval",
        "jitter",
        "timeout",
        "ack_timeout",
        "confirm",
        "text",
        "chat",
        "desync_signatures",
        "desync_confirmations",
        "send_failure_confirmations",
        "confirm_interval",
        "restart_timeout",
        "restart_poll_interval",
        "restart_call_timeout",
        "starting_grace",
        "restart_stopped",
        "max_restarts",
        "restart_window",
        "backoff_initial",
        "backoff_max",
        "healthy_reset",
        "max_concurrent_restarts",
        "restart_budget",
        "restart_budget_window",
        "outage_fraction",
        "outage_min_sessions",
        "dry_run",
        "name",
        "kind",
        "url",
        "api_key_env",
        "api_key_file",
        "api_key",
        "id_instance",
        "api_token_env",
        "api_token_file",
        "api_token",
        "sessions",
        "max_concurrent_probes",
        "connect_timeout",
        "reboot_on_yellow_card",
        "min_request_interval",
        "enabled",
        "resend_interval",
    ];
    for key in keys {
        assert!(
            text.contains(&format!("{key} =")),
            "config.example.toml does not document `{key}`"
        );
    }
    for table in [
        "[daemon]",
        "[canary]",
        "[policy]",
        "[[provider]]",
        "[provider.canary]",
        "[provider.policy]",
        "[[provider.session]]",
        "[alertmanager]",
        "[[maintenance]]",
    ] {
        assert!(
            text.contains(table),
            "config.example.toml does not mention {table}"
        );
    }
}

#[test]
fn provider_tables_override_and_inherit_the_globals() {
    let text = format!(
        r#"
[canary]
interval = "10m"
text = "ping {{nonce}}"

[policy]
max_restarts = 5
dry_run = true
desync_signatures = ["a", "b"]
{WAHA}
[provider.canary]
jitter = 0.25
interval = "2m"

[provider.policy]
max_restarts = 7
backoff_max = "1h"
{GREEN}"#
    );
    let cfg = parse_ok(&text);
    let (waha, green) = (&cfg.providers[0], &cfg.providers[1]);

    // The provider's own value wins...
    assert_eq!(waha.canary.interval, secs(120));
    assert_eq!(waha.canary.jitter, 0.25);
    assert_eq!(waha.policy.max_restarts, 7);
    assert_eq!(waha.policy.backoff_max, secs(3600));
    // ...the global value is inherited where the provider is silent...
    assert_eq!(waha.canary.text, "ping {nonce}");
    assert!(waha.policy.dry_run);
    assert_eq!(waha.policy.desync_signatures, vec!["a", "b"]);
    // ...and the built-in default where both are.
    assert_eq!(waha.canary.timeout, secs(20));
    assert_eq!(waha.policy.restart_budget, 10);

    // The other provider sees only the globals.
    assert_eq!(green.canary.interval, secs(600));
    assert_eq!(green.canary.jitter, 0.1);
    assert_eq!(green.policy.max_restarts, 5);
    assert_eq!(green.policy.backoff_max, secs(900));
    assert!(green.policy.dry_run);
}

#[test]
fn session_helpers_apply_overrides() {
    let text = format!(
        r#"{WAHA}sessions = ["default", "sales", "ops"]
[provider.canary]
interval = "7m"
chat = "120363000000000000@g.us"
[[provider.session]]
name = "sales"
chat = "5511999990001@c.us"
interval = "1m"
[[provider.session]]
name = "ops"
enabled = false
"#
    );
    let cfg = parse_ok(&text);
    let p = &cfg.providers[0];
    let group = ChatTarget::Id("120363000000000000@g.us".into());

    assert_eq!(p.interval_for("sales"), secs(60));
    assert_eq!(
        p.chat_for("sales"),
        ChatTarget::Id("5511999990001@c.us".into())
    );
    assert!(p.is_enabled("sales"));

    assert_eq!(p.interval_for("ops"), secs(420));
    assert_eq!(p.chat_for("ops"), group);
    assert!(!p.is_enabled("ops"));

    assert!(p.session_override("default").is_none());
    assert_eq!(p.interval_for("default"), secs(420));
    assert_eq!(p.chat_for("default"), group);
    assert!(p.is_enabled("default"));
    // Not in the list: not watched.
    assert!(!p.is_enabled("other"));

    assert_eq!(p.canary.render_text("n-1"), "wa-watchdog canary n-1");
}

#[test]
fn green_api_session_is_named_after_the_instance() {
    let text = format!("{GREEN}[[provider.session]]\nname = \"1101000001\"\ninterval = \"30m\"\n");
    let cfg = parse_ok(&text);
    let p = &cfg.providers[0];
    assert!(p.is_enabled("1101000001"));
    assert!(!p.is_enabled("default"));
    assert_eq!(p.interval_for("1101000001"), secs(1800));
}

#[test]
fn id_instance_may_be_an_integer() {
    let text = GREEN.replace("\"1101000001\"", "1101000001");
    let cfg = parse_ok(&text);
    assert_eq!(cfg.providers[0].id_instance.as_deref(), Some("1101000001"));
}

#[test]
fn urls_are_normalised() {
    let cases = [
        ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        (
            "https://waha.example.com/proxy/waha/",
            "https://waha.example.com/proxy/waha",
        ),
        ("HTTP://LOCALHOST:80/", "http://localhost"),
    ];
    for (given, want) in cases {
        let text = WAHA.replace("http://127.0.0.1:3000", given);
        assert_eq!(parse_ok(&text).providers[0].url, want, "{given}");
    }
}

#[test]
fn relative_database_is_resolved_against_the_config_directory() {
    let text = format!("[daemon]\ndatabase = \"state/w.db\"\n{WAHA}");
    let cfg = parse_ok(&text);
    assert_eq!(
        cfg.daemon.database,
        Database::Sqlite(PathBuf::from("/etc/wa-watchdog/state/w.db"))
    );
    let text = format!("[daemon]\ndatabase = \"/srv/w.db\"\n{WAHA}");
    assert_eq!(
        parse_ok(&text).daemon.database,
        Database::Sqlite(PathBuf::from("/srv/w.db"))
    );
    for given in ["sqlite:state/w.db", "sqlite://state/w.db"] {
        let text = format!("[daemon]\ndatabase = \"{given}\"\n{WAHA}");
        assert_eq!(
            parse_ok(&text).daemon.database,
            Database::Sqlite(PathBuf::from("/etc/wa-watchdog/state/w.db")),
            "{given}"
        );
    }
}

#[test]
fn a_postgres_database_is_a_secret_from_env_file_or_inline() {
    const URL: &str = "postgres://watch:pg-password-4711@db.example:5432/fleet";
    let env = env_of(&[("WA_DB", URL)]);
    let cfg = parse_with(
        &format!("[daemon]\ndatabase_url_env = \"WA_DB\"\n{WAHA}"),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let Database::Postgres(url) = &cfg.daemon.database else {
        panic!("{:?}", cfg.daemon.database);
    };
    assert_eq!(url.expose(), URL);
    assert_eq!(url.source(), &SecretSource::Env("WA_DB".into()));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // Never in Debug, Display or check-config output.
    for shown in [
        format!("{cfg:?}"),
        cfg.daemon.database.to_string(),
        render_redacted(&cfg),
    ] {
        assert!(!shown.contains("pg-password-4711"), "{shown}");
    }
    assert_eq!(cfg.daemon.database.to_string(), "PostgreSQL (env WA_DB)");

    // Inline without a password: fine; with one: a warning.
    let cfg = parse_ok(&format!(
        "[daemon]\ndatabase = \"postgres:///fleet?host=/run/postgresql\"\n{WAHA}"
    ));
    assert!(matches!(cfg.daemon.database, Database::Postgres(_)));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let cfg = parse_ok(&format!("[daemon]\ndatabase = \"{URL}\"\n{WAHA}"));
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("daemon.database carries a password")),
        "{:?}",
        cfg.warnings
    );
    assert!(!format!("{cfg:?}").contains("pg-password-4711"));
}

#[test]
fn database_mistakes_are_named_without_the_url() {
    let env = env_of(&[("WA_DB", "mysql://u:pg-password-4711@h/db")]);
    let err = parse_with(
        &format!("[daemon]\ndatabase_url_env = \"WA_DB\"\n{WAHA}"),
        &env,
    )
    .expect_err("not postgres")
    .to_string();
    assert!(
        err.contains("daemon.database_url (env WA_DB) must be a postgres://"),
        "{err}"
    );
    assert!(!err.contains("pg-password-4711"), "{err}");

    let env = env_of(&[("WA_DB", "postgres://h/db")]);
    let err = parse_with(
        &format!("[daemon]\ndatabase = \"w.db\"\ndatabase_url_env = \"WA_DB\"\n{WAHA}"),
        &env,
    )
    .expect_err("both")
    .to_string();
    assert!(err.contains("give the database one way only"), "{err}");

    let err = parse_err(&format!(
        "[daemon]\ndatabase = \"mysql://u:pg-password-4711@h/db\"\n{WAHA}"
    ));
    assert!(err.contains("unknown scheme \"mysql\""), "{err}");
    assert!(!err.contains("pg-password-4711"), "{err}");
    let err = parse_err(&format!("[daemon]\ndatabase = \"sqlite:\"\n{WAHA}"));
    assert!(err.contains("daemon.database must not be empty"), "{err}");
}

/// Semantic errors: the message starts with the file path and names the key.
#[test]
fn validation_errors_name_the_key() {
    let p = "/etc/wa-watchdog/config.toml: ";
    let w = "provider \"waha-main\": ";
    let cases: Vec<(&str, String, String)> = vec![
        ("no provider", "[daemon]\n".into(), format!("{p}at least one [[provider]] is required")),
        ("jitter", format!("[canary]\njitter = 0.9\n{WAHA}"), format!("{p}canary.jitter must be between 0 and 0.5, got 0.9")),
        ("negative jitter", format!("[canary]\njitter = -0.1\n{WAHA}"), "canary.jitter must be between 0 and 0.5, got -0.1".into()),
        ("nan jitter", format!("[canary]\njitter = nan\n{WAHA}"), "canary.jitter must be between 0 and 0.5, got NaN".into()),
        ("provider jitter", format!("{WAHA}[provider.canary]\njitter = 0.6\n"), format!("{p}{w}canary.jitter must be between 0 and 0.5")),
        ("canary interval", format!("[canary]\ninterval = \"0s\"\n{WAHA}"), "canary.interval must be greater than 0".into()),
        ("canary timeout", format!("{WAHA}[provider.canary]\ntimeout = \"0s\"\n"), format!("{w}canary.timeout must be greater than 0")),
        ("ack timeout", format!("[canary]\nack_timeout = \"0s\"\n{WAHA}"), "canary.ack_timeout must be greater than 0".into()),
        ("empty text", format!("[canary]\ntext = \" \"\n{WAHA}"), "canary.text must not be empty".into()),
        ("bad chat", format!("[canary]\nchat = \"me\"\n{WAHA}"), "canary.chat must be \"self\" or a chat id".into()),
        ("chat with space", format!("[canary]\nchat = \"55 11@c.us\"\n{WAHA}"), "canary.chat must be".into()),
        ("huge duration", format!("[canary]\ninterval = \"20years\"\n{WAHA}"), "canary.interval must be at most".into()),
        ("max_restarts", format!("{WAHA}[provider.policy]\nmax_restarts = 0\n"), format!("{p}{w}policy.max_restarts must be at least 1, got 0")),
        ("desync confirmations", format!("[policy]\ndesync_confirmations = 0\n{WAHA}"), "policy.desync_confirmations must be at least 1".into()),
        ("send confirmations", format!("[policy]\nsend_failure_confirmations = 0\n{WAHA}"), "policy.send_failure_confirmations must be at least 1".into()),
        ("empty signature", format!("[policy]\ndesync_signatures = [\"\"]\n{WAHA}"), "policy.desync_signatures must not contain an empty string".into()),
        ("confirm interval", format!("[policy]\nconfirm_interval = \"0s\"\n{WAHA}"), "policy.confirm_interval must be greater than 0".into()),
        ("restart timeout", format!("[policy]\nrestart_timeout = \"0s\"\n{WAHA}"), "policy.restart_timeout must be greater than 0".into()),
        ("poll interval", format!("[policy]\nrestart_poll_interval = \"0s\"\n{WAHA}"), "policy.restart_poll_interval must be greater than 0".into()),
        ("poll above timeout", format!("[policy]\nrestart_poll_interval = \"5m\"\n{WAHA}"), "policy.restart_poll_interval (5m) must not be greater than policy.restart_timeout (2m)".into()),
        ("starting grace", format!("[policy]\nstarting_grace = \"0s\"\n{WAHA}"), "policy.starting_grace must be greater than 0".into()),
        ("restart window", format!("[policy]\nrestart_window = \"0s\"\n{WAHA}"), "policy.restart_window must be greater than 0".into()),
        ("backoff initial", format!("[policy]\nbackoff_initial = \"0s\"\n{WAHA}"), "policy.backoff_initial must be greater than 0".into()),
        ("backoff order", format!("{WAHA}[provider.policy]\nbackoff_initial = \"20m\"\n"), format!("{w}policy.backoff_initial (20m) must not be greater than policy.backoff_max (15m)")),
        ("healthy reset", format!("[policy]\nhealthy_reset = \"0s\"\n{WAHA}"), "policy.healthy_reset must be greater than 0".into()),
        ("concurrent restarts", format!("[policy]\nmax_concurrent_restarts = 0\n{WAHA}"), "policy.max_concurrent_restarts must be at least 1".into()),
        ("budget", format!("[policy]\nrestart_budget = 0\n{WAHA}"), "policy.restart_budget must be at least 1".into()),
        ("budget window", format!("[policy]\nrestart_budget_window = \"0s\"\n{WAHA}"), "policy.restart_budget_window must be greater than 0".into()),
        ("outage zero", format!("[policy]\noutage_fraction = 0.0\n{WAHA}"), "policy.outage_fraction must be greater than 0 and at most 1, got 0".into()),
        ("outage above one", format!("[policy]\noutage_fraction = 1.5\n{WAHA}"), "policy.outage_fraction must be greater than 0 and at most 1, got 1.5".into()),
        ("outage min", format!("[policy]\noutage_min_sessions = 0\n{WAHA}"), "policy.outage_min_sessions must be at least 1".into()),
        ("discovery", format!("[daemon]\ndiscovery_interval = \"0s\"\n{WAHA}"), "daemon.discovery_interval must be greater than 0".into()),
        ("retention", format!("[daemon]\nretention = \"0s\"\n{WAHA}"), "daemon.retention must be greater than 0".into()),
        ("database", format!("[daemon]\ndatabase = \"\"\n{WAHA}"), "daemon.database must not be empty".into()),
        ("duplicate provider", format!("{WAHA}{WAHA}"), format!("{p}duplicate provider name \"waha-main\" ([[provider]] #1 and #2)")),
        ("missing name", "[[provider]]\nkind = \"waha\"\nurl = \"http://h\"\n".into(), "[[provider]] #1: name is required".into()),
        ("bad name", WAHA.replace("waha-main", "waha/main"), "[[provider]] #1: name \"waha/main\" must be 1 to 64 characters".into()),
        ("dot name", WAHA.replace("waha-main", ".."), "name \"..\" must be".into()),
        ("long name", WAHA.replace("waha-main", &"x".repeat(65)), "must be 1 to 64 characters".into()),
        ("missing kind", "[[provider]]\nname = \"w\"\nurl = \"http://h\"\n".into(), "provider \"w\": kind is required (\"waha\" or \"green-api\")".into()),
        ("missing url", "[[provider]]\nname = \"w\"\nkind = \"waha\"\n".into(), "provider \"w\": url is required".into()),
        ("url scheme", WAHA.replace("http://", "ftp://"), format!("{w}url must start with http:// or https:// (scheme \"ftp\" is not supported)")),
        ("url garbage", WAHA.replace("http://127.0.0.1:3000", "127.0.0.1:3000"), format!("{w}url is not a valid URL")),
        ("url credentials", WAHA.replace("http://", "http://admin:pw@"), format!("{w}url must not contain a user name or password")),
        ("url query", WAHA.replace(":3000", ":3000/?x=1"), format!("{w}url must not have a query")),
        ("green no id", GREEN.replace("id_instance = \"1101000001\"\n", ""), "provider \"green-1\": id_instance is required for kind \"green-api\"".into()),
        ("green bad id", GREEN.replace("1101000001", "11010x"), "provider \"green-1\": id_instance must be 1 to 20 digits, got \"11010x\"".into()),
        ("green negative id", GREEN.replace("\"1101000001\"", "-5"), "id_instance must be 1 to 20 digits, got \"-5\"".into()),
        ("green no token", GREEN.replace("api_token_env = \"GREEN_API_TOKEN\"\n", ""), "provider \"green-1\": api_token is required for kind \"green-api\"".into()),
        ("green api key", format!("{GREEN}api_key_env = \"K\"\n"), "provider \"green-1\": api_key_env is not allowed for kind \"green-api\" (it is a waha key)".into()),
        ("green sessions", format!("{GREEN}sessions = [\"*\"]\n"), "provider \"green-1\": sessions is not allowed for kind \"green-api\"".into()),
        ("green method url", GREEN.replace("green-api.com\"", "green-api.com/waInstance1101000001/sendMessage/abc\""), "provider \"green-1\": url must be the instance's apiUrl".into()),
        ("green foreign session", format!("{GREEN}[[provider.session]]\nname = \"default\"\n"), "provider \"green-1\": session \"default\": a green-api provider has one session, named after id_instance (\"1101000001\")".into()),
        ("waha id_instance", format!("{WAHA}id_instance = \"1\"\n"), format!("{w}id_instance is not allowed for kind \"waha\" (it is a green-api key)")),
        ("waha token", format!("{WAHA}api_token = \"t\"\n"), format!("{w}api_token is not allowed for kind \"waha\"")),
        ("waha yellow card", format!("{WAHA}reboot_on_yellow_card = true\n"), format!("{w}reboot_on_yellow_card is not allowed for kind \"waha\"")),
        ("sessions mixed", format!("{WAHA}sessions = [\"*\", \"a\"]\n"), format!("{w}sessions: \"*\" cannot be mixed with session names")),
        ("sessions empty", format!("{WAHA}sessions = []\n"), format!("{w}sessions must not be empty")),
        ("sessions twice", format!("{WAHA}sessions = [\"a\", \"a\"]\n"), format!("{w}sessions: \"a\" is listed twice")),
        ("sessions bad name", format!("{WAHA}sessions = [\"a b\"]\n"), format!("{w}sessions: \"a b\" is not a valid session name")),
        ("override no name", format!("{WAHA}[[provider.session]]\nenabled = false\n"), format!("{w}[[provider.session]] #1: name is required")),
        ("override twice", format!("{WAHA}[[provider.session]]\nname = \"s\"\n[[provider.session]]\nname = \"s\"\n"), format!("{w}session \"s\": [[provider.session]] is given twice")),
        ("override unlisted", format!("{WAHA}sessions = [\"a\"]\n[[provider.session]]\nname = \"b\"\n"), format!("{w}session \"b\": not listed in sessions")),
        ("override chat", format!("{WAHA}[[provider.session]]\nname = \"s\"\nchat = \"nobody\"\n"), format!("{w}session \"s\": chat must be \"self\" or a chat id")),
        ("override interval", format!("{WAHA}[[provider.session]]\nname = \"s\"\ninterval = \"0s\"\n"), format!("{w}session \"s\": interval must be greater than 0")),
        ("probes zero", format!("{WAHA}max_concurrent_probes = 0\n"), format!("{w}max_concurrent_probes must be between 1 and 1024, got 0")),
        ("probes huge", format!("{WAHA}max_concurrent_probes = 100000\n"), format!("{w}max_concurrent_probes must be between 1 and 1024, got 100000")),
        ("connect timeout", format!("{WAHA}connect_timeout = \"0s\"\n"), format!("{w}connect_timeout must be greater than 0")),
        ("alertmanager url", format!("{WAHA}[alertmanager]\n"), format!("{p}alertmanager.url is required")),
        ("alertmanager scheme", format!("{WAHA}[alertmanager]\nurl = \"udp://h:9093\"\n"), "alertmanager.url must start with http:// or https://".into()),
        ("alertmanager resend", format!("{WAHA}[alertmanager]\nurl = \"http://h:9093\"\nresend_interval = \"0s\"\n"), "alertmanager.resend_interval must be greater than 0".into()),
    ];
    for (name, text, want) in cases {
        let err = parse_err(&text);
        assert!(err.starts_with(p), "{name}: {err}");
        assert!(err.contains(&want), "{name}: expected {want:?} in {err:?}");
        assert!(!err.ends_with('.'), "{name}: trailing period: {err}");
    }
}

/// Syntax and schema errors carry file:line:column.
#[test]
fn parse_errors_have_line_and_column() {
    let cases = [
        (
            "unknown key",
            "[canary]\nintervall = \"5m\"\n",
            ":2:1: unknown field `intervall`, expected one of `interval`",
        ),
        (
            "unknown top-level table",
            "[deamon]\n",
            ":1:2: unknown field `deamon`",
        ),
        (
            "unknown provider key",
            "[[provider]]\nname = \"w\"\nurl2 = \"x\"\n",
            ":3:1: unknown field `url2`",
        ),
        (
            "unknown provider policy key",
            "[[provider]]\n[provider.policy]\n  max_restart = 1\n",
            ":3:3: unknown field `max_restart`",
        ),
        (
            "unknown session key",
            "[[provider]]\n[[provider.session]]\nname = \"s\"\nchats = \"self\"\n",
            ":4:1: unknown field `chats`",
        ),
        (
            "unknown maintenance key",
            "[[maintenance]]\nname = \"w\"\nstrt = \"02:00\"\n",
            ":3:1: unknown field `strt`",
        ),
        (
            "bad kind",
            "[[provider]]\nkind = \"wahha\"\n",
            ":2:8: unknown variant `wahha`, expected `waha` or `green-api`",
        ),
        (
            "bad log format",
            "[daemon]\nlog_format = \"xml\"\n",
            ":2:14: unknown variant `xml`",
        ),
        (
            "bad listen",
            "[daemon]\nlisten = \"localhost:9797\"\n",
            ":2:10: invalid socket address syntax",
        ),
        (
            "bad duration",
            "[policy]\nconfirm_interval = \"15 sec onds\"\n",
            ":2:20: ",
        ),
        (
            "integer duration",
            "[canary]\ninterval = 300\n",
            ":2:12: invalid type: integer `300`",
        ),
        ("negative count", "[policy]\nmax_restarts = -1\n", ":2:16: "),
        ("syntax", "[daemon]\nlisten = \"127.0.0.1:9797\n", ":2:"),
        (
            "multibyte column",
            "[canary]\ntext = \"é\"\ntimeout = \"x\"\n",
            ":3:11: ",
        ),
        (
            "column after multibyte",
            "[canary]\ntext = \"é\"; interval = 1\n",
            ":2:11: ",
        ),
    ];
    for (name, text, want) in cases {
        let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        let want = format!("/etc/wa-watchdog/config.toml{want}");
        assert!(
            err.starts_with(&want),
            "{name}: expected {want:?}, got {err:?}"
        );
    }
}

/// Type, overflow, duplicate-key and address errors name the key too.
#[test]
fn parse_errors_name_the_key() {
    let provider = "[[provider]]\nname = \"w\"\nkind = \"waha\"\nurl = \"http://127.0.0.1:3000\"\n";
    let cases = [
        (
            "wrong type".to_string(),
            "[policy]\nmax_restarts = \"three\"\n".to_string(),
            "expected u32, in key policy.max_restarts",
        ),
        (
            "overflow".into(),
            "[policy]\nmax_restarts = 99999999999999999999\n".into(),
            ", in key policy.max_restarts",
        ),
        (
            "duplicate".into(),
            "[policy]\nmax_restarts = 3\nmax_restarts = 4\n".into(),
            "duplicate key, in key policy.max_restarts",
        ),
        (
            "listen".into(),
            "[daemon]\nlisten = \"localhost:9797\"\n".into(),
            "invalid socket address syntax, in key daemon.listen",
        ),
        (
            "integer duration".into(),
            "[daemon]\nretention = 5\n".into(),
            ", in key daemon.retention",
        ),
        (
            "second provider's policy".into(),
            format!("{provider}{provider}[provider.policy]\nmax_restarts = -1\n"),
            ", in key provider.policy.max_restarts of [[provider]] #2",
        ),
        (
            "multi-line value".into(),
            format!("{provider}sessions = [\n  \"a\",\n  7,\n]\n"),
            ", in key provider.sessions of [[provider]] #1",
        ),
    ];
    for (name, text, want) in cases {
        let err = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{name}: expected {want:?} in {err:?}");
    }
}

#[test]
fn location_counts_lines_and_characters() {
    let text = "ab\nçd\n\nx";
    assert_eq!(location(text, 0), Location { line: 1, column: 1 });
    assert_eq!(location(text, 3), Location { line: 2, column: 1 });
    // 'ç' is two bytes, one column.
    assert_eq!(location(text, 5), Location { line: 2, column: 2 });
    // Inside 'ç': clamped back to its start.
    assert_eq!(location(text, 4), Location { line: 2, column: 1 });
    assert_eq!(location(text, 8), Location { line: 4, column: 1 });
    assert_eq!(location(text, 999), Location { line: 4, column: 2 });
}

#[test]
fn missing_file_names_the_path() {
    let path = fixtures().join("does-not-exist.toml");
    let err = Config::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!("{}: cannot read config file: ", path.display())),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");
}

// ---- secrets ----

fn waha_with(keys: &str) -> String {
    format!("{WAHA}{keys}\n")
}

fn api_key(cfg: &Config) -> &Secret {
    cfg.providers[0].api_key.as_ref().expect("api_key resolved")
}

#[test]
fn secret_from_env() {
    let cfg = parse_with(
        &waha_with("api_key_env = \"WAHA_API_KEY\""),
        &env_of(&[("WAHA_API_KEY", SEKRET)]),
    )
    .expect("valid");
    assert_eq!(api_key(&cfg).expose(), SEKRET);
    assert_eq!(
        api_key(&cfg).source(),
        &SecretSource::Env("WAHA_API_KEY".into())
    );
    assert!(cfg.warnings.is_empty());
}

#[test]
fn secret_from_file_absolute_relative_and_credentials_directory() {
    let config_dir = tempfile::tempdir().expect("tempdir");
    let creds_dir = tempfile::tempdir().expect("tempdir");
    let config_path = config_dir.path().join("config.toml");
    std::fs::write(config_dir.path().join("key"), format!("{SEKRET}\n")).expect("write");
    std::fs::write(creds_dir.path().join("key"), "from-credentials\r\n").expect("write");
    let absolute = config_dir.path().join("key");

    let creds = creds_dir.path().to_str().unwrap_or_default();

    /// One way of naming the key file, and what it must resolve to.
    struct Case<'a> {
        name: &'a str,
        file: String,
        env: Vec<(&'a str, &'a str)>,
        want: &'a str,
        want_path: PathBuf,
    }
    let cases = [
        Case {
            name: "absolute",
            file: absolute.display().to_string(),
            env: vec![],
            want: SEKRET,
            want_path: absolute.clone(),
        },
        // An absolute path ignores $CREDENTIALS_DIRECTORY.
        Case {
            name: "absolute with creds dir",
            file: absolute.display().to_string(),
            env: vec![("CREDENTIALS_DIRECTORY", creds)],
            want: SEKRET,
            want_path: absolute.clone(),
        },
        Case {
            name: "relative to config dir",
            file: "key".into(),
            env: vec![],
            want: SEKRET,
            want_path: config_dir.path().join("key"),
        },
        Case {
            name: "empty creds dir is unset",
            file: "key".into(),
            env: vec![("CREDENTIALS_DIRECTORY", "")],
            want: SEKRET,
            want_path: config_dir.path().join("key"),
        },
        // "\r\n" counts as one trailing newline.
        Case {
            name: "relative to creds dir",
            file: "key".into(),
            env: vec![("CREDENTIALS_DIRECTORY", creds)],
            want: "from-credentials",
            want_path: creds_dir.path().join("key"),
        },
    ];
    for c in cases {
        let text = waha_with(&format!("api_key_file = {:?}", c.file));
        let name = c.name;
        let cfg = Config::from_toml_str(&text, &config_path, &env_of(&c.env))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(api_key(&cfg).expose(), c.want, "{name}");
        assert_eq!(
            api_key(&cfg).source(),
            &SecretSource::File(c.want_path),
            "{name}"
        );
    }
}

#[test]
fn secret_inline_works_with_a_warning() {
    let cfg = parse_ok(&waha_with(&format!("api_key = \"{SEKRET}\"")));
    assert_eq!(api_key(&cfg).expose(), SEKRET);
    assert_eq!(api_key(&cfg).source(), &SecretSource::Inline);
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("provider \"waha-main\": api_key is written inline"));
    assert!(!cfg.warnings[0].contains(SEKRET));

    let cfg = parse_ok(&format!("[daemon]\nadmin_token = \"{SEKRET}\"\n{WAHA}"));
    assert_eq!(
        cfg.daemon.admin_token.as_ref().map(Secret::expose),
        Some(SEKRET)
    );
    assert!(
        cfg.warnings[0].starts_with("daemon.admin_token is written inline"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn secret_errors_name_keys_and_never_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(dir.path().join("empty"), "\n").expect("write");
    std::fs::write(
        dir.path().join("two-lines"),
        format!("{SEKRET}\n{SEKRET}\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join("big"), vec![b'a'; 70_000]).expect("write");
    let env = env_of(&[
        ("EMPTY", ""),
        ("MULTI", &format!("{SEKRET}\nx")),
        ("SET", SEKRET),
    ]);
    let w = "provider \"waha-main\": ";
    let cases = [
        (
            "env and file",
            "api_key_env = \"SET\"\napi_key_file = \"x\"".to_string(),
            format!("{w}api_key_env and api_key_file are both set"),
        ),
        (
            "env and inline",
            format!("api_key_env = \"SET\"\napi_key = \"{SEKRET}\""),
            format!("{w}api_key_env and api_key are both set"),
        ),
        (
            "file and inline",
            format!("api_key_file = \"x\"\napi_key = \"{SEKRET}\""),
            format!("{w}api_key_file and api_key are both set"),
        ),
        (
            "all three",
            format!("api_key_env = \"SET\"\napi_key_file = \"x\"\napi_key = \"{SEKRET}\""),
            format!("{w}api_key_env and api_key_file and api_key are both set"),
        ),
        (
            "missing env",
            "api_key_env = \"WAHA_API_KEY\"".into(),
            format!("{w}api_key_env: environment variable WAHA_API_KEY is not set"),
        ),
        (
            "empty env",
            "api_key_env = \"EMPTY\"".into(),
            format!("{w}api_key_env: environment variable EMPTY is empty"),
        ),
        (
            "empty env name",
            "api_key_env = \"\"".into(),
            format!("{w}api_key_env must name an environment variable"),
        ),
        (
            "multi-line env",
            "api_key_env = \"MULTI\"".into(),
            format!("{w}api_key_env: environment variable MULTI contains a control character"),
        ),
        (
            "missing file",
            "api_key_file = \"nope\"".into(),
            format!("{w}api_key_file {}: ", dir.path().join("nope").display()),
        ),
        (
            "empty file",
            "api_key_file = \"empty\"".into(),
            format!(
                "{w}api_key_file {} is empty",
                dir.path().join("empty").display()
            ),
        ),
        (
            "two-line file",
            "api_key_file = \"two-lines\"".into(),
            format!(
                "{w}api_key_file {} contains a control character",
                dir.path().join("two-lines").display()
            ),
        ),
        (
            "big file",
            "api_key_file = \"big\"".into(),
            format!(
                "{w}api_key_file {}: file is larger than 65536 bytes",
                dir.path().join("big").display()
            ),
        ),
        (
            "empty inline",
            "api_key = \"\"".into(),
            format!("{w}api_key is empty"),
        ),
        (
            "green missing env",
            "".into(),
            "provider \"green-1\": api_token_env: environment variable GREEN_API_TOKEN is not set"
                .into(),
        ),
    ];
    for (name, keys, want) in cases {
        let text = if name.starts_with("green") {
            GREEN.to_string()
        } else {
            waha_with(&keys)
        };
        let err = match Config::from_toml_str(&text, &path, &env) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&want), "{name}: expected {want:?} in {err:?}");
        assert!(!err.contains(SEKRET), "{name}: secret leaked: {err}");
    }

    let err = parse_err(&format!(
        "[daemon]\nadmin_token_env = \"A\"\nadmin_token_file = \"B\"\n{WAHA}"
    ));
    assert!(
        err.contains("daemon.admin_token_env and daemon.admin_token_file are both set"),
        "{err}"
    );
    let err = parse_err(&format!("[daemon]\nadmin_token_env = \"ADMIN\"\n{WAHA}"));
    assert!(
        err.contains("daemon.admin_token_env: environment variable ADMIN is not set"),
        "{err}"
    );
}

/// A secret typed without quotes is a parse error that does not echo it.
#[test]
fn unquoted_inline_secret_is_not_echoed() {
    for value in ["987654321", "98765.4321", "true", "1979-05-27"] {
        for key in ["api_key", "daemon_admin_token"] {
            let text = match key {
                "api_key" => waha_with(&format!("api_key = {value}")),
                _ => format!("[daemon]\nadmin_token = {value}\n{WAHA}"),
            };
            let err = parse_err(&text);
            assert!(err.contains("invalid type"), "{err}");
            assert!(!err.contains(value), "{key} = {value}: echoed in {err}");
        }
    }
    let err =
        parse_err(&GREEN.replace("api_token_env = \"GREEN_API_TOKEN\"", "api_token = 424242"));
    assert!(
        err.contains(":7:13: invalid type: integer, expected a quoted string"),
        "{err}"
    );
    assert!(!err.contains("424242"), "{err}");
}

#[test]
fn secret_debug_and_display_redact() {
    let s = Secret::new(SEKRET, SecretSource::Env("WAHA_API_KEY".into()));
    assert_eq!(
        format!("{s:?}"),
        "Secret(<redacted>, from env WAHA_API_KEY)"
    );
    assert_eq!(s.to_string(), "<redacted: env WAHA_API_KEY>");
    let f = Secret::new(SEKRET, SecretSource::File("/run/credentials/w/k".into()));
    assert_eq!(f.to_string(), "<redacted: file /run/credentials/w/k>");
    assert_eq!(
        Secret::new(SEKRET, SecretSource::Inline).to_string(),
        "<redacted: inline>"
    );
}

#[test]
fn secret_matches() {
    let s = Secret::new("token-1", SecretSource::Inline);
    assert!(s.matches("token-1"));
    assert!(!s.matches("token-2"));
    assert!(!s.matches("token-1x"));
    assert!(!s.matches("token-"));
    assert!(!s.matches(""));
}

/// A config with a secret in every slot, from every kind of source.
fn config_with_all_secrets() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("green"), format!("{SEKRET}-file\n")).expect("write");
    let text = format!(
        "[daemon]\nadmin_token = \"{SEKRET}-inline\"\n{WAHA}api_key_env = \"WAHA_API_KEY\"\n\
         [[provider.session]]\nname = \"sales\"\ninterval = \"1m\"\n\
         {}\n[alertmanager]\nurl = \"http://127.0.0.1:9093\"\n",
        GREEN.replace(
            "api_token_env = \"GREEN_API_TOKEN\"",
            "api_token_file = \"green\""
        )
    );
    let env = env_of(&[("WAHA_API_KEY", SEKRET)]);
    let cfg = Config::from_toml_str(&text, dir.path().join("config.toml"), &env).expect("valid");
    (cfg, dir)
}

#[test]
fn debug_output_never_contains_a_secret() {
    let (cfg, _dir) = config_with_all_secrets();
    assert_eq!(api_key(&cfg).expose(), SEKRET);
    let debug = format!("{cfg:?}");
    let pretty = format!("{cfg:#?}");
    for out in [&debug, &pretty] {
        assert!(!out.contains(SEKRET), "secret in Debug output: {out}");
    }
    assert!(debug.contains("Secret(<redacted>, from env WAHA_API_KEY)"));
}

#[test]
fn render_redacted_never_contains_a_secret() {
    let (cfg, dir) = config_with_all_secrets();
    let out = render_redacted(&cfg);
    assert!(!out.contains(SEKRET), "secret in render: {out}");
    assert!(
        out.contains("api_key = \"<redacted: env WAHA_API_KEY>\""),
        "{out}"
    );
    assert!(
        out.contains("admin_token = \"<redacted: inline>\""),
        "{out}"
    );
    let file = dir.path().join("green");
    assert!(
        out.contains(&format!(
            "api_token = \"<redacted: file {}>\"",
            file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("# warning: daemon.admin_token is written inline"),
        "{out}"
    );
}

#[test]
fn render_redacted_shows_every_resolved_key() {
    let (cfg, _dir) = config_with_all_secrets();
    let out = render_redacted(&cfg);
    for line in [
        "[daemon]",
        "listen = \"127.0.0.1:9797\"",
        "retention = \"30days\"",
        "shutdown_grace = \"10s\"",
        "session_metrics = true",
        "worker_threads = 1",
        "[[provider]]",
        "name = \"waha-main\"",
        "sessions = [\"*\"]",
        "max_concurrent_probes = 4",
        "[provider.canary]",
        "jitter = 0.1",
        "text = \"wa-watchdog canary {nonce}\"",
        "chat = \"self\"",
        "[provider.policy]",
        "desync_signatures = [\"server returned error 400\"]",
        "restart_poll_interval = \"2s\"",
        "outage_fraction = 0.5",
        "dry_run = false",
        "[[provider.session]]",
        "name = \"sales\"",
        "interval = \"1m\"",
        "enabled = true",
        "id_instance = \"1101000001\"",
        "reboot_on_yellow_card = false",
        "[alertmanager]",
        "url = \"http://127.0.0.1:9093\"",
        "resend_interval = \"1m\"",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing line {line:?} in:\n{out}"
        );
    }
}

/// The rendered text is TOML that reads back into the same configuration,
/// apart from the secrets (which come back as their markers).
#[test]
fn render_redacted_round_trips() {
    let fixture = fixtures().join("valid-full.toml");
    let cfg = Config::load(&fixture).expect("valid-full.toml");
    let text = render_redacted(&cfg);
    let back =
        Config::from_toml_str(&text, &fixture, &no_env).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let strip = |c: &Config| {
        let mut c = c.clone();
        c.daemon.admin_token = None;
        c.warnings.clear();
        for p in &mut c.providers {
            p.api_key = None;
            p.api_token = None;
        }
        c
    };
    assert_eq!(strip(&back), strip(&cfg));
    let token = back.providers[1].api_token.as_ref().map(Secret::expose);
    assert_eq!(token.map(|t| t.starts_with("<redacted: file ")), Some(true));
}

#[test]
fn render_quotes_strings() {
    assert_eq!(
        render::quote("a\"b\\c\nd\u{1}"),
        "\"a\\\"b\\\\c\\nd\\u0001\""
    );
}

#[test]
fn warnings() {
    let cases = [
        (
            "cleartext key",
            WAHA.replace("127.0.0.1", "waha.example.com") + "api_key = \"k\"\n",
            "url uses plain http:// to a host that is not loopback; api_key travels in cleartext",
        ),
        (
            "cleartext token",
            GREEN.replace("https://", "http://"),
            "provider \"green-1\": url uses plain http:// to a host that is not loopback; api_token travels in cleartext",
        ),
        (
            "no nonce",
            format!("[canary]\ntext = \"ping\"\n{WAHA}"),
            "provider \"waha-main\": canary.text has no {nonce}",
        ),
        (
            "api suffix",
            WAHA.replace(":3000", ":3000/api/"),
            "provider \"waha-main\": url ends in /api",
        ),
        (
            "short retention",
            format!("[daemon]\nretention = \"30m\"\n{WAHA}"),
            "provider \"waha-main\": daemon.retention (30m) is shorter than its restart window",
        ),
    ];
    for (name, text, want) in cases {
        let cfg = parse_ok(&text);
        assert!(
            cfg.warnings.iter().any(|w| w.contains(want)),
            "{name}: {:?}",
            cfg.warnings
        );
    }
    let long = "[daemon]\nadmin_token_env = \"T\"\n";
    let env = env_of(&[("T", "0123456789abcdef0123")]);
    let short_env = env_of(&[("T", "hunter2")]);
    type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
    let cases: [(&str, String, Env, &str); 2] = [
        (
            "short admin token",
            format!("{long}{WAHA}"),
            &short_env,
            "daemon.admin_token is only 7 characters",
        ),
        (
            "admin API on a public address",
            format!("[daemon]\nlisten = \"0.0.0.0:9797\"\nadmin_token_env = \"T\"\n{WAHA}"),
            &env,
            "daemon.listen 0.0.0.0:9797 is not a loopback address and the admin API is on",
        ),
    ];
    for (name, text, env, want) in cases {
        let cfg = parse_with(&text, env).expect(name);
        assert!(
            cfg.warnings.iter().any(|w| w.contains(want)),
            "{name}: {:?}",
            cfg.warnings
        );
        assert!(
            !cfg.warnings.iter().any(|w| w.contains("hunter2")),
            "{name}"
        );
    }
    // A long token on loopback, or a public address without the admin API: quiet.
    for text in [
        format!("{long}{WAHA}"),
        format!("[daemon]\nlisten = \"0.0.0.0:9797\"\n{WAHA}"),
    ] {
        let cfg = parse_with(&text, &env).expect("valid");
        assert!(cfg.warnings.is_empty(), "{text}: {:?}", cfg.warnings);
    }
    // A secret file every user can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").expect("write");
        let text = format!("[daemon]\nadmin_token_file = \"token\"\n{WAHA}");
        let load = |mode: u32| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            Config::from_toml_str(&text, dir.path().join("config.toml"), &no_env)
                .expect("valid")
                .warnings
        };
        let open = load(0o644);
        assert!(
            open.iter().any(|w| w.contains(
                "daemon.admin_token_file is readable by every user (mode 644)"
            )),
            "{open:?}"
        );
        assert!(load(0o600).is_empty(), "{:?}", load(0o600));
    }
    // No cleartext warning without a secret, or on loopback, or over https.
    for text in [
        WAHA.replace("127.0.0.1", "waha.example.com"),
        WAHA.to_string() + "api_key_env = \"K\"\n",
        WAHA.replace("http://127.0.0.1", "http://[::1]") + "api_key_env = \"K\"\n",
        WAHA.replace("http://127.0.0.1", "https://waha.example.com") + "api_key_env = \"K\"\n",
    ] {
        let cfg = parse_with(&text, &env_of(&[("K", "v")])).expect("valid");
        assert!(cfg.warnings.is_empty(), "{text}: {:?}", cfg.warnings);
    }
}

#[test]
fn chat_targets() {
    let ok = [
        "self",
        "5511999990001@c.us",
        "120363000000000000@g.us",
        "123@lid",
    ];
    for s in ok {
        assert_eq!(
            ChatTarget::parse(s).map(|c| c.as_str().to_string()),
            Some(s.to_string())
        );
    }
    for s in [
        "",
        "Self",
        "me",
        "@c.us",
        "551199@",
        "a@b@c",
        "55 11@c.us",
        "55@c.us\n",
    ] {
        assert_eq!(ChatTarget::parse(s), None, "{s:?}");
    }
}

// ---- fixtures, through Config::load (the real environment) ----

#[test]
fn valid_fixtures_load() {
    let cfg = Config::load(fixtures().join("valid-full.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.daemon.database,
        Database::Sqlite(fixtures().join("state/wa-watchdog.db"))
    );
    assert_eq!(cfg.daemon.log_format, LogFormat::Json);
    assert_eq!(cfg.daemon.shutdown_grace, Duration::ZERO);

    let waha = cfg.provider("waha-main").expect("waha-main");
    assert_eq!(waha.url, "http://127.0.0.1:3000");
    assert_eq!(api_key(&cfg).expose(), SEKRET);
    assert_eq!(
        api_key(&cfg).source(),
        &SecretSource::File(fixtures().join("secrets/waha-api-key"))
    );
    assert_eq!(waha.canary.interval, secs(420));
    assert_eq!(waha.canary.jitter, 0.2);
    assert_eq!(waha.policy.max_restarts, 6);
    assert_eq!(waha.policy.backoff_initial, secs(60));
    assert!(waha.policy.dry_run);
    assert_eq!(waha.interval_for("sales"), secs(60));
    assert!(!waha.is_enabled("default"));
    assert_eq!(waha.max_concurrent_probes, 8);

    let green = cfg.provider("green-1").expect("green-1");
    assert_eq!(green.id_instance.as_deref(), Some("7105187566"));
    assert_eq!(
        green.api_token.as_ref().map(Secret::expose),
        Some("green-token-ABC-789")
    );
    assert_eq!(green.canary.interval, secs(600));
    assert_eq!(green.policy.max_restarts, 4);
    assert!(green.reboot_on_yellow_card);
    assert_eq!(
        green.chat_for("7105187566"),
        ChatTarget::Id("120363000000000000@g.us".into())
    );
    let am = cfg.alertmanager.as_ref().expect("alertmanager");
    assert_eq!(
        (am.url.as_str(), am.resend_interval),
        ("http://127.0.0.1:9093", secs(300))
    );

    let out = render_redacted(&cfg);
    assert!(
        !out.contains(SEKRET) && !out.contains("green-token-ABC-789"),
        "{out}"
    );
    assert!(!format!("{cfg:?}").contains(SEKRET));

    let minimal =
        Config::load(fixtures().join("valid-minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.providers.len(), 1);
    assert_eq!(minimal.providers[0].policy, PolicyConfig::default());
}

/// Each `invalid-*.toml` starts with `# expect: TEXT`; loading it must fail
/// with a message that starts with the file's path and contains TEXT.
#[test]
fn invalid_fixtures_fail_as_expected() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("invalid-") && n.ends_with(".toml"))
        })
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 20,
        "only {} invalid fixtures",
        entries.len()
    );
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("readable");
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect: ` first line", path.display()));
        let err = match Config::load(&path) {
            Ok(_) => panic!("{}: loaded, expected an error", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        // Expectations are written relative to the fixture directory.
        let err_rel = err.replace(&format!("{}/", fixtures().display()), "");
        assert!(
            err_rel.contains(want),
            "{}: expected {want:?} in {err_rel:?}",
            path.display()
        );
    }
}

#[test]
fn confirm_mode_and_the_green_api_ack_timeout() {
    use crate::config::ConfirmMode;
    // Defaults: ack everywhere; 2 min for WAHA, 3 min for Green-API.
    let c = parse_ok(&format!("{WAHA}{GREEN}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.providers[0].canary.confirm, ConfirmMode::Ack);
    assert_eq!(c.providers[0].canary.ack_timeout, secs(120));
    assert_eq!(c.providers[1].canary.ack_timeout, secs(180));

    // Per provider, and "accepted" is allowed.
    let c = parse_ok(&format!(
        "{WAHA}[provider.canary]\nconfirm = \"accepted\"\n{GREEN}"
    ));
    assert_eq!(c.providers[0].canary.confirm, ConfirmMode::Accepted);
    assert_eq!(c.providers[1].canary.confirm, ConfirmMode::Ack);
    let err = parse_err(&format!("[canary]\nconfirm = \"maybe\"\n{WAHA}"));
    assert!(
        err.contains("canary.confirm must be \"ack\" or \"accepted\", got \"maybe\""),
        "{err}"
    );

    // An explicit Green-API deadline within the journal lag: allowed, with a
    // warning naming the provider; the global value applies to WAHA silently.
    let c = parse_ok(&format!("[canary]\nack_timeout = \"1m\"\n{WAHA}{GREEN}"));
    assert_eq!(c.providers[0].canary.ack_timeout, secs(60));
    assert_eq!(c.providers[1].canary.ack_timeout, secs(60));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("green-1"), "{:?}", c.warnings);
    assert!(c.warnings[0].contains("2 minutes"), "{:?}", c.warnings);
    let c = parse_ok(&format!(
        "{WAHA}{GREEN}[provider.canary]\nack_timeout = \"4m\"\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.providers[1].canary.ack_timeout, secs(240));
}

#[test]
fn session_metrics_can_be_turned_off_and_must_be_a_boolean() {
    let cfg = parse_ok(&format!("[daemon]\nsession_metrics = false\n{WAHA}"));
    assert!(!cfg.daemon.session_metrics);
    let err = parse_err(&format!("[daemon]\nsession_metrics = \"no\"\n{WAHA}"));
    assert!(err.contains("session_metrics"), "{err}");
}

#[test]
fn worker_threads_default_to_one_and_are_bounded() {
    assert_eq!(parse_ok(WAHA).daemon.worker_threads, 1);
    let cfg = parse_ok(&format!("[daemon]\nworker_threads = 4\n{WAHA}"));
    assert_eq!(cfg.daemon.worker_threads, 4);
    for bad in ["0", "65"] {
        let err = parse_err(&format!("[daemon]\nworker_threads = {bad}\n{WAHA}"));
        assert!(
            err.contains("daemon.worker_threads must be 1 to 64"),
            "{bad}: {err}"
        );
    }
    let err = parse_err(&format!("[daemon]\nworker_threads = -1\n{WAHA}"));
    assert!(err.contains("worker_threads"), "{err}");
}
