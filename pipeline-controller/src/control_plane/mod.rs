//! The control plane (feature `http`): an HTTP API over a running
//! [`Pipeline`](crate::Pipeline), as an embeddable [`axum::Router`].
//!
//! - `GET /api/status`: mode, controller switch, publish-rate limit, memory and every
//!   stage ([`PipelineStatus`](crate::pipeline::PipelineStatus));
//! - `GET /api/decisions?since=SEQ`: the decision log with sequence numbers;
//! - `GET /api/events`: server-sent events, a `status` event every controller tick and
//!   a `decision` event for each decision;
//! - `GET /api/config`, `PATCH /api/config` (dotted paths to values, applied together
//!   through [`ConfigHandle`](crate::config::ConfigHandle)), `GET
//!   /api/config/history`, `POST /api/config/rollback`;
//! - `GET`/`POST /api/controller`: the controller's on/off switch.
//!
//! `docs/control-plane.md` gives every field, status code and the security defaults,
//! and says plainly what an exposed admin port allows.
//!
//! # Why it lives here
//!
//! It is a feature of `pipeline-controller`, not a `pipeline-adapters` module: it is
//! built on what the controller owns (the `Pipeline`, its [`ConfigHandle`], the
//! decision log, the [`ControllerState`](crate::control::ControllerState) switch), and
//! `PipelineBuilder::control_plane` serves it from the pipeline itself; adapters
//! depend on `pipeline-core` only. Without the feature, no HTTP dependency is built.
//!
//! # Mounting it on your own server
//!
//! ```
//! use pipeline_controller::control_plane::{ControlPlane, ControlPlaneConfig};
//! use pipeline_controller::core::bus::SubscriptionConfig;
//! use pipeline_controller::{Pipeline, Stage};
//!
//! let pipeline = Pipeline::<u64>::builder()
//!     .stage(Stage::new(SubscriptionConfig::new("sum")).handler(|_| Ok(())))
//!     .build()?;
//! let plane = ControlPlane::new(pipeline.handle(), ControlPlaneConfig::new().token("s3cret"));
//! // Extra routes of your own get the same token check and limits:
//! let extra = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
//! let app: axum::Router = plane.router_with(extra);
//! // axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?, app).await?;
//! # drop(app);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Served by the pipeline
//!
//! ```
//! use pipeline_controller::control_plane::ControlPlaneConfig;
//! use pipeline_controller::core::bus::SubscriptionConfig;
//! use pipeline_controller::{Pipeline, Stage};
//! use std::time::Duration;
//!
//! let pipeline = Pipeline::<u64>::builder()
//!     .stage(Stage::new(SubscriptionConfig::new("sum")).handler(|_| Ok(())))
//!     .control_plane(ControlPlaneConfig::new()) // 127.0.0.1, a free port
//!     .build()?;
//! pipeline.start()?;
//! let addr = pipeline.control_plane_addr().unwrap();
//! assert!(addr.ip().is_loopback());
//! pipeline.shutdown(Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`ConfigHandle`]: crate::config::ConfigHandle

mod api;
mod config;
mod server;

pub use api::{ControlPlane, KEPT_VERSIONS};
pub use config::{ControlPlaneConfig, DEFAULT_BODY_LIMIT};
pub use server::ControlPlaneServer;
