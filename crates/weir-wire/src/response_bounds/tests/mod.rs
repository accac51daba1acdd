use super::*;
use crate::test_support::{encoded as body, gid, id, s, tn, unknown_tag as unknown, xid, Rng};
use bytes::Bytes;
use kafka_protocol::messages::{self as m, BrokerId, ProducerId};
use kafka_protocol::protocol::{Decodable, Message};
mod admin;
mod data;
mod groups;
use admin::*;
use data::*;
use groups::*;
fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}
fn records() -> Option<Bytes> {
    Some(Bytes::from_static(b"\0\0\0\0\0\0\0\x05\0\0\0\x09not a batch"))
}

/// What the reference decoder makes of a body: the bytes it leaves unread, or None when it
/// refuses the body.
type Decodes = crate::test_support::Decodes<Option<usize>>;

type Case = crate::test_support::Case<Vec<u8>, Option<usize>>;

fn case<R: Message + Decodable>(key: ApiKey, build: fn(i16) -> Vec<Vec<u8>>) -> Case {
    fn decodes<R: Decodable>(body: &[u8], v: i16) -> Option<usize> {
        let mut buf = Bytes::copy_from_slice(body);
        R::decode(&mut buf, v).ok().map(|_| buf.len())
    }
    Case { key, versions: R::VERSIONS, build, decodes: decodes::<R> }
}

fn cases() -> Vec<Case> {
    vec![
        case::<m::ApiVersionsResponse>(ApiKey::ApiVersions, api_versions),
        case::<m::MetadataResponse>(ApiKey::Metadata, metadata),
        case::<m::FindCoordinatorResponse>(ApiKey::FindCoordinator, find_coordinator),
        case::<m::DescribeClusterResponse>(ApiKey::DescribeCluster, describe_cluster),
        case::<m::ProduceResponse>(ApiKey::Produce, produce),
        case::<m::FetchResponse>(ApiKey::Fetch, fetch),
        case::<m::ShareFetchResponse>(ApiKey::ShareFetch, share_fetch),
        case::<m::ShareAcknowledgeResponse>(ApiKey::ShareAcknowledge, share_acknowledge),
        case::<m::ListGroupsResponse>(ApiKey::ListGroups, list_groups),
        case::<m::OffsetFetchResponse>(ApiKey::OffsetFetch, offset_fetch),
        case::<m::DescribeTopicPartitionsResponse>(ApiKey::DescribeTopicPartitions, describe_topic_partitions),
        case::<m::ListOffsetsResponse>(ApiKey::ListOffsets, list_offsets),
        case::<m::OffsetForLeaderEpochResponse>(ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch),
        case::<m::OffsetCommitResponse>(ApiKey::OffsetCommit, offset_commit),
        case::<m::TxnOffsetCommitResponse>(ApiKey::TxnOffsetCommit, txn_offset_commit),
        case::<m::DescribeGroupsResponse>(ApiKey::DescribeGroups, describe_groups),
        case::<m::CreateTopicsResponse>(ApiKey::CreateTopics, create_topics),
        case::<m::DeleteTopicsResponse>(ApiKey::DeleteTopics, delete_topics),
        case::<m::DescribeConfigsResponse>(ApiKey::DescribeConfigs, describe_configs),
        case::<m::CreatePartitionsResponse>(ApiKey::CreatePartitions, create_partitions),
        case::<m::DeleteRecordsResponse>(ApiKey::DeleteRecords, delete_records),
        case::<m::DeleteGroupsResponse>(ApiKey::DeleteGroups, delete_groups),
        case::<m::ConsumerGroupHeartbeatResponse>(ApiKey::ConsumerGroupHeartbeat, consumer_group_heartbeat),
        case::<m::ConsumerGroupDescribeResponse>(ApiKey::ConsumerGroupDescribe, consumer_group_describe),
        case::<m::ShareGroupDescribeResponse>(ApiKey::ShareGroupDescribe, share_group_describe),
        case::<m::AlterConfigsResponse>(ApiKey::AlterConfigs, alter_configs),
        case::<m::IncrementalAlterConfigsResponse>(ApiKey::IncrementalAlterConfigs, incremental_alter_configs),
        case::<m::OffsetDeleteResponse>(ApiKey::OffsetDelete, offset_delete),
        case::<m::DescribeProducersResponse>(ApiKey::DescribeProducers, describe_producers),
        case::<m::DescribeTransactionsResponse>(ApiKey::DescribeTransactions, describe_transactions),
        case::<m::DescribeShareGroupOffsetsResponse>(ApiKey::DescribeShareGroupOffsets, describe_share_group_offsets),
        case::<m::AlterShareGroupOffsetsResponse>(ApiKey::AlterShareGroupOffsets, alter_share_group_offsets),
        case::<m::DeleteShareGroupOffsetsResponse>(ApiKey::DeleteShareGroupOffsets, delete_share_group_offsets),
        case::<m::SaslHandshakeResponse>(ApiKey::SaslHandshake, sasl_handshake),
        case::<m::SaslAuthenticateResponse>(ApiKey::SaslAuthenticate, sasl_authenticate),
    ]
}

