//! Raw Kafka frames over a plain socket, for tests that must control every byte.

use std::io::Read;
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use weir_wire::kafka_protocol::protocol::{Encodable, StrBytes};

/// A request frame (length prefix included) with client id `wire-test`.
pub fn request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    weir_wire::frame::with_length_prefix(&buf).to_vec()
}

/// An ApiVersions request body as clients send it (KIP-511 names).
pub fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("weir-wire-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}

/// True when the peer closed the connection (EOF or reset) rather than answering.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    let mut frame = len.to_vec();
    frame.extend(body);
    Ok(Bytes::from(frame))
}

/// A record batch holding one record with value `value`.
pub fn one_record_batch() -> Bytes {
    record_batch(b"acks-zero")
}

/// A record batch holding one record with this value.
pub fn record_batch(value: &'static [u8]) -> Bytes {
    batch_of(&[(value, &[])])
}

/// A record's headers: (key, value) in order.
pub type Headers<'a> = &'a [(&'static str, &'static [u8])];

/// An uncompressed record batch of records with these values and headers, in order
/// (repeated header keys kept: weir-wire's writer, not the reference encoder, which merges
/// them).
pub fn batch_of(records: &[(&'static [u8], Headers<'_>)]) -> Bytes {
    use weir_wire::batch::{write_batch, NewRecord};
    let records: Vec<NewRecord<'static>> = records
        .iter()
        .map(|(value, headers)| NewRecord {
            timestamp: 0,
            key: None,
            value: Some(value),
            headers: headers.iter().map(|(k, v)| (k.as_bytes(), Some(*v))).collect(),
        })
        .collect();
    write_batch(&records, weir_wire::compression::Codec::None, None).freeze()
}

/// Sends `body` and reads the answer, decoded at `version` (the correlation id checked).
pub fn call<Req: Encodable, Resp: weir_wire::kafka_protocol::protocol::Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1000);
    let correlation_id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    stream.write_all(&request(key, version, correlation_id, body)).unwrap();
    let frame = read_frame(stream).unwrap_or_else(|e| panic!("{key:?} v{version}: no answer: {e}"));
    let (header, response) = weir_wire::message::decode_response(&frame, key, version).unwrap();
    assert_eq!(header.correlation_id, correlation_id, "{key:?}: answer to another request");
    response
}

/// Authenticates a raw connection with SASL/PLAIN (SaslHandshake v1, SaslAuthenticate v2);
/// panics unless it succeeds.
pub fn sasl_plain(stream: &mut TcpStream, user: &str, password: &str) {
    use weir_wire::kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    };
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let answer: SaslHandshakeResponse = call(stream, ApiKey::SaslHandshake, 1, &handshake);
    assert_eq!(answer.error_code, 0, "PLAIN refused");
    let token = Bytes::from(format!("\0{user}\0{password}").into_bytes());
    let answer: SaslAuthenticateResponse =
        call(stream, ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default().with_auth_bytes(token));
    assert_eq!(answer.error_code, 0, "{user} not authenticated: {:?}", answer.error_message);
}

/// Produce data for partition 0 of `topic`: one record with this value.
pub fn partition_zero(
    topic: &str,
    value: &'static [u8],
) -> weir_wire::kafka_protocol::messages::produce_request::TopicProduceData {
    use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use weir_wire::kafka_protocol::messages::TopicName;
    TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_owned()))).with_partition_data(vec![
        PartitionProduceData::default().with_index(0).with_records(Some(record_batch(value))),
    ])
}

/// A raw connection to the sidecar's listener for the leader of `topic`'s partition 0 (a
/// produce must reach the leader), with a 10 s read timeout.
pub fn to_leader_of(sidecar: &super::Sidecar, topic: &str) -> TcpStream {
    use rdkafka::consumer::Consumer;
    let consumer = super::rd::consumer(&sidecar.bootstrap(), &super::unique("leader-lookup"), &[]);
    let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(10)).unwrap();
    let leader = metadata.topics()[0].partitions()[0].leader();
    let stream = TcpStream::connect(("127.0.0.1", sidecar.broker_port_base + leader as u16)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream
}

/// Sends `frame` on a connection of its own and asserts that the sidecar closes only that
/// connection, without an answer: another connection opened beside it is served, and one
/// connection is counted closed for a bad request.
pub fn assert_closes_only_its_connection(sidecar: &super::Sidecar, frame: &[u8]) {
    use std::io::Write;
    use weir_wire::kafka_protocol::messages::ApiVersionsResponse;
    let mut bad = TcpStream::connect(sidecar.addr).unwrap();
    let mut good = TcpStream::connect(sidecar.addr).unwrap();
    for stream in [&bad, &good] {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    }
    bad.write_all(frame).unwrap();
    assert!(closed_by_peer(&mut bad), "the malformed request was answered");
    let answer: ApiVersionsResponse = call(&mut good, ApiKey::ApiVersions, 3, &api_versions_request());
    assert_eq!(answer.error_code, 0, "the other connection is served");
    assert_eq!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "bad_request")]), 1.0);
}
