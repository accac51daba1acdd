//! The session's promises, without a network: responses in request order whatever is answered
//! locally, `acks=0` never shifting the pairing, a broker answering out of turn closing the
//! connection, and a streamed Fetch response arriving byte for byte. The broker here is a
//! script on an in-memory pipe; the real-cluster tests (crates/weir/tests) prove the rest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch, Mutex};
use tokio_util::sync::CancellationToken;
use weir_core::io::split_any;
use weir_wire::message::{decode_response, encode_response};
use weir_wire::{FrameReader, RequestHeaderPeek};

use super::requests::RequestHalf;
use super::responses::ResponseHalf;
use super::SessionError;
use crate::config::SidecarConfig;
use crate::directory::BrokerDirectory;
use crate::filter::testing::{connection, request};
use crate::filter::FilterChain;
use crate::metrics::KafkaMetrics;
use crate::shadow::ShadowWriters;
use crate::shared::Shared;
use crate::side::ClusterAccess;
use crate::snapshot::Snapshot;
use crate::upstream::Connector;

fn shared() -> Shared {
    let config = SidecarConfig::new("127.0.0.1:0".parse().unwrap(), vec!["127.0.0.1:1".into()]);
    let (_, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (directory, _opened) = BrokerDirectory::new("127.0.0.1".into(), "127.0.0.1".parse().unwrap(), 20000, 10);
    let connector = Connector::new(Default::default(), config.connect_timeout(), snapshots.clone(), None, &[]);
    let metrics = KafkaMetrics::register(&mut prometheus_client::registry::Registry::default());
    let own_cluster = Arc::new(ClusterAccess::new(connector.clone(), vec![]));
    Shared {
        connector: connector.clone(),
        own_cluster: own_cluster.clone(),
        shadows: Arc::new(ShadowWriters::new(own_cluster, metrics.shadows.clone(), CancellationToken::new())),
        config,
        metrics,
        directory: Arc::new(directory),
        shutdown: CancellationToken::new(),
        snapshots,
        audit: None,
        fetch_sessions: Arc::default(),
        quotas: Arc::default(),
        outliers: Arc::default(),
        slots: Arc::default(),
        topic_ids: Arc::default(),
        broker_versions: Default::default(),
        schema_registry: None,
        data_keys: None,
        spans: None,
    }
}

/// Runs a session between `client` and `broker` (the test's ends of two pipes) until either
/// side ends; returns why it ended.
async fn session(client: DuplexStream, broker: DuplexStream) -> Result<(), SessionError> {
    session_with(Snapshot::default(), client, broker).await
}

async fn session_with(snapshot: Snapshot, client: DuplexStream, broker: DuplexStream) -> Result<(), SessionError> {
    let shared = shared();
    let connection = connection(None);
    let chain = Mutex::new(FilterChain::new(shared.filters_for(&snapshot, &connection), connection));
    let muted = super::Muted::default();
    let (client_read, client_write) = split_any(client);
    let (upstream_read, upstream_write) = split_any(broker);
    let (queue, pending) = mpsc::channel(shared.config.limits.max_in_flight);
    let mut upstream_open = None;
    let requests = RequestHalf {
        shared: &shared,
        chain: &chain,
        snapshots: shared.snapshots.clone(),
        client: FrameReader::new(client_read, 1 << 20),
        authentication_deadline: None,
        upstream: upstream_write,
        upstream_open: &mut upstream_open,
        queue,
        deferred: None,
        reauth: None,
        principal: None,
        muted: &muted,
        slots: None,
        place: None,
        counted: None,
    };
    let responses = ResponseHalf {
        shared: &shared,
        chain: &chain,
        upstream: FrameReader::new(upstream_read, 1 << 20),
        client: client_write,
        connected: None,
        pending,
        muted: &muted,
        ids: Default::default(),
        pass_out: Vec::new(),
    };
    super::both(requests, responses).await
}

async fn read_frame(stream: &mut DuplexStream) -> Bytes {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut frame = prefix.to_vec();
    frame.resize(4 + i32::from_be_bytes(prefix) as usize, 0);
    stream.read_exact(&mut frame[4..]).await.unwrap();
    Bytes::from(frame)
}

fn with_correlation(frame: Bytes, correlation_id: i32) -> Bytes {
    let mut frame = frame.to_vec();
    frame[8..12].copy_from_slice(&correlation_id.to_be_bytes());
    Bytes::from(frame)
}

fn correlation_of_response(frame: &[u8]) -> i32 {
    i32::from_be_bytes(frame[4..8].try_into().unwrap())
}

fn metadata_answer(correlation_id: i32) -> Bytes {
    encode_response(correlation_id, ApiKey::Metadata, 12, &MetadataResponse::default()).unwrap()
}

#[tokio::test]
async fn responses_leave_in_request_order_around_local_answers_and_acks_0() {
    let (mut client, client_end) = tokio::io::duplex(1 << 20);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 20);
    let session = tokio::spawn(session(client_end, broker_end));

    let metadata = request(ApiKey::Metadata, 12, &MetadataRequest::default());
    // An ApiVersions newer than the sidecar knows is answered by the sidecar itself (KIP-511).
    let mut too_new = request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).to_vec();
    too_new[6..8].copy_from_slice(&99i16.to_be_bytes());
    let too_new = Bytes::from(too_new);
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![PartitionProduceData::default().with_records(Some(Bytes::from_static(&[0; 61])))]);
    let fire_and_forget =
        request(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(0).with_topic_data(vec![topic]));
    for (frame, id) in [(metadata.clone(), 1), (too_new, 2), (fire_and_forget, 3), (metadata, 4)] {
        client.write_all(&with_correlation(frame, id)).await.unwrap();
    }

    // The broker sees 1, the produce (3) and 4, unchanged; it answers 1 and 4 only.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let frame = read_frame(&mut broker).await;
        seen.push(RequestHeaderPeek::parse(&frame).unwrap().correlation_id);
    }
    assert_eq!(seen, [1, 3, 4]);
    broker.write_all(&metadata_answer(1)).await.unwrap();
    broker.write_all(&metadata_answer(4)).await.unwrap();

    let mut answered = Vec::new();
    for _ in 0..3 {
        answered.push(correlation_of_response(&read_frame(&mut client).await));
    }
    assert_eq!(answered, [1, 2, 4]);
    drop(client);
    drop(broker);
    let _ = session.await;
}

