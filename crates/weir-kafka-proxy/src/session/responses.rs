//! The response half: broker frames in, in request order, rewritten only where they reveal a
//! broker address.

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use weir_core::io::{BoxRead, BoxWrite};
use weir_wire::fetch::{blank_node_endpoints, scan_fetch_response, FetchSummary};
use weir_wire::message::{encode_response_with_header, ResponseFrame};
use weir_wire::produce::scan_produce_response;
use weir_wire::scan::TopicRef;
use weir_wire::{FrameError, FrameReader};

use super::{InFlight, Pending, SessionError};
use crate::metrics::{TopicCache, TrafficPrincipal};
use crate::rewrite::{self, RewriteError};
use crate::sidecar::Shared;
use crate::versions;

/// Fetch responses larger than this are streamed (see `stream_fetch`).
const STREAM_ABOVE: usize = 256 * 1024;
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

fn upstream_frame_error(err: FrameError) -> SessionError {
    match err {
        FrameError::Io(err) => SessionError::UpstreamIo(err),
        err => SessionError::UpstreamFrame(err),
    }
}

pub(super) struct ResponseHalf<'a> {
    pub(super) shared: &'a Shared,
    pub(super) upstream: FrameReader<BoxRead>,
    pub(super) client: BoxWrite,
    /// The broker connection's reading half, when the request half makes it later.
    pub(super) connected: Option<oneshot::Receiver<FrameReader<BoxRead>>>,
    pub(super) pending: mpsc::Receiver<InFlight>,
    /// The principal that owns the fetch sessions this connection opens.
    pub(super) session_owner: TrafficPrincipal,
    pub(super) fetched: &'a mut TopicCache,
}

