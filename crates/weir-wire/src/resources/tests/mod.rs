use super::*;
use crate::test_support::{encoded, gid, id, s, tn, unknown_tag, xid, Rng};
use bytes::Bytes;
use kafka_protocol::messages::{self as m, BrokerId};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
mod data;
mod groups;
use data::*;
use groups::*;
fn t(name: &'static str) -> Named<'static> {
    Named::Topic(TopicRef::Name(name))
}
fn ti(n: u8) -> Named<'static> {
    Named::Topic(TopicRef::Id([n; 16]))
}
fn g(name: &'static str) -> Named<'static> {
    Named::Group(name)
}
fn x(name: &'static str) -> Named<'static> {
    Named::TransactionalId(name)
}
fn facts(all_topics: bool, allow_auto_topic_creation: bool) -> RequestFacts {
    RequestFacts { all_topics, allow_auto_topic_creation }
}
const NONE: RequestFacts = RequestFacts { all_topics: false, allow_auto_topic_creation: false };

/// A request body and what the walker must find in it.
struct Built {
    body: Vec<u8>,
    names: Vec<Named<'static>>,
    facts: RequestFacts,
}

fn built(req: impl Encodable, v: i16, names: Vec<Named<'static>>, facts: RequestFacts) -> Built {
    Built { body: encoded(req, v), names, facts }
}

/// Whether the reference decoder reads all of a body at a version.
type Decodes = crate::test_support::Decodes<bool>;

type Case = crate::test_support::Case<Built, bool>;

fn case<R: Message + Decodable>(key: ApiKey, build: fn(i16) -> Vec<Built>) -> Case {
    fn decodes<R: Decodable>(body: &[u8], v: i16) -> bool {
        let mut buf = Bytes::copy_from_slice(body);
        R::decode(&mut buf, v).is_ok() && buf.is_empty()
    }
    Case { key, versions: R::VERSIONS, build, decodes: decodes::<R> }
}

fn cases() -> Vec<Case> {
    vec![
        case::<m::FetchRequest>(ApiKey::Fetch, fetch),
        case::<m::ListOffsetsRequest>(ApiKey::ListOffsets, list_offsets),
        case::<m::MetadataRequest>(ApiKey::Metadata, metadata),
        case::<m::OffsetCommitRequest>(ApiKey::OffsetCommit, offset_commit),
        case::<m::OffsetFetchRequest>(ApiKey::OffsetFetch, offset_fetch),
        case::<m::FindCoordinatorRequest>(ApiKey::FindCoordinator, find_coordinator),
        case::<m::JoinGroupRequest>(ApiKey::JoinGroup, join_group),
        case::<m::HeartbeatRequest>(ApiKey::Heartbeat, heartbeat),
        case::<m::LeaveGroupRequest>(ApiKey::LeaveGroup, leave_group),
        case::<m::SyncGroupRequest>(ApiKey::SyncGroup, sync_group),
        case::<m::DescribeGroupsRequest>(ApiKey::DescribeGroups, describe_groups),
        case::<m::CreateTopicsRequest>(ApiKey::CreateTopics, create_topics),
        case::<m::DeleteTopicsRequest>(ApiKey::DeleteTopics, delete_topics),
        case::<m::DeleteRecordsRequest>(ApiKey::DeleteRecords, delete_records),
        case::<m::InitProducerIdRequest>(ApiKey::InitProducerId, init_producer_id),
        case::<m::OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch),
        case::<m::AddPartitionsToTxnRequest>(ApiKey::AddPartitionsToTxn, add_partitions_to_txn),
        case::<m::AddOffsetsToTxnRequest>(ApiKey::AddOffsetsToTxn, add_offsets_to_txn),
        case::<m::EndTxnRequest>(ApiKey::EndTxn, end_txn),
        case::<m::TxnOffsetCommitRequest>(ApiKey::TxnOffsetCommit, txn_offset_commit),
        case::<m::DescribeConfigsRequest>(ApiKey::DescribeConfigs, describe_configs),
        case::<m::AlterConfigsRequest>(ApiKey::AlterConfigs, alter_configs),
        case::<m::CreatePartitionsRequest>(ApiKey::CreatePartitions, create_partitions),
        case::<m::DeleteGroupsRequest>(ApiKey::DeleteGroups, delete_groups),
        case::<m::IncrementalAlterConfigsRequest>(ApiKey::IncrementalAlterConfigs, incremental_alter_configs),
        case::<m::OffsetDeleteRequest>(ApiKey::OffsetDelete, offset_delete),
        case::<m::DescribeProducersRequest>(ApiKey::DescribeProducers, describe_producers),
        case::<m::DescribeTransactionsRequest>(ApiKey::DescribeTransactions, describe_transactions),
        case::<m::ConsumerGroupHeartbeatRequest>(ApiKey::ConsumerGroupHeartbeat, consumer_group_heartbeat),
        case::<m::ConsumerGroupDescribeRequest>(ApiKey::ConsumerGroupDescribe, consumer_group_describe),
        case::<m::ShareGroupHeartbeatRequest>(ApiKey::ShareGroupHeartbeat, share_group_heartbeat),
        case::<m::ShareGroupDescribeRequest>(ApiKey::ShareGroupDescribe, share_group_describe),
        case::<m::ShareFetchRequest>(ApiKey::ShareFetch, share_fetch),
        case::<m::ShareAcknowledgeRequest>(ApiKey::ShareAcknowledge, share_acknowledge),
        case::<m::DescribeShareGroupOffsetsRequest>(ApiKey::DescribeShareGroupOffsets, describe_share_group_offsets),
        case::<m::AlterShareGroupOffsetsRequest>(ApiKey::AlterShareGroupOffsets, alter_share_group_offsets),
        case::<m::DeleteShareGroupOffsetsRequest>(ApiKey::DeleteShareGroupOffsets, delete_share_group_offsets),
        case::<m::DescribeTopicPartitionsRequest>(ApiKey::DescribeTopicPartitions, describe_topic_partitions),
        case::<m::CreateAclsRequest>(ApiKey::CreateAcls, create_acls),
        case::<m::DeleteAclsRequest>(ApiKey::DeleteAcls, delete_acls),
        case::<m::ElectLeadersRequest>(ApiKey::ElectLeaders, elect_leaders),
        case::<m::AlterClientQuotasRequest>(ApiKey::AlterClientQuotas, alter_client_quotas),
        case::<m::AlterUserScramCredentialsRequest>(ApiKey::AlterUserScramCredentials, alter_user_scram_credentials),
        case::<m::AlterReplicaLogDirsRequest>(ApiKey::AlterReplicaLogDirs, alter_replica_log_dirs),
    ]
}

/// Every (case, version, body) the table yields.
fn all_bodies() -> Vec<(ApiKey, i16, Decodes, Built)> {
    crate::test_support::all_bodies(cases())
}

fn scan(body: &[u8], key: ApiKey, v: i16) -> Result<(Vec<Named<'_>>, Option<RequestFacts>), ScanError> {
    let mut seen = Vec::new();
    let facts = scan_request_resources_strict(body, key, v, |n| seen.push(n))?;
    Ok((seen, facts))
}

// Cluster administration: walked for bounds, no names reported.

#[test]
fn names_and_facts_agree_with_the_reference_encoder_at_every_version() {
    let mut walked = 0;
    for case in cases() {
        let spec = schema::request(case.key as i16).expect("a spec");
        let (lo, hi) = (case.versions.min, case.versions.max);
        assert!(
            spec.versions.contains(lo) && spec.versions.contains(hi),
            "{:?}: the spec lacks versions the decoder reads",
            case.key
        );
        for v in case.versions.min..=case.versions.max {
            for b in (case.build)(v) {
                let what = format!("{:?} v{v} {:02x?}", case.key, b.body);
                assert!((case.decodes)(&b.body, v), "{what}: the reference decoder refuses its own encoding");
                let (names, facts) = scan(&b.body, case.key, v).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(names, b.names, "{what}");
                let expected = (!names_only_the_cluster(case.key)).then_some(b.facts);
                assert_eq!(facts, expected, "{what}");
                walked += 1;

                // Trailing garbage means the sender's schema is not ours.
                let mut longer = b.body.clone();
                longer.push(0);
                assert_eq!(scan(&longer, case.key, v).unwrap_err().what, "trailing bytes", "{what}");

                // An unknown top-level tagged field (the body ends with an empty tag section;
                // Fetch sets known top-level tags, so is left out) is skipped.
                let flexible = case.key.request_header_version(v) >= 2;
                if flexible && case.key != ApiKey::Fetch {
                    let mut tagged = b.body.clone();
                    assert_eq!(tagged.pop(), Some(0), "{what}");
                    tagged.extend([1, 99, 2, 0xab, 0xcd]);
                    assert!((case.decodes)(&tagged, v), "{what}");
                    let (names, _) = scan(&tagged, case.key, v).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(names, b.names, "{what}");
                }
            }
        }
    }
    assert!(walked > 150, "{walked}");
}

#[test]
fn every_strict_prefix_of_a_valid_body_is_an_error() {
    for (key, v, _, b) in all_bodies() {
        for cut in 0..b.body.len() {
            assert!(scan(&b.body[..cut], key, v).is_err(), "{key:?} v{v} cut at {cut}");
        }
    }
}

#[test]
fn hostile_array_lengths_are_refused_before_any_element() {
    let max = i32::MAX.to_be_bytes();
    let compact_max = [0xff, 0xff, 0xff, 0xff, 0x0f]; // u32::MAX, i.e. u32::MAX - 1 elements
    let cases: Vec<(ApiKey, i16, Vec<u8>)> = vec![
        (ApiKey::Metadata, 1, max.to_vec()),
        (ApiKey::Metadata, 12, compact_max.to_vec()),
        (ApiKey::DeleteGroups, 0, max.to_vec()),
        (ApiKey::DescribeTransactions, 0, compact_max.to_vec()),
        // ListOffsets v1: replica_id, one topic "a", then its partitions.
        (ApiKey::ListOffsets, 1, [&[0xff; 4][..], &[0, 0, 0, 1, 0, 1, b'a'], &max].concat()),
        // OffsetFetch v8: one group "g", then its topics.
        (ApiKey::OffsetFetch, 8, [&[2, 2, b'g'][..], &compact_max].concat()),
        // JoinGroup v0: group "g", session timeout, member "", protocol type "c", protocols.
        (ApiKey::JoinGroup, 0, [&[0, 1, b'g', 0, 0, 0, 1, 0, 0, 0, 1, b'c'][..], &max].concat()),
        // Fetch v13: replica_id .. session_epoch, one topic by id, then its partitions.
        (ApiKey::Fetch, 13, [&[0; 25][..], &[2], &[7; 16], &compact_max].concat()),
        // Cluster administration, decoded when denied: the same bounds.
        (ApiKey::CreateAcls, 1, max.to_vec()),
        (ApiKey::AlterUserScramCredentials, 0, compact_max.to_vec()),
        // DescribeShareGroupOffsets v0: one group "g", then its topics.
        (ApiKey::DescribeShareGroupOffsets, 0, [&[2, 2, b'g'][..], &compact_max].concat()),
        // AlterShareGroupOffsets v0: group "g", one topic "t", then its partitions.
        (ApiKey::AlterShareGroupOffsets, 0, [&[2, b'g', 2, 2, b't'][..], &compact_max].concat()),
        // AlterClientQuotas v1: one entry, then its entities.
        (ApiKey::AlterClientQuotas, 1, [&[2][..], &compact_max].concat()),
    ];
    for (key, v, body) in cases {
        let err = scan(&body, key, v).unwrap_err();
        assert_eq!(err.what, "array longer than the message", "{key:?} v{v}");
        assert!(err.offset <= body.len(), "{key:?} v{v}");
        assert!(err.message.starts_with(&format!("{key:?}")), "{key:?} v{v}: {}", err.message);
    }
    // Negative lengths other than -1 (null) are malformed too.
    let err = scan(&(-2i32).to_be_bytes(), ApiKey::DeleteGroups, 0).unwrap_err();
    assert_eq!(err.what, "negative length");
    // A null array where the schema has none.
    let err = scan(&(-1i32).to_be_bytes(), ApiKey::DeleteGroups, 0).unwrap_err();
    assert_eq!(err.what, "null array");
}

/// The reference decoder reads known tagged fields from the stream whatever size they
/// declare, so a size that disagrees would shift it off the walker's reading.
#[test]
fn fetch_tagged_fields_must_match_their_schema() {
    let body = fetch(18).remove(0).body;
    // A partition's replica_directory_id (tag 0): tag, size 16, the id.
    let at = body.windows(18).position(|w| w[..2] == [0, 16] && w[2..] == [9; 16]).unwrap();
    let mut short = body.clone();
    short[at + 1] = 15;
    short.remove(at + 2);
    assert_eq!(scan(&short, ApiKey::Fetch, 18).unwrap_err().what, "tagged field size disagrees with its field");
    // The same tag at a version that has no such field is refused, as the decoder does.
    let body = fetch(16).remove(0).body;
    assert!(scan(&body, ApiKey::Fetch, 16).is_ok());
    let old = fetch(12).remove(0).body;
    let mut with_tag = old.clone();
    // The first partition: after the topic name (compact "orders") and partitions count.
    let part = 25 + 1 + 7 + 1;
    let tags = part + 4 + 4 + 8 + 4 + 8 + 4;
    assert_eq!(with_tag[tags], 1, "one unknown tag");
    with_tag[tags + 1] = 0; // tag 42 becomes tag 0
    assert_eq!(scan(&with_tag, ApiKey::Fetch, 12).unwrap_err().what, "tag not valid at this version");
    assert!(!(case::<m::FetchRequest>(ApiKey::Fetch, fetch).decodes)(&with_tag, 12));
}

/// Whatever the walker accepts, the reference decoder reads in full: the walk and the
/// decoder agree on where every length sits. (Bodies the walker refuses are never decoded:
/// they may declare lengths that would make the decoder allocate without bound.)
#[test]
fn mutated_bodies_the_walker_accepts_the_reference_decoder_reads_in_full() {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let (mut accepted, mut refused) = (0, 0);
    for (key, v, decodes, b) in all_bodies() {
        for _ in 0..48 {
            let mut body = b.body.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len());
                match rng.below(4) {
                    0 => body[at] = rng.next() as u8,
                    1 => body[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
                    2 => drop(body.remove(at)),
                    _ => body.insert(at, rng.next() as u8),
                }
                if body.is_empty() {
                    body.push(0);
                }
            }
            if scan(&body, key, v).is_ok() {
                assert!(decodes(&body, v), "{key:?} v{v}: walker accepts what the decoder refuses: {body:02x?}");
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert!(accepted > 1000 && refused > 1000, "accepted {accepted}, refused {refused}");
}

#[test]
fn unknown_keys_are_left_to_the_caller_and_unknown_versions_refused() {
    for key in [ApiKey::Produce, ApiKey::ApiVersions, ApiKey::SaslHandshake, ApiKey::ListGroups] {
        assert_eq!(scan(b"whatever", key, 0).unwrap(), (vec![], None), "{key:?}");
    }
    let max = m::MetadataRequest::VERSIONS.max;
    assert_eq!(scan(&[0], ApiKey::Metadata, max + 1).unwrap_err().what, "unsupported version");
    let spec = schema::request(ApiKey::OffsetCommit as i16).unwrap();
    assert_eq!(scan(&[0], ApiKey::OffsetCommit, spec.versions.hi + 1).unwrap_err().what, "unsupported version");
    assert_eq!(scan(&[0], ApiKey::Metadata, -1).unwrap_err().what, "unsupported version");
}
