//! `wa-watchdog pause|resume SESSION`: through the running daemon's HTTP
//! API (`POST /api/v1/sessions/{provider}/{session}/{pause|resume}`, bearer
//! token `daemon.admin_token`), so the daemon's own loop makes the change
//! and records it. The token goes only into the `Authorization` header; it
//! is never printed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{CliError, Target};
use crate::config::Config;
use crate::store::Store;

/// What to ask the daemon.
pub(super) enum Action {
    /// Pause, for this long or until resumed.
    Pause(Option<Duration>),
    Resume,
}

/// The most of an error body printed.
const MAX_BODY_CHARS: usize = 1000;

pub(super) async fn run(
    action: Action,
    session: &str,
    provider: Option<String>,
    config: &Path,
) -> Result<(), CliError> {
    let oc = Config::load_operator(config, true).map_err(|e| CliError::Usage(e.to_string()))?;
    let Some(token) = oc.admin_token.clone() else {
        return Err(CliError::Usage(format!(
            "{}: daemon.admin_token is not set, so the daemon's POST API is off; set \
             admin_token_env or admin_token_file in [daemon] (and restart the daemon)",
            oc.path.display()
        )));
    };
    // Plain names resolve against the database when it is readable.
    let known = match Store::open_database_read_only(&oc.database).await {
        Ok(store) => {
            let rows = store.list_sessions(false).await.unwrap_or_default();
            store.close().await;
            rows.into_iter().map(|r| (r.provider, r.session)).collect()
        }
        Err(_) => Vec::new(),
    };
    let target = Target::resolve(session, provider.as_deref(), &known, &oc.providers)?;
    let addr = connectable(oc.listen);
    let (verb, asked) = match action {
        Action::Pause(d) => ("pause", d),
        Action::Resume => ("resume", None),
    };
    // Whole seconds, which every humantime parser reads back.
    let query = asked.map(|d| format!("{}s", d.as_secs().max(1)));
    let mut url = reqwest::Url::parse(&format!("http://{addr}/"))
        .map_err(|e| CliError::Usage(format!("daemon.listen {addr}: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| CliError::Usage(format!("daemon.listen {addr}: not a base URL")))?
        .extend([
            "api",
            "v1",
            "sessions",
            &target.provider,
            &target.session,
            verb,
        ]);
    if let Some(q) = &query {
        url.query_pairs_mut().append_pair("for", q);
    }
    let client = crate::provider::http::build_client(Duration::from_secs(5))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let response = client
        .post(url)
        .bearer_auth(token.expose())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot reach the daemon at http://{addr} (daemon.listen in {}): {}",
                oc.path.display(),
                e.without_url()
            ))
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body = super::format::cut(body.trim(), MAX_BODY_CHARS);
    if status.is_success() {
        match (verb, asked) {
            ("pause", Some(d)) => {
                println!("paused {target} for {}", humantime::format_duration(d))
            }
            ("pause", None) => println!("paused {target} until resumed"),
            _ => println!("resumed {target}"),
        }
        Ok(())
    } else {
        let body = if body.is_empty() {
            String::new()
        } else {
            format!(": {body}")
        };
        Err(CliError::Failed(format!(
            "the daemon refused to {verb} {target}: HTTP {}{body}",
            status.as_u16()
        )))
    }
}

/// `daemon.listen` as an address a client can connect to: a wildcard bind
/// address means this machine.
fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_connect_to_loopback() {
        let a = |s: &str| connectable(s.parse().expect("addr")).to_string();
        assert_eq!(a("0.0.0.0:9797"), "127.0.0.1:9797");
        assert_eq!(a("[::]:9797"), "[::1]:9797");
        assert_eq!(a("127.0.0.1:9797"), "127.0.0.1:9797");
        assert_eq!(a("10.0.0.5:1"), "10.0.0.5:1");
    }
}
