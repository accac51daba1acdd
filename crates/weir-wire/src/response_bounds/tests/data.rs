//! Response bodies of the data path, metadata and SASL, as the reference encoder writes them.

use super::*;

pub(super) fn api_versions(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn metadata(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn find_coordinator(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn describe_cluster(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn produce(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn fetch(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn share_fetch(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn share_acknowledge(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn describe_topic_partitions(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn list_offsets(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn offset_for_leader_epoch(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn sasl_handshake(v: i16) -> Vec<Vec<u8>> {
    let r = m::SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")]);
    vec![body(r, v), body(m::SaslHandshakeResponse::default().with_error_code(33), v)]
}

pub(super) fn sasl_authenticate(v: i16) -> Vec<Vec<u8>> {
    let r = m::SaslAuthenticateResponse::default()
        .with_auth_bytes(bytes::Bytes::from_static(b"r=nonce,s=c2FsdA==,i=4096"))
        .with_error_message(Some(s("")));
    let r = if v >= 1 { r.with_session_lifetime_ms(60_000) } else { r };
    let failed = m::SaslAuthenticateResponse::default().with_error_code(58).with_error_message(None);
    vec![body(r, v), body(failed, v)]
}
