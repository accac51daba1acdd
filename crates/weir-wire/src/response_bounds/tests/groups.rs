//! Response bodies of consumer groups, share groups and transactions, as the reference encoder writes them.

use super::*;

pub(super) fn list_groups(v: i16) -> Vec<Vec<u8>> {
    use m::list_groups_response::*;
    let group = |g, protocol| {
        let mut x = ListedGroup::default()
            .with_group_id(gid(g))
            .with_protocol_type(s(protocol))
            .with_unknown_tagged_fields(unknown());
        if v >= 4 {
            x = x.with_group_state(s("Stable"));
        }
        if v >= 5 {
            x = x.with_group_type(s("classic"));
        }
        x
    };
    let mut r = ListGroupsResponse::default()
        .with_groups(vec![group("grp-1", "consumer"), group("grp-2", "")])
        .with_unknown_tagged_fields(unknown());
    if v >= 1 {
        r = r.with_throttle_time_ms(5);
    }
    vec![body(r, v)]
}

pub(super) fn offset_fetch(v: i16) -> Vec<Vec<u8>> {
    use m::offset_fetch_response::*;
    if v <= 7 {
        let partition = |p, metadata: Option<&'static str>| {
            let x = OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(100)
                .with_metadata(metadata.map(s))
                .with_unknown_tagged_fields(unknown());
            if v >= 5 {
                x.with_committed_leader_epoch(3)
            } else {
                x
            }
        };
        let topic = |name, partitions| {
            OffsetFetchResponseTopic::default()
                .with_name(tn(name))
                .with_partitions(partitions)
                .with_unknown_tagged_fields(unknown())
        };
        let mut r = OffsetFetchResponse::default().with_topics(vec![
            topic("orders", vec![partition(0, Some("meta")), partition(1, None)]),
            topic("audit", vec![partition(2, Some(""))]),
        ]);
        if v >= 3 {
            r = r.with_throttle_time_ms(5);
        }
        let mut out = vec![body(r, v)];
        if v >= 2 {
            out.push(body(OffsetFetchResponse::default().with_error_code(16), v));
        }
        return out;
    }
    let partition = |p, metadata: Option<&'static str>| {
        OffsetFetchResponsePartitions::default()
            .with_partition_index(p)
            .with_committed_offset(100)
            .with_committed_leader_epoch(3)
            .with_metadata(metadata.map(s))
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, n, partitions| {
        let t = OffsetFetchResponseTopics::default().with_partitions(partitions).with_unknown_tagged_fields(unknown());
        if v <= 9 {
            t.with_name(tn(name))
        } else {
            t.with_topic_id(id(n))
        }
    };
    let group = |g, topics| {
        OffsetFetchResponseGroup::default()
            .with_group_id(gid(g))
            .with_topics(topics)
            .with_unknown_tagged_fields(unknown())
    };
    let r = OffsetFetchResponse::default().with_throttle_time_ms(5).with_groups(vec![
        group(
            "grp-1",
            vec![
                topic("orders", 1, vec![partition(0, Some("meta")), partition(1, None)]),
                topic("audit", 2, vec![partition(2, Some(""))]),
            ],
        ),
        group("grp-2", vec![]).with_error_code(16),
    ]);
    vec![body(r, v)]
}