#[tokio::test]
async fn a_broker_answering_out_of_turn_closes_the_connection() {
    let (mut client, client_end) = tokio::io::duplex(1 << 20);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 20);
    let session = tokio::spawn(session(client_end, broker_end));
    client.write_all(&with_correlation(request(ApiKey::Metadata, 12, &MetadataRequest::default()), 7)).await.unwrap();
    read_frame(&mut broker).await;
    broker.write_all(&metadata_answer(8)).await.unwrap();
    let ended = session.await.unwrap();
    assert!(matches!(ended, Err(SessionError::CorrelationMismatch { expected: 7, got: 8 })), "{ended:?}");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing of the wrong answer reaches the client");
}

/// A Fetch response with one partition carrying 600 KiB of (opaque) records: more than is
/// ever held at once.
fn fetch_of_600_kib() -> FetchResponse {
    let partition = kafka_protocol::messages::fetch_response::PartitionData::default()
        .with_records(Some(Bytes::from(vec![0x5a; 600 * 1024])));
    let topic = kafka_protocol::messages::fetch_response::FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![partition]);
    FetchResponse::default().with_responses(vec![topic])
}

#[tokio::test]
async fn a_large_fetch_response_is_streamed_byte_for_byte() {
    let (mut client, client_end) = tokio::io::duplex(1 << 16);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 16);
    let session = tokio::spawn(session(client_end, broker_end));
    let fetch = kafka_protocol::messages::FetchRequest::default().with_max_wait_ms(0);
    client.write_all(&with_correlation(request(ApiKey::Fetch, 12, &fetch), 3)).await.unwrap();
    read_frame(&mut broker).await;

    let answer = encode_response(3, ApiKey::Fetch, 12, &fetch_of_600_kib()).unwrap();
    let writer = {
        let answer = answer.clone();
        tokio::spawn(async move {
            broker.write_all(&answer).await.unwrap();
            broker
        })
    };
    let received = read_frame(&mut client).await;
    assert_eq!(received, answer);
    drop(client);
    drop(writer.await.unwrap());
    let _ = session.await;
}