/// Every (key, version, decoder, body) the table yields.
fn all_bodies() -> Vec<(ApiKey, i16, Decodes, Vec<u8>)> {
    crate::test_support::all_bodies(cases())
}

fn strict(body: &[u8], key: ApiKey, v: i16) -> Result<bool, ScanError> {
    check_response_body_strict(body, key, v)
}

#[test]
fn every_response_at_every_version_is_walked_to_its_end_and_decodes() {
    let mut walked = 0;
    for case in cases() {
        let spec = schema::response(case.key as i16).expect("a spec");
        let (lo, hi) = (case.versions.min, case.versions.max);
        assert!(
            spec.versions.contains(lo) && spec.versions.contains(hi),
            "{:?}: the spec lacks versions the decoder reads",
            case.key
        );
        let flexible = |_: ApiKey, v| spec.flexible.contains(v);
        for v in case.versions.min..=case.versions.max {
            // Flexible bodies: from the request's flexible header version (v2) on, whatever
            // the response header says (ApiVersions keeps response header v0).
            assert_eq!(flexible(case.key, v), case.key.request_header_version(v) >= 2, "{:?} v{v}", case.key);
            for b in (case.build)(v) {
                let what = format!("{:?} v{v} {b:02x?}", case.key);
                assert_eq!((case.decodes)(&b, v), Some(0), "{what}: the reference decoder refuses its encoding");
                assert_eq!(strict(&b, case.key, v), Ok(true), "{what}");
                walked += 1;

                // Trailing bytes are the sender's business (the decoder ignores them too),
                // but the strict walk, which checks the schema, sees them.
                let mut longer = b.clone();
                longer.extend([0, 1, 2]);
                assert_eq!(check_response_body(&longer, case.key, v), Ok(true), "{what}");
                assert_eq!(strict(&longer, case.key, v).unwrap_err().what, "trailing bytes", "{what}");

                // An unknown top-level tagged field is skipped (when the body has no
                // top-level tags, its last byte is their count, 0).
                if flexible(case.key, v) && b.last() == Some(&0) {
                    let mut tagged = b.clone();
                    tagged.pop();
                    tagged.extend([1, 99, 2, 0xab, 0xcd]);
                    assert_eq!((case.decodes)(&tagged, v), Some(0), "{what}");
                    assert_eq!(strict(&tagged, case.key, v), Ok(true), "{what}");
                }
            }
        }
    }
    assert!(walked > 200, "{walked}");
}

#[test]
fn every_strict_prefix_of_a_valid_body_is_an_error() {
    for (key, v, _, b) in all_bodies() {
        for cut in 0..b.len() {
            assert!(check_response_body(&b[..cut], key, v).is_err(), "{key:?} v{v} cut at {cut}");
        }
    }
}

const CLASSIC_MAX: [u8; 4] = i32::MAX.to_be_bytes();
/// u32::MAX as an unsigned varint: u32::MAX - 1 elements.
const COMPACT_MAX: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

