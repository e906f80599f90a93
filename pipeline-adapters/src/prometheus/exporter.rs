//! [`PrometheusExporter`]: the recorder, its handle and its upkeep thread.

use crate::util::StopSignal;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::thread::JoinHandle;
use std::time::Duration;

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// A `metrics` recorder is already installed in this process (only one can be).
    #[error("could not install the Prometheus recorder")]
    Install(#[source] metrics_exporter_prometheus::BuildError),
    /// The upkeep thread could not be started.
    #[error("could not start the upkeep thread")]
    Spawn(#[source] std::io::Error),
}

/// The process's `metrics` recorder in Prometheus form, rendered on demand.
///
/// Installed with `PrometheusBuilder::install_recorder`, which starts no runtime and
/// no listener. Histograms (summaries) keep raw samples until the next render or
/// upkeep, so the exporter runs a small upkeep thread (every 5 s by default) to keep
/// them bounded when nobody scrapes; it stops when the exporter is dropped.
pub struct PrometheusExporter {
    handle: PrometheusHandle,
    upkeep: Option<(StopSignal, JoinHandle<()>)>,
}

impl PrometheusExporter {
    /// Installs the recorder with default settings and a 5 s upkeep.
    ///
    /// # Errors
    ///
    /// [`PrometheusError::Install`] if a recorder is already installed,
    /// [`PrometheusError::Spawn`] if the upkeep thread cannot start.
    pub fn install() -> Result<Self, PrometheusError> {
        Self::install_with(PrometheusBuilder::new(), Duration::from_secs(5))
    }

    /// Installs the recorder `builder` describes (buckets, global labels...), with an
    /// upkeep every `upkeep_interval`. Only the builder's recorder settings are used.
    ///
    /// # Errors
    ///
    /// As [`install`](Self::install).
    pub fn install_with(
        builder: PrometheusBuilder,
        upkeep_interval: Duration,
    ) -> Result<Self, PrometheusError> {
        let handle = builder
            .upkeep_timeout(upkeep_interval)
            .install_recorder()
            .map_err(PrometheusError::Install)?;
        let stop = StopSignal::new();
        let stopping = stop.clone();
        let upkept = handle.clone();
        let thread = std::thread::Builder::new()
            .name("prometheus-upkeep".into())
            .spawn(move || {
                while !stopping.sleep(upkeep_interval) {
                    upkept.run_upkeep();
                }
            })
            .map_err(PrometheusError::Spawn)?;
        Ok(PrometheusExporter {
            handle,
            upkeep: Some((stop, thread)),
        })
    }

    /// A handle to render with (cheap to clone).
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.upkeep.take() {
            stop.stop();
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusExporter").finish_non_exhaustive()
    }
}
