//! The response half: broker frames in, in request order, rewritten only where they reveal a
//! broker address.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Mutex};
use weir_core::io::{BoxRead, BoxWrite};
use weir_wire::fetch::{blank_node_endpoints, FetchStream};
use weir_wire::message::ResponseMessage;
use weir_wire::scan::TopicRef;
use weir_wire::{FrameError, FrameReader};

use super::{InFlight, Muted, Pending, SessionError};
use crate::filter::{FilterChain, FilterError, PassOutcome, RecordsPass, Services, Usage};
use crate::shared::Shared;

/// Fetch responses larger than this are streamed (see `stream_fetch`).
const STREAM_ABOVE: usize = 256 * 1024;
/// What a streamed response may keep buffered at once (the held tail included): with the
/// largest responses no longer held whole, this bounds a consumer connection's memory.
const STREAM_WINDOW: usize = 128 * 1024;
/// How much of a streamed Fetch response (v16+) waits for the end: its top-level tagged fields,
/// where leader hints sit. Tens of bytes per broker; 64 KiB covers a thousand brokers.
const HELD_TAIL: usize = 64 * 1024;
/// The first Fetch response version that can carry leader hints (KIP-951).
const FIRST_LEADER_HINTS: i16 = 16;
/// Length prefix and correlation id: what must be checked before any byte is forwarded.
const HEADER_END: usize = 8;

fn check_correlation(frame: &[u8], pending: &Pending) -> Result<(), SessionError> {
    let got = weir_wire::header::response_correlation_id(frame).unwrap_or(i32::MIN);
    if got != pending.correlation_id {
        return Err(SessionError::CorrelationMismatch { expected: pending.correlation_id, got });
    }
    Ok(())
}

/// A wait as `throttle_time_ms` says it: whole milliseconds, at least one.
fn throttle_ms(wait: Duration) -> i32 {
    i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1)
}

fn upstream_frame_error(err: FrameError) -> SessionError {
    match err {
        FrameError::Io(err) => SessionError::UpstreamIo(err),
        err => SessionError::UpstreamFrame(err),
    }
}

pub(super) struct ResponseHalf<'a> {
    pub(super) shared: &'a Shared,
    /// The connection's filters, shared with the request half (one hook runs at a time).
    pub(super) chain: &'a Mutex<FilterChain>,
    pub(super) upstream: FrameReader<BoxRead>,
    pub(super) client: BoxWrite,
    /// The broker connection's reading half, when the request half makes it later.
    pub(super) connected: Option<oneshot::Receiver<FrameReader<BoxRead>>>,
    pub(super) pending: mpsc::Receiver<InFlight>,
    /// Set when a response tells the client to back off.
    pub(super) muted: &'a Muted,
    /// Ids and sampling for the sidecar's own request spans.
    pub(super) ids: weir_core::otlp::Ids,
    /// Where records passes write partitions anew, kept between streamed responses (a
    /// consumer's are alike) and given back when the connection is idle.
    pub(super) pass_out: Vec<u8>,
}