#[test]
fn hostile_array_lengths_are_refused_before_any_element() {
    let (c, x) = (&CLASSIC_MAX[..], &COMPACT_MAX[..]);
    let cases: Vec<(ApiKey, i16, Vec<u8>)> = vec![
        // Top level.
        (ApiKey::Metadata, 1, c.to_vec()),
        (ApiKey::Metadata, 12, [&[0; 4][..], x].concat()),
        (ApiKey::Produce, 3, c.to_vec()),
        (ApiKey::Produce, 9, x.to_vec()),
        (ApiKey::Fetch, 4, [&[0; 4][..], c].concat()),
        (ApiKey::Fetch, 16, [&[0; 10][..], x].concat()),
        (ApiKey::DescribeGroups, 0, c.to_vec()),
        (ApiKey::DescribeTransactions, 0, [&[0; 4][..], x].concat()),
        (ApiKey::ApiVersions, 0, [&[0; 2][..], c].concat()),
        (ApiKey::ApiVersions, 3, [&[0; 2][..], x].concat()),
        (ApiKey::OffsetDelete, 0, [&[0; 6][..], c].concat()),
        (ApiKey::DescribeShareGroupOffsets, 0, [&[0; 4][..], x].concat()),
        // DescribeShareGroupOffsets v0: throttle, one group "g", then its topics.
        (ApiKey::DescribeShareGroupOffsets, 0, [&[0; 4][..], &[2, 2, b'g'], x].concat()),
        // Alter/DeleteShareGroupOffsets v0: throttle, error_code, null message, then the topics.
        (ApiKey::AlterShareGroupOffsets, 0, [&[0; 6][..], &[0], x].concat()),
        (ApiKey::DeleteShareGroupOffsets, 0, [&[0; 6][..], &[0], x].concat()),
        // Metadata v1: no brokers, controller_id, one topic (error_code, "a", is_internal),
        // then its partitions.
        (ApiKey::Metadata, 1, [&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, b'a', 0][..], c].concat()),
        // Metadata v12, a partition's replica_nodes: throttle, no brokers, null cluster_id,
        // controller_id, one topic (error_code, "a", topic_id, is_internal), one partition
        // (error_code, partition_index, leader_id, leader_epoch).
        (
            ApiKey::Metadata,
            12,
            [&[0; 4][..], &[1, 0], &[0; 4], &[2, 0, 0, 2, b'a'], &[0; 17], &[2], &[0; 14], x].concat(),
        ),
        // Fetch v4: throttle, one topic "a", then its partitions.
        (ApiKey::Fetch, 4, [&[0; 4][..], &[0, 0, 0, 1, 0, 1, b'a'], c].concat()),
        // Fetch v13: throttle, error_code, session_id, one topic by id, then its partitions.
        (ApiKey::Fetch, 13, [&[0; 10][..], &[2], &[7; 16], x].concat()),
        // Fetch v5: one topic "a", one partition, then its aborted_transactions.
        (ApiKey::Fetch, 5, [&[0; 4][..], &[0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 1], &[0; 30], c].concat()),
        // Produce v8: one topic "a", one partition, then its record_errors.
        (ApiKey::Produce, 8, [&[0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 1][..], &[0; 30], c].concat()),
        // ConsumerGroupDescribe v0: throttle, one group (error_code, null message, "g",
        // "s", epochs, "" assignor), then its members.
        (ApiKey::ConsumerGroupDescribe, 0, [&[0; 4][..], &[2, 0, 0, 0, 2, b'g', 2, b's'], &[0; 8], &[1], x].concat()),
        // DescribeTopicPartitions v0: a partition's (nullable) eligible_leader_replicas.
        (
            ApiKey::DescribeTopicPartitions,
            0,
            [&[0; 4][..], &[2, 0, 0, 0], &[0; 17], &[2], &[0; 14], &[1, 1], x].concat(),
        ),
        // DescribeTransactions v0: a transaction's topics.
        (ApiKey::DescribeTransactions, 0, [&[0; 4][..], &[2, 0, 0, 2, b't', 2, b's'], &[0; 22], x].concat()),
        // DescribeConfigs v1: a config's synonyms.
        (
            ApiKey::DescribeConfigs,
            1,
            [
                &[0; 4][..],
                &[0, 0, 0, 1, 0, 0, 0xff, 0xff, 2, 0, 1, b'r', 0, 0, 0, 1, 0, 1, b'n', 0xff, 0xff, 0, 0, 0],
                c,
            ]
            .concat(),
        ),
        // Inside known tagged fields: Fetch v16's NodeEndpoints (tag 0) at the top level.
        (ApiKey::Fetch, 16, [&[0; 10][..], &[1, 1, 0, 5], x].concat()),
        // Produce v10's NodeEndpoints: no topics, throttle, tag 0.
        (ApiKey::Produce, 10, [&[1][..], &[0; 4], &[1, 0, 5], x].concat()),
        // ApiVersions v3's supported_features (tag 0) and finalized_features (tag 2).
        (ApiKey::ApiVersions, 3, [&[0, 0, 1][..], &[0; 4], &[1, 0, 5], x].concat()),
        (ApiKey::ApiVersions, 4, [&[0, 0, 1][..], &[0; 4], &[1, 2, 5], x].concat()),
    ];
    for (key, v, body) in cases {
        let started = std::time::Instant::now();
        let err = check_response_body(&body, key, v).unwrap_err();
        assert_eq!(err.what, "array longer than the message", "{key:?} v{v} {body:02x?}: {err}");
        assert!(err.offset <= body.len(), "{key:?} v{v}");
        assert!(err.message.starts_with(&format!("{key:?} response")), "{key:?} v{v}: {}", err.message);
        assert!(started.elapsed() < std::time::Duration::from_millis(100), "{key:?} v{v}");
    }
    // Negative lengths other than -1 (null) are malformed too.
    let err = check_response_body(&[&[0; 4][..], &(-2i32).to_be_bytes()].concat(), ApiKey::DeleteGroups, 0);
    assert_eq!(err.unwrap_err().what, "negative length");
    // A null array where the schema has none.
    let err = check_response_body(&[&[0; 4][..], &(-1i32).to_be_bytes()].concat(), ApiKey::DeleteGroups, 0);
    assert_eq!(err.unwrap_err().what, "null array");
    assert_eq!(check_response_body(&[0, 0, 0, 0, 0, 0], ApiKey::DeleteGroups, 2).unwrap_err().what, "null array");
}

