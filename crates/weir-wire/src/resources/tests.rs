use super::*;
use crate::test_support::{encoded, gid, id, s, tn, unknown_tag, xid, Rng};
use bytes::Bytes;
use kafka_protocol::messages::{self as m, BrokerId};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
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

fn fetch(v: i16) -> Vec<Built> {
    use m::fetch_request::*;
    let partition = |p: i32| {
        let mut x = FetchPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(3)
            .with_fetch_offset(100)
            .with_log_start_offset(5)
            .with_partition_max_bytes(1 << 20);
        if v >= 12 {
            x = x.with_last_fetched_epoch(2).with_unknown_tagged_fields(unknown_tag());
        }
        if v >= 17 {
            x = x.with_replica_directory_id(id(9));
        }
        if v >= 18 {
            x = x.with_high_watermark(77);
        }
        x
    };
    let topic = |name, n, parts: &[i32]| {
        FetchTopic::default()
            .with_topic(tn(name))
            .with_topic_id(id(n))
            .with_partitions(parts.iter().copied().map(partition).collect())
    };
    let mut r = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![topic("orders", 1, &[0, 1]), topic("audit", 2, &[4])]);
    if v >= 7 {
        r = r.with_session_id(3).with_session_epoch(1).with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(tn("old"))
            .with_topic_id(id(3))
            .with_partitions(vec![0, 2])]);
    }
    if v >= 11 {
        r = r.with_rack_id(s("rack-a"));
    }
    if v >= 12 {
        r = r.with_cluster_id(Some(s("cluster")));
    }
    if v >= 15 {
        r = r.with_replica_state(ReplicaState::default().with_replica_id(BrokerId(7)).with_replica_epoch(4));
    }
    let names = if v >= 13 { vec![ti(1), ti(2)] } else { vec![t("orders"), t("audit")] };
    vec![built(r, v, names, NONE)]
}

fn list_offsets(v: i16) -> Vec<Built> {
    use m::list_offsets_request::*;
    let partition = |p| {
        let x = ListOffsetsPartition::default().with_partition_index(p).with_current_leader_epoch(4).with_timestamp(-1);
        if v >= 6 {
            x.with_unknown_tagged_fields(unknown_tag())
        } else {
            x
        }
    };
    let topic = |name, parts: &[i32]| {
        ListOffsetsTopic::default().with_name(tn(name)).with_partitions(parts.iter().copied().map(partition).collect())
    };
    let r = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(if v >= 2 { 1 } else { 0 })
        .with_topics(vec![topic("orders", &[0, 1]), topic("audit", &[2])])
        .with_timeout_ms(1000);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn metadata(v: i16) -> Vec<Built> {
    use m::metadata_request::*;
    let mut topics = vec![MetadataRequestTopic::default().with_name(Some(tn("orders")))];
    let mut names = vec![t("orders")];
    if v >= 10 {
        topics.push(MetadataRequestTopic::default().with_name(None).with_topic_id(id(2)));
        topics.push(MetadataRequestTopic::default().with_name(Some(tn("both"))).with_topic_id(id(3)));
        names.extend([ti(2), t("both")]);
    } else {
        topics.push(MetadataRequestTopic::default().with_name(Some(tn("audit"))));
        names.push(t("audit"));
    }
    let base = |topics| {
        let mut r = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(v < 4);
        if (8..=10).contains(&v) {
            r = r.with_include_cluster_authorized_operations(true);
        }
        if v >= 8 {
            r = r.with_include_topic_authorized_operations(true);
        }
        r
    };
    let auto = v < 4;
    let mut out = vec![built(base(Some(topics)), v, names, facts(false, auto))];
    if v == 0 {
        out.push(built(base(Some(vec![])), v, vec![], facts(true, auto)));
    } else {
        out.push(built(base(None), v, vec![], facts(true, auto)));
        out.push(built(base(Some(vec![])), v, vec![], facts(false, auto)));
    }
    out
}

fn offset_commit(v: i16) -> Vec<Built> {
    use m::offset_commit_request::*;
    let partition = |p, meta: Option<&'static str>| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(100)
            .with_committed_leader_epoch(2)
            .with_committed_metadata(meta.map(s))
    };
    let mut r = OffsetCommitRequest::default()
        .with_group_id(gid("grp"))
        .with_generation_id_or_member_epoch(3)
        .with_member_id(s("member"))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(tn("orders"))
                .with_partitions(vec![partition(0, Some("meta")), partition(1, None)]),
            OffsetCommitRequestTopic::default().with_name(tn("audit")).with_partitions(vec![partition(2, Some(""))]),
        ]);
    if v >= 7 {
        r = r.with_group_instance_id(Some(s("instance")));
    }
    vec![built(r, v, vec![g("grp"), t("orders"), t("audit")], NONE)]
}

