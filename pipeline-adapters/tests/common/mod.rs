//! Helpers shared by the integration tests: bounded waiting, memory readings, and a
//! real `nats-server` process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Waits until `condition` holds, checking every 10 ms, for at most `limit`; panics
/// naming `what` otherwise. For states with no event to wait on (a counter reaching a
/// value in another thread).
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process's resident memory in KiB, from /proc/self/status.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Whether `nats-server` is on PATH. When it is not: a loud SKIP, or a failure when
/// `PIPELINE_REQUIRE_NATS=1`.
pub fn nats_available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let required = std::env::var("PIPELINE_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "PIPELINE_REQUIRE_NATS=1 but nats-server is not on PATH (apt-get install nats-server)"
        );
        // Straight to the process's stderr: the test harness captures eprintln!.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n==================== SKIP {test}: nats-server not on PATH \
             (apt-get install nats-server; PIPELINE_REQUIRE_NATS=1 makes this a failure) ====================\n"
        );
    }
    found
}

/// A `nats-server -js` on 127.0.0.1, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
}

impl NatsServer {
    /// Starts a server on a free port with its store in `store`.
    pub fn start(store: &Path) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: store.to_owned(),
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server");
        // The server logs to stderr; wait for it to say it is ready (bounded).
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server is ready")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        ready
            .recv_timeout(Duration::from_secs(15))
            .expect("nats-server said it was ready within 15 s");
    }

    /// Stops the server gracefully (SIGTERM, so JetStream flushes its store), waiting
    /// for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child by its pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts it again on the same port and store (after `stop`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a read ended because the server closed the connection (end of stream or a
/// reset), not because the client's own read timeout ran out first.
pub fn closed_by_server(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => *n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A TCP connection to `to` from the loopback address `local` (any of 127.0.0.0/8 on
/// Linux), so a test can be a second client with its own peer address.
pub fn connect_from(
    local: std::net::Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 address, not {to}");
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the stream takes
    // it over at once, so every error path closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let from = sockaddr(local, 0);
        if libc::bind(fd, (&raw const from).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let target = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&raw const target).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Reads one HTTP/1.1 response (head, and a body of its `Content-Length`) and returns
/// it as text; what was read so far if the connection ends first.
pub fn read_response(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => data.push(byte[0]),
            _ => return String::from_utf8_lossy(&data).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    data.extend_from_slice(&body);
    String::from_utf8_lossy(&data).into_owned()
}