/// The decoder reads known tagged fields from the stream whatever size they declare, so a
/// size that disagrees would shift it off the walker's reading.
#[test]
fn known_tagged_fields_must_fill_their_declared_size() {
    let decodes = cases().into_iter().find(|c| c.key == ApiKey::Fetch).unwrap().decodes;
    // Fetch v16 without NodeEndpoints ends with an empty top-level tag section.
    let base = fetch(16).remove(0);
    assert_eq!(base.last(), Some(&0));
    let with_tags = |tags: &[u8]| [&base[..base.len() - 1], tags].concat();
    // Tag 0, 1 byte: an empty NodeEndpoints array.
    let empty = with_tags(&[1, 0, 1, 1]);
    assert_eq!(strict(&empty, ApiKey::Fetch, 16), Ok(true));
    assert_eq!(decodes(&empty, 16), Some(0));
    // Declared 2 bytes, the array takes 1: the decoder would read the second as the next tag.
    let long = with_tags(&[1, 0, 2, 1, 0]);
    assert_eq!(strict(&long, ApiKey::Fetch, 16).unwrap_err().what, "tagged field size disagrees with its field");
    assert_ne!(decodes(&long, 16), Some(0));
    // Declared 1 byte, holding an array of one endpoint: arrays inside a known tagged field
    // are bounded by its declared size.
    let short = with_tags(&[1, 0, 1, 2, 0, 0, 0, 1, 2, b'h', 0, 0, 0, 1, 0, 0]);
    assert_eq!(strict(&short, ApiKey::Fetch, 16).unwrap_err().what, "array longer than the message");
    // An unknown tag holds anything.
    assert_eq!(strict(&with_tags(&[1, 5, 3, 0xff, 0xff, 0xff]), ApiKey::Fetch, 16), Ok(true));

    // The same tag before NodeEndpoints existed (v16) is refused, as the decoder does.
    let old = fetch(15).remove(0);
    let old_with_tag = [&old[..old.len() - 1], &[1, 0, 1, 1]].concat();
    assert_eq!(strict(&old_with_tag, ApiKey::Fetch, 15).unwrap_err().what, "tag not valid at this version");
    assert_eq!(decodes(&old_with_tag, 15), None);

    // Produce v10's per-partition CurrentLeader (tag 0, 13 bytes): leader_id, leader_epoch,
    // its own tagged fields (one unknown).
    let produce_decodes = cases().into_iter().find(|c| c.key == ApiKey::Produce).unwrap().decodes;
    let body = produce(10).remove(0);
    let leader = [0, 13, 0, 0, 0, 2, 0, 0, 0, 4, 1, 42, 2, b'?', b'?'];
    let at = body.windows(leader.len()).position(|w| w == leader).expect("a CurrentLeader");
    let mut short = body.clone();
    short[at + 1] = 12;
    short.remove(at + 14);
    assert_eq!(strict(&short, ApiKey::Produce, 10).unwrap_err().what, "tagged field size disagrees with its field");
    let mut long = body.clone();
    long[at + 1] = 14;
    long.insert(at + 15, 0);
    assert_eq!(strict(&long, ApiKey::Produce, 10).unwrap_err().what, "tagged field size disagrees with its field");
    assert_ne!(produce_decodes(&long, 10), Some(0));
    // At v9 (flexible, but before CurrentLeader) the tag is refused, as the decoder does: a
    // partition with no record errors, a null error message, then its tagged fields.
    let v9 = produce(9).remove(0);
    let partition_end = [1, 0, 1, 42, 2, b'?', b'?'];
    let at = v9.windows(partition_end.len()).position(|w| w == partition_end).unwrap() + 2;
    let mut tagged = v9.clone();
    tagged.splice(at..at + 1, [2, 0, 0]);
    assert_eq!(strict(&tagged, ApiKey::Produce, 9).unwrap_err().what, "tag not valid at this version");
    assert_eq!(produce_decodes(&tagged, 9), None);
    // At v10 the same empty tag is a CurrentLeader too short for its fields.
    let v10 = produce(10).remove(0);
    let at = v10.windows(partition_end.len()).position(|w| w == partition_end).unwrap() + 2;
    let mut tagged = v10.clone();
    tagged.splice(at..at + 1, [2, 0, 0]);
    assert_eq!(strict(&tagged, ApiKey::Produce, 10).unwrap_err().what, "tagged field size disagrees with its field");
}

