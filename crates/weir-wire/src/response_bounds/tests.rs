use super::*;
use crate::test_support::{encoded as body, gid, id, s, tn, unknown_tag as unknown, xid, Rng};
use bytes::Bytes;
use kafka_protocol::messages::{self as m, BrokerId, ProducerId};
use kafka_protocol::protocol::{Decodable, Message};
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

fn api_versions(v: i16) -> Vec<Vec<u8>> {
    use m::api_versions_response::*;
    let key = |k, max| {
        ApiVersion::default()
            .with_api_key(k)
            .with_min_version(0)
            .with_max_version(max)
            .with_unknown_tagged_fields(unknown())
    };
    let mut r = ApiVersionsResponse::default().with_api_keys(vec![key(0, 11), key(1, 17), key(18, 4)]);
    if v >= 1 {
        r = r.with_throttle_time_ms(5);
    }
    let mut out = vec![body(r.clone(), v), body(ApiVersionsResponse::default().with_error_code(35), v)];
    if v >= 3 {
        let supported = |name, max| {
            SupportedFeatureKey::default()
                .with_name(s(name))
                .with_min_version(0)
                .with_max_version(max)
                .with_unknown_tagged_fields(unknown())
        };
        let finalized = |name, level| {
            FinalizedFeatureKey::default()
                .with_name(s(name))
                .with_max_version_level(level)
                .with_min_version_level(level)
                .with_unknown_tagged_fields(unknown())
        };
        let r = r
            .with_supported_features(vec![supported("metadata.version", 20), supported("kraft.version", 1)])
            .with_finalized_features_epoch(7)
            .with_finalized_features(vec![finalized("metadata.version", 20), finalized("group.version", 1)])
            .with_zk_migration_ready(true);
        out.push(body(r, v));
    }
    out
}

fn metadata(v: i16) -> Vec<Vec<u8>> {
    use m::metadata_response::*;
    let broker = |n, rack: Option<&'static str>| {
        let b = MetadataResponseBroker::default()
            .with_node_id(BrokerId(n))
            .with_host(s("broker.local"))
            .with_port(9092)
            .with_unknown_tagged_fields(unknown());
        if v >= 1 {
            b.with_rack(rack.map(s))
        } else {
            b
        }
    };
    let partition = |p, replicas: &[i32]| {
        let mut x = MetadataResponsePartition::default()
            .with_partition_index(p)
            .with_leader_id(BrokerId(replicas[0]))
            .with_replica_nodes(brokers(replicas))
            .with_isr_nodes(brokers(&replicas[..1]))
            .with_unknown_tagged_fields(unknown());
        if v >= 7 {
            x = x.with_leader_epoch(3);
        }
        if v >= 5 {
            x = x.with_offline_replicas(brokers(&replicas[1..]));
        }
        x
    };
    let topic = |name: Option<&'static str>, n, partitions| {
        let mut t = MetadataResponseTopic::default()
            .with_name(name.map(tn))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(unknown());
        if v >= 10 {
            t = t.with_topic_id(id(n));
        }
        if v >= 1 {
            t = t.with_is_internal(n == 2);
        }
        if v >= 8 {
            t = t.with_topic_authorized_operations(0x1f8);
        }
        t
    };
    let mut topics = vec![
        topic(Some("orders"), 1, vec![partition(0, &[1, 2, 3]), partition(1, &[2, 3])]),
        topic(Some("__consumer_offsets"), 2, vec![partition(0, &[1])]),
    ];
    if v >= 12 {
        topics.push(topic(None, 3, vec![]).with_error_code(100)); // UNKNOWN_TOPIC_ID
    }
    let mut r = MetadataResponse::default()
        .with_brokers(vec![broker(1, Some("rack-a")), broker(2, None)])
        .with_topics(topics)
        .with_unknown_tagged_fields(unknown());
    if v >= 3 {
        r = r.with_throttle_time_ms(5);
    }
    if v >= 2 {
        r = r.with_cluster_id(Some(s("cluster")));
    }
    if v >= 1 {
        r = r.with_controller_id(BrokerId(1));
    }
    if (8..=10).contains(&v) {
        r = r.with_cluster_authorized_operations(0x1f);
    }
    let mut out = vec![body(r.clone(), v)];
    if v >= 2 {
        out.push(body(r.with_cluster_id(None).with_brokers(vec![]).with_topics(vec![]), v));
    }
    out
}

