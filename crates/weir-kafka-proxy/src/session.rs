//! One client connection and its one upstream connection.
//!
//! Two halves run side by side. The request half reads client frames, peeks at each header,
//! decides (forward the same bytes, or answer locally) and queues what the response half must
//! expect. The response half takes that queue in order: a local answer is written as is, an
//! upstream one is read from the broker, checked against the correlation id, rewritten or
//! counted when needed, and written back. So responses leave in request order, `acks=0`
//! produce (no response) never shifts the pairing, and the bounded queue caps requests in
//! flight: when it is full the sidecar stops reading from that client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::Decodable;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use uuid::Uuid;
use weir_wire::message::{encode_response_with_header, MessageError, ResponseFrame};
use weir_wire::produce::{scan_produce, ProduceScanError, TopicRef};
use weir_wire::{FrameError, FrameReader, HeaderError, RequestHeaderPeek};

use crate::metrics::{Direction, TopicCache};
use crate::rewrite::{self, RewriteError};
use crate::sidecar::Shared;
use crate::upstream::UpstreamError;
use crate::versions;

/// Which upstream a listener stands for.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The bootstrap listener: any of the configured bootstrap servers.
    Bootstrap,
    /// A port-per-broker listener.
    Broker(i32),
}

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
    BadProduce(ProduceScanError),
    #[error("malformed response from broker: {0}")]
    BadResponse(MessageError),
    #[error("bad frame from broker: {0}")]
    UpstreamFrame(FrameError),
    #[error("broker closed the connection")]
    UpstreamClosed,
    #[error("broker sent an unsolicited frame")]
    Unsolicited,
    #[error("broker answered correlation id {got} where {expected} was due")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("no address known for broker {0}; the client should refresh its metadata")]
    UnknownBroker(i32),
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    #[error("broker connection: {0}")]
    UpstreamIo(std::io::Error),
}

impl SessionError {
    /// A short label for the `closed_connections` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClientFrame(_) | Self::Header(_) | Self::BadRequest(_) | Self::BadProduce(_) => "bad_request",
            Self::UnsupportedVersion { .. } | Self::SaslHandshakeV0 => "unsupported_version",
            Self::BadResponse(_) | Self::UpstreamFrame(_) | Self::Unsolicited | Self::CorrelationMismatch { .. } => {
                "bad_response"
            }
            Self::UpstreamClosed | Self::UpstreamIo(_) => "upstream_closed",
            Self::UnknownBroker(_) | Self::Connect(_) => "upstream_unreachable",
            Self::Rewrite(_) => "rewrite_failed",
            Self::ClientIo(_) => "client_io",
        }
    }

    /// Whether the cause is the peer simply going away (not worth a warning).
    fn is_disconnect(&self) -> bool {
        matches!(self, Self::ClientIo(_) | Self::ClientFrame(FrameError::Io(_)))
    }

    /// Logs the close at the level it deserves: client mistakes and broker faults are warnings
    /// (quiet logs are part of correct), a broker going away is news, a client leaving is not.
    fn log(&self) {
        match self {
            e if e.is_disconnect() => tracing::debug!(error = %e, "client connection ended"),
            Self::UpstreamClosed | Self::UpstreamIo(_) => tracing::info!(error = %self, "closing client connection"),
            Self::Rewrite(_) | Self::CorrelationMismatch { .. } => tracing::error!(error = %self, "closing connection"),
            _ => tracing::warn!(error = %self, "closing connection"),
        }
    }
}

/// What the response half must deliver next.
enum InFlight {
    /// A response the broker owes for a forwarded request.
    Upstream(Pending),
    /// A response the sidecar produced itself.
    Local(Bytes),
}

struct Pending {
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    sent_at: Instant,
    proxy_time: Duration,
}

/// Serves one accepted client connection until either side closes.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, target: Target) {
    let listener = match target {
        Target::Bootstrap => "bootstrap".to_owned(),
        Target::Broker(id) => format!("broker-{id}"),
    };
    let _open = shared.metrics.connections.opened(&listener);
    tracing::debug!(%listener, "client connected");
    if let Err(err) = run(&shared, client, target).await {
        shared.metrics.closed(err.reason());
        err.log();
    } else {
        tracing::debug!("connection closed");
    }
}

async fn run(shared: &Arc<Shared>, client: TcpStream, target: Target) -> Result<(), SessionError> {
    let upstream = connect_upstream(shared, target).await?;
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let (queue, pending) = mpsc::channel(shared.config.limits.max_in_flight);
    let max_frame = shared.config.limits.max_frame_bytes;

    let requests =
        RequestHalf { shared, client: FrameReader::new(client_read, max_frame), upstream: upstream_write, queue };
    let responses = ResponseHalf {
        shared,
        upstream: FrameReader::new(upstream_read, max_frame),
        client: client_write,
        pending,
        fetched: TopicCache::new(Direction::Fetched),
    };
    let requests = requests.run();
    let responses = responses.run();
    tokio::pin!(requests, responses);
    tokio::select! {
        // The client stopped sending (closed, idle, or shutdown): deliver what is owed, then end.
        done = &mut requests => {
            done?;
            responses.await
        }
        done = &mut responses => done,
    }
}

