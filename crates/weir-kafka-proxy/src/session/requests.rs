//! The request half: client frames in, the same bytes out to the broker.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Mutex};
use weir_core::io::{BoxRead, BoxWrite};
use weir_core::metrics::OpenConnection;
use weir_wire::{FrameReader, RequestHeaderPeek};

use super::{BrokerSlot, Deferred, InFlight, Muted, Pending, SessionError};
use crate::breaker::WhenFull;
use crate::filter::{FilterChain, RequestAction, Usage};
use crate::shared::Shared;
use crate::snapshot::Snapshots;
use crate::upstream::{Reauthentication, RoundTrip};
use crate::versions;

/// What a produce over its broker's request limit is told under `reject`: retriable, and
/// nothing was written.
const REQUEST_TIMED_OUT: i16 = kafka_protocol::error::ResponseError::RequestTimedOut.code();

pub(super) struct RequestHalf<'a> {
    pub(super) shared: &'a Shared,
    /// The connection's filters, shared with the response half (one hook runs at a time).
    pub(super) chain: &'a Mutex<FilterChain>,
    /// The live configuration, handed to the filters when it changes.
    pub(super) snapshots: Snapshots,
    pub(super) client: FrameReader<BoxRead>,
    /// While SASL at the sidecar has not authenticated the client: when it must have.
    pub(super) authentication_deadline: Option<Instant>,
    pub(super) upstream: BoxWrite,
    /// Counts the broker connection open, once there is one.
    pub(super) upstream_open: &'a mut Option<OpenConnection>,
    pub(super) queue: mpsc::Sender<InFlight>,
    /// The broker connection, when it waits for the client's principal.
    pub(super) deferred: Option<Deferred>,
    /// When the sidecar's own SASL session on the broker connection must be renewed (KIP-368).
    pub(super) reauth: Option<Reauthentication>,
    /// Who the client is, which picks the broker credentials when they depend on it.
    pub(super) principal: Option<String>,
    /// Set while the client must back off (a quota): nothing is read from it meanwhile.
    pub(super) muted: &'a Muted,
    /// The broker's request slots, when circuit breaking limits them.
    pub(super) slots: Option<BrokerSlot>,
    /// This connection's place under the broker's connection limit, held while it lasts.
    pub(super) place: Option<tokio::sync::OwnedSemaphorePermit>,
    /// This connection, counted against connection quotas once its principal is known.
    pub(super) counted: Option<crate::quota::CountedConnection>,
}

