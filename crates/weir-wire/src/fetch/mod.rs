//! A Fetch response read in place, for per-topic counts and error codes, and to tell whether
//! it carries leader hints (`NodeEndpoints`, v16+) that must be rewritten. Only then is the
//! response decoded in full; otherwise the broker's bytes go back untouched and this walk is
//! the only work done on them.

mod stream;
#[cfg(test)]
mod stream_tests;

use crate::records::count_records;
pub use crate::scan::TaggedFieldAt;
use crate::scan::{node_endpoints, Cursor, ScanError, TopicRef};
pub use stream::{FetchDigest, FetchStream, PartitionSpan, MAX_PIECE};

const FIRST_FLEXIBLE: i16 = 12;
const FIRST_TOPIC_ID: i16 = 13;
const FIRST_NODE_ENDPOINTS: i16 = 16;

/// What the response says as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSummary {
    pub error_code: i16,
    /// The fetch session (KIP-227, v7+) the response belongs to; 0: none.
    pub session_id: i32,
    /// Where the `NodeEndpoints` tagged field (broker addresses, to be rewritten or hidden)
    /// sits in the body, when the response has a non-empty one.
    pub node_endpoints: Option<TaggedFieldAt>,
}

impl FetchSummary {
    pub fn has_node_endpoints(&self) -> bool {
        self.node_endpoints.is_some()
    }
}

/// The fetch session a Fetch request (v7+) names, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSessionRef {
    pub session_id: i32,
    /// 0: a full request that opens a session; -1: no session (closing `session_id`, if any);
    /// above 0: an incremental request on the session.
    pub epoch: i32,
    /// Where `session_id` sits in the body.
    pub offset: usize,
}

/// Reads the session id and epoch of a Fetch request body (after the request header): fixed
/// fields, before any variable-length one, so no walk is needed. `None` before v7 (no
/// sessions) or when the body is too short.
pub fn request_session(body: &[u8], version: i16) -> Option<FetchSessionRef> {
    if version < 7 {
        return None;
    }
    // replica_id (v0-14), max_wait_ms, min_bytes, max_bytes, isolation_level.
    let offset = if version <= 14 { 17 } else { 13 };
    let int = |at: usize| body.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some(FetchSessionRef { session_id: int(offset)?, epoch: int(offset + 4)?, offset })
}

/// Reads `max_wait_ms` of a Fetch request body (how long the broker may hold the answer for
/// data to arrive): a fixed field, after `replica_id` before v15. `None` when too short.
pub fn request_max_wait_ms(body: &[u8], version: i16) -> Option<i32> {
    let at = if version <= 14 { 4 } else { 0 };
    body.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The top-level error code and fetch session id of a Fetch response body (v7+): fixed
/// fields after `throttle_time_ms`, so no walk is needed. `None` before v7 or when too short.
pub fn response_session(body: &[u8], version: i16) -> Option<(i16, i32)> {
    if version < 7 {
        return None;
    }
    let error = body.get(4..6).map(|b| i16::from_be_bytes([b[0], b[1]]))?;
    let session = body.get(6..10).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
    Some((error, session))
}

/// One partition's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchedPartition<'a> {
    pub topic: TopicRef<'a>,
    pub partition: i32,
    pub error_code: i16,
    pub records: Option<&'a [u8]>,
}

/// One partition's answer with its records counted (from the batch heads) rather than kept:
/// what filters read of a Fetch response, whole ([`count_fetch_response`]) or streamed
/// ([`FetchDigest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCount<'a> {
    pub topic: TopicRef<'a>,
    pub partition: i32,
    pub error_code: i16,
    /// The size of the records field (0 when null).
    pub record_bytes: usize,
    /// Application records in it (transaction markers and a partial last batch not counted).
    pub records: u64,
}