fn find_coordinator(v: i16) -> Vec<Vec<u8>> {
    use m::find_coordinator_response::*;
    if v <= 3 {
        let r = |message: Option<&'static str>| {
            let r = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(2))
                .with_host(s("broker-2"))
                .with_port(9092)
                .with_unknown_tagged_fields(unknown());
            if v >= 1 {
                r.with_throttle_time_ms(5).with_error_message(message.map(s))
            } else {
                r
            }
        };
        return vec![body(r(Some("")), v), body(r(None).with_error_code(15), v)];
    }
    let coordinator = |key, message: Option<&'static str>| {
        Coordinator::default()
            .with_key(s(key))
            .with_node_id(BrokerId(2))
            .with_host(s("broker-2"))
            .with_port(9092)
            .with_error_message(message.map(s))
            .with_unknown_tagged_fields(unknown())
    };
    let r = FindCoordinatorResponse::default().with_throttle_time_ms(5).with_coordinators(vec![
        coordinator("grp-1", None),
        coordinator("tx-1", Some("NOT_COORDINATOR")).with_error_code(16),
    ]);
    vec![body(r, v)]
}

fn describe_cluster(v: i16) -> Vec<Vec<u8>> {
    use m::describe_cluster_response::*;
    let broker = |n, rack: Option<&'static str>| {
        let b = DescribeClusterBroker::default()
            .with_broker_id(BrokerId(n))
            .with_host(s("broker"))
            .with_port(9092)
            .with_rack(rack.map(s))
            .with_unknown_tagged_fields(unknown());
        if v >= 2 {
            b.with_is_fenced(n == 2)
        } else {
            b
        }
    };
    let mut r = DescribeClusterResponse::default()
        .with_throttle_time_ms(5)
        .with_cluster_id(s("cluster"))
        .with_controller_id(BrokerId(1))
        .with_brokers(vec![broker(1, Some("rack-a")), broker(2, None)])
        .with_cluster_authorized_operations(0x1f);
    if v >= 1 {
        r = r.with_endpoint_type(2);
    }
    let failed = r.clone().with_error_code(29).with_error_message(Some(s("denied"))).with_brokers(vec![]);
    vec![body(r, v), body(failed, v)]
}

fn produce(v: i16) -> Vec<Vec<u8>> {
    use m::produce_response::*;
    let partition = |p, failed: bool| {
        let mut x = PartitionProduceResponse::default()
            .with_index(p)
            .with_base_offset(100)
            .with_log_append_time_ms(-1)
            .with_unknown_tagged_fields(unknown());
        if v >= 5 {
            x = x.with_log_start_offset(0);
        }
        if failed {
            x = x.with_error_code(6);
        }
        if v >= 8 && failed {
            let error = |i, message: Option<&'static str>| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(i)
                    .with_batch_index_error_message(message.map(s))
                    .with_unknown_tagged_fields(unknown())
            };
            x = x
                .with_record_errors(vec![error(0, Some("bad")), error(2, None)])
                .with_error_message(Some(s("invalid record")));
        }
        if v >= 10 && failed {
            x = x.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(2))
                    .with_leader_epoch(4)
                    .with_unknown_tagged_fields(unknown()),
            );
        }
        x
    };
    let topic = |name, n, partitions| {
        let t =
            TopicProduceResponse::default().with_partition_responses(partitions).with_unknown_tagged_fields(unknown());
        if v <= 12 {
            t.with_name(tn(name))
        } else {
            t.with_topic_id(id(n))
        }
    };
    let r = ProduceResponse::default()
        .with_responses(vec![
            topic("orders", 1, vec![partition(0, false), partition(1, true)]),
            topic("audit", 2, vec![partition(2, false)]),
        ])
        .with_throttle_time_ms(5)
        .with_unknown_tagged_fields(unknown());
    let mut out = vec![body(r.clone(), v)];
    if v >= 10 {
        let endpoint = |n, rack: Option<&'static str>| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(n))
                .with_host(s("broker"))
                .with_port(9092)
                .with_rack(rack.map(s))
                .with_unknown_tagged_fields(unknown())
        };
        out.push(body(r.with_node_endpoints(vec![endpoint(2, Some("rack-a")), endpoint(3, None)]), v));
    }
    out
}

