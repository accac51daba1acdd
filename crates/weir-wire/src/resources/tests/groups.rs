//! Request bodies of consumer groups, share groups and transactions and what the walk must find in them.

use super::*;

pub(super) fn offset_commit(v: i16) -> Vec<Built> {
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

pub(super) fn offset_fetch(v: i16) -> Vec<Built> {
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

pub(super) fn find_coordinator(v: i16) -> Vec<Built> {
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

pub(super) fn join_group(v: i16) -> Vec<Built> {
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

pub(super) fn heartbeat(v: i16) -> Vec<Built> {
    let mut r = m::HeartbeatRequest::default().with_group_id(gid("grp")).with_generation_id(3).with_member_id(s("m"));
    if v >= 3 {
        r = r.with_group_instance_id(Some(s("instance")));
    }
    vec![built(r, v, vec![g("grp")], NONE)]
}

pub(super) fn leave_group(v: i16) -> Vec<Built> {
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

pub(super) fn sync_group(v: i16) -> Vec<Built> {
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

pub(super) fn describe_groups(v: i16) -> Vec<Built> {
    let r = m::DescribeGroupsRequest::default()
        .with_groups(vec![gid("grp-1"), gid("grp-2")])
        .with_include_authorized_operations(v >= 3);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

pub(super) fn init_producer_id(v: i16) -> Vec<Built> {
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

pub(super) fn add_partitions_to_txn(v: i16) -> Vec<Built> {
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

pub(super) fn add_offsets_to_txn(v: i16) -> Vec<Built> {
    let r = m::AddOffsetsToTxnRequest::default()
        .with_transactional_id(xid("tx-1"))
        .with_producer_id(5.into())
        .with_producer_epoch(1)
        .with_group_id(gid("grp"));
    vec![built(r, v, vec![x("tx-1"), g("grp")], NONE)]
}

pub(super) fn end_txn(v: i16) -> Vec<Built> {
    let r = m::EndTxnRequest::default()
        .with_transactional_id(xid("tx-1"))
        .with_producer_id(5.into())
        .with_producer_epoch(1)
        .with_committed(true);
    vec![built(r, v, vec![x("tx-1")], NONE)]
}

pub(super) fn txn_offset_commit(v: i16) -> Vec<Built> {
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

pub(super) fn delete_groups(v: i16) -> Vec<Built> {
    let r = m::DeleteGroupsRequest::default().with_groups_names(vec![gid("grp-1"), gid("grp-2")]);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

pub(super) fn offset_delete(v: i16) -> Vec<Built> {
    use m::offset_delete_request::*;
    let partition = |p| OffsetDeleteRequestPartition::default().with_partition_index(p);
    let r = OffsetDeleteRequest::default().with_group_id(gid("grp")).with_topics(vec![
        OffsetDeleteRequestTopic::default().with_name(tn("orders")).with_partitions(vec![partition(0), partition(1)]),
        OffsetDeleteRequestTopic::default().with_name(tn("audit")).with_partitions(vec![partition(2)]),
    ]);
    vec![built(r, v, vec![g("grp"), t("orders"), t("audit")], NONE)]
}

pub(super) fn describe_transactions(v: i16) -> Vec<Built> {
    let r = m::DescribeTransactionsRequest::default().with_transactional_ids(vec![xid("tx-1"), xid("tx-2")]);
    vec![built(r, v, vec![x("tx-1"), x("tx-2")], NONE)]
}

pub(super) fn consumer_group_heartbeat(v: i16) -> Vec<Built> {
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

pub(super) fn consumer_group_describe(v: i16) -> Vec<Built> {
    let r = m::ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![gid("grp-1"), gid("grp-2")])
        .with_include_authorized_operations(true);
    vec![built(r, v, vec![g("grp-1"), g("grp-2")], NONE)]
}

pub(super) fn share_group_heartbeat(v: i16) -> Vec<Built> {
    let base = m::ShareGroupHeartbeatRequest::default().with_group_id(gid("share")).with_member_id(s("m"));
    let full =
        base.clone().with_rack_id(Some(s("rack"))).with_subscribed_topic_names(Some(vec![tn("orders"), tn("audit")]));
    vec![built(full, v, vec![g("share"), t("orders"), t("audit")], NONE), built(base, v, vec![g("share")], NONE)]
}

pub(super) fn share_group_describe(v: i16) -> Vec<Built> {
    let r = m::ShareGroupDescribeRequest::default().with_group_ids(vec![gid("share-1"), gid("share-2")]);
    vec![built(r, v, vec![g("share-1"), g("share-2")], NONE)]
}

pub(super) fn describe_share_group_offsets(v: i16) -> Vec<Built> {
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

pub(super) fn alter_share_group_offsets(v: i16) -> Vec<Built> {
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

pub(super) fn delete_share_group_offsets(v: i16) -> Vec<Built> {
    use m::delete_share_group_offsets_request::*;
    let topic = |name| DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(tn(name));
    let r = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(gid("share"))
        .with_topics(vec![topic("orders"), topic("audit")]);
    vec![built(r, v, vec![g("share"), t("orders"), t("audit")], NONE)]
}
