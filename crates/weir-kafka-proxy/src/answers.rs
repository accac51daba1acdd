//! Answers the sidecar gives in a broker's stead, in the shapes brokers use: shared by the
//! filters that answer requests themselves (authorization, fault injection, safeguards,
//! schema validation).

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_wire::message::{decode_request, encode_response};
use weir_wire::resources::scan_request_resources;
use weir_wire::RequestHeaderPeek;

use kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage;
use uuid::Uuid;
use weir_wire::message::encode_request_keeping_header;
use weir_wire::scan::TopicRef;

use crate::filter::{FilterError, RequestAction, RequestContext, ResponseContext};

/// The first Produce version whose partition answers carry a message and `record_errors`.
const PRODUCE_ERROR_MESSAGE: i16 = 8;

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

/// A topic as a produce request names it: by name, or by id (v13 on).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ProduceTopic {
    Name(String),
    Id(Uuid),
}

impl ProduceTopic {
    /// The topic of a request's or answer's entry: by id when it has one (v13 on).
    pub(crate) fn of_entry(name: &TopicName, id: Uuid) -> Self {
        if id.is_nil() {
            ProduceTopic::Name(name.to_string())
        } else {
            ProduceTopic::Id(id)
        }
    }

    pub(crate) fn of(topic: TopicRef<'_>) -> Self {
        match topic {
            TopicRef::Name(name) => ProduceTopic::Name(name.to_owned()),
            TopicRef::Id(id) => ProduceTopic::Id(Uuid::from_bytes(id)),
        }
    }
}

/// A partition of a produce request that a filter refuses, and what its client is told.
#[derive(Debug, Clone)]
pub(crate) struct PartitionRefusal {
    pub topic: ProduceTopic,
    pub partition: i32,
    pub code: i16,
    /// The partition's error message (Produce v8 on).
    pub message: String,
    /// The records that caused it: index in the batch, why (Produce v8 on).
    pub record_errors: Vec<(i32, String)>,
}

/// What the sidecar changes in the broker's answer to a request that went on: the answers of
/// the partitions it took out, and the partitions whose records it rewrote (their offsets are
/// not the client's records' offsets, so the answer does not say them).
struct Amendments {
    added: Vec<TopicProduceResponse>,
    offsets_unknown: Vec<(ProduceTopic, i32)>,
}

/// Takes the `refused` partitions out of a produce request and answers them as a broker
/// would have refused them (a refusal of code 0 answers a partition written elsewhere: no
/// error, no offset): when nothing is left, the sidecar answers the request (or, for acks=0,
/// drops it); otherwise the rest goes on and [`amend_produce_answer`] adds the refused
/// partitions to the broker's answer, and unsays the offsets of the `rewritten` partitions.
/// Nothing refused reaches a broker.
pub(crate) fn refuse_produce_partitions(
    cx: &mut RequestContext<'_>,
    refused: &[PartitionRefusal],
    rewritten: Vec<(ProduceTopic, i32)>,
) -> Result<RequestAction, FilterError> {
    if refused.is_empty() {
        if !rewritten.is_empty() {
            cx.remember(Amendments { added: Vec::new(), offsets_unknown: rewritten });
        }
        return Ok(RequestAction::Continue);
    }
    let version = cx.header.api_version;
    let mut answers: Vec<TopicProduceResponse> = Vec::new();
    for refusal in refused {
        let mut answer = failed_partition(refusal.partition, refusal.code);
        if version >= PRODUCE_ERROR_MESSAGE && refusal.code != 0 {
            let record_errors = refusal.record_errors.iter().map(|(index, why)| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(*index)
                    .with_batch_index_error_message(Some(StrBytes::from_string(why.clone())))
            });
            answer = answer
                .with_error_message(Some(StrBytes::from_string(refusal.message.clone())))
                .with_record_errors(record_errors.collect());
        }
        let entry = match &refusal.topic {
            ProduceTopic::Name(name) => {
                TopicProduceResponse::default().with_name(StrBytes::from_string(name.clone()).into())
            }
            ProduceTopic::Id(id) => TopicProduceResponse::default().with_topic_id(*id),
        };
        merge_produce_answers(&mut answers, [entry.with_partition_responses(vec![answer])]);
    }
    // Decoded only after the bounds-checked walk (the filter's scan) read it whole.
    let mut request: ProduceRequest = decode_request(cx.frame(), cx.header).map_err(FilterError::BadRequest)?;
    for topic in &mut request.topic_data {
        let named = ProduceTopic::of_entry(&topic.name, topic.topic_id);
        topic.partition_data.retain(|p| !refused.iter().any(|r| r.topic == named && r.partition == p.index));
    }
    request.topic_data.retain(|t| !t.partition_data.is_empty());
    let nothing_left = request.topic_data.is_empty();
    let header = cx.header;
    if request.acks == 0 {
        // No answer is expected: the refused records are dropped.
        if nothing_left {
            return Ok(RequestAction::Drop);
        }
    } else if nothing_left {
        let response = ProduceResponse::default().with_responses(answers);
        let frame = encode_response(header.correlation_id, ApiKey::Produce, version, &response)
            .map_err(FilterError::BadRequest)?;
        return Ok(RequestAction::Answer(frame));
    } else {
        cx.remember(Amendments { added: answers, offsets_unknown: rewritten });
    }
    let frame = encode_request_keeping_header(cx.frame(), header, &request).map_err(FilterError::BadRequest)?;
    cx.replace_frame(frame);
    Ok(RequestAction::Continue)
}

/// Puts new records in place of the records of these partitions of a produce request (by a
/// filter that rewrote their batches); the request's other bytes are kept. None: nothing
/// changes.
pub(crate) fn replace_produce_records(
    cx: &mut RequestContext<'_>,
    replacements: &[(ProduceTopic, i32, Bytes)],
) -> Result<(), FilterError> {
    if replacements.is_empty() {
        return Ok(());
    }
    let mut request: ProduceRequest = decode_request(cx.frame(), cx.header).map_err(FilterError::BadRequest)?;
    for topic in &mut request.topic_data {
        let named = ProduceTopic::of_entry(&topic.name, topic.topic_id);
        for partition in &mut topic.partition_data {
            let replacement = replacements.iter().find(|(t, p, _)| *t == named && *p == partition.index);
            if let Some((_, _, records)) = replacement {
                partition.records = Some(records.clone());
            }
        }
    }
    let frame = encode_request_keeping_header(cx.frame(), cx.header, &request).map_err(FilterError::BadRequest)?;
    cx.replace_frame(frame);
    Ok(())
}

/// Changes the broker's produce answer as [`refuse_produce_partitions`] noted (if it noted
/// anything for this response).
pub(crate) fn amend_produce_answer(cx: &mut ResponseContext<'_>) -> Result<(), FilterError> {
    let Some(Amendments { added, offsets_unknown }) = cx.take_note::<Amendments>() else { return Ok(()) };
    let response = cx.message.decoded_mut::<ProduceResponse>().map_err(FilterError::BadResponse)?;
    for topic in &mut response.responses {
        let named = ProduceTopic::of_entry(&topic.name, topic.topic_id);
        for partition in &mut topic.partition_responses {
            if offsets_unknown.iter().any(|(t, p)| *t == named && *p == partition.index) && partition.error_code == 0 {
                partition.base_offset = -1;
            }
        }
    }
    merge_produce_answers(&mut response.responses, added);
    Ok(())
}
