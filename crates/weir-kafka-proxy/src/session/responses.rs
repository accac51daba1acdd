//! The response half: broker frames in, in request order, rewritten only where they reveal a
//! broker address.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Mutex};
use weir_core::io::{BoxRead, BoxWrite};
use weir_wire::fetch::{blank_node_endpoints, scan_fetch_response};
use weir_wire::message::{ResponseFrame, ResponseMessage};
use weir_wire::{FrameError, FrameReader};

use super::{InFlight, Pending, SessionError};
use crate::filter::{FilterChain, FilterError};
use crate::shared::Shared;

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
    /// The connection's filters, shared with the request half (one hook runs at a time).
    pub(super) chain: &'a Mutex<FilterChain>,
    pub(super) upstream: FrameReader<BoxRead>,
    pub(super) client: BoxWrite,
    /// The broker connection's reading half, when the request half makes it later.
    pub(super) connected: Option<oneshot::Receiver<FrameReader<BoxRead>>>,
    pub(super) pending: mpsc::Receiver<InFlight>,
}

impl ResponseHalf<'_> {
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        loop {
            // While nothing is owed, still watch the broker so that its closing (a restart, say)
            // closes the client promptly instead of at the next request.
            // Biased: an entry is always queued before its request is written, so when a
            // response is readable its entry is already here and must win the race.
            let holds_memory = self.upstream.holds_idle_memory(super::LARGE_BUFFER);
            let entry = tokio::select! {
                biased;
                entry = self.pending.recv() => entry,
                _ = tokio::time::sleep(super::RELEASE_IDLE_BUFFER_AFTER), if holds_memory => {
                    self.upstream.release_if_empty();
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
    async fn relay_response(&mut self, pending: Pending) -> Result<Option<Bytes>, SessionError> {
        let total = match self.upstream.next_frame_size().await {
            Ok(Some(total)) => total,
            Ok(None) => return Err(SessionError::UpstreamClosed),
            Err(err) => return Err(upstream_frame_error(err)),
        };
        if pending.api_key == ApiKey::Fetch && total > STREAM_ABOVE && !pending.changes_response {
            self.stream_fetch(pending, total).await?;
            return Ok(None);
        }
        let frame = self.read_whole(total).await?;
        let received = Instant::now();
        check_correlation(&frame, &pending)?;
        let mut message = ResponseMessage::new(frame, pending.api_key, pending.version);
        super::lock_chain(self.chain).await.on_response(self.shared, &mut message, pending.notes).await?;
        let out = message.into_frame().map_err(|e| SessionError::Filter(FilterError::BadResponse(e)))?;
        self.count_response(pending.api_key, pending.sent_at, pending.proxy_time, out.len(), received);
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

    fn count_response(&self, key: ApiKey, sent_at: Instant, proxy_time: Duration, len: usize, received: Instant) {
        let api = self.shared.metrics.api(key);
        api.responses.inc();
        api.response_bytes.inc_by(len as u64);
        api.upstream_seconds.observe(received.duration_since(sent_at));
        api.proxy_seconds.observe(proxy_time + received.elapsed());
    }

    /// Forwards a large Fetch response while it arrives, instead of after its last byte: for
    /// the megabytes of a busy consumer's fetch, store-and-forward would add the time to
    /// receive them all to every fetch round trip. Only the tail is held back until the whole
    /// response is in: from v16 it may end with leader hints (broker addresses), which cannot
    /// be rewritten in place (the length was already sent), so they are blanked into an
    /// unknown tagged field of the same size. Clients skip unknown tagged fields and, without
    /// the hint, find the new leader through Metadata (as before KIP-951).
    ///
    /// The filters still see the whole response once it is in, read-only.
    async fn stream_fetch(&mut self, pending: Pending, total: usize) -> Result<(), SessionError> {
        tracing::debug!(bytes = total, "streaming a Fetch response");
        let held = if pending.version >= FIRST_LEADER_HINTS { HELD_TAIL.min(total) } else { 0 };
        let forwardable = total - held;
        let mut sent = 0;
        loop {
            let have = self.upstream.buffered().len().min(total);
            if sent == 0 && have >= HEADER_END {
                check_correlation(&self.upstream.buffered()[..HEADER_END], &pending)?;
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
        let mut tail = frame.slice(sent..);
        if pending.version >= FIRST_LEADER_HINTS {
            let parsed =
                ResponseFrame::parse(&frame, ApiKey::Fetch, pending.version).map_err(SessionError::BadResponse)?;
            let body_offset = frame.len() - parsed.body().len();
            let summary =
                scan_fetch_response(&parsed.body(), pending.version, |_| {}).map_err(SessionError::BadResponseBody)?;
            if let Some(at) = summary.node_endpoints {
                let mut blanked = tail.to_vec();
                let region_start = sent.checked_sub(body_offset).ok_or(SessionError::HintsOutsideTail)?;
                if !blank_node_endpoints(&mut blanked, region_start, &at) {
                    return Err(SessionError::HintsOutsideTail);
                }
                tail = Bytes::from(blanked);
                tracing::debug!("leader hints in a streamed Fetch response blanked");
            }
        }
        let mut message = ResponseMessage::already_sent(frame, ApiKey::Fetch, pending.version);
        super::lock_chain(self.chain).await.on_response(self.shared, &mut message, pending.notes).await?;
        self.client.write_all(&tail).await.map_err(SessionError::ClientIo)?;
        self.count_response(ApiKey::Fetch, pending.sent_at, pending.proxy_time, total, received);
        Ok(())
    }
}
