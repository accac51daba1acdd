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
use tokio::sync::mpsc;
use uuid::Uuid;
use weir_core::io::{BoxRead, BoxWrite};
use weir_wire::fetch::scan_fetch_response;
use weir_wire::message::{encode_response_with_header, ResponseFrame};
use weir_wire::scan::TopicRef;
use weir_wire::{FrameError, FrameReader};

use super::{InFlight, Pending, SessionError};
use crate::metrics::TopicCache;
use crate::rewrite::{self, RewriteError};
use crate::sidecar::Shared;
use crate::versions;

pub(super) struct ResponseHalf<'a> {
    pub(super) shared: &'a Shared,
    pub(super) upstream: FrameReader<BoxRead>,
    pub(super) client: BoxWrite,
    pub(super) pending: mpsc::Receiver<InFlight>,
    pub(super) fetched: TopicCache,
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
                InFlight::Upstream(pending) => self.relay_response(pending).await?,
            };
            self.client.write_all(&out).await.map_err(SessionError::ClientIo)?;
        }
    }

    async fn relay_response(&mut self, pending: Pending) -> Result<Bytes, SessionError> {
        let frame = match self.upstream.next_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(SessionError::UpstreamClosed),
            Err(FrameError::Io(err)) => return Err(SessionError::UpstreamIo(err)),
            Err(err) => return Err(SessionError::UpstreamFrame(err)),
        };
        let received = Instant::now();
        let got = weir_wire::header::response_correlation_id(&frame).unwrap_or(i32::MIN);
        if got != pending.correlation_id {
            return Err(SessionError::CorrelationMismatch { expected: pending.correlation_id, got });
        }
        let api = self.shared.metrics.api(pending.api_key);
        let out = self.inspect(&pending, frame)?;
        api.responses.inc();
        api.response_bytes.inc_by(out.len() as u64);
        api.upstream_seconds.observe(received.duration_since(pending.sent_at).as_secs_f64());
        api.proxy_seconds.observe((pending.proxy_time + received.elapsed()).as_secs_f64());
        Ok(out)
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
                shared.learn_topics(resp);
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
                let mut resp: ProduceResponse = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                for topic in &resp.responses {
                    for p in &topic.partition_responses {
                        if p.error_code != 0 {
                            shared.metrics.response_error(key, p.error_code);
                        }
                    }
                }
                self.reencode_if_rewritten(frame, &parsed, key, version, &mut resp, |r| rewrite::produce(r, map))
            }
            ApiKey::Fetch => {
                let parsed = ResponseFrame::parse(&frame, key, version).map_err(SessionError::BadResponse)?;
                if !self.count_fetched(&parsed.body(), version)? {
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

    /// Counts records and errors per topic by walking the response in place; returns whether
    /// it carries leader hints (broker addresses) that must be rewritten.
    fn count_fetched(&mut self, body: &[u8], version: i16) -> Result<bool, SessionError> {
        let shared = self.shared;
        let fetched = &mut self.fetched;
        let summary = scan_fetch_response(body, version, |p| {
            if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                let counters = match p.topic {
                    TopicRef::Name(name) => fetched.get(&shared.metrics, name),
                    TopicRef::Id(id) => {
                        fetched.get(&shared.metrics, shared.topic_name_for_id(&Uuid::from_bytes(id)).as_str())
                    }
                };
                counters.bytes.inc_by(records.len() as u64);
                counters.records.inc_by(weir_wire::records::count_records(records));
            }
            if p.error_code != 0 {
                shared.metrics.response_error(ApiKey::Fetch, p.error_code);
            }
        })
        .map_err(SessionError::BadResponseBody)?;
        if summary.error_code != 0 {
            shared.metrics.response_error(ApiKey::Fetch, summary.error_code);
        }
        Ok(summary.has_node_endpoints)
    }
}
