//! The accept loop: bounded connections, header timeouts, graceful shutdown.

use super::ingest::{Ingest, routes};
use super::source::HttpSourceConfig;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: HttpSourceConfig,
    mut stop: watch::Receiver<bool>,
) {
    let app = routes(ingest.clone());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    loop {
        // Take a slot before accepting: at the limit, clients wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stopped(&mut stop) => break,
        };
        let (stream, _peer) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        let ingest = ingest.clone();
        ingest.counters().source.connections.inc();
        tokio::spawn(async move {
            let _ = connection.await;
            ingest.counters().source.connections.dec();
            drop(slot);
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

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Drop the borrow at once: it must not live across an await.
    let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
}
