//! Helpers the crate's tests share: short builders for kafka-protocol values and record
//! batches, the table of encoded bodies, and a deterministic generator for mutations.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, GroupId, TopicName, TransactionalId};
use kafka_protocol::protocol::{Encodable, StrBytes, VersionRange};
use std::collections::BTreeMap;
use uuid::Uuid;

pub(crate) fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}
pub(crate) fn tn(x: &'static str) -> TopicName {
    TopicName(s(x))
}
pub(crate) fn gid(x: &'static str) -> GroupId {
    GroupId(s(x))
}
pub(crate) fn xid(x: &'static str) -> TransactionalId {
    TransactionalId(s(x))
}
pub(crate) fn id(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}
/// An unknown tagged field (written in flexible versions only).
pub(crate) fn unknown_tag() -> BTreeMap<i32, Bytes> {
    [(42, Bytes::from_static(b"??"))].into()
}

/// A record at offset (and sequence) `i` with no key, value or headers: the encoder keeps
/// consecutive ones in one batch.
pub(crate) fn plain_record(i: usize) -> kafka_protocol::records::Record {
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: i as i64,
        sequence: i as i32,
        timestamp: 0,
        key: None,
        value: None,
        headers: Default::default(),
    }
}

/// `records` as an uncompressed v2 batch, by the reference encoder.
pub(crate) fn encode_batch(records: &[kafka_protocol::records::Record]) -> Vec<u8> {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    buf.to_vec()
}

/// A v2 record batch of `records` records (values of 50 bytes and up), a transaction marker
/// when `control`.
pub(crate) fn record_batch(records: usize, control: bool) -> Vec<u8> {
    let records: Vec<_> = (0..records)
        .map(|i| kafka_protocol::records::Record {
            transactional: control,
            control,
            value: Some(Bytes::from(vec![b'v'; 50 + i])),
            ..plain_record(i)
        })
        .collect();
    encode_batch(&records)
}

/// `message` encoded at version `v` by the reference encoder.
pub(crate) fn encoded(message: impl Encodable, v: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, v).unwrap_or_else(|e| panic!("v{v}: {e}"));
    buf.to_vec()
}

/// What the reference decoder makes of a body at a version.
pub(crate) type Decodes<D> = fn(&[u8], i16) -> D;

/// A message the walker knows: the versions the reference decoder reads, what to build at each,
/// and what the reference decoder makes of a body (`D`).
pub(crate) struct Case<B, D> {
    pub(crate) key: ApiKey,
    pub(crate) versions: VersionRange,
    pub(crate) build: fn(i16) -> Vec<B>,
    pub(crate) decodes: Decodes<D>,
}

/// Every (key, version, decoder, body) a table of cases yields.
pub(crate) fn all_bodies<B, D>(cases: Vec<Case<B, D>>) -> Vec<(ApiKey, i16, Decodes<D>, B)> {
    let mut out = Vec::new();
    for case in cases {
        for v in case.versions.min..=case.versions.max {
            for b in (case.build)(v) {
                out.push((case.key, v, case.decodes, b));
            }
        }
    }
    out
}

/// A tiny deterministic generator, so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `data` gzip-compressed, as a Kafka client writes it.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    crate::compression::compress(crate::compression::Codec::Gzip, data)
}

/// `data` in one LZ4 frame.
pub(crate) fn lz4(data: &[u8]) -> Vec<u8> {
    crate::compression::compress(crate::compression::Codec::Lz4, data)
}

/// `data` in one zstd frame.
pub(crate) fn zstd(data: &[u8]) -> Vec<u8> {
    crate::compression::compress(crate::compression::Codec::Zstd, data)
}

/// `data` as one raw snappy block, as librdkafka writes snappy.
pub(crate) fn snappy_raw(data: &[u8]) -> Vec<u8> {
    crate::compression::compress(crate::compression::Codec::Snappy, data)
}

/// `data` as the Java client writes snappy: xerial framing, blocks of at most `block` bytes.
pub(crate) fn snappy_xerial(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\0".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(block) {
        let compressed = snappy_raw(chunk);
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}