fn offset_fetch(v: i16) -> Vec<Built> {
    use m::offset_fetch_request::*;
    if v <= 7 {
        let topic = |name, parts: Vec<i32>| {
            OffsetFetchRequestTopic::default().with_name(tn(name)).with_partition_indexes(parts)
        };
        let base = |topics| {
            OffsetFetchRequest::default().with_group_id(gid("grp")).with_topics(topics).with_require_stable(v >= 7)
        };
        let mut out = vec![built(
            base(Some(vec![topic("orders", vec![0, 1]), topic("audit", vec![2])])),
            v,
            vec![g("grp"), t("orders"), t("audit")],
            NONE,
        )];
        if v >= 2 {
            out.push(built(base(None), v, vec![g("grp")], facts(true, false)));
        }
        return out;
    }
    let topic =
        |name, parts: Vec<i32>| OffsetFetchRequestTopics::default().with_name(tn(name)).with_partition_indexes(parts);
    let group = |name, topics| {
        let x = OffsetFetchRequestGroup::default().with_group_id(gid(name)).with_topics(topics);
        if v >= 9 {
            x.with_member_id(Some(s("member"))).with_member_epoch(3)
        } else {
            x
        }
    };
    let base = |groups| OffsetFetchRequest::default().with_groups(groups).with_require_stable(true);
    vec![
        built(
            base(vec![
                group("grp-1", Some(vec![topic("orders", vec![0, 1]), topic("audit", vec![])])),
                group("grp-2", Some(vec![topic("payments", vec![3])])),
            ]),
            v,
            vec![g("grp-1"), t("orders"), t("audit"), g("grp-2"), t("payments")],
            NONE,
        ),
        built(
            base(vec![group("grp-1", None), group("grp-2", Some(vec![topic("orders", vec![0])]))]),
            v,
            vec![g("grp-1"), g("grp-2"), t("orders")],
            facts(true, false),
        ),
    ]
}

fn find_coordinator(v: i16) -> Vec<Built> {
    let r = m::FindCoordinatorRequest::default();
    if v <= 3 {
        let key_type = if v >= 1 { 1 } else { 0 };
        let r = r.with_key(s("tx-1")).with_key_type(key_type);
        vec![built(r, v, vec![Named::CoordinatorKey { key_type, key: "tx-1" }], NONE)]
    } else {
        let r = r.with_key_type(1).with_coordinator_keys(vec![s("tx-1"), s("tx-2")]);
        let names = vec![
            Named::CoordinatorKey { key_type: 1, key: "tx-1" },
            Named::CoordinatorKey { key_type: 1, key: "tx-2" },
        ];
        vec![built(r, v, names, NONE)]
    }
}

fn join_group(v: i16) -> Vec<Built> {
    use m::join_group_request::*;
    let protocol =
        |name, meta| JoinGroupRequestProtocol::default().with_name(s(name)).with_metadata(Bytes::from_static(meta));
    let mut r = m::JoinGroupRequest::default()
        .with_group_id(gid("grp"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s("member"))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol("range", b"\x00\x01meta"), protocol("cooperative-sticky", b"")]);
    if v >= 5 {
        r = r.with_group_instance_id(Some(s("instance")));
    }
    if v >= 8 {
        r = r.with_reason(Some(s("because")));
    }
    vec![built(r, v, vec![g("grp")], NONE)]
}

