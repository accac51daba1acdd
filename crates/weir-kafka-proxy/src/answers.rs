//! Answers the sidecar gives in a broker's stead, in the shapes brokers use: shared by the
//! filters that answer requests themselves (authorization, fault injection).

use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

/// Produce answers for `topics`, every partition failed with the code `code` gives its topic,
/// nothing written (offsets -1, as a broker fills them for a failed partition).
pub(crate) fn failed_produce(
    topics: impl IntoIterator<Item = TopicProduceData>,
    code: impl Fn(&TopicProduceData) -> i16,
) -> Vec<TopicProduceResponse> {
    topics
        .into_iter()
        .map(|t| {
            let code = code(&t);
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions)
        })
        .collect()
}