/// A snapshot whose one quota holds every principal to `rule`'s limits.
fn everyone_under(rule: crate::quota::QuotaRule) -> Snapshot {
    Snapshot { quotas: vec![rule].into(), ..Snapshot::default() }
}

/// A quota rule for every principal that limits nothing yet.
fn quota_for_everyone() -> crate::quota::QuotaRule {
    crate::quota::QuotaRule {
        name: "everyone".into(),
        principals: vec!["*".into()],
        client_ids: vec![],
        per: Default::default(),
        produce_bytes_per_second: None,
        fetch_bytes_per_second: None,
        request_percentage: None,
        max_connections: None,
        connections_per_second: None,
    }
}

/// A snapshot whose one quota holds every principal to 1,000 produced bytes per second.
fn everyone_at_1000_bytes_per_second() -> Snapshot {
    everyone_under(crate::quota::QuotaRule { produce_bytes_per_second: Some(1000.0), ..quota_for_everyone() })
}

/// A Produce v9 request with 3,000 bytes of (opaque) records.
fn produce_3000_bytes(acks: i16) -> Bytes {
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![PartitionProduceData::default().with_records(Some(Bytes::from(vec![0; 3000])))]);
    request(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(acks).with_topic_data(vec![topic]))
}

#[tokio::test(start_paused = true)]
async fn a_client_over_its_quota_is_told_to_wait_and_not_read_meanwhile() {
    let (mut client, client_end) = tokio::io::duplex(1 << 20);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 20);
    let session = tokio::spawn(session_with(everyone_at_1000_bytes_per_second(), client_end, broker_end));

    // About 3 KB against 1,000 bytes/s with one second of credit: about 2 s to wait.
    let produce = produce_3000_bytes(1);
    let expected_wait = (produce.len() - 1000) as i32;
    client.write_all(&with_correlation(produce, 1)).await.unwrap();
    read_frame(&mut broker).await;
    let answered_at = tokio::time::Instant::now();
    let answer = ProduceResponse::default().with_throttle_time_ms(0);
    broker.write_all(&encode_response(1, ApiKey::Produce, 9, &answer).unwrap()).await.unwrap();
    let response = read_frame(&mut client).await;
    let (_, said): (_, ProduceResponse) = decode_response(&response, ApiKey::Produce, 9).unwrap();
    assert!(
        (said.throttle_time_ms - expected_wait).abs() <= 1,
        "{} ms, expected {expected_wait}",
        said.throttle_time_ms
    );

    // The next request is not read before the wait is over.
    client.write_all(&with_correlation(request(ApiKey::Metadata, 12, &MetadataRequest::default()), 2)).await.unwrap();
    read_frame(&mut broker).await;
    let waited = answered_at.elapsed().as_millis() as i32;
    assert!(waited >= expected_wait - 1, "read after {waited} ms");
    drop(client);
    drop(broker);
    let _ = session.await;
}

#[tokio::test(start_paused = true)]
async fn an_acks_0_producer_over_its_quota_is_not_read_for_the_wait() {
    let (mut client, client_end) = tokio::io::duplex(1 << 20);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 20);
    let session = tokio::spawn(session_with(everyone_at_1000_bytes_per_second(), client_end, broker_end));

    // No response will say it: the connection alone is held.
    let produce = produce_3000_bytes(0);
    let expected_wait = Duration::from_millis((produce.len() - 1000) as u64);
    client.write_all(&with_correlation(produce, 1)).await.unwrap();
    client.write_all(&with_correlation(request(ApiKey::Metadata, 12, &MetadataRequest::default()), 2)).await.unwrap();
    read_frame(&mut broker).await;
    let forwarded_at = tokio::time::Instant::now();
    let next = read_frame(&mut broker).await;
    assert_eq!(RequestHeaderPeek::parse(&next).unwrap().correlation_id, 2);
    let waited = forwarded_at.elapsed();
    assert!(waited + Duration::from_millis(2) >= expected_wait, "read after {waited:?}, expected {expected_wait:?}");
    drop(client);
    drop(broker);
    let _ = session.await;
}