#[test]
fn strings_must_be_utf8_as_the_decoder_requires() {
    let decodes = cases().into_iter().find(|c| c.key == ApiKey::DeleteGroups).unwrap().decodes;
    for v in 0..=2 {
        let mut b = delete_groups(v).remove(0);
        let at = b.windows(5).position(|w| w == b"grp-1").unwrap();
        b[at + 3] = 0xff;
        assert_eq!(check_response_body(&b, ApiKey::DeleteGroups, v).unwrap_err().what, "string is not UTF-8");
        assert_eq!(decodes(&b, v), None, "v{v}");
    }
}

/// Whatever the walker accepts, the reference decoder reads (in full, when the strict walk
/// accepts it): the walk and the decoder agree on where every length sits. Bodies the walker
/// refuses are never decoded: they may declare lengths that make the decoder allocate without
/// bound.
#[test]
fn mutated_bodies_the_walker_accepts_the_reference_decoder_reads() {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let (mut accepted, mut refused) = (0, 0);
    for (key, v, decodes, b) in all_bodies() {
        for _ in 0..48 {
            let mut body = b.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len());
                match rng.below(5) {
                    0 => body[at] = rng.next() as u8,
                    1 => body[at] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff][rng.below(6)],
                    2 => drop(body.remove(at)),
                    3 => body.insert(at, rng.next() as u8),
                    _ => body[at] ^= 1 << rng.below(8),
                }
                if body.is_empty() {
                    body.push(0);
                }
            }
            match check_response_body(&body, key, v) {
                Ok(walked) => {
                    assert!(walked);
                    let left = decodes(&body, v);
                    assert!(left.is_some(), "{key:?} v{v}: walker accepts what the decoder refuses: {body:02x?}");
                    if strict(&body, key, v).is_ok() {
                        assert_eq!(left, Some(0), "{key:?} v{v}: the decoder stops early: {body:02x?}");
                    }
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    assert!(accepted > 2000 && refused > 2000, "accepted {accepted}, refused {refused}");
}

#[test]
fn every_response_the_decoder_reads_has_a_spec_and_other_versions_are_refused() {
    for key in ApiKey::iter() {
        let spec = schema::response(key as i16).unwrap_or_else(|| panic!("{key:?}: no response spec"));
        let decoder = key.valid_versions();
        assert!(
            spec.versions.contains(decoder.min) && spec.versions.contains(decoder.max),
            "{key:?}: the decoder reads v{}-{}, the spec has {:?}",
            decoder.min,
            decoder.max,
            spec.versions
        );
        for v in [spec.versions.lo - 1, spec.versions.hi.saturating_add(1), -1] {
            let err = check_response_body(&[0; 64], key, v).unwrap_err();
            assert_eq!(err.what, "unsupported version", "{key:?} v{v}");
        }
    }
    // Kafka 4 reads Fetch responses from v4 and Produce responses from v3 only.
    assert_eq!(check_response_body(&[0; 64], ApiKey::Fetch, 3).unwrap_err().what, "unsupported version");
    assert_eq!(check_response_body(&[0; 64], ApiKey::Produce, 2).unwrap_err().what, "unsupported version");
}

#[test]
fn api_versions_bodies_are_flexible_from_v3_under_a_v0_header() {
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let b = api_versions(3).remove(0);
    assert_eq!(b[2], 4, "compact array of 3 api keys");
    assert_eq!(strict(&b, ApiKey::ApiVersions, 3), Ok(true));
    // The classic v2 body of the same response.
    let b = api_versions(2).remove(0);
    assert_eq!(b[2..6], [0, 0, 0, 3]);
    assert_eq!(strict(&b, ApiKey::ApiVersions, 2), Ok(true));
}