impl ResponseHalf<'_> {
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        loop {
            // While nothing is owed, still watch the broker so that its closing (a restart, say)
            // closes the client promptly instead of at the next request.
            // Biased: an entry is always queued before its request is written, so when a
            // response is readable its entry is already here and must win the race.
            let holds_memory = self.upstream.holds_idle_memory() || self.pass_out.capacity() > 0;
            let entry = tokio::select! {
                biased;
                entry = self.pending.recv() => entry,
                _ = tokio::time::sleep(super::RELEASE_IDLE_BUFFER_AFTER), if holds_memory => {
                    self.upstream.release_if_empty();
                    self.pass_out = Vec::new();
                    continue;
                }
                frame = self.upstream.next_frame() => return Err(match frame {
                    Ok(Some(_)) => SessionError::Unsolicited,
                    Ok(None) => SessionError::UpstreamClosed,
                    Err(err) => SessionError::UpstreamFrame(err),
                }),
            };
            let Some(entry) = entry else { return Ok(()) };
            let out = match entry {
                InFlight::Local(key, frame) => {
                    let api = self.shared.metrics.api(key);
                    api.responses.inc();
                    api.response_bytes.inc_by(frame.len() as u64);
                    frame
                }
                InFlight::Internal { correlation_id, reply } => {
                    self.await_connected().await?;
                    self.relay_internal(correlation_id, reply).await?;
                    continue;
                }
                InFlight::Upstream(pending) => {
                    self.await_connected().await?;
                    match self.relay_response(pending).await? {
                        Some(out) => out,
                        None => continue,
                    }
                }
            };
            self.client.write_all(&out).await.map_err(SessionError::ClientIo)?;
        }
    }

    /// Relays the broker's next response. Returns it for the caller to write, or `None` when a
    /// large Fetch response was already streamed to the client.
    async fn relay_response(&mut self, mut pending: Pending) -> Result<Option<Bytes>, SessionError> {
        let next = self.upstream.next_frame_size();
        let next = match pending.timeout {
            Some(timeout) => {
                let deadline = tokio::time::Instant::from_std(pending.sent_at) + timeout;
                tokio::time::timeout_at(deadline, next)
                    .await
                    .map_err(|_| SessionError::UpstreamTimeout { api: pending.api_key, after: timeout })?
            }
            None => next.await,
        };
        let total = match next {
            Ok(Some(total)) => total,
            Ok(None) => return Err(SessionError::UpstreamClosed),
            Err(err) => return Err(upstream_frame_error(err)),
        };
        // Known before any byte goes, so that even a streamed response can say it.
        let said = pending.throttle.max(pending.meters.tell(Usage::ResponseBytes(total), self.shared));
        if pending.api_key == ApiKey::Fetch && total > STREAM_ABOVE && !pending.changes_response {
            // Boxed so that its state sizes only the connections streaming at the moment.
            Box::pin(self.stream_fetch(pending, total, said)).await?;
            return Ok(None);
        }
        let frame = self.read_whole(total).await?;
        let received = Instant::now();
        check_correlation(&frame, &pending)?;
        let mut message = ResponseMessage::new(frame, pending.api_key, pending.version);
        let throttle =
            super::lock_chain(self.chain).await.on_response(self.shared, &mut message, pending.notes).await?;
        let spent = Usage::SidecarTime(pending.proxy_time + received.elapsed());
        let throttle = throttle.max(said).max(pending.meters.tell(spent, self.shared));
        if !throttle.is_zero() {
            message
                .raise_throttle_time_ms(throttle_ms(throttle))
                .map_err(|e| SessionError::Filter(FilterError::BadResponse(e)))?;
        }
        let out = message.into_frame().map_err(|e| SessionError::Filter(FilterError::BadResponse(e)))?;
        self.count_response(pending.api_key, pending.sent_at, pending.proxy_time, out.len(), received);
        self.request_span(pending.api_key, pending.version, pending.sent_at, pending.proxy_time, received, out.len());
        self.back_off(pending.api_key, pending.version, throttle).await;
        Ok(Some(out))
    }

    /// Makes a throttled client wait: a client that reads `throttle_time_ms` gets its response
    /// now and is not read until the time is up; an older one gets its response late.
    async fn back_off(&self, api: ApiKey, version: i16, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        self.shared.metrics.throttled(api, throttle);
        if super::sent_before_throttling(api, version) {
            self.muted.until(tokio::time::Instant::now() + throttle);
        } else {
            tokio::time::sleep(throttle).await;
        }
    }

    /// Takes over the broker connection the request half made after authentication, if any.
    async fn await_connected(&mut self) -> Result<(), SessionError> {
        if let Some(connected) = self.connected.take() {
            // Sent before the first upstream entry was queued.
            self.upstream = connected.await.map_err(|_| SessionError::UpstreamClosed)?;
        }
        Ok(())
    }

    /// The broker's answer to a request of the sidecar's own: to `reply`, not to the client.
    async fn relay_internal(&mut self, correlation_id: i32, reply: oneshot::Sender<Bytes>) -> Result<(), SessionError> {
        let total = match self.upstream.next_frame_size().await {
            Ok(Some(total)) => total,
            Ok(None) => return Err(SessionError::UpstreamClosed),
            Err(err) => return Err(upstream_frame_error(err)),
        };
        let frame = self.read_whole(total).await?;
        let got = weir_wire::header::response_correlation_id(&frame).unwrap_or(i32::MIN);
        if got != correlation_id {
            return Err(SessionError::CorrelationMismatch { expected: correlation_id, got });
        }
        // The request half may have given up waiting; then it has already failed.
        let _ = reply.send(frame);
        Ok(())
    }

    async fn read_whole(&mut self, total: usize) -> Result<Bytes, SessionError> {
        self.upstream.whole_frame(total).await.map_err(upstream_frame_error)
    }

    fn count_response(&self, key: ApiKey, sent_at: Instant, proxy_time: Duration, len: usize, received: Instant) {
        let api = self.shared.metrics.api(key);
        api.responses.inc();
        api.response_bytes.inc_by(len as u64);
        api.upstream_seconds.observe(received.duration_since(sent_at));
        api.proxy_seconds.observe(proxy_time + received.elapsed());
    }

    /// A span of the sidecar's own for this request, when `traces.request_spans` samples it:
    /// how long it spent at the broker and in the sidecar.
    fn request_span(
        &self,
        api: ApiKey,
        version: i16,
        sent_at: Instant,
        proxy_time: Duration,
        received: Instant,
        bytes: usize,
    ) {
        let Some(sink) = &self.shared.spans else { return };
        let ratio = self.shared.snapshots.borrow().traces.as_ref().map_or(0.0, |t| t.request_spans);
        if ratio <= 0.0 || !self.ids.sample(ratio) {
            return;
        }
        let upstream = received.duration_since(sent_at);
        let sidecar = proxy_time + received.elapsed();
        let end = std::time::SystemTime::now();
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        sink.send(weir_core::otlp::Span {
            trace_id: self.ids.trace_id(),
            span_id: self.ids.span_id(),
            parent: None,
            name: format!("kafka {api:?}"),
            kind: weir_core::otlp::SpanKind::Server,
            start: end.checked_sub(upstream + sidecar).unwrap_or(end),
            end,
            attributes: vec![
                ("weir.api_version", i64::from(version).into()),
                ("weir.upstream_us", micros(upstream).into()),
                ("weir.sidecar_us", micros(sidecar).into()),
                ("weir.response_bytes", i64::try_from(bytes).unwrap_or(i64::MAX).into()),
            ],
            links: Vec::new(),
            error: None,
        });
    }

    /// Forwards a large Fetch response while it arrives, instead of after its last byte: for
    /// the megabytes of a busy consumer's fetch, store-and-forward would add the time to
    /// receive them all to every fetch round trip, and hold them all in memory. The response
    /// passes through a window of [`STREAM_WINDOW`] bytes: each piece is scanned (partitions,
    /// record counts, the session; see [`FetchStream`]), sent on, and dropped.
    ///
    /// Only the tail is held back until the whole response is in: from v16 it may end with
    /// leader hints (broker addresses), which cannot be rewritten in place (the length was
    /// already sent), so they are blanked into an unknown tagged field of the same size.
    /// Clients skip unknown tagged fields and, without the hint, find the new leader through
    /// Metadata (as before KIP-951).
    ///
    /// The filters see the scan's digest once the response is in, read-only. A throttle known
    /// before the first byte (`said`: a fetch quota metered by the response's size) is written
    /// into its `throttle_time_ms` as the head goes out; one known only later mutes the client.
    async fn stream_fetch(&mut self, mut pending: Pending, total: usize, said: Duration) -> Result<(), SessionError> {
        tracing::debug!(bytes = total, "streaming a Fetch response");
        // Fetch v1+ carries `throttle_time_ms` first in the body.
        let mut raise_to = (pending.version >= 1 && !said.is_zero()).then(|| throttle_ms(said));
        let held = if pending.version >= FIRST_LEADER_HINTS { HELD_TAIL.min(total) } else { 0 };
        let forwardable = total - held;
        let mut passes = StreamedPasses::new(pending.notes.take_passes(), std::mem::take(&mut self.pass_out));
        let mut scan = FetchStream::new(pending.version, total);
        if passes.active() {
            scan = scan.keep_spans();
        }
        // Offsets in the frame: of the first byte still buffered, and of the first not yet sent.
        let (mut kept_from, mut sent) = (0, 0);
        loop {
            let buffered = self.upstream.buffered();
            let have = kept_from + buffered.len().min(total - kept_from);
            if have >= HEADER_END {
                if sent == 0 {
                    check_correlation(&buffered[..HEADER_END], &pending)?;
                }
                let scanned = scan.consumed();
                scan.feed(&buffered[scanned - kept_from..have - kept_from]).map_err(SessionError::BadResponseBody)?;
                if passes.active() {
                    passes.apply(&mut scan, &mut self.upstream, kept_from, self.shared).await?;
                }
                let buffered = self.upstream.buffered();
                let upto = have.min(forwardable).min(passes.hold(&scan));
                if let Some(ms) = raise_to.take() {
                    let at = scan.body_start();
                    if at > 0 && upto >= at + 4 {
                        // Nothing was sent or discarded yet: the buffer starts at the frame's start.
                        let mut head = buffered[..at + 4].to_vec();
                        weir_wire::throttle::raise_at(&mut head[at..], ms);
                        self.client.write_all(&head).await.map_err(SessionError::ClientIo)?;
                        sent = at + 4;
                        continue;
                    }
                    // Until the head is in, nothing goes out.
                    if have < total {
                        raise_to = Some(ms);
                        self.upstream.read_within(total, STREAM_WINDOW).await.map_err(upstream_frame_error)?;
                        continue;
                    }
                }
                if upto > sent {
                    let piece = &buffered[sent - kept_from..upto - kept_from];
                    self.client.write_all(piece).await.map_err(SessionError::ClientIo)?;
                    sent = upto;
                }
                let done_with = sent.min(scan.consumed()) - kept_from;
                self.upstream.discard(done_with);
                kept_from += done_with;
            }
            if have >= total {
                break;
            }
            self.upstream.read_within(total, STREAM_WINDOW).await.map_err(upstream_frame_error)?;
        }
        let received = Instant::now();
        let tail_at_body = sent.checked_sub(scan.body_start()).ok_or(SessionError::HintsOutsideTail)?;
        self.upstream.discard(sent - kept_from);
        let mut tail = self.upstream.split_buffered(total - sent);
        let digest = scan.finish().map_err(SessionError::BadResponseBody)?;
        if passes.active() {
            tracing::debug!("a Fetch response streamed through its records passes");
        }
        self.pass_out = passes.out;
        if let Some(at) = &digest.summary.node_endpoints {
            let mut blanked = tail.to_vec();
            if !blank_node_endpoints(&mut blanked, tail_at_body, at) {
                return Err(SessionError::HintsOutsideTail);
            }
            tail = Bytes::from(blanked);
            tracing::debug!("leader hints in a streamed Fetch response blanked");
        }
        let mut message = ResponseMessage::streamed_fetch(digest, pending.version);
        let throttle =
            super::lock_chain(self.chain).await.on_response(self.shared, &mut message, pending.notes).await?;
        self.client.write_all(&tail).await.map_err(SessionError::ClientIo)?;
        self.count_response(ApiKey::Fetch, pending.sent_at, pending.proxy_time, total, received);
        self.request_span(ApiKey::Fetch, pending.version, pending.sent_at, pending.proxy_time, received, total);
        let spent = Usage::SidecarTime(pending.proxy_time + received.elapsed());
        // Beyond what the response said, the client is only not read for a while.
        self.back_off(ApiKey::Fetch, pending.version, throttle.max(said).max(pending.meters.tell(spent, self.shared)))
            .await;
        Ok(())
    }
}