pub(super) fn offset_commit(v: i16) -> Vec<Vec<u8>> {
    use m::offset_commit_response::*;
    let partition = |p, e| {
        OffsetCommitResponsePartition::default()
            .with_partition_index(p)
            .with_error_code(e)
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, n, partitions| {
        let t = OffsetCommitResponseTopic::default().with_partitions(partitions).with_unknown_tagged_fields(unknown());
        if v <= 9 {
            t.with_name(tn(name))
        } else {
            t.with_topic_id(id(n))
        }
    };
    let mut r = OffsetCommitResponse::default().with_topics(vec![
        topic("orders", 1, vec![partition(0, 0), partition(1, 22)]),
        topic("audit", 2, vec![partition(2, 0)]),
    ]);
    if v >= 3 {
        r = r.with_throttle_time_ms(5);
    }
    vec![body(r, v)]
}

pub(super) fn txn_offset_commit(v: i16) -> Vec<Vec<u8>> {
    use m::txn_offset_commit_response::*;
    let partition = |p, e| {
        TxnOffsetCommitResponsePartition::default()
            .with_partition_index(p)
            .with_error_code(e)
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, partitions| {
        TxnOffsetCommitResponseTopic::default()
            .with_name(tn(name))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(unknown())
    };
    let r = TxnOffsetCommitResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic("orders", vec![partition(0, 0), partition(1, 22)]),
        topic("audit", vec![partition(2, 0)]),
    ]);
    vec![body(r, v)]
}

pub(super) fn describe_groups(v: i16) -> Vec<Vec<u8>> {
    use m::describe_groups_response::*;
    let member = |member, instance: Option<&'static str>| {
        let x = DescribedGroupMember::default()
            .with_member_id(s(member))
            .with_client_id(s("client"))
            .with_client_host(s("/10.0.0.1"))
            .with_member_metadata(Bytes::from_static(b"\x00\x01meta"))
            .with_member_assignment(Bytes::new())
            .with_unknown_tagged_fields(unknown());
        if v >= 4 {
            x.with_group_instance_id(instance.map(s))
        } else {
            x
        }
    };
    let group = |g, members, error: Option<&'static str>| {
        let mut x = DescribedGroup::default()
            .with_group_id(gid(g))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("range"))
            .with_members(members)
            .with_unknown_tagged_fields(unknown());
        if v >= 6 {
            x = x.with_error_message(error.map(s));
        }
        if v >= 3 {
            x = x.with_authorized_operations(0xf8);
        }
        x
    };
    let mut r = DescribeGroupsResponse::default().with_groups(vec![
        group("grp-1", vec![member("m-1", Some("i-1")), member("m-2", None)], None),
        group("grp-2", vec![], Some("dead")).with_error_code(16),
    ]);
    if v >= 1 {
        r = r.with_throttle_time_ms(5);
    }
    vec![body(r, v)]
}

pub(super) fn delete_groups(v: i16) -> Vec<Vec<u8>> {
    use m::delete_groups_response::*;
    let result = |g, e| {
        DeletableGroupResult::default().with_group_id(gid(g)).with_error_code(e).with_unknown_tagged_fields(unknown())
    };
    let r = DeleteGroupsResponse::default()
        .with_throttle_time_ms(5)
        .with_results(vec![result("grp-1", 0), result("grp-2", 69)]);
    vec![body(r, v)]
}

pub(super) fn share_group_describe(v: i16) -> Vec<Vec<u8>> {
    use m::share_group_describe_response::*;
    let assignment = Assignment::default()
        .with_topic_partitions(vec![
            TopicPartitions::default()
                .with_topic_id(id(1))
                .with_topic_name(tn("orders"))
                .with_partitions(vec![0, 1])
                .with_unknown_tagged_fields(unknown()),
            TopicPartitions::default().with_topic_id(id(2)).with_topic_name(tn("audit")),
        ])
        .with_unknown_tagged_fields(unknown());
    let member = |member, rack: Option<&'static str>| {
        Member::default()
            .with_member_id(s(member))
            .with_rack_id(rack.map(s))
            .with_member_epoch(3)
            .with_client_id(s("client"))
            .with_client_host(s("/10.0.0.2"))
            .with_subscribed_topic_names(vec![tn("orders"), tn("audit")])
            .with_assignment(assignment.clone())
            .with_unknown_tagged_fields(unknown())
    };
    let group = DescribedGroup::default()
        .with_group_id(gid("share"))
        .with_group_state(s("Stable"))
        .with_group_epoch(3)
        .with_assignment_epoch(3)
        .with_assignor_name(s("simple"))
        .with_members(vec![member("m-1", Some("rack-a")), member("m-2", None)])
        .with_authorized_operations(0xf8)
        .with_unknown_tagged_fields(unknown());
    let missing =
        DescribedGroup::default().with_error_code(69).with_error_message(Some(s("not found"))).with_group_id(gid("x"));
    let r = ShareGroupDescribeResponse::default().with_throttle_time_ms(5).with_groups(vec![group, missing]);
    vec![body(r, v)]
}

