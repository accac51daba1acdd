//! The filter chain: the one seam every per-request policy of the Kafka sidecar plugs into.
//!
//! A [`Filter`] is one object per client connection. It says which requests and responses it
//! wants ([`Filter::wants_request`], [`Filter::wants_response`]); the chain calls its hooks for
//! those only, in chain order for requests and in reverse order for responses, one hook at a
//! time (never two of one connection at once), and keeps responses in request order whatever
//! a hook awaits. A frame no filter wants goes through as the very bytes that arrived.
//!
//! A request hook reads the request in place ([`RequestContext::frame`]), may replace it
//! ([`RequestContext::replace_frame`]), and decides: pass it on, answer it here, answer and
//! close, or drop it (see [`RequestAction`]); an error closes the connection. What it wants to
//! know again when the response comes it leaves as a note ([`RequestContext::remember`]).
//! A response hook sees the broker's answer as a [`ResponseMessage`]: walked in place, or
//! decoded once for all filters that ask and encoded again only if one changed it.
//!
//! Filters see the sidecar only through [`Services`] (metrics, audit, topic names) and the
//! connection through [`ConnectionInfo`]: they are unit-testable without sockets.
//!
//! How to add a filter: write a type, implement [`Filter`] (name, the api keys it wants, the
//! hooks it needs; every hook has a no-op default), and add it to `Shared::filters_for`.
//!
//! ```ignore
//! struct DenyDeletes;
//! impl Filter for DenyDeletes {
//!     fn name(&self) -> &'static str { "deny_deletes" }
//!     fn wants_request(&self, api: ApiKey, _: i16) -> bool { api == ApiKey::DeleteTopics }
//!     fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
//!         let answer = encode_response(cx.header.correlation_id, ApiKey::DeleteTopics,
//!             cx.header.api_version, &DeleteTopicsResponse::default());
//!         ready(answer.map(RequestAction::Answer).map_err(FilterError::BadRequest))
//!     }
//! }
//! ```

mod chain;
mod error;
mod records_pass;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use uuid::Uuid;
use weir_core::audit::{AuditLog, AuthenticationEvent};
use weir_wire::message::ResponseMessage;
use weir_wire::RequestHeaderPeek;

pub(crate) use chain::{FilterChain, Meters};
pub use error::FilterError;
pub(crate) use records_pass::PassNote;
pub use records_pass::{pass_whole_response, PassOutcome, RecordsPass};

use crate::metrics::KafkaMetrics;
use crate::snapshot::Snapshot;
use crate::topic_ids::TopicIds;

/// What a hook returns: its result now ([`ready`]), or a future for a hook that must wait (a
/// password check on a blocking thread, a lookup of topic names: [`later`]). Boxed only then,
/// so the common hook costs no allocation; either way the chain awaits it.
pub struct Hook<'a, T>(HookState<'a, T>);

type HookFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FilterError>> + Send + 'a>>;

enum HookState<'a, T> {
    Ready(Option<Result<T, FilterError>>),
    Later(HookFuture<'a, T>),
}

/// A hook that has nothing to await.
pub fn ready<'a, T>(result: Result<T, FilterError>) -> Hook<'a, T> {
    Hook(HookState::Ready(Some(result)))
}

/// A hook that awaits something.
pub fn later<'a, T>(future: impl Future<Output = Result<T, FilterError>> + Send + 'a) -> Hook<'a, T> {
    Hook(HookState::Later(Box::pin(future)))
}

impl<T: Unpin> Future for Hook<'_, T> {
    type Output = Result<T, FilterError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        // Nothing is pinned in place: `Ready` is moved out, `Later` is boxed.
        match &mut self.get_mut().0 {
            HookState::Ready(result) => std::task::Poll::Ready(result.take().expect("a hook's result is taken once")),
            HookState::Later(future) => future.as_mut().poll(cx),
        }
    }
}

/// One per-request policy of a connection. Every method has a no-op default.
pub trait Filter: Send {
    /// The filter's name, for logs and errors.
    fn name(&self) -> &'static str;