fn heartbeat(v: i16) -> Vec<Built> {
    let mut r = m::HeartbeatRequest::default().with_group_id(gid("grp")).with_generation_id(3).with_member_id(s("m"));
    if v >= 3 {
        r = r.with_group_instance_id(Some(s("instance")));
    }
    vec![built(r, v, vec![g("grp")], NONE)]
}

fn leave_group(v: i16) -> Vec<Built> {
    use m::leave_group_request::*;
    let mut r = LeaveGroupRequest::default().with_group_id(gid("grp"));
    if v <= 2 {
        r = r.with_member_id(s("m"));
    } else {
        let member = |id, instance: Option<&'static str>| {
            let x = MemberIdentity::default().with_member_id(s(id)).with_group_instance_id(instance.map(s));
            if v >= 5 {
                x.with_reason(Some(s("bye")))
            } else {
                x
            }
        };
        r = r.with_members(vec![member("m-1", Some("i-1")), member("m-2", None)]);
    }
    vec![built(r, v, vec![g("grp")], NONE)]
}

fn sync_group(v: i16) -> Vec<Built> {
    use m::sync_group_request::*;
    let assignment =
        |id, a| SyncGroupRequestAssignment::default().with_member_id(s(id)).with_assignment(Bytes::from_static(a));
    let mut r = SyncGroupRequest::default()
        .with_group_id(gid("grp"))
        .with_generation_id(3)
        .with_member_id(s("m-1"))
        .with_assignments(vec![assignment("m-1", b"assignment"), assignment("m-2", b"")]);
    if v >= 3 {
        r = r.with_group_instance_id(Some(s("instance")));
    }
    if v >= 5 {
        r = r.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
    }
    vec![built(r, v, vec![g("grp")], NONE)]
}

fn describe_groups(v: i16) -> Vec<Built> {
    let r = m::DescribeGroupsRequest::default()
        .with_groups(vec![gid("grp-1"), gid("grp-2")])
        .with_include_authorized_operations(v >= 3);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

fn create_topics(v: i16) -> Vec<Built> {
    use m::create_topics_request::*;
    let assignment = |p, brokers: &[i32]| {
        CreatableReplicaAssignment::default()
            .with_partition_index(p)
            .with_broker_ids(brokers.iter().copied().map(BrokerId).collect())
    };
    let config =
        |name, value: Option<&'static str>| CreatableTopicConfig::default().with_name(s(name)).with_value(value.map(s));
    let r = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(tn("orders"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![assignment(0, &[1, 2]), assignment(1, &[2, 3])])
                .with_configs(vec![config("cleanup.policy", Some("compact")), config("retention.ms", None)]),
            CreatableTopic::default().with_name(tn("audit")).with_num_partitions(3).with_replication_factor(2),
        ])
        .with_timeout_ms(1000)
        .with_validate_only(true);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn delete_topics(v: i16) -> Vec<Built> {
    use m::delete_topics_request::*;
    let r = DeleteTopicsRequest::default().with_timeout_ms(1000);
    if v >= 6 {
        let state =
            |name: Option<&'static str>, n| DeleteTopicState::default().with_name(name.map(tn)).with_topic_id(id(n));
        let r = r.with_topics(vec![state(Some("orders"), 0), state(None, 2), state(Some("both"), 3)]);
        vec![built(r, v, vec![t("orders"), ti(2), t("both")], NONE)]
    } else {
        let r = r.with_topic_names(vec![tn("orders"), tn("audit")]);
        vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
    }
}

fn delete_records(v: i16) -> Vec<Built> {
    use m::delete_records_request::*;
    let partition = |p, o| DeleteRecordsPartition::default().with_partition_index(p).with_offset(o);
    let r = DeleteRecordsRequest::default()
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(tn("orders"))
                .with_partitions(vec![partition(0, 100), partition(1, -1)]),
            DeleteRecordsTopic::default().with_name(tn("audit")).with_partitions(vec![partition(0, 5)]),
        ])
        .with_timeout_ms(1000);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn init_producer_id(v: i16) -> Vec<Built> {
    let base = |tx: Option<&'static str>| {
        let r =
            m::InitProducerIdRequest::default().with_transactional_id(tx.map(xid)).with_transaction_timeout_ms(60_000);
        if v >= 3 {
            r.with_producer_id(5.into()).with_producer_epoch(1)
        } else {
            r
        }
    };
    vec![built(base(Some("tx-1")), v, vec![x("tx-1")], NONE), built(base(None), v, vec![], NONE)]
}