pub(super) fn consumer_group_heartbeat(v: i16) -> Vec<Vec<u8>> {
    use m::consumer_group_heartbeat_response::*;
    let assignment = Assignment::default()
        .with_topic_partitions(vec![
            TopicPartitions::default()
                .with_topic_id(id(1))
                .with_partitions(vec![0, 1])
                .with_unknown_tagged_fields(unknown()),
            TopicPartitions::default().with_topic_id(id(2)),
        ])
        .with_unknown_tagged_fields(unknown());
    let base = ConsumerGroupHeartbeatResponse::default()
        .with_throttle_time_ms(5)
        .with_member_id(Some(s("m-1")))
        .with_member_epoch(3)
        .with_heartbeat_interval_ms(5000);
    vec![
        body(base.clone().with_assignment(Some(assignment)), v),
        body(base.with_error_code(25).with_error_message(Some(s("UNKNOWN_MEMBER_ID"))).with_member_id(None), v),
    ]
}

pub(super) fn consumer_group_describe(v: i16) -> Vec<Vec<u8>> {
    use m::consumer_group_describe_response::*;
    let assignment = |n: u8| {
        Assignment::default()
            .with_topic_partitions(vec![
                TopicPartitions::default()
                    .with_topic_id(id(n))
                    .with_topic_name(tn("orders"))
                    .with_partitions(vec![0, 1])
                    .with_unknown_tagged_fields(unknown()),
                TopicPartitions::default()
                    .with_topic_id(id(n + 1))
                    .with_topic_name(tn("audit"))
                    .with_partitions(vec![2]),
            ])
            .with_unknown_tagged_fields(unknown())
    };
    let member = |member, instance: Option<&'static str>, regex: Option<&'static str>| {
        let x = Member::default()
            .with_member_id(s(member))
            .with_instance_id(instance.map(s))
            .with_rack_id(instance.map(|_| s("rack-a")))
            .with_member_epoch(4)
            .with_client_id(s("client"))
            .with_client_host(s("/10.0.0.1"))
            .with_subscribed_topic_names(vec![tn("orders"), tn("audit")])
            .with_subscribed_topic_regex(regex.map(s))
            .with_assignment(assignment(1))
            .with_target_assignment(assignment(3))
            .with_unknown_tagged_fields(unknown());
        if v >= 1 {
            x.with_member_type(1)
        } else {
            x
        }
    };
    let group = DescribedGroup::default()
        .with_group_id(gid("grp"))
        .with_group_state(s("Stable"))
        .with_group_epoch(4)
        .with_assignment_epoch(4)
        .with_assignor_name(s("uniform"))
        .with_members(vec![member("m-1", Some("i-1"), None), member("m-2", None, Some("pay.*"))])
        .with_authorized_operations(0xf8)
        .with_unknown_tagged_fields(unknown());
    let missing =
        DescribedGroup::default().with_error_code(69).with_error_message(Some(s("not found"))).with_group_id(gid("x"));
    let r = ConsumerGroupDescribeResponse::default().with_throttle_time_ms(5).with_groups(vec![group, missing]);
    vec![body(r, v)]
}

pub(super) fn offset_delete(v: i16) -> Vec<Vec<u8>> {
    use m::offset_delete_response::*;
    let partition = |p, e| OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(e);
    let topic = |name, partitions| OffsetDeleteResponseTopic::default().with_name(tn(name)).with_partitions(partitions);
    let r = OffsetDeleteResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic("orders", vec![partition(0, 0), partition(1, 86)]),
        topic("audit", vec![partition(2, 0)]),
    ]);
    vec![body(r, v), body(OffsetDeleteResponse::default().with_error_code(69), v)]
}

