//! A Produce request read in place: `acks`, and each partition's topic and record batches.
//!
//! The proxy reads every Produce request (to know whether a response will come, and to count
//! records per topic), so this walks the bytes with bounds checks instead of decoding into
//! structs: no allocation, and no trust in array lengths a client declares. (A general decoder
//! that pre-allocates `Vec::with_capacity(declared_len)` lets one hostile frame request
//! gigabytes.)

use crate::header::RequestHeaderPeek;
use crate::resources::Named;
use crate::scan::{Cursor, ScanError, TopicRef};

/// The first Produce version with flexible (compact) encodings and tagged fields.
const FIRST_FLEXIBLE: i16 = 9;
/// The first Produce version that names topics by id.
const FIRST_TOPIC_ID: i16 = 13;

/// Reads a Produce request; calls `visit(topic, partition, records)` for every partition that
/// carries records and returns `acks` (0 means the broker will send no response).
pub fn scan_produce<'a>(
    frame: &'a [u8],
    peek: &RequestHeaderPeek,
    mut visit: impl FnMut(TopicRef<'a>, i32, &'a [u8]),
) -> Result<i16, ScanError> {
    let body = frame.get(peek.body_offset..).unwrap_or_default();
    walk(body, peek.api_version, |field| {
        if let Field::Partition(topic, index, Some(records)) = field {
            visit(topic, index, records)
        }
    })
}

/// Reads the resources a Produce request body names, for authorization: its transactional id
/// and each topic once.
pub fn scan_produce_names<'a>(body: &'a [u8], version: i16, mut visit: impl FnMut(Named<'a>)) -> Result<(), ScanError> {
    walk(body, version, |field| match field {
        Field::TransactionalId(id) => visit(Named::TransactionalId(id)),
        Field::Topic(topic) => visit(Named::Topic(topic)),
        Field::Partition(..) => {}
    })?;
    Ok(())
}

/// What the walk reports, in wire order.
enum Field<'a> {
    TransactionalId(&'a str),
    Topic(TopicRef<'a>),
    Partition(TopicRef<'a>, i32, Option<&'a [u8]>),
}

fn walk<'a>(body: &'a [u8], version: i16, mut visit: impl FnMut(Field<'a>)) -> Result<i16, ScanError> {
    let flexible = version >= FIRST_FLEXIBLE;
    let mut c = Cursor::new(body, "Produce request", version);
    if let Some(id) = c.nullable_string(flexible)? {
        visit(Field::TransactionalId(id));
    }
    let acks = c.i16()?;
    c.i32()?; // timeout_ms
    let topics = c.array_len(flexible)?;
    for _ in 0..topics {
        let topic = c.topic_ref(flexible, version >= FIRST_TOPIC_ID)?;
        visit(Field::Topic(topic));
        let partitions = c.array_len(flexible)?;
        for _ in 0..partitions {
            let index = c.i32()?;
            visit(Field::Partition(topic, index, c.nullable_bytes(flexible)?));
            if flexible {
                c.skip_tagged_fields()?;
            }
        }
        if flexible {
            c.skip_tagged_fields()?;
        }
    }
    if flexible {
        c.skip_tagged_fields()?;
    }
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, Message, StrBytes};

    fn frame(version: i16, request: &ProduceRequest) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("scan")))
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        crate::frame::with_length_prefix(&buf)
    }

    fn request() -> ProduceRequest {
        let topic = |name: &'static str, id: u8, parts: &[(i32, Option<&'static [u8]>)]| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_topic_id(uuid::Uuid::from_bytes([id; 16]))
                .with_partition_data(
                    parts
                        .iter()
                        .map(|(i, r)| {
                            PartitionProduceData::default().with_index(*i).with_records(r.map(Bytes::from_static))
                        })
                        .collect(),
                )
        };
        ProduceRequest::default()
            .with_transactional_id(Some(StrBytes::from_static_str("tx-1").into()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic("orders", 1, &[(0, Some(b"batch-a")), (3, Some(b"batch-bb")), (4, None)]),
                topic("payments", 2, &[(1, Some(b""))]),
            ])
    }

    #[test]
    fn agrees_with_the_reference_encoder_at_every_version() {
        for version in ProduceRequest::VERSIONS.min..=ProduceRequest::VERSIONS.max {
            let frame = frame(version, &request());
            let peek = RequestHeaderPeek::parse(&frame).unwrap();
            let mut seen = Vec::new();
            let acks = scan_produce(&frame, &peek, |t, p, r| seen.push((t, p, r.to_vec()))).unwrap();
            assert_eq!(acks, -1, "v{version}");
            let (orders, payments) = if version >= FIRST_TOPIC_ID {
                (TopicRef::Id([1; 16]), TopicRef::Id([2; 16]))
            } else {
                (TopicRef::Name("orders"), TopicRef::Name("payments"))
            };
            assert_eq!(
                seen,
                vec![(orders, 0, b"batch-a".to_vec()), (orders, 3, b"batch-bb".to_vec()), (payments, 1, vec![])],
                "v{version}"
            );
        }
    }

    #[test]
    fn names_for_authorization() {
        for version in [3, 9, 13] {
            let frame = frame(version, &request());
            let peek = RequestHeaderPeek::parse(&frame).unwrap();
            let mut seen = Vec::new();
            scan_produce_names(&frame[peek.body_offset..], version, |n| seen.push(n)).unwrap();
            let (orders, payments) = if version >= FIRST_TOPIC_ID {
                (TopicRef::Id([1; 16]), TopicRef::Id([2; 16]))
            } else {
                (TopicRef::Name("orders"), TopicRef::Name("payments"))
            };
            let expected = vec![Named::TransactionalId("tx-1"), Named::Topic(orders), Named::Topic(payments)];
            assert_eq!(seen, expected, "v{version}");
        }
    }

    #[test]
    fn hostile_lengths_and_truncation_are_errors() {
        for version in [3, 9, 13] {
            let good = frame(version, &request());
            let peek = RequestHeaderPeek::parse(&good).unwrap();
            for cut in peek.body_offset..good.len() - 1 {
                let truncated = &good[..cut];
                assert!(scan_produce(truncated, &peek, |_, _, _| {}).is_err(), "v{version} cut at {cut}");
            }
            // A topic array claiming 2^31-1 entries.
            let mut hostile = good.to_vec();
            let at = peek.body_offset + if version >= 9 { 1 + 4 } else { 2 + 4 } + 2 + 4;
            if version >= 9 {
                hostile.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x07]);
            } else {
                hostile[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
            }
            let err = scan_produce(&hostile, &peek, |_, _, _| {}).unwrap_err();
            assert_eq!(err.what, "array longer than the message", "v{version}");
        }
    }
}