/// A large Fetch response under a fetch quota is still streamed (its first bytes reach the
/// client before the broker sent the rest), and says the wait its size asks for.
#[tokio::test]
async fn a_large_fetch_response_under_a_fetch_quota_streams_and_says_the_wait() {
    let (mut client, client_end) = tokio::io::duplex(1 << 16);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 16);
    let quota =
        everyone_under(crate::quota::QuotaRule { fetch_bytes_per_second: Some(100_000.0), ..quota_for_everyone() });
    let session = tokio::spawn(session_with(quota, client_end, broker_end));
    let fetch = kafka_protocol::messages::FetchRequest::default().with_max_wait_ms(0);
    client.write_all(&with_correlation(request(ApiKey::Fetch, 12, &fetch), 3)).await.unwrap();
    read_frame(&mut broker).await;

    let body = fetch_of_600_kib();
    let answer = encode_response(3, ApiKey::Fetch, 12, &body).unwrap();
    // The broker sends half and waits: a response read whole would give the client nothing.
    let (first, rest) = answer.split_at(300 * 1024);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    let (more, go_on) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        broker.write_all(&first).await.unwrap();
        go_on.await.unwrap();
        broker.write_all(&rest).await.unwrap();
        broker
    });
    let mut head = vec![0; 100 * 1024];
    tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut head))
        .await
        .expect("the head of the response reached the client before its end left the broker")
        .unwrap();
    more.send(()).unwrap();
    let mut tail = vec![0; answer.len() - head.len()];
    client.read_exact(&mut tail).await.unwrap();
    let received = Bytes::from([head, tail].concat());
    // About 600 KB against 100 KB/s with one second of credit: about 5.1 s.
    let (_, said): (_, FetchResponse) = decode_response(&received, ApiKey::Fetch, 12).unwrap();
    let expected = ((answer.len() - 100_000) / 100) as i32;
    assert!((said.throttle_time_ms - expected).abs() <= 1, "{} ms, expected {expected}", said.throttle_time_ms);
    assert_eq!(said, body.with_throttle_time_ms(said.throttle_time_ms), "only the throttle changed");
    drop(client);
    drop(writer.await.unwrap());
    let _ = session.await;
}

/// Under a request quota any api's answer says the wait, and the next request is not read
/// before it is over. (The share is so small that any request exceeds it: the wait is the
/// longest a quota asks for.)
#[tokio::test(start_paused = true)]
async fn a_client_over_its_request_quota_is_told_to_wait_whatever_the_api() {
    let (mut client, client_end) = tokio::io::duplex(1 << 20);
    let (mut broker, broker_end) = tokio::io::duplex(1 << 20);
    let quota = everyone_under(crate::quota::QuotaRule { request_percentage: Some(1e-5), ..quota_for_everyone() });
    let session = tokio::spawn(session_with(quota, client_end, broker_end));

    client.write_all(&with_correlation(request(ApiKey::Metadata, 12, &MetadataRequest::default()), 1)).await.unwrap();
    read_frame(&mut broker).await;
    broker.write_all(&metadata_answer(1)).await.unwrap();
    let response = read_frame(&mut client).await;
    let answered_at = tokio::time::Instant::now();
    let (_, said): (_, MetadataResponse) = decode_response(&response, ApiKey::Metadata, 12).unwrap();
    assert_eq!(said.throttle_time_ms, crate::quota::MAX_THROTTLE.as_millis() as i32);

    client.write_all(&with_correlation(request(ApiKey::Metadata, 12, &MetadataRequest::default()), 2)).await.unwrap();
    read_frame(&mut broker).await;
    assert!(answered_at.elapsed() + Duration::from_millis(2) >= crate::quota::MAX_THROTTLE, "read too early");
    drop(client);
    drop(broker);
    let _ = session.await;
}
