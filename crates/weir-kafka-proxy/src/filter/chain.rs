//! Runs a connection's filters over each request and each response.

use std::time::Duration;

use bytes::Bytes;
use weir_wire::message::ResponseMessage;
use weir_wire::RequestHeaderPeek;

use super::{Authenticated, ConnectionInfo, Filter, FilterError, Notes, RequestAction, RequestContext};
use super::{Meter, ResponseContext, Services, Usage};
use crate::snapshot::Snapshot;

/// A connection's filters, in chain order, and what they know of the connection.
pub(crate) struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
    connection: ConnectionInfo,
}

/// What the chain made of a request.
pub(crate) struct RequestOutcome {
    pub action: RequestAction,
    /// The frame to forward (the client's, unless a filter replaced it).
    pub frame: Bytes,
    /// What the filters want back with the response.
    pub notes: Notes,
    /// A filter will change the response: read it whole before forwarding it.
    pub changes_response: bool,
    /// The client authenticated with this request.
    pub authenticated: Option<Authenticated>,
    /// How long the client must back off (a quota), zero for not at all.
    pub throttle: Duration,
    /// What meters what the request uses.
    pub meters: Meters,
}

/// A request's meters (see [`Meter`]), empty (and unallocated) for most requests.
#[derive(Default)]
pub(crate) struct Meters(Vec<Meter>);

impl Meters {
    /// Tells every meter of `usage`; the longest wait any asks for.
    pub(crate) fn tell(&mut self, usage: Usage, services: &dyn Services) -> Duration {
        self.0.iter_mut().map(|meter| meter(usage, services)).max().unwrap_or_default()
    }
}

impl FilterChain {
    pub(crate) fn new(filters: Vec<Box<dyn Filter>>, connection: ConnectionInfo) -> Self {
        Self { filters, connection }
    }

    /// Passes a request through the filters that want it, in order, until one answers it.
    pub(crate) async fn on_request(
        &mut self,
        services: &dyn Services,
        header: &RequestHeaderPeek,
        frame: Bytes,
    ) -> Result<RequestOutcome, FilterError> {
        let (api, version) = (header.api_key, header.api_version);
        let mut cx = RequestContext::new(&self.connection, services, header, frame);
        let mut action = RequestAction::Continue;
        for (index, filter) in self.filters.iter_mut().enumerate() {
            if !filter.wants_request(api, version) {
                continue;
            }
            cx.filter = index;
            action = filter.on_request(&mut cx).await.inspect_err(|err| closing(filter.name(), err))?;
            if !matches!(action, RequestAction::Continue) {
                break;
            }
        }
        let RequestContext { frame, notes, changes_response, authenticated, throttle, meters, .. } = cx;
        if let Some(Authenticated { principal }) = &authenticated {
            self.connection.principal = Some(principal.clone());
            for filter in &mut self.filters {
                filter.on_authenticated(principal);
            }
        }
        Ok(RequestOutcome { action, frame, notes, changes_response, authenticated, throttle, meters: Meters(meters) })
    }

    /// Passes a broker's response back through the filters that want it or left a note on its
    /// request, in reverse order. Returns how long the client must back off.
    pub(crate) async fn on_response(
        &mut self,
        services: &dyn Services,
        message: &mut ResponseMessage,
        mut notes: Notes,
    ) -> Result<Duration, FilterError> {
        let (api, version) = (message.api_key(), message.version());
        let mut throttle = Duration::ZERO;
        for (index, filter) in self.filters.iter_mut().enumerate().rev() {
            let note = notes.take(index);
            if note.is_none() && !filter.wants_response(api, version) {
                continue;
            }
            let mut cx =
                ResponseContext { connection: &self.connection, services, message: &mut *message, note, throttle };
            filter.on_response(&mut cx).await.inspect_err(|err| closing(filter.name(), err))?;
            throttle = cx.throttle;
        }
        Ok(throttle)
    }

    /// Hands a new configuration snapshot to every filter.
    pub(crate) fn on_snapshot(&mut self, snapshot: &Snapshot) {
        for filter in &mut self.filters {
            filter.on_snapshot(snapshot);
        }
    }

    /// Tells every filter that the connection ended.
    pub(crate) fn on_connection_end(&mut self, services: &dyn Services) {
        for filter in &mut self.filters {
            filter.on_connection_end(&self.connection, services);
        }
    }
}

/// Which filter closed the connection; the session logs why at the level it deserves.
fn closing(filter: &'static str, err: &FilterError) {
    tracing::debug!(filter, %err, "a filter closes the connection");
}
