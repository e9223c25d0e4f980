//! A throwaway PostgreSQL cluster for the tests: started on first use by
//! whichever test needs it, shared by every test of the process (each gets
//! its own database), stopped and deleted when the process exits.
//!
//! The cluster lives in a fresh temporary directory: `initdb` into
//! `DIR/data`, the server listening only on a Unix socket in `DIR` (no TCP
//! at all), so it cannot clash with, or be reached from, anything else on
//! the machine. Run as root (CI containers), the server runs as the
//! `postgres` user, which PostgreSQL requires.
//!
//! Stopping: the server runs under a small shell that waits on a pipe from
//! this process and stops the server (and deletes `DIR`) when the pipe
//! closes, which happens however the test process ends (pass, fail, panic,
//! or a kill): no test has to remember a teardown.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The port only names the socket file (`.s.PGSQL.5432`) in the private
/// directory; nothing listens on TCP.
const PORT: u16 = 5432;

struct Cluster {
    socket_dir: PathBuf,
    /// Holding the shell's stdin open keeps the server running; dropped
    /// (closed) when the process exits.
    _keepalive: Mutex<Child>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory holding `initdb` and `postgres`: `$WA_WATCHDOG_PG_BIN`,
/// else the newest `/usr/lib/postgresql/N/bin` (Debian's layout), else
/// `pg_config --bindir`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("WA_WATCHDOG_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").is_file() {
            return Ok(bin);
        }
    }
    Err(
        "the PostgreSQL server binaries (initdb, postgres) are not installed: \
         `apt-get install postgresql` (scripts/test installs it), or point \
         WA_WATCHDOG_PG_BIN at the directory holding them"
            .to_string(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args..`, as the `postgres` user when this process is root.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("wa-watchdog-pg-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        // Deleted by the shell below when the server stops.
        .keep();
    if root {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err(format!(
                "chown postgres {} failed (is there a `postgres` user?)",
                dir.display()
            ));
        }
    }
    let data = dir.join("data");
    let out = as_server_user(root, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // `read` returns when this process's end of the pipe closes (its exit);
    // then stop the server fast and remove the whole directory.
    let script = r#"
        "$0" -D "$1/data" -k "$1" -p "$2" -c listen_addresses= \
            -c max_connections=400 -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c log_min_messages=warning \
            >"$1/server.log" 2>&1 &
        pid=$!
        read -r _
        kill -INT "$pid" 2>/dev/null
        wait "$pid"
        rm -rf "$1"
    "#;
    let child = as_server_user(root, Path::new("sh"))
        .arg("-c")
        .arg(script)
        .arg(bin.join("postgres"))
        .arg(&dir)
        .arg(PORT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("postgres did not start within 60 s:\n{log}"));
        }
        // Waiting for another process to come up; no test timing depends on it.
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Cluster {
        socket_dir: dir,
        _keepalive: Mutex::new(child),
    })
}

fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    }
}

fn url(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgres://postgres@localhost/{database}?host={}",
        socket_dir.display()
    )
}

/// A new, empty database on the shared test cluster: its URL.
pub async fn fresh_database() -> String {
    let c = cluster();
    let name = format!(
        "wa_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    // The socket appears a moment before the server accepts connections.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut admin = loop {
        match PgConnection::connect(&url(&c.socket_dir, "postgres")).await {
            Ok(conn) => break conn,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("test PostgreSQL does not accept connections: {e}"),
        }
    };
    // The name is ours (digits and underscores); DDL takes no parameters.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    admin.close().await.ok();
    url(&c.socket_dir, &name)
}