/// [`scan_fetch_response`] with each partition's records counted.
pub fn count_fetch_response(
    body: &[u8],
    version: i16,
    mut visit: impl FnMut(PartitionCount<'_>),
) -> Result<FetchSummary, ScanError> {
    scan_fetch_response(body, version, |p| {
        let records = p.records.unwrap_or_default();
        visit(PartitionCount {
            topic: p.topic,
            partition: p.partition,
            error_code: p.error_code,
            record_bytes: records.len(),
            records: count_records(records),
        })
    })
}

/// A tagged-field number no Fetch response defines; clients skip fields they do not know.
pub const UNKNOWN_TAG: u8 = 0x7f;

/// Hides leader hints without changing the response's length: the NodeEndpoints tagged field
/// becomes an unknown tagged field of the same size, its value zeroed. For a response whose
/// length prefix has already been sent, so the addresses cannot be rewritten.
///
/// `region` holds the body bytes from offset `region_start` on; returns false (and changes
/// nothing) when the field does not lie entirely inside it.
pub fn blank_node_endpoints(region: &mut [u8], region_start: usize, at: &TaggedFieldAt) -> bool {
    let (Some(tag), Some(start), Some(end)) = (
        at.tag_offset.checked_sub(region_start),
        at.value.start.checked_sub(region_start),
        at.value.end.checked_sub(region_start),
    ) else {
        return false;
    };
    if end > region.len() || tag >= start {
        return false;
    }
    region[tag] = UNKNOWN_TAG;
    region[start..end].fill(0);
    true
}

/// Walks a Fetch response body (after the response header), calling `visit` per partition.
pub fn scan_fetch_response<'a>(
    body: &'a [u8],
    version: i16,
    mut visit: impl FnMut(FetchedPartition<'a>),
) -> Result<FetchSummary, ScanError> {
    let flexible = version >= FIRST_FLEXIBLE;
    let mut c = Cursor::new(body, "Fetch response", version);
    c.i32()?; // throttle_time_ms
    let (error_code, session_id) = if version >= 7 { (c.i16()?, c.i32()?) } else { (0, 0) };
    let topics = c.array_len(flexible)?;
    for _ in 0..topics {
        let topic = c.topic_ref(flexible, version >= FIRST_TOPIC_ID)?;
        let partitions = c.array_len(flexible)?;
        for _ in 0..partitions {
            let partition = c.i32()?;
            let error_code = c.i16()?;
            c.i64()?; // high_watermark
            c.i64()?; // last_stable_offset
            if version >= 5 {
                c.i64()?; // log_start_offset
            }
            let aborted = c.array_len(flexible)?;
            for _ in 0..aborted {
                c.i64()?; // producer_id
                c.i64()?; // first_offset
                if flexible {
                    c.skip_tagged_fields()?;
                }
            }
            if version >= 11 {
                c.i32()?; // preferred_read_replica
            }
            let records = c.nullable_bytes(flexible)?;
            if flexible {
                // diverging_epoch, current_leader, snapshot_id: no addresses in them.
                c.skip_tagged_fields()?;
            }
            visit(FetchedPartition { topic, partition, error_code, records });
        }
        if flexible {
            c.skip_tagged_fields()?;
        }
    }
    let node_endpoints = if flexible { node_endpoints(&mut c, version >= FIRST_NODE_ENDPOINTS)? } else { None };
    Ok(FetchSummary { error_code, session_id, node_endpoints })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

    #[test]
    fn max_wait_is_read_at_every_version() {
        for version in 4..=17 {
            let mut body = BytesMut::new();
            kafka_protocol::messages::FetchRequest::default().with_max_wait_ms(777).encode(&mut body, version).unwrap();
            assert_eq!(request_max_wait_ms(&body, version), Some(777), "v{version}");
        }
    }

    /// A response using every field the version has (the encoder refuses others).
    fn response(version: i16, with_endpoints: bool) -> FetchResponse {
        let partition = |index: i32, error: i16, records: Option<&'static [u8]>| {
            let mut p = PartitionData::default()
                .with_partition_index(index)
                .with_error_code(error)
                .with_high_watermark(100)
                .with_aborted_transactions(Some(vec![AbortedTransaction::default().with_producer_id(7.into())]))
                .with_records(records.map(Bytes::from_static));
            if version >= 12 {
                p = p.with_current_leader(LeaderIdAndEpoch::default().with_leader_id(2.into()).with_leader_epoch(3));
            }
            p
        };
        let topic = |name: &'static str, id: u8, partitions| {
            let t = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_bytes([id; 16]))
            } else {
                t.with_topic(TopicName(StrBytes::from_static_str(name)))
            }
        };
        let with_endpoints = with_endpoints && version >= 16;
        FetchResponse::default()
            .with_session_id(if version >= 7 { 9 } else { 0 })
            .with_responses(vec![
                topic("orders", 1, vec![partition(0, 0, Some(b"batches")), partition(1, 6, None)]),
                topic("audit", 2, vec![partition(4, 0, Some(b""))]),
            ])
            .with_node_endpoints(if with_endpoints {
                vec![NodeEndpoint::default()
                    .with_node_id(2.into())
                    .with_host(StrBytes::from_static_str("broker-2"))
                    .with_port(9092)]
            } else {
                vec![]
            })
    }

    fn encoded(resp: &FetchResponse, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn agrees_with_the_reference_encoder_at_every_version() {
        for version in FetchResponse::VERSIONS.min..=FetchResponse::VERSIONS.max {
            for endpoints in [false, true] {
                let body = encoded(&response(version, endpoints), version);
                let mut seen = Vec::new();
                let summary = scan_fetch_response(&body, version, |p| {
                    seen.push((p.topic, p.partition, p.error_code, p.records.map(<[u8]>::to_vec)))
                })
                .unwrap();
                assert_eq!(summary.has_node_endpoints(), endpoints && version >= 16, "v{version}");
                assert_eq!(summary.session_id, if version >= 7 { 9 } else { 0 }, "v{version}");
                if let Some(at) = &summary.node_endpoints {
                    // The tag byte, then the size, then the value that ends the body's tags.
                    assert_eq!(body[at.tag_offset], 0);
                    assert_eq!(at.value.end, body.len());
                }
                let (orders, audit) = if version >= 13 {
                    (TopicRef::Id([1; 16]), TopicRef::Id([2; 16]))
                } else {
                    (TopicRef::Name("orders"), TopicRef::Name("audit"))
                };
                assert_eq!(
                    seen,
                    vec![(orders, 0, 0, Some(b"batches".to_vec())), (orders, 1, 6, None), (audit, 4, 0, Some(vec![])),],
                    "v{version}"
                );
            }
        }
    }

    #[test]
    fn request_sessions_are_read_where_the_reference_encoder_puts_them() {
        use kafka_protocol::messages::FetchRequest;
        for version in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
            let request = FetchRequest::default().with_session_id(0x0102_0304).with_session_epoch(-1);
            let mut buf = BytesMut::new();
            request.encode(&mut buf, version).unwrap();
            let found = request_session(&buf, version);
            if version < 7 {
                assert_eq!(found, None);
                continue;
            }
            let found = found.unwrap_or_else(|| panic!("v{version}: no session read"));
            assert_eq!((found.session_id, found.epoch), (0x0102_0304, -1), "v{version}");
            assert_eq!(&buf[found.offset..found.offset + 4], &[1, 2, 3, 4], "v{version}");
            assert_eq!(request_session(&buf[..found.offset + 7], version), None, "v{version}: short body");
        }
    }

    #[test]
    fn blanked_leader_hints_leave_a_valid_response_without_addresses() {
        for version in 16..=FetchResponse::VERSIONS.max {
            let mut body = encoded(&response(version, true), version);
            let original_len = body.len();
            let at = scan_fetch_response(&body, version, |_| {}).unwrap().node_endpoints.unwrap();
            // Only the tail of the body is still in hand, as when streaming.
            let region_start = body.len() - 100;
            assert!(blank_node_endpoints(&mut body[region_start..], region_start, &at));
            assert_eq!(body.len(), original_len);
            assert!(!body.windows(8).any(|w| w == b"broker-2"), "v{version}: address still there");
            let decoded = FetchResponse::decode(&mut Bytes::from(body.clone()), version).unwrap();
            assert!(decoded.node_endpoints.is_empty(), "v{version}");
            assert!(decoded.unknown_tagged_fields.contains_key(&i32::from(UNKNOWN_TAG)), "v{version}");
            assert_eq!(decoded.responses, response(version, true).responses, "v{version}: data changed");
            // A region that does not hold the whole field is refused untouched.
            let mut again = encoded(&response(version, true), version);
            let late = at.value.start + 1;
            let before = again.clone();
            assert!(!blank_node_endpoints(&mut again[late..], late, &at));
            assert_eq!(again, before);
        }
    }

    #[test]
    fn truncation_and_hostile_lengths_are_errors() {
        for version in [4, 12, 16] {
            let body = encoded(&response(version, true), version);
            for cut in 0..body.len() - 1 {
                // Every strict prefix is missing something the scanner must read.
                assert!(scan_fetch_response(&body[..cut], version, |_| {}).is_err(), "v{version} cut {cut}");
            }
        }
        let mut hostile = encoded(&response(4, false), 4);
        hostile[4..8].copy_from_slice(&i32::MAX.to_be_bytes()); // the topics array
        let err = scan_fetch_response(&hostile, 4, |_| {}).unwrap_err();
        assert_eq!(err.what, "array longer than the message");
    }
}