    /// Whether `on_request` wants requests of `api` at `version`.
    fn wants_request(&self, _api: ApiKey, _version: i16) -> bool {
        false
    }

    /// Whether `on_response` wants every response of `api` at `version`. A response to a
    /// request this filter left a note on reaches it anyway.
    fn wants_response(&self, _api: ApiKey, _version: i16) -> bool {
        false
    }

    /// Decides what happens to a request.
    fn on_request<'a>(&'a mut self, _cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        ready(Ok(RequestAction::Continue))
    }

    /// Reads or changes a broker's response.
    fn on_response<'a>(&'a mut self, _cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        ready(Ok(()))
    }

    /// The client authenticated (SASL at the sidecar) after the connection opened: it is
    /// `principal` from now on.
    fn on_authenticated(&mut self, _principal: &str) {}

    /// A new configuration snapshot was published: it applies from the next request on.
    fn on_snapshot(&mut self, _snapshot: &Snapshot) {}

    /// The connection ended (either side closed, or the sidecar stops).
    fn on_connection_end(&mut self, _connection: &ConnectionInfo, _services: &dyn Services) {}
}

/// What happens to a request after a filter saw it.
#[derive(Debug)]
pub enum RequestAction {
    /// Pass it on: to the next filter, then to the broker.
    Continue,
    /// Answer it with this response frame; neither later filters nor the broker see it.
    Answer(Bytes),
    /// Answer it, then close the connection once the answer is out (as a broker does after a
    /// failed SASL exchange).
    AnswerAndClose(Bytes),
    /// Neither forward nor answer it: its client expects no response (an `acks=0` produce).
    Drop,
}

/// What filters may use of the sidecar that runs them.
pub trait Services: Send + Sync {
    fn metrics(&self) -> &KafkaMetrics;
    /// Where authentication and authorization outcomes are written, when configured.
    fn audit(&self) -> Option<&AuditLog>;
    /// Topic ids and the names they stand for, as far as learned.
    fn topic_ids(&self) -> &Arc<TopicIds>;
    /// Asks the cluster (as the sidecar itself) for the names of `ids` not learned yet.
    fn resolve_topic_ids<'a>(&'a self, ids: &'a [Uuid]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// The cluster's ApiVersions, narrowed to what the sidecar handles, once it has answered.
    fn cluster_versions(&self) -> Option<ApiVersionsResponse>;
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The listener's name (`bootstrap`, `broker-<id>`).
    pub listener: String,
    /// The principal authorization and fetch sessions answer to: from the client's
    /// certificate or the fixed principal at first, the SASL one once it authenticated.
    pub principal: Option<String>,
    pub opened_at: Instant,
}

/// Notes filters leave on a request for its response, by filter position.
#[derive(Default)]
pub(crate) struct Notes(Vec<(usize, Box<dyn Any + Send>)>);

impl Notes {
    fn take(&mut self, filter: usize) -> Option<Box<dyn Any + Send>> {
        let at = self.0.iter().position(|(index, _)| *index == filter)?;
        Some(self.0.swap_remove(at).1)
    }
}

/// A client authenticated by a filter (SASL at the sidecar).
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub principal: String,
}

/// What a request and its response used of the sidecar, as a [`Meter`] is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The response's size in bytes, before any of it is forwarded (even a streamed Fetch
    /// response can then still say how long to wait).
    ResponseBytes(usize),
    /// How long the request and its response spent inside the sidecar (not at the broker, and
    /// not waiting out a throttle): told once the response is in, or once the request is out
    /// when no response comes (`acks=0`).
    SidecarTime(Duration),
}

/// Accounts what a request used (a quota) without holding up its response: it answers how
/// long the client must back off, zero for not at all. Called by the session, not in chain
/// order, and never after the connection ended.
pub type Meter = Box<dyn FnMut(Usage, &dyn Services) -> Duration + Send>;

