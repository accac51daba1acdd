//! Answers the sidecar gives in a broker's stead, in the shapes brokers use: shared by the
//! filters that answer requests themselves (authorization, fault injection).

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_wire::message::{decode_request, encode_response};
use weir_wire::resources::scan_request_resources;
use weir_wire::RequestHeaderPeek;

use crate::filter::FilterError;

/// The answer of a broker that failed every partition of a produce request with `code`.
pub(crate) fn failed_produce_answer(frame: &Bytes, peek: &RequestHeaderPeek, code: i16) -> Result<Bytes, FilterError> {
    let body = frame.get(peek.body_offset..).unwrap_or_default();
    // Walked first: the decoder would allocate whatever lengths the request declares.
    scan_request_resources(body, ApiKey::Produce, peek.api_version, |_| {}).map_err(FilterError::BadRequestBody)?;
    let request: ProduceRequest = decode_request(frame, peek).map_err(FilterError::BadRequest)?;
    let response = ProduceResponse::default().with_responses(failed_produce(request.topic_data, |_| code));
    encode_response(peek.correlation_id, ApiKey::Produce, peek.api_version, &response).map_err(FilterError::BadRequest)
}

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
            let partitions = t.partition_data.iter().map(|p| failed_partition(p.index, code)).collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions)
        })
        .collect()
}

/// The answer for one partition a produce did not write: `code`, offsets -1 (as a broker
/// fills them for a failed partition).
pub(crate) fn failed_partition(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Adds answers for partitions the broker was not asked about to its produce answer: into the
/// entry of their topic when it has one (named as the request named it: by name, or by id
/// from v13), else as entries of their own.
pub(crate) fn merge_produce_answers(
    answers: &mut Vec<TopicProduceResponse>,
    topics: impl IntoIterator<Item = TopicProduceResponse>,
) {
    for topic in topics {
        let same = |entry: &&mut TopicProduceResponse| entry.name == topic.name && entry.topic_id == topic.topic_id;
        match answers.iter_mut().find(same) {
            Some(entry) => entry.partition_responses.extend(topic.partition_responses),
            None => answers.push(topic),
        }
    }
}

/// A CreateTopics answer for one topic not created, with `code` and `message`, shaped for
/// `version` (v5+ says the partition count and factor, unknown: -1).
pub(crate) fn refused_topic_creation(
    name: TopicName,
    code: i16,
    message: Option<StrBytes>,
    version: i16,
) -> CreatableTopicResult {
    let unknown = if version >= 5 { -1 } else { 0 };
    CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(code)
        .with_error_message(message)
        .with_num_partitions(unknown)
        .with_replication_factor(unknown as i16)
}
