//! The server loop: accepts connections within [`MAX_CONNECTIONS`] slots and
//! serves each one with hyper under the header, request and lifetime bounds
//! (see the parent module), until shutdown, then drains.
//!
//! What it owns: [`serve`], the accept loop and the per-connection task.
//! What it must not do: route or answer requests (the router does), or let
//! a failed accept or a panicking connection end the server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::{
    CONNECTION_LIFETIME, HEADER_READ_TIMEOUT, HttpState, MAX_CONNECTIONS, REQUEST_TIMEOUT, router,
};

/// Serves `state`'s routes on `listener` until `shutdown` resolves, then lets
/// requests in flight finish (at most [`REQUEST_TIMEOUT`] more) and returns.
/// Accept errors (e.g. out of file descriptors) are logged and retried; they
/// never end the server.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: impl Future<Output = ()>) {
    let router = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(error = %e, "http: a connection task panicked");
                    }
                }
            }
            accepted = accept(&listener, &slots) => match accepted {
                Ok((stream, permit)) => {
                    connections.spawn(connection(stream, router.clone(), stop_rx.clone(), permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "http: closing connections still busy at shutdown"
        );
        connections.shutdown().await;
    }
    tracing::info!("http server stopped");
}

/// Waits for a connection slot, then for a client. Cancel-safe: dropping it
/// gives the slot back and loses no connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("connection semaphore closed"))?;
    let (stream, _peer) = listener.accept().await?;
    Ok((stream, permit))
}

/// Serves one connection until the client closes it, the server stops, or
/// [`CONNECTION_LIFETIME`] passes. Holds its connection slot while it runs.
async fn connection(
    stream: TcpStream,
    router: Router,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Clients hanging up, header timeouts: routine, not errors.
                    tracing::debug!(error = %e, "http: connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            }
            () = &mut deadline => {
                if closing {
                    return; // dropping the connection closes the socket
                }
                // Finish the request in flight (bounded by REQUEST_TIMEOUT), then close.
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            }
        }
    }
}
