//! Serving the control plane on its own thread, for `PipelineBuilder::control_plane`.

use super::{ControlPlane, ControlPlaneConfig};
use crate::pipeline::PipelineHandle;
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// A control plane served on its own thread and single-threaded tokio runtime, so a
/// service without a runtime gets one; from
/// [`PipelineBuilder::control_plane`](crate::PipelineBuilder::control_plane) (the
/// pipeline stops it at shutdown) or [`spawn`](Self::spawn).
#[derive(Debug)]
pub struct ControlPlaneServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlPlaneServer {
    /// Binds `config`'s address now (so an error is reported here) and serves the
    /// control plane over `pipeline` on a new thread.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the thread or runtime cannot start.
    pub fn spawn(pipeline: PipelineHandle, config: ControlPlaneConfig) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(config.bind_addr())?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let router = ControlPlane::new(pipeline, config).router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pipeline-control-plane".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(target: "pipeline::control_plane", %error, "cannot serve");
                            return;
                        }
                    };
                    tracing::info!(target: "pipeline::control_plane", %addr, "control plane listening");
                    tokio::select! {
                        served = axum::serve(listener, router) => {
                            if let Err(error) = served {
                                tracing::error!(target: "pipeline::control_plane", %error, "control plane stopped");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every connection, event streams included.
                drop(runtime);
            })?;
        Ok(ControlPlaneServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread to end (blocks the calling thread
    /// briefly; open connections, event streams included, are closed).
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Tells the server to stop without waiting for its thread (for async code).
    pub fn stop_detached(mut self) {
        drop(self.stop.take());
        drop(self.thread.take());
    }
}

impl Drop for ControlPlaneServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
