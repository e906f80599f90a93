//! The accept loop: bounded connections in all and per client, header timeouts,
//! graceful shutdown.

use super::ingest::{Ingest, routes, stateless_routes};
use super::source::HttpSourceConfig;
use crate::util::LogLimiter;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

/// How often, at most, a flood of refused connections or a full house is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a refused connection may take to be told and closed.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to a connection over the per-client cap, written before its request is
/// read: it is not going to be read.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 49\r\n\
\r\n\
{\"error\":\"too many connections from this client\"}";

/// Connections open per client address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its client; released when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    /// A slot for `ip`, unless it holds `limit` already.
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: HttpSourceConfig,
    mut stop: watch::Receiver<bool>,
) {
    let app = stateless_routes();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Refusals in progress are bounded too: beyond these, a refused connection is
    // closed without an answer.
    let refusals = Arc::new(Semaphore::new(config.max_connections));
    let peers = Arc::new(Peers::default());
    let per_peer = config.per_peer();
    let refused_log = LogLimiter::new(LOG_EVERY);
    let full_log = LogLimiter::new(LOG_EVERY);
    let counters = ingest.counters();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    loop {
        // Take a slot before accepting: at the limit, clients wait in the backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                counters.limit_reached.add(1);
                if let Some(suppressed) = full_log.allow() {
                    tracing::warn!(
                        source = %config.name,
                        max_connections = config.max_connections,
                        suppressed,
                        "http source: every connection slot is taken; new connections wait in the listen backlog"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment, not spin.
                    tracing::warn!(source = %config.name, %error, "http source: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Some(peer_slot) = peers.take(peer.ip(), per_peer) else {
            drop(slot);
            counters.connections_refused.add(1);
            if let Some(suppressed) = refused_log.allow() {
                tracing::warn!(
                    source = %config.name,
                    %peer,
                    max_connections_per_peer = per_peer,
                    suppressed,
                    "http source: connection refused with 503: its client holds max_connections_per_peer"
                );
            }
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        counters.connections_accepted.add(1);
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(routes(app.clone(), ingest.clone(), Some(peer)));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let ingest = ingest.clone();
        ingest.counters().source.connections.inc();
        tokio::spawn(async move {
            let _ = connection.await;
            ingest.counters().source.connections.dec();
            drop((slot, peer_slot));
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!(source = %config.name, "http source: requests still running at the shutdown timeout");
        }
    }
}

/// Answers `503` without reading the request, then closes gracefully: the write side
/// first, then reading (and dropping) what the client still sends until it closes,
/// so the close is not a reset that could discard the answer before it is read.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut seen = 0usize;
        loop {
            let read = stream.read(&mut sink).await?;
            seen += read;
            if read == 0 || seen > 64 * 1024 {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Drop the borrow at once: it must not live across an await.
    let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[test]
    fn a_peer_slot_is_released_when_dropped() {
        let peers = Arc::new(Peers::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = peers.take(ip, 1).unwrap();
        assert!(peers.take(ip, 1).is_none());
        assert!(peers.take("127.0.0.2".parse().unwrap(), 1).is_some());
        drop(first);
        assert!(peers.take(ip, 1).is_some());
        assert!(peers.0.lock().unwrap().is_empty(), "no entry left behind");
    }
}
