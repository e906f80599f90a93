//! Errors of the NATS adapters.

/// Why a NATS source or sink could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// A setting breaks a rule; `field` names the setter.
    #[error("invalid `{field}`: {rule}")]
    InvalidConfig {
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The server could not be reached.
    #[error("could not connect to NATS at {url}")]
    Connect {
        /// The URL tried.
        url: String,
        /// The cause.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A JetStream call (stream or consumer lookup or creation) failed.
    #[error("JetStream {what} failed")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The runtime could not start.
    #[error("could not start the NATS runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why an acknowledgement through a [`NatsAcker`](super::NatsAcker) did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The event has no (valid) ack-id header: it did not come from a `NatsSource`.
    #[error("the event carries no NATS ack id")]
    NotFromNats,
    /// No message waits for this ack id: acknowledged already, or expired after the
    /// consumer's `ack_wait` (the server redelivers it).
    #[error("no pending NATS message with ack id {0} (already acknowledged, or expired)")]
    Unknown(u64),
    /// The server did not confirm (connection lost, timeout); the message will be
    /// redelivered after `ack_wait`.
    #[error("the acknowledgement failed")]
    Failed(#[source] async_nats::Error),
}
