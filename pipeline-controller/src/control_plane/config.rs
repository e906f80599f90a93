//! The control plane's settings: address, token, body limit, CORS origins.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The default largest request body, bytes (64 KiB): a configuration patch is a few
/// hundred bytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// How the control plane is exposed; the defaults are the safe ones.
///
/// - `addr`: `127.0.0.1:0` (loopback, any free port) unless told otherwise;
/// - `token`: none; set one before binding anything but loopback;
/// - `body_limit`: [`DEFAULT_BODY_LIMIT`];
/// - CORS: no origin allowed, so no browser page from another origin can call it.
///
/// ```
/// use pipeline_controller::control_plane::ControlPlaneConfig;
///
/// let config = ControlPlaneConfig::new()
///     .addr("127.0.0.1:8080".parse()?)
///     .token("s3cret")
///     .body_limit(16 * 1024);
/// assert_eq!(config.bind_addr().port(), 8080);
/// assert!(ControlPlaneConfig::new().bind_addr().ip().is_loopback());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ControlPlaneConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<String>,
    pub(crate) public_reads: bool,
    pub(crate) body_limit: usize,
    pub(crate) allowed_origins: Vec<String>,
}

impl std::fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("ControlPlaneConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("public_reads", &self.public_reads)
            .field("body_limit", &self.body_limit)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            token: None,
            public_reads: false,
            body_limit: DEFAULT_BODY_LIMIT,
            allowed_origins: Vec::new(),
        }
    }
}

impl ControlPlaneConfig {
    /// The safe defaults (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Where [`PipelineBuilder::control_plane`](crate::PipelineBuilder::control_plane)
    /// listens (default `127.0.0.1:0`). A non-loopback address exposes every endpoint
    /// to the network: set a [`token`](Self::token) too (see `docs/control-plane.md`).
    #[must_use]
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request (or only on the
    /// mutating ones, with [`public_reads`](Self::public_reads)). Compared in
    /// constant time. Default: no token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// With a token set, lets `GET` requests (status, decisions, events, configuration
    /// and history) through without it; `PATCH` and `POST` still need it. Default
    /// false: the token protects everything.
    #[must_use]
    pub fn public_reads(mut self, public: bool) -> Self {
        self.public_reads = public;
        self
    }

    /// The largest request body accepted, bytes (default [`DEFAULT_BODY_LIMIT`]);
    /// larger ones get 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Allows browser pages from `origin` (e.g. `https://ops.example.com`, exactly as
    /// the browser sends it in `Origin`) to call the API: CORS headers are sent to it
    /// and its preflight requests answered. Default: none, so no CORS header is ever
    /// sent.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// The address asked for (`127.0.0.1:0` by default).
    pub fn bind_addr(&self) -> SocketAddr {
        self.addr
    }
}