fn offset_for_leader_epoch(v: i16) -> Vec<Built> {
    use m::offset_for_leader_epoch_request::*;
    let partition =
        |p| OffsetForLeaderPartition::default().with_partition(p).with_current_leader_epoch(3).with_leader_epoch(2);
    let mut r = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default().with_topic(tn("orders")).with_partitions(vec![partition(0), partition(1)]),
        OffsetForLeaderTopic::default().with_topic(tn("audit")).with_partitions(vec![partition(2)]),
    ]);
    if v >= 3 {
        r = r.with_replica_id(BrokerId(-1));
    }
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn add_partitions_to_txn(v: i16) -> Vec<Built> {
    use m::add_partitions_to_txn_request::*;
    let topic = |name, parts: Vec<i32>| AddPartitionsToTxnTopic::default().with_name(tn(name)).with_partitions(parts);
    if v <= 3 {
        let r = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(xid("tx-1"))
            .with_v3_and_below_producer_id(5.into())
            .with_v3_and_below_producer_epoch(1)
            .with_v3_and_below_topics(vec![topic("orders", vec![0, 1]), topic("audit", vec![2])]);
        return vec![built(r, v, vec![x("tx-1"), t("orders"), t("audit")], NONE)];
    }
    let txn = |tx, topics| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(xid(tx))
            .with_producer_id(5.into())
            .with_producer_epoch(1)
            .with_verify_only(true)
            .with_topics(topics)
    };
    let r = AddPartitionsToTxnRequest::default().with_transactions(vec![
        txn("tx-1", vec![topic("orders", vec![0])]),
        txn("tx-2", vec![topic("audit", vec![1, 2]), topic("payments", vec![])]),
    ]);
    vec![built(r, v, vec![x("tx-1"), t("orders"), x("tx-2"), t("audit"), t("payments")], NONE)]
}

fn add_offsets_to_txn(v: i16) -> Vec<Built> {
    let r = m::AddOffsetsToTxnRequest::default()
        .with_transactional_id(xid("tx-1"))
        .with_producer_id(5.into())
        .with_producer_epoch(1)
        .with_group_id(gid("grp"));
    vec![built(r, v, vec![x("tx-1"), g("grp")], NONE)]
}

fn end_txn(v: i16) -> Vec<Built> {
    let r = m::EndTxnRequest::default()
        .with_transactional_id(xid("tx-1"))
        .with_producer_id(5.into())
        .with_producer_epoch(1)
        .with_committed(true);
    vec![built(r, v, vec![x("tx-1")], NONE)]
}

fn txn_offset_commit(v: i16) -> Vec<Built> {
    use m::txn_offset_commit_request::*;
    let partition = |p, meta: Option<&'static str>| {
        TxnOffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(10)
            .with_committed_leader_epoch(2)
            .with_committed_metadata(meta.map(s))
    };
    let mut r = TxnOffsetCommitRequest::default()
        .with_transactional_id(xid("tx-1"))
        .with_group_id(gid("grp"))
        .with_producer_id(5.into())
        .with_producer_epoch(1)
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(tn("orders"))
                .with_partitions(vec![partition(0, Some("meta")), partition(1, None)]),
            TxnOffsetCommitRequestTopic::default().with_name(tn("audit")).with_partitions(vec![partition(2, None)]),
        ]);
    if v >= 3 {
        r = r.with_generation_id(3).with_member_id(s("member")).with_group_instance_id(Some(s("instance")));
    }
    vec![built(r, v, vec![x("tx-1"), g("grp"), t("orders"), t("audit")], NONE)]
}

fn config_resource(resource_type: i8, name: &'static str) -> Named<'static> {
    Named::ConfigResource { resource_type, name }
}

fn describe_configs(v: i16) -> Vec<Built> {
    use m::describe_configs_request::*;
    let r = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configuration_keys(Some(vec![s("retention.ms"), s("cleanup.policy")])),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1"))
                .with_configuration_keys(None),
        ])
        .with_include_synonyms(true)
        .with_include_documentation(v >= 3);
    vec![built(r, v, vec![config_resource(2, "orders"), config_resource(4, "1")], NONE)]
}