async fn connect_upstream(shared: &Shared, target: Target) -> Result<TcpStream, SessionError> {
    match target {
        Target::Broker(node_id) => {
            let address = shared.directory.upstream_of(node_id).ok_or(SessionError::UnknownBroker(node_id))?;
            Ok(shared.connector.connect(&address).await?)
        }
        Target::Bootstrap => {
            let mut last = None;
            for address in &shared.config.bootstrap {
                match shared.connector.connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(err) => last = Some(err),
                }
            }
            // validate() guarantees at least one bootstrap server, so `last` is set.
            Err(last.map(SessionError::Connect).unwrap_or(SessionError::UnknownBroker(-1)))
        }
    }
}

struct RequestHalf<'a> {
    shared: &'a Shared,
    client: FrameReader<OwnedReadHalf>,
    upstream: OwnedWriteHalf,
    queue: mpsc::Sender<InFlight>,
}

impl RequestHalf<'_> {
    async fn run(mut self) -> Result<(), SessionError> {
        let idle = self.shared.config.idle_timeout();
        let mut produced = TopicCache::new(Direction::Produced);
        let mut client_counter: Option<(Bytes, prometheus_client::metrics::counter::Counter)> = None;
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return Ok(()),
                read = tokio::time::timeout(idle, self.client.next_frame()) => match read {
                    Err(_) => {
                        tracing::debug!(?idle, "closing idle connection");
                        return Ok(());
                    }
                    Ok(Ok(Some(frame))) => frame,
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Err(err)) => return Err(SessionError::ClientFrame(err)),
                },
            };
            let started = Instant::now();
            let peek = RequestHeaderPeek::parse(&frame)?;
            let api = self.shared.metrics.api(peek.api_key);
            api.requests.inc();
            api.request_bytes.inc_by(frame.len() as u64);
            self.count_client(&peek, &mut client_counter);

            if !peek.version_is_known() {
                if peek.api_key == ApiKey::ApiVersions {
                    let answer = versions::unsupported_version_response(peek.correlation_id)
                        .map_err(SessionError::BadRequest)?;
                    self.enqueue(InFlight::Local(answer)).await?;
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
            let mut expects_response = true;
            match peek.api_key {
                ApiKey::SaslHandshake if peek.api_version == 0 => return Err(SessionError::SaslHandshakeV0),
                ApiKey::Produce => {
                    let shared = self.shared;
                    let acks = scan_produce(&frame, &peek, |topic, _partition, records| {
                        let counters = match topic {
                            TopicRef::Name(name) => produced.get(&shared.metrics, name),
                            TopicRef::Id(id) => {
                                produced.get(&shared.metrics, shared.topic_name_for_id(&Uuid::from_bytes(id)).as_str())
                            }
                        };
                        counters.bytes.inc_by(records.len() as u64);
                        counters.records.inc_by(weir_wire::records::count_records(records));
                    })
                    .map_err(SessionError::BadProduce)?;
                    expects_response = acks != 0;
                }
                _ => {}
            }
            let proxy_time = started.elapsed();
            if expects_response {
                let pending = Pending {
                    correlation_id: peek.correlation_id,
                    api_key: peek.api_key,
                    version: peek.api_version,
                    sent_at: Instant::now(),
                    proxy_time,
                };
                self.enqueue(InFlight::Upstream(pending)).await?;
            } else {
                api.proxy_seconds.observe(proxy_time.as_secs_f64());
            }
            self.upstream.write_all(&frame).await.map_err(SessionError::UpstreamIo)?;
        }
    }

    async fn enqueue(&self, entry: InFlight) -> Result<(), SessionError> {
        // The response half only drops its receiver when it has failed; its error is the one
        // that gets reported, so this side just stops.
        self.queue.send(entry).await.map_err(|_| SessionError::UpstreamClosed)
    }

    fn count_client(
        &self,
        peek: &RequestHeaderPeek,
        cached: &mut Option<(Bytes, prometheus_client::metrics::counter::Counter)>,
    ) {
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

struct ResponseHalf<'a> {
    shared: &'a Shared,
    upstream: FrameReader<OwnedReadHalf>,
    client: OwnedWriteHalf,
    pending: mpsc::Receiver<InFlight>,
    fetched: TopicCache,
}

impl ResponseHalf<'_> {
    async fn run(mut self) -> Result<(), SessionError> {
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
                InFlight::Local(frame) => frame,
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
                let mut resp: FetchResponse = parsed.decode(key, version).map_err(SessionError::BadResponse)?;
                self.count_fetched(&resp);
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
    fn rewrite<T: Decodable + kafka_protocol::protocol::Encodable>(
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
    fn reencode_if_rewritten<T: kafka_protocol::protocol::Encodable>(
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

    fn count_fetched(&mut self, resp: &FetchResponse) {
        let shared = self.shared;
        if resp.error_code != 0 {
            shared.metrics.response_error(ApiKey::Fetch, resp.error_code);
        }
        for topic in &resp.responses {
            let name = shared.topic_name(&topic.topic.0, &topic.topic_id);
            let counters = self.fetched.get(&shared.metrics, name.as_str());
            for p in &topic.partitions {
                if let Some(records) = &p.records {
                    counters.bytes.inc_by(records.len() as u64);
                    counters.records.inc_by(weir_wire::records::count_records(records));
                }
                if p.error_code != 0 {
                    shared.metrics.response_error(ApiKey::Fetch, p.error_code);
                }
            }
        }
    }
}