/// The records passes of a streamed Fetch response (see `crate::filter::RecordsPass`): which
/// topics they cover, and each covered partition given to them once its records are in.
struct StreamedPasses {
    passes: Vec<Box<dyn RecordsPass>>,
    /// Per topic of the response so far: its name when some pass covers it.
    covered: Vec<Option<String>>,
    /// Where passes write a partition's records anew (the connection's, kept between responses).
    out: Vec<u8>,
}

impl StreamedPasses {
    fn new(passes: Vec<Box<dyn RecordsPass>>, out: Vec<u8>) -> Self {
        Self { passes, covered: Vec::new(), out }
    }

    fn active(&self) -> bool {
        !self.passes.is_empty()
    }

    /// How far the response may be forwarded: everything without passes; with them, what was
    /// scanned, short of a covered partition whose records are not all in (its error code,
    /// before them, may still change).
    fn hold(&self, scan: &FetchStream) -> usize {
        if !self.active() {
            return usize::MAX;
        }
        match scan.partition_in_progress() {
            Some((topic, start)) if self.covered.get(topic).is_some_and(Option::is_some) => start,
            _ => scan.consumed(),
        }
    }

    /// Learns the topics read since the last call, then gives the passes each covered
    /// partition read whole, writing their answers into the buffered frame in place.
    /// `kept_from` is the frame offset of the first buffered byte.
    async fn apply(
        &mut self,
        scan: &mut FetchStream,
        upstream: &mut FrameReader<BoxRead>,
        kept_from: usize,
        services: &Shared,
    ) -> Result<(), SessionError> {
        while self.covered.len() < scan.topics_read() {
            let name = match scan.topic(self.covered.len()) {
                Some(TopicRef::Name(name)) => Some(name.to_owned()),
                Some(TopicRef::Id(id)) => {
                    let id = uuid::Uuid::from_bytes(id);
                    if services.topic_ids().name(&id).is_none() {
                        services.resolve_topic_ids(&[id]).await;
                    }
                    services.topic_ids().name(&id).map(|name| name.to_string())
                }
                None => None,
            };
            let covered = name.filter(|name| self.passes.iter().any(|pass| pass.covers(name)));
            self.covered.push(covered);
        }
        for span in scan.take_spans() {
            let Some(topic) = self.covered.get(span.topic).and_then(Option::as_deref) else { continue };
            let records = span.records.start - kept_from..span.records.end - kept_from;
            for pass in &mut self.passes {
                if !pass.covers(topic) {
                    continue;
                }
                let fetched = &upstream.buffered()[records.clone()];
                let outcome = pass.partition(services, topic, span.partition, fetched, &mut self.out).await?;
                let buffer = upstream.buffered_mut();
                let failed = match outcome {
                    PassOutcome::Same => None,
                    PassOutcome::Rewritten if self.out.len() == records.len() => {
                        buffer[records.clone()].copy_from_slice(&self.out);
                        None
                    }
                    PassOutcome::Rewritten => {
                        tracing::warn!(
                            topic,
                            partition = span.partition,
                            "records rewritten to {} bytes where {} were fetched: not served",
                            self.out.len(),
                            records.len()
                        );
                        Some(ResponseError::UnknownServerError)
                    }
                    PassOutcome::Failed(error) => Some(error),
                };
                if let Some(error) = failed {
                    // No records: the section keeps its length, as filler clients skip.
                    let code_at = span.error_code_at - kept_from;
                    buffer[code_at..code_at + 2].copy_from_slice(&error.code().to_be_bytes());
                    weir_wire::batch::fill(&mut buffer[records.clone()]);
                    scan.fail_partition(span.index, error.code());
                    break;
                }
            }
        }
        Ok(())
    }
}
