//! Why a filter closes a connection.

use kafka_protocol::messages::ApiKey;
use weir_wire::message::MessageError;
use weir_wire::scan::ScanError;

use crate::rewrite::RewriteError;

/// A filter's reason to close the connection: the session logs it at the level it deserves
/// and counts it under [`FilterError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("malformed request: {0}")]
    BadRequest(MessageError),
    #[error(transparent)]
    BadRequestBody(ScanError),
    #[error("malformed response from broker: {0}")]
    BadResponse(MessageError),
    #[error("from broker: {0}")]
    BadResponseBody(ScanError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error("{api:?} denied by policy ({operation} on {resource}) and it has no partial answer; closing")]
    Denied { api: ApiKey, operation: &'static str, resource: String },
    #[error("the request's topic ids stayed undecided after they were looked up")]
    UnresolvedTopicIds,
    #[error("{0:?} request before authenticating")]
    Unauthenticated(ApiKey),
    #[error("the SASL session of `{0}` ended without re-authentication (KIP-368)")]
    SessionExpired(String),
    #[error("the upstream cluster has not answered the sidecar yet; an unauthenticated client's ApiVersions is not forwarded")]
    UpstreamNotReady,
    #[error("cannot rename the topics of an alias: {0}")]
    Rename(weir_wire::rename::RenameError),
    #[error("fault injection rule `{0}` drops the connection")]
    FaultInjected(std::sync::Arc<str>),
}

impl FilterError {
    /// A short label for the `closed_connections` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::BadRequestBody(_) | Self::Rename(_) => "bad_request",
            Self::BadResponse(_) | Self::BadResponseBody(_) => "bad_response",
            Self::Rewrite(_) => "rewrite_failed",
            Self::Denied { .. } | Self::UnresolvedTopicIds => "denied",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::SessionExpired(_) => "session_expired",
            Self::UpstreamNotReady => "upstream_unreachable",
            Self::FaultInjected(_) => "fault_injected",
        }
    }

    /// Policy at work (already audited), or noise before authentication nobody answers for:
    /// news, not a fault.
    pub fn is_policy(&self) -> bool {
        matches!(self, Self::Denied { .. } | Self::SessionExpired(_) | Self::UpstreamNotReady | Self::FaultInjected(_))
    }

    /// A fault of the sidecar itself rather than of a peer.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Rewrite(_))
    }
}