pub(super) fn describe_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
    use m::describe_share_group_offsets_response::*;
    let partition = |p, e| {
        DescribeShareGroupOffsetsResponsePartition::default()
            .with_partition_index(p)
            .with_start_offset(12)
            .with_leader_epoch(3)
            .with_error_code(e)
            .with_error_message((e != 0).then(|| s("denied")))
            .with_unknown_tagged_fields(unknown())
    };
    let topic = DescribeShareGroupOffsetsResponseTopic::default()
        .with_topic_name(tn("orders"))
        .with_topic_id(id(4))
        .with_partitions(vec![partition(0, 0), partition(1, 29)]);
    let r = DescribeShareGroupOffsetsResponse::default().with_throttle_time_ms(5).with_groups(vec![
        DescribeShareGroupOffsetsResponseGroup::default().with_group_id(gid("share-1")).with_topics(vec![topic]),
        DescribeShareGroupOffsetsResponseGroup::default()
            .with_group_id(gid("share-2"))
            .with_error_code(30)
            .with_error_message(Some(s("denied"))),
    ]);
    vec![body(r, v)]
}

pub(super) fn alter_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
    use m::alter_share_group_offsets_response::*;
    let partition = |p, e| {
        AlterShareGroupOffsetsResponsePartition::default()
            .with_partition_index(p)
            .with_error_code(e)
            .with_error_message((e != 0).then(|| s("denied")))
    };
    let r = AlterShareGroupOffsetsResponse::default().with_throttle_time_ms(5).with_responses(vec![
        AlterShareGroupOffsetsResponseTopic::default()
            .with_topic_name(tn("orders"))
            .with_topic_id(id(4))
            .with_partitions(vec![partition(0, 0), partition(1, 29)]),
    ]);
    let failed = AlterShareGroupOffsetsResponse::default().with_error_code(30).with_error_message(Some(s("no")));
    vec![body(r, v), body(failed, v)]
}

pub(super) fn delete_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
    use m::delete_share_group_offsets_response::*;
    let topic = |name, e| {
        DeleteShareGroupOffsetsResponseTopic::default()
            .with_topic_name(tn(name))
            .with_topic_id(id(4))
            .with_error_code(e)
            .with_error_message((e != 0).then(|| s("denied")))
    };
    let r = DeleteShareGroupOffsetsResponse::default()
        .with_throttle_time_ms(5)
        .with_responses(vec![topic("orders", 0), topic("audit", 29)]);
    let failed = DeleteShareGroupOffsetsResponse::default().with_error_code(30).with_error_message(Some(s("no")));
    vec![body(r, v), body(failed, v)]
}

pub(super) fn describe_transactions(v: i16) -> Vec<Vec<u8>> {
    use m::describe_transactions_response::*;
    let topic = |name, partitions| {
        TopicData::default().with_topic(tn(name)).with_partitions(partitions).with_unknown_tagged_fields(unknown())
    };
    let state = |tx, topics| {
        TransactionState::default()
            .with_transactional_id(xid(tx))
            .with_transaction_state(s("Ongoing"))
            .with_transaction_timeout_ms(60_000)
            .with_transaction_start_time_ms(1_700_000_000_000)
            .with_producer_id(ProducerId(5))
            .with_producer_epoch(1)
            .with_topics(topics)
            .with_unknown_tagged_fields(unknown())
    };
    let r = DescribeTransactionsResponse::default().with_throttle_time_ms(5).with_transaction_states(vec![
        state("tx-1", vec![topic("orders", vec![0, 1]), topic("audit", vec![2])]),
        state("tx-2", vec![]).with_error_code(105),
    ]);
    vec![body(r, v)]
}