impl ResponseHalf<'_> {
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        loop {
            // While nothing is owed, still watch the broker so that its closing (a restart, say)
            // closes the client promptly instead of at the next request.
            // Biased: an entry is always queued before its request is written, so when a
            // response is readable its entry is already here and must win the race.
            let entry = tokio::select! {
                biased;
                entry = self.pending.recv() => entry,
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
        let total = match self.upstream.next_frame_size().await {
            Ok(Some(total)) => total,
            Ok(None) => return Err(SessionError::UpstreamClosed),
            Err(err) => return Err(upstream_frame_error(err)),
        };
        if pending.api_key == ApiKey::Fetch && total > STREAM_ABOVE && pending.after.is_none() {
            self.stream_fetch(&pending, total).await?;
            return Ok(None);
        }
        let frame = self.read_whole(total).await?;
        let received = Instant::now();
        check_correlation(&frame, &pending)?;
        let mut out = self.inspect(&pending, frame)?;
        if let Some(after) = pending.after.take() {
            let topic_ids = &self.shared.topic_ids;
            let mut unknown = after.topic_ids(&out).map_err(SessionError::BadResponse)?;
            unknown.retain(|id| topic_ids.name(id).is_none());
            if !unknown.is_empty() {
                self.shared.resolve_topic_ids(&unknown).await;
            }
            out = after.apply(out).map_err(SessionError::BadResponse)?;
        }
        self.count_response(&pending, out.len(), received);
        Ok(Some(out))
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
        loop {
            if let Some(frame) = self.upstream.take_frame(total) {
                return Ok(frame);
            }
            self.upstream.read_more(total).await.map_err(upstream_frame_error)?;
        }
    }

    fn count_response(&self, pending: &Pending, len: usize, received: Instant) {
        let api = self.shared.metrics.api(pending.api_key);
        api.responses.inc();
        api.response_bytes.inc_by(len as u64);
        api.upstream_seconds.observe(received.duration_since(pending.sent_at).as_secs_f64());
        api.proxy_seconds.observe((pending.proxy_time + received.elapsed()).as_secs_f64());
    }

    /// Forwards a large Fetch response while it arrives, instead of after its last byte: for
    /// the megabytes of a busy consumer's fetch, store-and-forward would add the time to
    /// receive them all to every fetch round trip. Only the tail is held back until the whole
    /// response is in: from v16 it may end with leader hints (broker addresses), which cannot
    /// be rewritten in place (the length was already sent), so they are blanked into an
    /// unknown tagged field of the same size. Clients skip unknown tagged fields and, without
    /// the hint, find the new leader through Metadata (as before KIP-951).
    async fn stream_fetch(&mut self, pending: &Pending, total: usize) -> Result<(), SessionError> {
        tracing::debug!(bytes = total, "streaming a Fetch response");
        let held = if pending.version >= FIRST_LEADER_HINTS { HELD_TAIL.min(total) } else { 0 };
        let forwardable = total - held;
        let mut sent = 0;
        loop {
            let have = self.upstream.buffered().len().min(total);
            if sent == 0 && have >= HEADER_END {
                check_correlation(&self.upstream.buffered()[..HEADER_END], pending)?;
            }
            let upto = if have >= HEADER_END { have.min(forwardable) } else { 0 };
            if upto > sent {
                let chunk = &self.upstream.buffered()[sent..upto];
                self.client.write_all(chunk).await.map_err(SessionError::ClientIo)?;
                sent = upto;
            }
            if have >= total {
                break;
            }
            self.upstream.read_more(total).await.map_err(upstream_frame_error)?;
        }
        let received = Instant::now();
        let frame = self.read_whole(total).await?;
        let parsed = ResponseFrame::parse(&frame, ApiKey::Fetch, pending.version).map_err(SessionError::BadResponse)?;
        let body_offset = frame.len() - parsed.body().len();
        let summary = self.count_fetched(&parsed.body(), pending.version)?;
        let mut tail = frame.slice(sent..);
        if let Some(at) = summary.node_endpoints {
            let mut blanked = tail.to_vec();
            let region_start = sent.checked_sub(body_offset).ok_or(SessionError::HintsOutsideTail)?;
            if !blank_node_endpoints(&mut blanked, region_start, &at) {
                return Err(SessionError::HintsOutsideTail);
            }
            tail = Bytes::from(blanked);
            tracing::debug!("leader hints in a streamed Fetch response blanked");
        }
        self.client.write_all(&tail).await.map_err(SessionError::ClientIo)?;
        self.count_response(pending, total, received);
        Ok(())
    }

    /// Decodes only the responses that carry broker addresses or per-topic counts; every other
    /// frame goes back as the very bytes the broker sent.
    fn inspect(&mut self, pending: &Pending, frame: Bytes) -> Result<Bytes, SessionError> {
        let (key, version) = (pending.api_key, pending.version);
        let shared = self.shared;
        let map = &*shared.directory;
        match key {
            ApiKey::ApiVersions => {
                // KIP-511: a broker that does not know the requested version answers in v0.
                let error = frame.get(8..10).map(|b| i16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
                let version = if error == versions::UNSUPPORTED_VERSION { 0 } else { version };
                self.rewrite::<ApiVersionsResponse>(frame, key, version, |resp| {
                    versions::intersect(resp);
                    Ok(0)
                })
            }
            ApiKey::Metadata => self.rewrite::<MetadataResponse>(frame, key, version, |resp| {
                shared.topic_ids.learn(resp);
                rewrite::metadata(resp, map)
            }),
            ApiKey::FindCoordinator => {
                self.rewrite::<FindCoordinatorResponse>(frame, key, version, |r| rewrite::find_coordinator(r, map))
            }
            ApiKey::DescribeCluster => {
                self.rewrite::<DescribeClusterResponse>(frame, key, version, |r| rewrite::describe_cluster(r, map))
            }
            ApiKey::Produce => {
                let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
                let has_leader_hints = scan_produce_response(&parsed.body(), version, |_, _, error| {
                    if error != 0 {
                        shared.metrics.response_error(key, error);
                    }
                })
                .map_err(SessionError::BadResponseBody)?;
                if !has_leader_hints {
                    return Ok(frame);
                }
                // Leader hints (broker addresses): the rare case that needs the full decode.
                let mut resp: ProduceResponse = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                self.reencode_if_rewritten(frame, &parsed, key, version, &mut resp, |r| rewrite::produce(r, map))
            }
            ApiKey::Fetch => {
                let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
                if !self.count_fetched(&parsed.body(), version)?.has_node_endpoints() {
                    return Ok(frame);
                }
                // Leader hints: the rare case that needs the full decode.
                let mut resp: FetchResponse = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                self.reencode_if_rewritten(frame, &parsed, key, version, &mut resp, |r| rewrite::fetch(r, map))
            }
            ApiKey::ShareFetch => {
                let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
                let mut resp: ShareFetchResponse = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                self.reencode_if_rewritten(frame, &parsed, key, version, &mut resp, |r| rewrite::share_fetch(r, map))
            }
            ApiKey::ShareAcknowledge => {
                let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
                let mut resp: ShareAcknowledgeResponse =
                    parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                self.reencode_if_rewritten(frame, &parsed, key, version, &mut resp, |r| {
                    rewrite::share_acknowledge(r, map)
                })
            }
            _ => Ok(frame),
        }
    }

    /// Decodes, changes and re-encodes a (small) response.
    fn rewrite<T: Decodable + Encodable>(
        &self,
        frame: Bytes,
        key: ApiKey,
        version: i16,
        change: impl FnOnce(&mut T) -> Result<usize, RewriteError>,
    ) -> Result<Bytes, SessionError> {
        let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
        let mut resp: T = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
        let rewritten = change(&mut resp)?;
        self.shared.metrics.api(key).rewrites.inc_by(rewritten as u64);
        encode_response_with_header(&parsed.header, key, version, &resp).map_err(SessionError::BadResponse)
    }

    /// Re-encodes a data-path response only when it carried addresses (leader hints after a
    /// leadership change); otherwise the original bytes go back untouched.
    fn reencode_if_rewritten<T: Encodable>(
        &self,
        frame: Bytes,
        parsed: &ResponseFrame,
        key: ApiKey,
        version: i16,
        resp: &mut T,
        change: impl FnOnce(&mut T) -> Result<usize, RewriteError>,
    ) -> Result<Bytes, SessionError> {
        let rewritten = change(resp)?;
        if rewritten == 0 {
            return Ok(frame);
        }
        self.shared.metrics.api(key).rewrites.inc_by(rewritten as u64);
        encode_response_with_header(&parsed.header, key, version, resp).map_err(SessionError::BadResponse)
    }

    /// Counts records and errors per topic by walking the response in place; the summary says
    /// whether (and where) it carries leader hints (broker addresses).
    fn count_fetched(&mut self, body: &[u8], version: i16) -> Result<FetchSummary, SessionError> {
        let shared = self.shared;
        let fetched = &mut *self.fetched;
        let summary = scan_fetch_response(body, version, |p| {
            if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                let count = weir_wire::records::count_records(records);
                let size = records.len() as u64;
                match p.topic {
                    TopicRef::Name(name) => fetched.add(&shared.metrics, name, count, size),
                    TopicRef::Id(id) => {
                        let name = shared.topic_ids.name_or_id(&Uuid::from_bytes(id));
                        fetched.add(&shared.metrics, name.as_str(), count, size)
                    }
                }
            }
            if p.error_code != 0 {
                shared.metrics.response_error(ApiKey::Fetch, p.error_code);
            }
        })
        .map_err(SessionError::BadResponseBody)?;
        if summary.error_code != 0 {
            shared.metrics.response_error(ApiKey::Fetch, summary.error_code);
        } else {
            shared.fetch_sessions.record(summary.session_id, self.session_owner.get());
        }
        Ok(summary)
    }
}