fn alter_configs(v: i16) -> Vec<Built> {
    use m::alter_configs_request::*;
    let config =
        |name, value: Option<&'static str>| AlterableConfig::default().with_name(s(name)).with_value(value.map(s));
    let r = AlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![config("retention.ms", Some("1000")), config("cleanup.policy", None)]),
            AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s("grp"))
                .with_configs(vec![config("x", Some("y"))]),
        ])
        .with_validate_only(true);
    vec![built(r, v, vec![config_resource(2, "orders"), config_resource(32, "grp")], NONE)]
}

fn incremental_alter_configs(v: i16) -> Vec<Built> {
    use m::incremental_alter_configs_request::*;
    let config = |name, op, value: Option<&'static str>| {
        AlterableConfig::default().with_name(s(name)).with_config_operation(op).with_value(value.map(s))
    };
    let r = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![config("retention.ms", 0, Some("1000")), config("cleanup.policy", 1, None)]),
            AlterConfigsResource::default().with_resource_type(8).with_resource_name(s("1")),
        ])
        .with_validate_only(true);
    vec![built(r, v, vec![config_resource(2, "orders"), config_resource(8, "1")], NONE)]
}

fn create_partitions(v: i16) -> Vec<Built> {
    use m::create_partitions_request::*;
    let assignment = |brokers: &[i32]| {
        CreatePartitionsAssignment::default().with_broker_ids(brokers.iter().copied().map(BrokerId).collect())
    };
    let r = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(tn("orders"))
                .with_count(6)
                .with_assignments(Some(vec![assignment(&[1, 2]), assignment(&[2, 3])])),
            CreatePartitionsTopic::default().with_name(tn("audit")).with_count(3).with_assignments(None),
        ])
        .with_timeout_ms(1000)
        .with_validate_only(true);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn delete_groups(v: i16) -> Vec<Built> {
    let r = m::DeleteGroupsRequest::default().with_groups_names(vec![gid("grp-1"), gid("grp-2")]);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

fn offset_delete(v: i16) -> Vec<Built> {
    use m::offset_delete_request::*;
    let partition = |p| OffsetDeleteRequestPartition::default().with_partition_index(p);
    let r = OffsetDeleteRequest::default().with_group_id(gid("grp")).with_topics(vec![
        OffsetDeleteRequestTopic::default().with_name(tn("orders")).with_partitions(vec![partition(0), partition(1)]),
        OffsetDeleteRequestTopic::default().with_name(tn("audit")).with_partitions(vec![partition(2)]),
    ]);
    vec![built(r, v, vec![g("grp"), t("orders"), t("audit")], NONE)]
}

fn describe_producers(v: i16) -> Vec<Built> {
    use m::describe_producers_request::*;
    let r = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default().with_name(tn("orders")).with_partition_indexes(vec![0, 1]),
        TopicRequest::default().with_name(tn("audit")).with_partition_indexes(vec![2]),
    ]);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

fn describe_transactions(v: i16) -> Vec<Built> {
    let r = m::DescribeTransactionsRequest::default().with_transactional_ids(vec![xid("tx-1"), xid("tx-2")]);
    vec![built(r, v, vec![x("tx-1"), x("tx-2")], NONE)]
}

fn consumer_group_heartbeat(v: i16) -> Vec<Built> {
    use m::consumer_group_heartbeat_request::*;
    let base = m::ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid("grp"))
        .with_member_id(s("member"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000);
    let mut full = base
        .clone()
        .with_instance_id(Some(s("instance")))
        .with_rack_id(Some(s("rack")))
        .with_subscribed_topic_names(Some(vec![tn("orders"), tn("audit")]))
        .with_server_assignor(Some(s("uniform")))
        .with_topic_partitions(Some(vec![
            TopicPartitions::default().with_topic_id(id(1)).with_partitions(vec![0, 1]),
            TopicPartitions::default().with_topic_id(id(2)),
        ]));
    if v >= 1 {
        full = full.with_subscribed_topic_regex(Some(s("pay.*")));
    }
    vec![built(full, v, vec![g("grp"), t("orders"), t("audit")], NONE), built(base, v, vec![g("grp")], NONE)]
}