fn fetch(v: i16) -> Vec<Vec<u8>> {
    use m::fetch_response::*;
    let partition = |p, hints: bool| {
        let aborted = |producer, first| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(producer))
                .with_first_offset(first)
                .with_unknown_tagged_fields(unknown())
        };
        let mut x = PartitionData::default()
            .with_partition_index(p)
            .with_high_watermark(100)
            .with_last_stable_offset(90)
            .with_aborted_transactions((p == 0).then(|| vec![aborted(5, 10), aborted(6, 20)]))
            .with_records(if p == 1 { None } else { records() })
            .with_unknown_tagged_fields(unknown());
        if v >= 5 {
            x = x.with_log_start_offset(0);
        }
        if v >= 11 && p == 0 {
            x = x.with_preferred_read_replica(BrokerId(3));
        }
        if v >= 12 && hints {
            x = x
                .with_error_code(6)
                .with_diverging_epoch(
                    EpochEndOffset::default().with_epoch(3).with_end_offset(50).with_unknown_tagged_fields(unknown()),
                )
                .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)).with_leader_epoch(4))
                .with_snapshot_id(SnapshotId::default().with_end_offset(40).with_epoch(2));
        }
        x
    };
    let topic = |name, n, partitions| {
        let t = FetchableTopicResponse::default().with_partitions(partitions).with_unknown_tagged_fields(unknown());
        if v <= 12 {
            t.with_topic(tn(name))
        } else {
            t.with_topic_id(id(n))
        }
    };
    let mut r = FetchResponse::default().with_throttle_time_ms(5).with_responses(vec![
        topic("orders", 1, vec![partition(0, false), partition(1, true), partition(2, false)]),
        topic("audit", 2, vec![partition(3, true)]),
    ]);
    if v >= 7 {
        r = r.with_session_id(9);
    }
    let mut out = vec![body(r.clone(), v), body(r.clone().with_unknown_tagged_fields(unknown()), v)];
    if v >= 16 {
        let endpoint = |n, rack: Option<&'static str>| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(n))
                .with_host(s("broker"))
                .with_port(9092)
                .with_rack(rack.map(s))
                .with_unknown_tagged_fields(unknown())
        };
        out.push(body(r.with_node_endpoints(vec![endpoint(2, Some("rack-a")), endpoint(3, None)]), v));
    }
    out
}

fn share_fetch(v: i16) -> Vec<Vec<u8>> {
    use m::share_fetch_response::*;
    let acquired = |first, last| {
        AcquiredRecords::default()
            .with_first_offset(first)
            .with_last_offset(last)
            .with_delivery_count(1)
            .with_unknown_tagged_fields(unknown())
    };
    let partition = |p, error: Option<&'static str>| {
        PartitionData::default()
            .with_partition_index(p)
            .with_error_message(error.map(s))
            .with_acknowledge_error_message(error.map(|_| s("ack failed")))
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(2)
                    .with_leader_epoch(4)
                    .with_unknown_tagged_fields(unknown()),
            )
            .with_records(if error.is_some() { None } else { records() })
            .with_acquired_records(if error.is_some() { vec![] } else { vec![acquired(0, 9), acquired(10, 12)] })
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |n, partitions| {
        ShareFetchableTopicResponse::default()
            .with_topic_id(id(n))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(unknown())
    };
    let endpoint = |n, rack: Option<&'static str>| {
        NodeEndpoint::default().with_node_id(BrokerId(n)).with_host(s("broker")).with_port(9092).with_rack(rack.map(s))
    };
    let r = ShareFetchResponse::default()
        .with_throttle_time_ms(5)
        .with_acquisition_lock_timeout_ms(30_000)
        .with_responses(vec![
            topic(1, vec![partition(0, None), partition(1, Some("NOT_LEADER"))]),
            topic(2, vec![partition(2, None)]),
        ])
        .with_node_endpoints(vec![endpoint(2, Some("rack-a")), endpoint(3, None)])
        .with_unknown_tagged_fields(unknown());
    let failed = ShareFetchResponse::default().with_error_code(58).with_error_message(Some(s("invalid session")));
    vec![body(r, v), body(failed, v)]
}

fn share_acknowledge(v: i16) -> Vec<Vec<u8>> {
    use m::share_acknowledge_response::*;
    let partition = |p, error: Option<&'static str>| {
        PartitionData::default()
            .with_partition_index(p)
            .with_error_message(error.map(s))
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(2)
                    .with_leader_epoch(4)
                    .with_unknown_tagged_fields(unknown()),
            )
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |n, partitions| {
        ShareAcknowledgeTopicResponse::default()
            .with_topic_id(id(n))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(unknown())
    };
    let endpoint = |n, rack: Option<&'static str>| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(s("broker"))
            .with_port(9092)
            .with_rack(rack.map(s))
            .with_unknown_tagged_fields(unknown())
    };
    let r = ShareAcknowledgeResponse::default()
        .with_throttle_time_ms(5)
        .with_responses(vec![
            topic(1, vec![partition(0, None), partition(1, Some("NOT_LEADER"))]),
            topic(2, vec![partition(2, None)]),
        ])
        .with_node_endpoints(vec![endpoint(2, Some("rack-a")), endpoint(3, None)]);
    let failed = ShareAcknowledgeResponse::default().with_error_code(58).with_error_message(Some(s("no session")));
    vec![body(r, v), body(failed, v)]
}

