//! The status page over loopback, against a daemon built as `wa-watchdog
//! run` builds it (real SQLite, real scheduler, the WAHA simulator listing
//! the sessions), on a manual clock: `GET /` shows every session with its
//! state, a desync shows up and heals, the session page has the restart and
//! the timeline, names (from a provider, or whatever the store holds) are escaped, and the headers keep
//! the page self-contained.

use crate::common;
use std::time::Duration;

use crate::common::daemon::{Daemon, DaemonOptions};
use crate::common::page::{XSS_ESCAPED, row_state, save_hostile_session};
use crate::common::{PROVIDER, t0};
use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::Fault;

const S: Duration = Duration::from_secs(1);

async fn page(d: &Daemon) -> String {
    let r = d.get("/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_session_a_desync_and_its_healing() {
    let d = Daemon::start(&["alpha", "bravo"], DaemonOptions::new(Clock::manual(t0()))).await;
    save_hostile_session(&d.store, PROVIDER, d.clock.now()).await;
    d.advance_until("every session healthy on the page", S, 60 * S, || async {
        let html = page(&d).await;
        ["alpha", "bravo", XSS_ESCAPED]
            .iter()
            .all(|s| row_state(&html, s).as_deref() == Some("healthy"))
    })
    .await;

    let r = d.get("/").await;
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The name from the provider is text, never markup.
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert!(r.body.contains(XSS_ESCAPED), "{}", r.body);
    assert!(!r.body.contains("<img"), "{}", r.body);
    assert!(r.body.contains("<b>3</b> sessions"), "{}", r.body);
    assert!(r.body.contains("data-health=\"up\""), "{}", r.body);

    // A desync: the page shows the session failing, then healed by a restart.
    d.ctl.inject("bravo", Fault::Desync).expect("inject");
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    d.advance_until("bravo restarted and healthy again", S, 180 * S, || async {
        let state = row_state(&page(&d).await, "bravo").unwrap_or_default();
        let mut seen = seen.lock().expect("lock");
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        d.ctl.restart_count("bravo") > 0 && state == "healthy"
    })
    .await;
    let seen = seen.into_inner().expect("lock");
    assert!(
        seen.iter().any(|s| s == "desynced" || s == "suspect"),
        "the page never showed the failure: {seen:?}"
    );
    let html = page(&d).await;
    assert!(html.contains("restarts in the last 24 h"), "{html}");
    assert!(!html.contains("<b>0</b> restarts"), "{html}");

    // The session page: the restart with its result and the timeline.
    let r = d.get("/sessions/waha/bravo").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data-result=\"healed\""), "{}", r.body);
    assert!(r.body.contains("class=\"t-state\""), "{}", r.body);
    assert!(r.body.contains("data-beat=\"failed\""), "{}", r.body);
    assert!(r.body.contains("data-beat=\"delivered\""), "{}", r.body);

    // The XSS session's page, reached by its percent-encoded link.
    let r = d
        .get("/sessions/waha/%3Cscript%3Ealert%281%29%3C%2Fscript%3E")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert!(r.body.contains(XSS_ESCAPED), "{}", r.body);

    // Unknown sessions: a 404 page, the name escaped.
    let r = d.get("/sessions/waha/%3Ci%3Enope").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("&lt;i&gt;nope"), "{}", r.body);
    d.stop().await.expect("clean stop");
}

/// The page never waits for the scheduler: around a built daemon whose
/// scheduler loop never runs (so no command would ever be answered), `GET /`
/// and a session page still answer from the store and the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_answers_while_the_scheduler_never_runs() {
    use std::sync::Arc;
    use wa_watchdog::app::App;
    use wa_watchdog::config::Config;
    use wa_watchdog::http::{self, HttpState};
    use wa_watchdog::scheduler::Heartbeat;

    let clock = Clock::manual(t0());
    let sim = common::sim(&["s1"], &clock).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::Settings::default();
    settings.daemon("listen", "\"127.0.0.1:0\"");
    let text = settings.waha_toml(&dir.path().join("w.db"), &sim.url());
    let config =
        Config::from_toml_str(&text, dir.path().join("c.toml"), &common::env).expect("config");
    let app = App::build(config, clock.clone(), Some(1))
        .await
        .expect("build");
    save_hostile_session(&app.store, PROVIDER, clock.now()).await;
    let state = HttpState {
        store: app.store.clone(),
        metrics: Arc::clone(&app.metrics),
        heartbeat: Heartbeat::default(),
        heartbeat_max_age: Duration::from_secs(30),
        handle: app.handle(),
        clock: clock.clone(),
        admin_token: None,
        config_path: dir.path().join("c.toml"),
        webhooks: None,
        replica: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let r = client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("GET / answers without the scheduler");
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.expect("body");
    assert_eq!(
        row_state(&html, XSS_ESCAPED).as_deref(),
        Some("healthy"),
        "{html}"
    );
    let path = wa_watchdog::status_page::session_path(PROVIDER, common::page::XSS);
    let r = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("the session page answers without the scheduler");
    assert_eq!(r.status().as_u16(), 200);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("server stops")
        .expect("server task");
    drop(app);
    sim.shutdown().await;
}