/// One request passing through the chain.
pub struct RequestContext<'a> {
    pub connection: &'a ConnectionInfo,
    pub services: &'a dyn Services,
    pub header: &'a RequestHeaderPeek,
    frame: Bytes,
    filter: usize,
    notes: Notes,
    changes_response: bool,
    authenticated: Option<Authenticated>,
    throttle: Duration,
    meters: Vec<Meter>,
}

impl<'a> RequestContext<'a> {
    pub(crate) fn new(
        connection: &'a ConnectionInfo,
        services: &'a dyn Services,
        header: &'a RequestHeaderPeek,
        frame: Bytes,
    ) -> Self {
        Self {
            connection,
            services,
            header,
            frame,
            filter: 0,
            notes: Notes::default(),
            changes_response: false,
            authenticated: None,
            throttle: Duration::ZERO,
            meters: Vec::new(),
        }
    }

    /// The request frame as it stands (length prefix and header included).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The request body (after the header), as it stands.
    pub fn body(&self) -> &[u8] {
        self.frame.get(self.header.body_offset..).unwrap_or_default()
    }

    /// Sends this frame on instead (same header, changed body).
    pub fn replace_frame(&mut self, frame: Bytes) {
        self.frame = frame;
    }

    /// Leaves a note for this filter's `on_response` to this request (which then reaches it
    /// whatever `wants_response` says). One note per filter and request.
    pub fn remember<T: Any + Send>(&mut self, note: T) {
        self.notes.0.push((self.filter, Box::new(note)));
    }

    /// Says that a filter will change the response: it is then read whole before it is
    /// forwarded (never streamed as it arrives).
    pub fn will_change_response(&mut self) {
        self.changes_response = true;
    }

    /// Tells the client to back off for `wait` (a quota): its response says so in
    /// `throttle_time_ms`, and the connection reads no more requests meanwhile (KIP-219). The
    /// longest wait any filter asks for wins.
    pub fn throttle(&mut self, wait: Duration) {
        self.throttle = self.throttle.max(wait);
    }

    /// Has `meter` told what this request and its response use (see [`Usage`]); whatever wait
    /// it answers is added to the throttle as by [`RequestContext::throttle`]. Unlike a note,
    /// a meter does not make the response be read whole.
    pub fn meter(&mut self, meter: Meter) {
        self.meters.push(meter);
    }

    /// The client proved it is `principal`: every filter hears of it
    /// ([`Filter::on_authenticated`]) and the broker connection, which waited, is made.
    pub fn authenticated(&mut self, principal: String) {
        self.authenticated = Some(Authenticated { principal });
    }
}

/// One broker response passing back through the chain.
pub struct ResponseContext<'a> {
    pub connection: &'a ConnectionInfo,
    pub services: &'a dyn Services,
    pub message: &'a mut ResponseMessage,
    note: Option<Box<dyn Any + Send>>,
    throttle: Duration,
}

impl ResponseContext<'_> {
    /// As [`RequestContext::throttle`], for what only the response tells (a fetch's size).
    pub fn throttle(&mut self, wait: Duration) {
        self.throttle = self.throttle.max(wait);
    }

    /// The note this filter left on the request, if it left one of type `T`.
    pub fn take_note<T: Any>(&mut self) -> Option<T> {
        let note = self.note.take()?;
        note.downcast::<T>().ok().map(|note| *note)
    }
}

/// Notes an authentication outcome: on success the principal goes into the connection's span
/// (so onto every later log line) and the metrics; every outcome goes to the audit log.
pub(crate) fn record_authentication(
    services: &dyn Services,
    connection: &ConnectionInfo,
    mechanism: &str,
    principal: Option<&str>,
    failure: Option<&str>,
) {
    if failure.is_none() {
        let name = principal.unwrap_or("");
        tracing::Span::current().record("principal", name);
        tracing::debug!(principal = name, mechanism, "client authenticated");
        services.metrics().authenticated(name);
    } else {
        services.metrics().authentication_failed(mechanism);
    }
    if let Some(audit) = services.audit() {
        audit.authentication(&AuthenticationEvent {
            mechanism,
            success: failure.is_none(),
            principal,
            client: connection.peer,
            listener: &connection.listener,
            reason: failure,
        });
    }
}