fn list_groups(v: i16) -> Vec<Vec<u8>> {
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

fn offset_fetch(v: i16) -> Vec<Vec<u8>> {
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

fn describe_topic_partitions(v: i16) -> Vec<Vec<u8>> {
    use m::describe_topic_partitions_response::*;
    let partition = |p, elr: Option<&[i32]>| {
        DescribeTopicPartitionsResponsePartition::default()
            .with_partition_index(p)
            .with_leader_id(BrokerId(1))
            .with_leader_epoch(3)
            .with_replica_nodes(brokers(&[1, 2, 3]))
            .with_isr_nodes(brokers(&[1, 2]))
            .with_eligible_leader_replicas(elr.map(brokers))
            .with_last_known_elr(elr.map(|e| brokers(&e[..e.len().min(1)])))
            .with_offline_replicas(brokers(&[3]))
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name: Option<&'static str>, n, partitions| {
        DescribeTopicPartitionsResponseTopic::default()
            .with_name(name.map(tn))
            .with_topic_id(id(n))
            .with_is_internal(n == 2)
            .with_partitions(partitions)
            .with_topic_authorized_operations(0x1f8)
            .with_unknown_tagged_fields(unknown())
    };
    let r = DescribeTopicPartitionsResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic(Some("orders"), 1, vec![partition(0, Some(&[2, 3])), partition(1, None)]),
        topic(None, 2, vec![partition(0, Some(&[]))]).with_error_code(100),
    ]);
    let cursor = Cursor::default().with_topic_name(tn("orders")).with_partition_index(2);
    vec![
        body(r.clone().with_next_cursor(Some(cursor.with_unknown_tagged_fields(unknown()))), v),
        body(r.with_next_cursor(None), v),
    ]
}

fn list_offsets(v: i16) -> Vec<Vec<u8>> {
    use m::list_offsets_response::*;
    let partition = |p| {
        let x = ListOffsetsPartitionResponse::default()
            .with_partition_index(p)
            .with_timestamp(-1)
            .with_offset(100)
            .with_unknown_tagged_fields(unknown());
        if v >= 4 {
            x.with_leader_epoch(3)
        } else {
            x
        }
    };
    let topic = |name, partitions: &[i32]| {
        ListOffsetsTopicResponse::default()
            .with_name(tn(name))
            .with_partitions(partitions.iter().copied().map(partition).collect())
            .with_unknown_tagged_fields(unknown())
    };
    let mut r = ListOffsetsResponse::default().with_topics(vec![topic("orders", &[0, 1]), topic("audit", &[2])]);
    if v >= 2 {
        r = r.with_throttle_time_ms(5);
    }
    vec![body(r, v)]
}

