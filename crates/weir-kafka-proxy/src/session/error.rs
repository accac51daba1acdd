//! Why the sidecar closes a connection, and how loudly it says so.

use kafka_protocol::messages::ApiKey;
use weir_wire::message::MessageError;
use weir_wire::scan::ScanError;
use weir_wire::{FrameError, HeaderError};

use crate::filter::FilterError;
use crate::upstream::UpstreamError;

/// Why a connection was closed by the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bad frame from client: {0}")]
    ClientFrame(FrameError),
    #[error("bad request header: {0}")]
    Header(#[from] HeaderError),
    #[error("{api:?} v{version} is not supported by this sidecar (it handles v{min}-v{max})")]
    UnsupportedVersion { api: ApiKey, version: i16, min: i16, max: i16 },
    #[error("SaslHandshake v0 is not supported: it switches to unframed SASL tokens; use a client that sends SaslHandshake v1 (Kafka 1.0+)")]
    SaslHandshakeV0,
    #[error("malformed request: {0}")]
    BadRequest(MessageError),
    #[error(transparent)]
    BadRequestBody(ScanError),
    #[error("from broker: {0}")]
    BadResponseBody(ScanError),
    #[error("malformed response from broker: {0}")]
    BadResponse(MessageError),
    #[error("bad frame from broker: {0}")]
    UpstreamFrame(FrameError),
    #[error("broker closed the connection")]
    UpstreamClosed,
    #[error("leader hints in a streamed Fetch response lie outside the held-back tail")]
    HintsOutsideTail,
    #[error("broker sent an unsolicited frame")]
    Unsolicited,
    #[error("broker answered correlation id {got} where {expected} was due")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("no address known for broker {0}; the client should refresh its metadata")]
    UnknownBroker(i32),
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error("the broker did not answer {api:?} within {after:?} (upstream.circuit_breaker.request_timeout_ms); the client should retry")]
    UpstreamTimeout { api: ApiKey, after: std::time::Duration },
    #[error("{principal} already has {max} connections open, the most quota `{rule}` allows")]
    ConnectionQuota { rule: std::sync::Arc<str>, principal: String, max: u32 },
    #[error(
        "broker {address} is ejected for {left:?} more after failed connects; the client should refresh its metadata"
    )]
    Ejected { address: String, left: std::time::Duration },
    #[error("broker {address} holds its maximum of {limit} client connections (upstream.circuit_breaker.max_connections_per_broker); the client should connect again")]
    BrokerConnectionLimit { address: String, limit: usize },
    #[error(transparent)]
    Tls(weir_core::tls::TlsError),
    #[error("frame of {size} bytes before authentication exceeds limits.max_unauthenticated_frame_bytes ({limit})")]
    UnauthenticatedFrameTooLarge { size: usize, limit: usize },
    #[error("no SASL authentication within {0:?} of connecting")]
    AuthenticationTimeout(std::time::Duration),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    #[error("broker connection: {0}")]
    UpstreamIo(std::io::Error),
}

impl SessionError {
    /// A short label for the `closed_connections` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            // A client that reset its connection is leaving, not sending a bad request.
            Self::ClientIo(_) | Self::ClientFrame(FrameError::Io(_)) => "client_io",
            Self::ClientFrame(_) | Self::Header(_) | Self::BadRequest(_) | Self::BadRequestBody(_) => "bad_request",
            Self::UnsupportedVersion { .. } | Self::SaslHandshakeV0 => "unsupported_version",
            Self::BadResponse(_)
            | Self::BadResponseBody(_)
            | Self::UpstreamFrame(_)
            | Self::Unsolicited
            | Self::CorrelationMismatch { .. } => "bad_response",
            Self::UpstreamClosed | Self::UpstreamIo(_) => "upstream_closed",
            Self::UnknownBroker(_) | Self::Connect(_) => "upstream_unreachable",
            Self::Ejected { .. } => "upstream_ejected",
            Self::BrokerConnectionLimit { .. } => "upstream_connection_limit",
            Self::ConnectionQuota { .. } => "connection_quota",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::AuthenticationTimeout(_) => "authentication_timeout",
            Self::UnauthenticatedFrameTooLarge { .. } => "unauthenticated",
            Self::HintsOutsideTail => "rewrite_failed",
            Self::Tls(_) => "tls_handshake",
            Self::Filter(err) => err.reason(),
        }
    }

    /// Whether the cause is the peer simply going away (not worth a warning).
    fn is_disconnect(&self) -> bool {
        matches!(self, Self::ClientIo(_) | Self::ClientFrame(FrameError::Io(_)))
    }

    /// Logs the close at the level it deserves: client mistakes and broker faults are warnings
    /// (quiet logs are part of correct), a broker going away is news, a client leaving is not.
    pub(super) fn log(&self) {
        match self {
            e if e.is_disconnect() => tracing::debug!(error = %e, "client connection ended"),
            // Policy at work, already audited: news, not a fault.
            // Before authentication nobody answers for the noise: news, not a warning each.
            Self::AuthenticationTimeout(_) | Self::UnauthenticatedFrameTooLarge { .. } => {
                tracing::info!(error = %self, "closing connection")
            }
            Self::Filter(err) if err.is_policy() => tracing::info!(error = %self, "closing connection"),
            Self::ConnectionQuota { .. } => tracing::info!(error = %self, "closing connection"),
            Self::Filter(err) if err.is_internal() => tracing::error!(error = %self, "closing connection"),
            Self::UpstreamClosed | Self::UpstreamIo(_) => tracing::info!(error = %self, "closing client connection"),
            // The ejection itself was a warning; each client told of it is not.
            Self::Ejected { .. } => tracing::debug!(error = %self, "closing client connection"),
            // Counted per broker; each client it closes is policy at work.
            Self::BrokerConnectionLimit { .. } => tracing::debug!(error = %self, "closing client connection"),
            Self::HintsOutsideTail | Self::CorrelationMismatch { .. } => {
                tracing::error!(error = %self, "closing connection")
            }
            _ => tracing::warn!(error = %self, "closing connection"),
        }
    }
}