fn consumer_group_describe(v: i16) -> Vec<Built> {
    let r = m::ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![gid("grp-1"), gid("grp-2")])
        .with_include_authorized_operations(true);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

fn share_group_heartbeat(v: i16) -> Vec<Built> {
    let base = m::ShareGroupHeartbeatRequest::default().with_group_id(gid("share")).with_member_id(s("m"));
    let full =
        base.clone().with_rack_id(Some(s("rack"))).with_subscribed_topic_names(Some(vec![tn("orders"), tn("audit")]));
    vec![built(full, v, vec![g("share"), t("orders"), t("audit")], NONE), built(base, v, vec![g("share")], NONE)]
}

fn share_group_describe(v: i16) -> Vec<Built> {
    let r = m::ShareGroupDescribeRequest::default().with_group_ids(vec![gid("share-1"), gid("share-2")]);
    vec![built(r, v, vec![g("share-1"), g("share-2")], NONE)]
}

fn share_fetch(v: i16) -> Vec<Built> {
    use m::share_fetch_request::*;
    let batch =
        AcknowledgementBatch::default().with_first_offset(1).with_last_offset(4).with_acknowledge_types(vec![1, 2]);
    let partition =
        |p| FetchPartition::default().with_partition_index(p).with_acknowledgement_batches(vec![batch.clone()]);
    let r = m::ShareFetchRequest::default()
        .with_group_id(Some(gid("share")))
        .with_member_id(Some(s("m")))
        .with_max_records(500)
        .with_topics(vec![
            FetchTopic::default().with_topic_id(id(1)).with_partitions(vec![partition(0), partition(1)]),
            FetchTopic::default().with_topic_id(id(2)),
        ])
        .with_forgotten_topics_data(vec![ForgottenTopic::default().with_topic_id(id(3)).with_partitions(vec![0])]);
    let anonymous = m::ShareFetchRequest::default();
    vec![built(r, v, vec![g("share"), ti(1), ti(2)], NONE), built(anonymous, v, vec![], NONE)]
}

fn share_acknowledge(v: i16) -> Vec<Built> {
    use m::share_acknowledge_request::*;
    let batch =
        AcknowledgementBatch::default().with_first_offset(1).with_last_offset(2).with_acknowledge_types(vec![1]);
    let r = m::ShareAcknowledgeRequest::default().with_group_id(Some(gid("share"))).with_topics(vec![
        AcknowledgeTopic::default().with_topic_id(id(4)).with_partitions(vec![AcknowledgePartition::default()
            .with_partition_index(2)
            .with_acknowledgement_batches(vec![batch])]),
    ]);
    vec![built(r, v, vec![g("share"), ti(4)], NONE)]
}

fn describe_share_group_offsets(v: i16) -> Vec<Built> {
    use m::describe_share_group_offsets_request::*;
    let topic = |name| DescribeShareGroupOffsetsRequestTopic::default().with_topic_name(tn(name));
    let named = DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(gid("share-1"))
        .with_topics(Some(vec![topic("orders").with_partitions(vec![0, 1]), topic("audit")]));
    let all = DescribeShareGroupOffsetsRequestGroup::default().with_group_id(gid("share-2")).with_topics(None);
    let r = |groups| DescribeShareGroupOffsetsRequest::default().with_groups(groups);
    vec![
        built(r(vec![named.clone()]), v, vec![g("share-1"), t("orders"), t("audit")], NONE),
        built(r(vec![named, all]), v, vec![g("share-1"), t("orders"), t("audit"), g("share-2")], facts(true, false)),
    ]
}

