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

/// Reads only `acks` of a Produce request body (0: the broker sends no response): its first
/// field is the transactional id, so this is no walk.
pub fn acks(body: &[u8], version: i16) -> Result<i16, ScanError> {
    let mut c = Cursor::new(body, "Produce request", version);
    c.nullable_string(version >= FIRST_FLEXIBLE)?;
    c.i16()
}

/// Reads `acks` and `timeout_ms` (how long the broker may wait for replication) of a Produce
/// request body: fixed fields after the transactional id, so this is no walk.
pub fn acks_and_timeout_ms(body: &[u8], version: i16) -> Result<(i16, i32), ScanError> {
    let mut c = Cursor::new(body, "Produce request", version);
    c.nullable_string(version >= FIRST_FLEXIBLE)?;
    Ok((c.i16()?, c.i32()?))
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

/// The first Produce response version that can carry leader hints (`NodeEndpoints`, KIP-951).
const FIRST_NODE_ENDPOINTS: i16 = 10;

/// Walks a Produce response body (after the response header) in place, calling
/// `visit(topic, partition, error_code)` per partition. Returns whether it carries leader
/// hints (a non-empty `NodeEndpoints`, v10+): only then must it be decoded to rewrite the
/// broker addresses; otherwise the broker's bytes go back untouched.
pub fn scan_produce_response<'a>(
    body: &'a [u8],
    version: i16,
    mut visit: impl FnMut(TopicRef<'a>, i32, i16),
) -> Result<bool, ScanError> {
    let flexible = version >= FIRST_FLEXIBLE;
    let mut c = Cursor::new(body, "Produce response", version);
    let topics = c.array_len(flexible)?;
    for _ in 0..topics {
        let topic = c.topic_ref(flexible, version >= FIRST_TOPIC_ID)?;
        let partitions = c.array_len(flexible)?;
        for _ in 0..partitions {
            let partition = c.i32()?;
            let error_code = c.i16()?;
            c.i64()?; // base_offset
            if version >= 2 {
                c.i64()?; // log_append_time_ms
            }
            if version >= 5 {
                c.i64()?; // log_start_offset
            }
            if version >= 8 {
                let record_errors = c.array_len(flexible)?;
                for _ in 0..record_errors {
                    c.i32()?; // batch_index
                    c.nullable_string(flexible)?; // batch_index_error_message
                    if flexible {
                        c.skip_tagged_fields()?;
                    }
                }
                c.nullable_string(flexible)?; // error_message
            }
            if flexible {
                // current_leader (v10+): a leader id and epoch, no address.
                c.skip_tagged_fields()?;
            }
            visit(topic, partition, error_code);
        }
        if flexible {
            c.skip_tagged_fields()?;
        }
    }
    if version >= 1 {
        c.i32()?; // throttle_time_ms
    }
    Ok(flexible && crate::scan::node_endpoints(&mut c, version >= FIRST_NODE_ENDPOINTS)?.is_some())
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

    #[test]
    fn acks_and_timeout_are_read_at_every_version() {
        for version in 3..=13 {
            let body = ProduceRequest::default().with_acks(-1).with_timeout_ms(4321);
            let frame = frame(version, &body);
            let peek = RequestHeaderPeek::parse(&frame).unwrap();
            assert_eq!(acks_and_timeout_ms(&frame[peek.body_offset..], version).unwrap(), (-1, 4321), "v{version}");
        }
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

    fn response(version: i16, with_endpoints: bool) -> kafka_protocol::messages::ProduceResponse {
        use kafka_protocol::messages::produce_response::*;
        let partition = |index: i32, error: i16| {
            let mut p =
                PartitionProduceResponse::default().with_index(index).with_error_code(error).with_base_offset(7);
            if version >= 8 && error != 0 {
                p = p
                    .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                        .with_batch_index(0)
                        .with_batch_index_error_message(Some(StrBytes::from_static_str("bad record")))])
                    .with_error_message(Some(StrBytes::from_static_str("INVALID_RECORD")));
            }
            if version >= 10 {
                p = p.with_current_leader(LeaderIdAndEpoch::default().with_leader_id(2.into()).with_leader_epoch(4));
            }
            p
        };
        let topic = |name: &'static str, id: u8, partitions| {
            let t = TopicProduceResponse::default().with_partition_responses(partitions);
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_bytes([id; 16]))
            } else {
                t.with_name(TopicName(StrBytes::from_static_str(name)))
            }
        };
        let endpoints = if with_endpoints && version >= 10 {
            vec![NodeEndpoint::default()
                .with_node_id(2.into())
                .with_host(StrBytes::from_static_str("b-2"))
                .with_port(9092)]
        } else {
            vec![]
        };
        ProduceResponse::default()
            .with_responses(vec![
                topic("orders", 1, vec![partition(0, 0), partition(1, 87)]),
                topic("audit", 2, vec![partition(3, 0)]),
            ])
            .with_throttle_time_ms(5)
            .with_node_endpoints(endpoints)
    }

    #[test]
    fn responses_agree_with_the_reference_encoder_at_every_version() {
        use kafka_protocol::messages::ProduceResponse;
        for version in ProduceResponse::VERSIONS.min..=ProduceResponse::VERSIONS.max {
            for endpoints in [false, true] {
                let mut body = BytesMut::new();
                response(version, endpoints).encode(&mut body, version).unwrap();
                let mut seen = Vec::new();
                let hints = scan_produce_response(&body, version, |t, p, e| seen.push((t, p, e))).unwrap();
                assert_eq!(hints, endpoints && version >= 10, "v{version}");
                let (orders, audit) = if version >= 13 {
                    (TopicRef::Id([1; 16]), TopicRef::Id([2; 16]))
                } else {
                    (TopicRef::Name("orders"), TopicRef::Name("audit"))
                };
                assert_eq!(seen, vec![(orders, 0, 0), (orders, 1, 87), (audit, 3, 0)], "v{version}");
                for cut in 0..body.len() {
                    // Every strict prefix is missing something the scanner must read.
                    assert!(
                        scan_produce_response(&body[..cut], version, |_, _, _| {}).is_err(),
                        "v{version} cut {cut}"
                    );
                }
            }
        }
    }
}
