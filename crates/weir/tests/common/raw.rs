//! Raw Kafka frames over a plain socket, for tests that must control every byte.

use std::io::Read;
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use weir_wire::kafka_protocol::messages::{ApiKey, RequestHeader};
use weir_wire::kafka_protocol::protocol::{Encodable, StrBytes};
use weir_wire::kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

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
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from_static(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .unwrap();
    buf.freeze()
}