fn alter_share_group_offsets(v: i16) -> Vec<Built> {
    use m::alter_share_group_offsets_request::*;
    let partition = |p| AlterShareGroupOffsetsRequestPartition::default().with_partition_index(p).with_start_offset(7);
    let r = AlterShareGroupOffsetsRequest::default().with_group_id(gid("share")).with_topics(vec![
        AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(tn("orders"))
            .with_partitions(vec![partition(0), partition(1)]),
        AlterShareGroupOffsetsRequestTopic::default().with_topic_name(tn("audit")),
    ]);
    vec![built(r, v, vec![g("share"), t("orders"), t("audit")], NONE)]
}

fn delete_share_group_offsets(v: i16) -> Vec<Built> {
    use m::delete_share_group_offsets_request::*;
    let topic = |name| DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(tn(name));
    let r = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(gid("share"))
        .with_topics(vec![topic("orders"), topic("audit")]);
    vec![built(r, v, vec![g("share"), t("orders"), t("audit")], NONE)]
}

fn describe_topic_partitions(v: i16) -> Vec<Built> {
    use m::describe_topic_partitions_request::*;
    let r = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            TopicRequest::default().with_name(tn("orders")),
            TopicRequest::default().with_name(tn("audit")),
        ])
        .with_response_partition_limit(100)
        .with_cursor(Some(Cursor::default().with_topic_name(tn("orders")).with_partition_index(3)));
    let all = DescribeTopicPartitionsRequest::default().with_response_partition_limit(100);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE), built(all, v, vec![], facts(true, false))]
}

// Cluster administration: walked for bounds, no names reported.
fn create_acls(v: i16) -> Vec<Built> {
    use m::create_acls_request::*;
    let acl = |name| {
        AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3)
    };
    vec![built(CreateAclsRequest::default().with_creations(vec![acl("orders"), acl("audit")]), v, vec![], NONE)]
}

fn delete_acls(v: i16) -> Vec<Built> {
    use m::delete_acls_request::*;
    let filters = vec![
        DeleteAclsFilter::default().with_resource_type_filter(2).with_resource_name_filter(Some(s("orders"))),
        DeleteAclsFilter::default().with_principal_filter(Some(s("User:bob"))).with_host_filter(Some(s("*"))),
    ];
    vec![built(DeleteAclsRequest::default().with_filters(filters), v, vec![], NONE)]
}

fn elect_leaders(v: i16) -> Vec<Built> {
    use m::elect_leaders_request::*;
    let some = ElectLeadersRequest::default().with_timeout_ms(60_000).with_topic_partitions(Some(vec![
        TopicPartitions::default().with_topic(tn("orders")).with_partitions(vec![0, 2]),
    ]));
    let all = ElectLeadersRequest::default().with_topic_partitions(None);
    vec![built(some, v, vec![], NONE), built(all, v, vec![], NONE)]
}

fn alter_client_quotas(v: i16) -> Vec<Built> {
    use m::alter_client_quotas_request::*;
    let entry = EntryData::default()
        .with_entity(vec![
            EntityData::default().with_entity_type(s("user")).with_entity_name(Some(s("alice"))),
            EntityData::default().with_entity_type(s("client-id")).with_entity_name(None),
        ])
        .with_ops(vec![OpData::default().with_key(s("producer_byte_rate")).with_value(1024.0)]);
    vec![built(AlterClientQuotasRequest::default().with_entries(vec![entry]), v, vec![], NONE)]
}

fn alter_user_scram_credentials(v: i16) -> Vec<Built> {
    use m::alter_user_scram_credentials_request::*;
    let r = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![ScramCredentialDeletion::default().with_name(s("bob")).with_mechanism(1)])
        .with_upsertions(vec![ScramCredentialUpsertion::default()
            .with_name(s("alice"))
            .with_mechanism(2)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from_static(b"hash"))]);
    vec![built(r, v, vec![], NONE)]
}

fn alter_replica_log_dirs(v: i16) -> Vec<Built> {
    use m::alter_replica_log_dirs_request::*;
    let dir = AlterReplicaLogDir::default()
        .with_path(s("/data/b"))
        .with_topics(vec![AlterReplicaLogDirTopic::default().with_name(tn("orders")).with_partitions(vec![1, 2])]);
    vec![built(AlterReplicaLogDirsRequest::default().with_dirs(vec![dir]), v, vec![], NONE)]
}

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
