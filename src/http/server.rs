//! The server loop: accepts every connection, admits it to one of the
//! [`MAX_CONNECTIONS`] serving slots (or one of the [`PROBE_SLOTS`] kept for
//! `/healthz` and `/readyz`) once it has sent something, and serves it with
//! hyper under the header, request and lifetime bounds (see the parent
//! module), until shutdown, then drains.
//!
//! Why admission is separate from accepting: a client that connects and says
//! nothing must not hold a slot. An accepted connection first waits, without
//! a slot, for its first byte ([`FIRST_BYTE_TIMEOUT`]) and then for a slot
//! (at most [`HEADER_READ_TIMEOUT`]). At most [`MAX_WAITING`] connections
//! wait at once; a new one closes the oldest waiting one, so a flood of
//! silent clients can delay nobody who speaks promptly. A connection whose
//! first bytes are `GET /healthz` or `GET /readyz` (or `HEAD`) may take a
//! reserved probe slot when every serving slot is busy, and that connection
//! is closed after its answer (no keep-alive on a probe slot).
//!
//! What it owns: [`serve`], the accept loop, admission and the
//! per-connection task.
//! What it must not do: route or answer requests (the router does), or let
//! a failed accept or a panicking connection end the server.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use super::{
    CONNECTION_LIFETIME, FIRST_BYTE_TIMEOUT, HEADER_READ_TIMEOUT, HttpState, MAX_CONNECTIONS,
    MAX_WAITING, PROBE_SLOTS, REQUEST_TIMEOUT, router,
};

/// Serves `state`'s routes on `listener` until `shutdown` resolves, then lets
/// requests in flight finish (at most [`REQUEST_TIMEOUT`] more) and returns.
/// Accept errors (e.g. out of file descriptors) are logged and retried; they
/// never end the server.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: impl Future<Output = ()>) {
    serve_router(listener, router(state), shutdown).await;
}

/// [`serve`] with any router (the webhook-only listener).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Slots {
        general: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        probes: Arc::new(Semaphore::new(PROBE_SLOTS)),
    });
    let waiting = Waiting::new(MAX_WAITING);
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
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let evicted = waiting.enter();
                    connections.spawn(connection(
                        stream,
                        router.clone(),
                        stop_rx.clone(),
                        slots.clone(),
                        evicted,
                    ));
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

/// The serving slots: [`MAX_CONNECTIONS`] for anything, [`PROBE_SLOTS`] more
/// for the daemon's own probes.
struct Slots {
    general: Arc<Semaphore>,
    probes: Arc<Semaphore>,
}

/// A serving slot; `reserved` when it is one of the probe slots.
struct Slot {
    _permit: OwnedSemaphorePermit,
    reserved: bool,
}

impl Slots {
    /// A slot for a connection: a general one, or, for a probe, whichever
    /// frees first of a general or a reserved one.
    async fn acquire(&self, probe: bool) -> Option<Slot> {
        if !probe {
            let permit = self.general.clone().acquire_owned().await.ok()?;
            return Some(Slot {
                _permit: permit,
                reserved: false,
            });
        }
        if let Ok(permit) = self.general.clone().try_acquire_owned() {
            return Some(Slot {
                _permit: permit,
                reserved: false,
            });
        }
        tokio::select! {
            p = self.general.clone().acquire_owned() => p.ok().map(|permit| Slot { _permit: permit, reserved: false }),
            p = self.probes.clone().acquire_owned() => p.ok().map(|permit| Slot { _permit: permit, reserved: true }),
        }
    }
}

/// The connections accepted but not yet admitted, oldest first, as the
/// senders that close them. At most `cap`: a new one closes the oldest.
struct Waiting {
    cap: usize,
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
}

impl Waiting {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Registers a new waiting connection; the receiver fires (or closes)
    /// when it must give up its place. Dropping the receiver (admitted or
    /// closed) takes the connection out of the queue.
    fn enter(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut queue = match self.queue.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        queue.retain(|waiting| !waiting.is_closed());
        while queue.len() >= self.cap {
            match queue.pop_front() {
                Some(oldest) => {
                    let _ = oldest.send(());
                }
                None => break,
            }
        }
        queue.push_back(tx);
        rx
    }
}

/// Whether the first bytes of a connection are a request for the daemon's
/// own probes (`/healthz`, `/readyz`), which may use a reserved slot.
fn is_probe(first: &[u8]) -> bool {
    const PROBES: [&[u8]; 4] = [
        b"GET /healthz",
        b"GET /readyz",
        b"HEAD /healthz",
        b"HEAD /readyz",
    ];
    PROBES.iter().any(|p| first.starts_with(p))
}

/// Admission: waits for the connection's first bytes, then for a slot.
/// `None` when the client said nothing in time, closed, or no slot freed
/// within [`HEADER_READ_TIMEOUT`].
async fn admit(stream: &TcpStream, slots: &Slots) -> Option<Slot> {
    let mut first = [0u8; 16];
    let n = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    let probe = is_probe(&first[..n]);
    tokio::time::timeout(HEADER_READ_TIMEOUT, slots.acquire(probe))
        .await
        .ok()
        .flatten()
}

/// Admits one connection, then serves it until the client closes it, the
/// server stops, or [`CONNECTION_LIFETIME`] passes. Holds its slot while it
/// is served; `evicted` fires when newer connections push it out of the
/// waiting queue before it was admitted.
async fn connection(
    stream: TcpStream,
    router: Router,
    mut stop: watch::Receiver<bool>,
    slots: Arc<Slots>,
    evicted: oneshot::Receiver<()>,
) {
    let admitted = tokio::select! {
        slot = admit(&stream, &slots) => slot,
        _ = evicted => None,
        _ = stop.changed() => None,
    };
    let Some(slot) = admitted else {
        return; // dropping the stream closes it
    };
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(!slot.reserved);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_daemons_own_probes_may_take_a_reserved_slot() {
        assert!(is_probe(b"GET /healthz HTTP/1.1\r\n"));
        assert!(is_probe(b"GET /readyz HTTP/1.1"));
        assert!(is_probe(b"HEAD /healthz"));
        assert!(!is_probe(b"GET /metrics HTTP/1.1"));
        assert!(!is_probe(b"POST /healthz"));
        assert!(!is_probe(b"GET /heal"));
        assert!(!is_probe(b""));
    }

    #[test]
    fn a_full_waiting_queue_closes_its_oldest_entry() {
        let waiting = Waiting::new(2);
        let mut first = waiting.enter();
        let mut second = waiting.enter();
        assert!(first.try_recv().is_err());
        let mut third = waiting.enter();
        assert_eq!(first.try_recv(), Ok(()), "the oldest is pushed out");
        assert!(second.try_recv().is_err());
        assert!(third.try_recv().is_err());
        // An admitted connection (receiver dropped) leaves room.
        drop(second);
        let _fourth = waiting.enter();
        assert!(
            third.try_recv().is_err(),
            "room was made by the admitted one"
        );
    }
}