impl RequestHalf<'_> {
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        let idle = self.shared.config.idle_timeout();
        let mut client_counter: Option<(Bytes, Counter)> = None;
        let mut last_frame = Instant::now();
        loop {
            let now = Instant::now();
            let mut wait = (last_frame + idle).saturating_duration_since(now);
            if let Some(deadline) = self.authentication_deadline {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            // A quiet connection gives its buffer back; the same timer serves both.
            let release_first = self.client.holds_idle_memory() && super::RELEASE_IDLE_BUFFER_AFTER < wait;
            let step = if release_first { super::RELEASE_IDLE_BUFFER_AFTER } else { wait };
            let frame = tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return Ok(()),
                read = tokio::time::timeout(step, self.client.next_frame()) => match read {
                    Err(_) if release_first => {
                        self.client.release_if_empty();
                        continue;
                    }
                    Err(_) if self.authentication_deadline.is_some_and(|d| Instant::now() >= d) => {
                        return Err(SessionError::AuthenticationTimeout(self.shared.config.authentication_timeout()));
                    }
                    Err(_) => {
                        tracing::debug!(?idle, "closing idle connection");
                        return Ok(());
                    }
                    Ok(Ok(Some(frame))) => frame,
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Err(weir_wire::FrameError::TooLarge { size, limit })) if self.authentication_deadline.is_some() => {
                        return Err(SessionError::UnauthenticatedFrameTooLarge { size, limit });
                    }
                    Ok(Err(err)) => return Err(SessionError::ClientFrame(err)),
                },
            };
            // A throttled client's next request waits out the throttle (the wait may have
            // begun while this read was pending).
            if let Some(until) = self.muted.take() {
                tokio::select! {
                    biased;
                    _ = self.shared.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
            let started = Instant::now();
            last_frame = started;
            let peek = RequestHeaderPeek::parse(&frame)?;
            let api = self.shared.metrics.api(peek.api_key);
            api.requests.inc();
            api.request_bytes.inc_by(frame.len() as u64);
            self.count_client(&peek, &mut client_counter);

            if !peek.version_is_known() {
                if peek.api_key == ApiKey::ApiVersions {
                    let answer = versions::unsupported_version_response(peek.correlation_id)
                        .map_err(SessionError::BadRequest)?;
                    self.enqueue(InFlight::Local(peek.api_key, answer)).await?;
                    continue;
                }
                let known = peek.known_versions();
                return Err(SessionError::UnsupportedVersion {
                    api: peek.api_key,
                    version: peek.api_version,
                    min: known.min,
                    max: known.max,
                });
            }
            if peek.api_key == ApiKey::SaslHandshake && peek.api_version == 0 {
                return Err(SessionError::SaslHandshakeV0);
            }
            let mut chain = super::lock_chain(self.chain).await;
            if self.snapshots.has_changed().unwrap_or(false) {
                chain.on_snapshot(&self.snapshots.borrow_and_update());
            }
            let outcome = chain.on_request(self.shared, &peek, frame).await?;
            drop(chain);
            if let Some(authenticated) = outcome.authenticated {
                self.authentication_deadline = None;
                self.client.set_max_frame(self.shared.config.limits.max_frame_bytes);
                let snapshot = self.snapshots.borrow().clone();
                let (counted, wait) = super::admit_connection(self.shared, &snapshot, Some(&authenticated.principal))?;
                self.counted = Some(counted);
                if !wait.is_zero() {
                    self.muted.until(tokio::time::Instant::now() + wait);
                }
                self.principal = Some(authenticated.principal);
            }
            match outcome.action {
                RequestAction::Continue => {}
                RequestAction::Answer(answer) => {
                    self.enqueue(InFlight::Local(peek.api_key, answer)).await?;
                    continue;
                }
                RequestAction::AnswerAndClose(answer) => {
                    self.enqueue(InFlight::Local(peek.api_key, answer)).await?;
                    // Ending the request half lets the response half deliver the answer,
                    // then the connection closes.
                    return Ok(());
                }
                RequestAction::Drop => continue,
            }
            let (frame, mut meters) = (outcome.frame, outcome.meters);
            let expects_response = peek.api_key != ApiKey::Produce
                || weir_wire::produce::acks(frame.get(peek.body_offset..).unwrap_or_default(), peek.api_version)
                    .map_err(SessionError::BadRequestBody)?
                    != 0;
            // Boxed: once per connection or rarer, and large (TLS and SASL towards the broker);
            // inline they would size every connection's idle state.
            if let Some(deferred) = self.deferred.take() {
                Box::pin(self.connect(deferred)).await?;
            }
            if self.reauth.as_ref().is_some_and(|r| Instant::now() >= r.due) {
                Box::pin(self.reauthenticate()).await?;
            }
            let slot = match &self.slots {
                None => None,
                Some(slots) => match self.take_slot(slots, &peek, &frame, expects_response).await? {
                    Some(slot) => Some(slot),
                    None => continue,
                },
            };
            let proxy_time = started.elapsed();
            if expects_response {
                let pending = Pending {
                    correlation_id: peek.correlation_id,
                    api_key: peek.api_key,
                    version: peek.api_version,
                    sent_at: Instant::now(),
                    proxy_time,
                    notes: outcome.notes,
                    changes_response: outcome.changes_response,
                    throttle: outcome.throttle,
                    meters,
                    _slot: slot,
                    timeout: self.shared.config.upstream.circuit_breaker.request_timeout_ms.and_then(|ms| {
                        let body = frame.get(peek.body_offset..).unwrap_or_default();
                        let waits = crate::breaker::answer_may_wait(peek.api_key, peek.api_version, body)?;
                        Some(Duration::from_millis(ms) + waits)
                    }),
                };
                self.enqueue(InFlight::Upstream(pending)).await?;
            } else {
                api.proxy_seconds.observe(proxy_time);
                // No response to say it in (acks=0): the client is only not read for a while,
                // as a broker does.
                let throttle = outcome.throttle.max(meters.tell(Usage::SidecarTime(proxy_time), self.shared));
                if !throttle.is_zero() {
                    self.shared.metrics.throttled(peek.api_key, throttle);
                    self.muted.until(tokio::time::Instant::now() + throttle);
                }
            }
            self.upstream.write_all(&frame).await.map_err(SessionError::UpstreamIo)?;
        }
    }

    /// Makes the broker connection that waited for the client's principal, and hands its
    /// reading half to the response half (before any response is owed on it).
    async fn connect(&mut self, deferred: Deferred) -> Result<(), SessionError> {
        let principal = self.principal.as_deref();
        let super::Upstream { read, write, reauth, slots, place } =
            super::connect_upstream(self.shared, deferred.target, principal).await?;
        self.slots = slots;
        self.place = place;
        *self.upstream_open = Some(self.shared.metrics.connections.upstream_opened());
        let max_frame = self.shared.config.limits.max_frame_bytes;
        deferred.sender.send(FrameReader::new(read, max_frame)).map_err(|_| SessionError::UpstreamClosed)?;
        self.upstream = write;
        self.reauth = reauth;
        Ok(())
    }

    /// Renews the sidecar's SASL session on the broker connection before the next request goes
    /// out: the exchange is queued behind the requests already sent, so responses stay in
    /// order, and no client request is read meanwhile (the broker expects nothing else during
    /// the exchange).
    async fn reauthenticate(&mut self) -> Result<(), SessionError> {
        let Some(due) = self.reauth.take() else { return Ok(()) };
        let timeout = self.shared.connector.timeout();
        let mut channel = InSession { upstream: &mut self.upstream, queue: &self.queue, timeout };
        // Correlation ids of the sidecar's own: clients count up from 0.
        self.reauth = self.shared.connector.reauthenticate(&due, &mut channel, i32::MAX - 3).await?;
        tracing::debug!(broker = %due.address, "re-authenticated to the broker (KIP-368)");
        Ok(())
    }

    /// A slot for this request at its broker: at once when one is free; else, a produce
    /// under `reject` is failed here and anything else waits for one. None: not to be
    /// forwarded (answered here, or the sidecar stops).
    async fn take_slot(
        &self,
        slot: &BrokerSlot,
        peek: &RequestHeaderPeek,
        frame: &Bytes,
        expects_response: bool,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, SessionError> {
        if let Ok(permit) = slot.slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let metrics = &self.shared.metrics;
        if self.shared.slots.when_full() == WhenFull::Reject && peek.api_key == ApiKey::Produce && expects_response {
            metrics.over_broker_limit(&slot.broker, "rejected");
            let answer = crate::answers::failed_produce_answer(frame, peek, REQUEST_TIMED_OUT)?;
            self.enqueue(InFlight::Local(peek.api_key, answer)).await?;
            return Ok(None);
        }
        metrics.over_broker_limit(&slot.broker, "queued");
        tokio::select! {
            biased;
            // Stopping: the request goes nowhere; the loop ends at its next read.
            _ = self.shared.shutdown.cancelled() => Ok(None),
            permit = slot.slots.clone().acquire_owned() => Ok(permit.ok()),
        }
    }

    async fn enqueue(&self, entry: InFlight) -> Result<(), SessionError> {
        enqueue(&self.queue, entry).await
    }

    fn count_client(&self, peek: &RequestHeaderPeek, cached: &mut Option<(Bytes, Counter)>) {
        let id = peek.client_id.clone().unwrap_or_default();
        match cached {
            Some((cached_id, counter)) if *cached_id == id => {
                counter.inc();
            }
            _ => {
                let counter = self.shared.metrics.client(peek.client_id_str());
                counter.inc();
                *cached = Some((id, counter));
            }
        };
    }
}

async fn enqueue(queue: &mpsc::Sender<InFlight>, entry: InFlight) -> Result<(), SessionError> {
    // The response half only drops its receiver when it has failed; its error is the one that
    // gets reported, so this side just stops.
    queue.send(entry).await.map_err(|_| SessionError::UpstreamClosed)
}

/// Round trips of the sidecar's own on a running broker connection: each request is queued as
/// an `Internal` entry, so the response half hands its answer here instead of to the client.
struct InSession<'a> {
    upstream: &'a mut BoxWrite,
    queue: &'a mpsc::Sender<InFlight>,
    timeout: std::time::Duration,
}

impl RoundTrip for InSession<'_> {
    async fn round_trip(&mut self, frame: Bytes) -> Result<Bytes, String> {
        let correlation_id = RequestHeaderPeek::parse(&frame).map_err(|e| e.to_string())?.correlation_id;
        let (reply, answer) = oneshot::channel();
        enqueue(self.queue, InFlight::Internal { correlation_id, reply }).await.map_err(|e| e.to_string())?;
        self.upstream.write_all(&frame).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|_| "the broker connection closed before the answer".to_owned())
    }
}
