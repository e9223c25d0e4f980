//! The status page in a real browser: Debian's `chromium`, headless, loads
//! the page of a daemon watching the WAHA simulator (manual clock, all on
//! 127.0.0.1) and the test reads the DOM the browser built (`--dump-dom`):
//! every session with its state; a desync injected in the simulator shows
//! as `desynced`/`restarting` and then `healthy` again after the restart;
//! a session named `<script>alert(1)</script>` is a text node, not an
//! element; a screenshot (`--screenshot`) is decoded and must not be blank.
//! Its path (`target/tmp/status-page.png`) is printed on stderr even when
//! the test passes (`status page screenshot: …`), so CI can keep it.
//!
//! The clock only moves when the test moves it, so a state the test waited
//! for (through the JSON API) holds while the browser loads the page; each
//! DOM check still polls (bounded) because a job due at that instant may be
//! finishing. A missing `chromium` fails the test and says what installs it
//! (`scripts/test`, `.ci/run`); `WA_WATCHDOG_SKIP_BROWSER=1` skips only
//! this test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, DaemonOptions};
use crate::common::page::{XSS, XSS_ESCAPED, row_state, save_hostile_session};
use crate::common::{PROVIDER, t0};
use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::Fault;

const S: Duration = Duration::from_secs(1);
const SKIP_ENV: &str = "WA_WATCHDOG_SKIP_BROWSER";
/// One browser run (start, load, dump, exit) takes 1-3 s here; this bounds a
/// wedged one.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// `chromium` on PATH, or a failure that says how to get it.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
            eprintln!("skipping: `chromium` not found and {SKIP_ENV}=1");
            return None;
        }
        panic!(
            "`chromium` not found on PATH. `scripts/test` (and `.ci/run`) install it: \
             `apt-get install -y --no-install-recommends chromium`; \
             or set {SKIP_ENV}=1 to skip the browser test"
        );
    }
    found
}

/// Runs headless chromium with a fresh profile and `args`, returns stdout.
fn browser(chromium: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let start = Instant::now();
    loop {
        match child.try_wait().expect("waiting for chromium") {
            Some(_) => break,
            None if start.elapsed() > BROWSER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {BROWSER_TIMEOUT:?}: {args:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM of `url` after chromium loaded it.
async fn dom(chromium: &Path, url: &str) -> String {
    let (chromium, url) = (chromium.to_path_buf(), url.to_string());
    tokio::task::spawn_blocking(move || browser(&chromium, &["--dump-dom".into(), url]))
        .await
        .expect("browser task")
}

/// Loads the page in the browser until `check` passes on its DOM (at most
/// `tries` loads), returning that DOM.
async fn dom_until(
    chromium: &Path,
    url: &str,
    what: &str,
    tries: u32,
    check: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        last = dom(chromium, url).await;
        if check(&last) {
            return last;
        }
    }
    panic!("the browser's DOM never showed {what} in {tries} loads:\n{last}");
}

/// Width, height and the number of distinct RGBA colours of a PNG.
fn png_colours(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).expect("open the screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("image size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let bytes = &buf[..info.buffer_size()];
    let step = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = bytes.chunks(step).collect();
    (info.width, info.height, colours.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_fleet_a_desync_healed_and_names_as_text() {
    let Some(chromium) = chromium() else {
        return;
    };
    let d = Daemon::start(
        &["alpha", "bravo", "charlie"],
        DaemonOptions::new(Clock::manual(t0())),
    )
    .await;
    save_hostile_session(&d.store, PROVIDER, d.clock.now()).await;
    d.advance_until("every session healthy", S, 60 * S, || async {
        let mut all = true;
        for s in ["alpha", "bravo", "charlie"] {
            all &= d.state(s).await == "healthy";
        }
        all
    })
    .await;
    let url = d.url("/");

    // Every session, with its state, in the DOM the browser built.
    let html = dom_until(&chromium, &url, "every session healthy", 5, |html| {
        ["alpha", "bravo", "charlie"]
            .iter()
            .all(|s| row_state(html, s).as_deref() == Some("healthy"))
    })
    .await;
    assert!(html.contains("<b>4</b> sessions"), "{html}");
    // The hostile name is a text node: serialised escaped, and no script
    // element anywhere (attribute values may hold the raw text).
    assert!(html.contains(&format!(">{XSS_ESCAPED}</a>")), "{html}");
    let without_attributes = html
        .replace(&format!("\"{XSS}\""), "\"\"")
        .replace(&format!("\"{XSS_ESCAPED}\""), "\"\"");
    assert!(!without_attributes.contains("<script"), "{html}");
    assert!(!without_attributes.contains("<img"), "{html}");

    // A desync: stop the clock once the daemon knows, the browser sees it.
    d.ctl.inject("bravo", Fault::Desync).expect("inject");
    d.advance_until("bravo desynced or restarting", S, 120 * S, || async {
        matches!(d.state("bravo").await.as_str(), "desynced" | "restarting")
    })
    .await;
    dom_until(&chromium, &url, "bravo desynced or restarting", 5, |html| {
        matches!(
            row_state(html, "bravo").as_deref(),
            Some("desynced" | "restarting")
        )
    })
    .await;

    // A screenshot (of the page with the failing session) that is not
    // blank: text and coloured badges give hundreds of distinct colours, a
    // blank page one.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let (c, args) = (
        chromium.clone(),
        vec![
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".to_string(),
            url.clone(),
        ],
    );
    tokio::task::spawn_blocking(move || browser(&c, &args))
        .await
        .expect("browser task");
    let (w, h, colours) = png_colours(&shot);
    // `WA_WATCHDOG_UPDATE_SCREENSHOT=1` refreshes the README's picture.
    if std::env::var("WA_WATCHDOG_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::copy(&shot, &docs).expect("copy the screenshot to docs/");
    }
    // Written to the stderr handle, not with `eprintln!`: the test harness
    // captures the macros, and CI should find the path in its log.
    let _ = writeln!(
        std::io::stderr(),
        "status page screenshot: {} ({w}x{h}, {colours} colours)",
        shot.display()
    );
    assert_eq!((w, h), (1200, 800), "{}", shot.display());
    assert!(
        colours > 20,
        "the screenshot looks blank: {colours} colours in {}",
        shot.display()
    );

    // Healed by the restart: the browser sees it healthy again.
    d.advance_until("bravo restarted and healthy", S, 180 * S, || async {
        d.ctl.restart_count("bravo") > 0 && d.state("bravo").await == "healthy"
    })
    .await;
    dom_until(&chromium, &url, "bravo healthy again", 5, |html| {
        row_state(html, "bravo").as_deref() == Some("healthy")
    })
    .await;
    let session = dom_until(
        &chromium,
        &d.url("/sessions/waha/bravo"),
        "bravo's healed restart",
        5,
        |html| html.contains("data-result=\"healed\"") && html.contains("data-beat=\"failed\""),
    )
    .await;
    assert!(session.contains("id=\"heartbeat\""), "{session}");

    // The hostile session's own page, through its percent-encoded link.
    let hostile = dom(
        &chromium,
        &d.url(&wa_watchdog::status_page::session_path(PROVIDER, XSS)),
    )
    .await;
    assert!(hostile.contains(&format!(" / {XSS_ESCAPED} ")), "{hostile}");
    let without_attributes = hostile
        .replace(&format!("\"{XSS}\""), "\"\"")
        .replace(&format!("\"{XSS_ESCAPED}\""), "\"\"");
    assert!(!without_attributes.contains("<script"), "{hostile}");
    assert!(!without_attributes.contains("<img"), "{hostile}");

    d.stop().await.expect("clean stop");
}
