//! Request bodies that name topics and configs (data path and administration) and what the walk must find in them.

use super::*;

pub(super) fn fetch(v: i16) -> Vec<Built> {
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

pub(super) fn list_offsets(v: i16) -> Vec<Built> {
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

pub(super) fn metadata(v: i16) -> Vec<Built> {
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

pub(super) fn create_topics(v: i16) -> Vec<Built> {
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

pub(super) fn delete_topics(v: i16) -> Vec<Built> {
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

pub(super) fn delete_records(v: i16) -> Vec<Built> {
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

pub(super) fn offset_for_leader_epoch(v: i16) -> Vec<Built> {
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

pub(super) fn config_resource(resource_type: i8, name: &'static str) -> Named<'static> {
    Named::ConfigResource { resource_type, name }
}

pub(super) fn describe_configs(v: i16) -> Vec<Built> {
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

pub(super) fn alter_configs(v: i16) -> Vec<Built> {
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

pub(super) fn incremental_alter_configs(v: i16) -> Vec<Built> {
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

pub(super) fn create_partitions(v: i16) -> Vec<Built> {
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

pub(super) fn describe_producers(v: i16) -> Vec<Built> {
    use m::describe_producers_request::*;
    let r = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default().with_name(tn("orders")).with_partition_indexes(vec![0, 1]),
        TopicRequest::default().with_name(tn("audit")).with_partition_indexes(vec![2]),
    ]);
    vec![built(r, v, vec![t("orders"), t("audit")], NONE)]
}

pub(super) fn share_fetch(v: i16) -> Vec<Built> {
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

pub(super) fn share_acknowledge(v: i16) -> Vec<Built> {
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

pub(super) fn describe_topic_partitions(v: i16) -> Vec<Built> {
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

pub(super) fn create_acls(v: i16) -> Vec<Built> {
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

pub(super) fn delete_acls(v: i16) -> Vec<Built> {
    use m::delete_acls_request::*;
    let filters = vec![
        DeleteAclsFilter::default().with_resource_type_filter(2).with_resource_name_filter(Some(s("orders"))),
        DeleteAclsFilter::default().with_principal_filter(Some(s("User:bob"))).with_host_filter(Some(s("*"))),
    ];
    vec![built(DeleteAclsRequest::default().with_filters(filters), v, vec![], NONE)]
}

pub(super) fn elect_leaders(v: i16) -> Vec<Built> {
    use m::elect_leaders_request::*;
    let some = ElectLeadersRequest::default().with_timeout_ms(60_000).with_topic_partitions(Some(vec![
        TopicPartitions::default().with_topic(tn("orders")).with_partitions(vec![0, 2]),
    ]));
    let all = ElectLeadersRequest::default().with_topic_partitions(None);
    vec![built(some, v, vec![], NONE), built(all, v, vec![], NONE)]
}

pub(super) fn alter_client_quotas(v: i16) -> Vec<Built> {
    use m::alter_client_quotas_request::*;
    let entry = EntryData::default()
        .with_entity(vec![
            EntityData::default().with_entity_type(s("user")).with_entity_name(Some(s("alice"))),
            EntityData::default().with_entity_type(s("client-id")).with_entity_name(None),
        ])
        .with_ops(vec![OpData::default().with_key(s("producer_byte_rate")).with_value(1024.0)]);
    vec![built(AlterClientQuotasRequest::default().with_entries(vec![entry]), v, vec![], NONE)]
}

pub(super) fn alter_user_scram_credentials(v: i16) -> Vec<Built> {
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

pub(super) fn alter_replica_log_dirs(v: i16) -> Vec<Built> {
    use m::alter_replica_log_dirs_request::*;
    let dir = AlterReplicaLogDir::default()
        .with_path(s("/data/b"))
        .with_topics(vec![AlterReplicaLogDirTopic::default().with_name(tn("orders")).with_partitions(vec![1, 2])]);
    vec![built(AlterReplicaLogDirsRequest::default().with_dirs(vec![dir]), v, vec![], NONE)]
}