fn offset_for_leader_epoch(v: i16) -> Vec<Vec<u8>> {
    use m::offset_for_leader_epoch_response::*;
    let partition = |p| {
        EpochEndOffset::default()
            .with_partition(p)
            .with_leader_epoch(3)
            .with_end_offset(100)
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, partitions: &[i32]| {
        OffsetForLeaderTopicResult::default()
            .with_topic(tn(name))
            .with_partitions(partitions.iter().copied().map(partition).collect())
            .with_unknown_tagged_fields(unknown())
    };
    let r = OffsetForLeaderEpochResponse::default()
        .with_throttle_time_ms(5)
        .with_topics(vec![topic("orders", &[0, 1]), topic("audit", &[2])]);
    vec![body(r, v)]
}

fn offset_commit(v: i16) -> Vec<Vec<u8>> {
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

fn txn_offset_commit(v: i16) -> Vec<Vec<u8>> {
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

fn describe_groups(v: i16) -> Vec<Vec<u8>> {
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

fn create_topics(v: i16) -> Vec<Vec<u8>> {
    use m::create_topics_response::*;
    let config = |name, value: Option<&'static str>| {
        CreatableTopicConfigs::default()
            .with_name(s(name))
            .with_value(value.map(s))
            .with_config_source(5)
            .with_is_sensitive(value.is_none())
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, n, error: Option<&'static str>, configs: Option<Vec<CreatableTopicConfigs>>| {
        let mut x = CreatableTopicResult::default()
            .with_name(tn(name))
            .with_error_message(error.map(s))
            .with_unknown_tagged_fields(unknown());
        if v >= 7 {
            x = x.with_topic_id(id(n));
        }
        if v >= 5 {
            let config_error = if configs.is_none() { 29 } else { 0 };
            x = x
                .with_num_partitions(3)
                .with_replication_factor(2)
                .with_configs(configs)
                .with_topic_config_error_code(config_error);
        }
        x
    };
    let r = CreateTopicsResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic("orders", 1, None, Some(vec![config("cleanup.policy", Some("compact")), config("sasl.x", None)])),
        topic("audit", 2, Some("denied"), None).with_error_code(29),
    ]);
    vec![body(r, v)]
}

fn delete_topics(v: i16) -> Vec<Vec<u8>> {
    use m::delete_topics_response::*;
    let result = |name: Option<&'static str>, n, error: Option<&'static str>| {
        let mut x = DeletableTopicResult::default().with_name(name.map(tn)).with_unknown_tagged_fields(unknown());
        if v >= 6 {
            x = x.with_topic_id(id(n));
        }
        if v >= 5 {
            x = x.with_error_message(error.map(s));
        }
        x
    };
    let mut results =
        vec![result(Some("orders"), 1, None), result(Some("audit"), 2, Some("denied")).with_error_code(29)];
    if v >= 6 {
        results.push(result(None, 3, None));
    }
    let r = DeleteTopicsResponse::default().with_throttle_time_ms(5).with_responses(results);
    vec![body(r, v)]
}

fn describe_configs(v: i16) -> Vec<Vec<u8>> {
    use m::describe_configs_response::*;
    let synonym = |name, value: Option<&'static str>| {
        DescribeConfigsSynonym::default()
            .with_name(s(name))
            .with_value(value.map(s))
            .with_source(5)
            .with_unknown_tagged_fields(unknown())
    };
    let config = |name, value: Option<&'static str>| {
        let mut x = DescribeConfigsResourceResult::default()
            .with_name(s(name))
            .with_value(value.map(s))
            .with_config_source(5)
            .with_is_sensitive(value.is_none())
            .with_synonyms(vec![synonym(name, value), synonym("log.retention.ms", Some("1000"))])
            .with_unknown_tagged_fields(unknown());
        if v >= 3 {
            x = x.with_config_type(5).with_documentation(value.map(|_| s("docs")));
        }
        x
    };
    let result = |resource_type, name, configs, error: Option<&'static str>| {
        DescribeConfigsResult::default()
            .with_error_message(error.map(s))
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs)
            .with_unknown_tagged_fields(unknown())
    };
    let r = DescribeConfigsResponse::default().with_throttle_time_ms(5).with_results(vec![
        result(2, "orders", vec![config("retention.ms", Some("1000")), config("sasl.password", None)], None),
        result(4, "1", vec![], Some("denied")).with_error_code(29),
    ]);
    vec![body(r, v)]
}

fn create_partitions(v: i16) -> Vec<Vec<u8>> {
    use m::create_partitions_response::*;
    let result = |name, error: Option<&'static str>| {
        CreatePartitionsTopicResult::default()
            .with_name(tn(name))
            .with_error_message(error.map(s))
            .with_unknown_tagged_fields(unknown())
    };
    let r = CreatePartitionsResponse::default()
        .with_throttle_time_ms(5)
        .with_results(vec![result("orders", None), result("audit", Some("INVALID_PARTITIONS")).with_error_code(37)]);
    vec![body(r, v)]
}

