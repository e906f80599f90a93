//! [`MetricsEndpoint`]: `GET /metrics` on a std listener, one request at a time.

use crate::source::JoinError;
use crate::util::{StopSignal, ThreadGroup};
use metrics_exporter_prometheus::PrometheusHandle;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The longest request head it reads.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A tiny scrape endpoint: `GET /metrics` answers the Prometheus text format, anything
/// else `404`; one connection at a time, `Connection: close`, 5 s timeouts. For a
/// service without the HTTP source.
pub struct MetricsEndpoint {
    local_addr: SocketAddr,
    stop: StopSignal,
    threads: ThreadGroup,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves `handle` on a thread.
    ///
    /// # Errors
    ///
    /// The error of binding or of starting the thread.
    pub fn spawn(addr: SocketAddr, handle: PrometheusHandle) -> io::Result<MetricsEndpoint> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stop = StopSignal::new();
        let stopping = stop.clone();
        let threads = ThreadGroup::new();
        threads.spawn("metrics-endpoint".into(), move || {
            for stream in listener.incoming() {
                if stopping.is_stopped() {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &handle);
                }
            }
        })?;
        Ok(MetricsEndpoint {
            local_addr,
            stop,
            threads,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the thread, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError`] if the thread did not end in time or panicked.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), JoinError> {
        self.stop.stop();
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        self.threads.join(timeout)
    }
}

fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            ("200 OK", "text/plain; version=0.0.4", handle.render())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        if !self.stop.is_stopped() {
            self.stop.stop();
            let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        }
    }
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
