//! Response bodies of topic and config administration, as the reference encoder writes them.

use super::*;

pub(super) fn create_topics(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn delete_topics(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn describe_configs(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn create_partitions(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn delete_records(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn alter_configs(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn incremental_alter_configs(v: i16) -> Vec<Vec<u8>> {
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

pub(super) fn describe_producers(v: i16) -> Vec<Vec<u8>> {
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