fn delete_records(v: i16) -> Vec<Vec<u8>> {
    use m::delete_records_response::*;
    let partition = |p| {
        DeleteRecordsPartitionResult::default()
            .with_partition_index(p)
            .with_low_watermark(100)
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, partitions: &[i32]| {
        DeleteRecordsTopicResult::default()
            .with_name(tn(name))
            .with_partitions(partitions.iter().copied().map(partition).collect())
            .with_unknown_tagged_fields(unknown())
    };
    let r = DeleteRecordsResponse::default()
        .with_throttle_time_ms(5)
        .with_topics(vec![topic("orders", &[0, 1]), topic("audit", &[2])]);
    vec![body(r, v)]
}

fn sasl_handshake(v: i16) -> Vec<Vec<u8>> {
    let r = m::SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")]);
    vec![body(r, v), body(m::SaslHandshakeResponse::default().with_error_code(33), v)]
}

fn sasl_authenticate(v: i16) -> Vec<Vec<u8>> {
    let r = m::SaslAuthenticateResponse::default()
        .with_auth_bytes(bytes::Bytes::from_static(b"r=nonce,s=c2FsdA==,i=4096"))
        .with_error_message(Some(s("")));
    let r = if v >= 1 { r.with_session_lifetime_ms(60_000) } else { r };
    let failed = m::SaslAuthenticateResponse::default().with_error_code(58).with_error_message(None);
    vec![body(r, v), body(failed, v)]
}

fn delete_groups(v: i16) -> Vec<Vec<u8>> {
    use m::delete_groups_response::*;
    let result = |g, e| {
        DeletableGroupResult::default().with_group_id(gid(g)).with_error_code(e).with_unknown_tagged_fields(unknown())
    };
    let r = DeleteGroupsResponse::default()
        .with_throttle_time_ms(5)
        .with_results(vec![result("grp-1", 0), result("grp-2", 69)]);
    vec![body(r, v)]
}

fn share_group_describe(v: i16) -> Vec<Vec<u8>> {
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

fn consumer_group_heartbeat(v: i16) -> Vec<Vec<u8>> {
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

fn consumer_group_describe(v: i16) -> Vec<Vec<u8>> {
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

fn alter_configs(v: i16) -> Vec<Vec<u8>> {
    use m::alter_configs_response::*;
    let response = |resource_type, name, error: Option<&'static str>| {
        AlterConfigsResourceResponse::default()
            .with_error_message(error.map(s))
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_unknown_tagged_fields(unknown())
    };
    let r = AlterConfigsResponse::default()
        .with_throttle_time_ms(5)
        .with_responses(vec![response(2, "orders", None), response(4, "1", Some("denied")).with_error_code(29)]);
    vec![body(r, v)]
}

fn incremental_alter_configs(v: i16) -> Vec<Vec<u8>> {
    use m::incremental_alter_configs_response::*;
    let response = |resource_type, name, error: Option<&'static str>| {
        AlterConfigsResourceResponse::default()
            .with_error_message(error.map(s))
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_unknown_tagged_fields(unknown())
    };
    let r = IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(5)
        .with_responses(vec![response(2, "orders", None), response(8, "1", Some("denied")).with_error_code(29)]);
    vec![body(r, v)]
}

fn offset_delete(v: i16) -> Vec<Vec<u8>> {
    use m::offset_delete_response::*;
    let partition = |p, e| OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(e);
    let topic = |name, partitions| OffsetDeleteResponseTopic::default().with_name(tn(name)).with_partitions(partitions);
    let r = OffsetDeleteResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic("orders", vec![partition(0, 0), partition(1, 86)]),
        topic("audit", vec![partition(2, 0)]),
    ]);
    vec![body(r, v), body(OffsetDeleteResponse::default().with_error_code(69), v)]
}

fn describe_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
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

fn alter_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
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

fn delete_share_group_offsets(v: i16) -> Vec<Vec<u8>> {
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

fn describe_producers(v: i16) -> Vec<Vec<u8>> {
    use m::describe_producers_response::*;
    let producer = |p| {
        ProducerState::default()
            .with_producer_id(ProducerId(p))
            .with_producer_epoch(1)
            .with_last_sequence(10)
            .with_last_timestamp(1_700_000_000_000)
            .with_coordinator_epoch(2)
            .with_current_txn_start_offset(-1)
            .with_unknown_tagged_fields(unknown())
    };
    let partition = |p, error: Option<&'static str>, producers| {
        PartitionResponse::default()
            .with_partition_index(p)
            .with_error_message(error.map(s))
            .with_active_producers(producers)
            .with_unknown_tagged_fields(unknown())
    };
    let topic = |name, partitions| {
        TopicResponse::default().with_name(tn(name)).with_partitions(partitions).with_unknown_tagged_fields(unknown())
    };
    let r = DescribeProducersResponse::default().with_throttle_time_ms(5).with_topics(vec![
        topic(
            "orders",
            vec![
                partition(0, None, vec![producer(5), producer(6)]),
                partition(1, Some("NOT_LEADER"), vec![]).with_error_code(6),
            ],
        ),
        topic("audit", vec![partition(2, None, vec![producer(7)])]),
    ]);
    vec![body(r, v)]
}

fn describe_transactions(v: i16) -> Vec<Vec<u8>> {
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
