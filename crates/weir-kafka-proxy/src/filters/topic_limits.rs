//! Topic creation limits (see [`crate::topic_limits`]): the topics of a CreateTopics or
//! CreatePartitions request outside a rule's limits are taken out of the request and answered
//! here with POLICY_VIOLATION and the rule's reason; the rest go to the broker, whose answer
//! gets the refused topics added. A request with nothing left is answered here whole.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use weir_wire::message::{decode_request, encode_request_keeping_header, encode_response};
use weir_wire::resources::scan_request_resources;

use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{ResponseContext, Services};
use crate::quota::ANONYMOUS;
use crate::snapshot::Snapshot;
use crate::topic_limits::{refusal, TopicAsk, TopicCreationRule};

/// What Kafka answers a topic its creation policy refuses.
const POLICY_VIOLATION: i16 = kafka_protocol::error::ResponseError::PolicyViolation.code();

pub(crate) struct TopicLimitsFilter {
    rules: Arc<[TopicCreationRule]>,
    principal: String,
}

/// The refused topics, added to the broker's answer.
enum Refused {
    Created(Vec<CreatableTopicResult>),
    Grown(Vec<CreatePartitionsTopicResult>),
}

impl TopicLimitsFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        Self { rules: snapshot.topic_creation.clone(), principal }
    }

    /// Why `ask` is refused, if it is; counted and logged.
    fn judge(&self, services: &dyn Services, ask: &TopicAsk<'_>) -> Option<String> {
        let (rule, why) = refusal(&self.rules, &self.principal, ask)?;
        services.metrics().topic_creation_refused(&rule);
        tracing::debug!(topic = ask.name, rule, why, "topic creation refused");
        Some(why)
    }
}

fn decode<T: Decodable>(cx: &RequestContext<'_>) -> Result<T, FilterError> {
    // Walked first: the decoder would allocate whatever lengths the request declares.
    scan_request_resources(cx.body(), cx.header.api_key, cx.header.api_version, |_| {})
        .map_err(FilterError::BadRequestBody)?;
    decode_request(cx.frame(), cx.header).map_err(FilterError::BadRequest)
}

/// Answers here when nothing is left to forward; else forwards what is left and keeps the
/// refused for the broker's answer.
fn answer_or_forward<Req: Encodable, Resp: Encodable>(
    cx: &mut RequestContext<'_>,
    request: &Req,
    nothing_left: bool,
    answer: impl FnOnce() -> Resp,
    refused: Refused,
) -> Result<RequestAction, FilterError> {
    let header = cx.header;
    if nothing_left {
        let frame = encode_response(header.correlation_id, header.api_key, header.api_version, &answer())
            .map_err(FilterError::BadRequest)?;
        return Ok(RequestAction::Answer(frame));
    }
    let frame: Bytes = encode_request_keeping_header(cx.frame(), header, request).map_err(FilterError::BadRequest)?;
    cx.replace_frame(frame);
    cx.remember(refused);
    Ok(RequestAction::Continue)
}

impl Filter for TopicLimitsFilter {
    fn name(&self) -> &'static str {
        "topic_limits"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        !self.rules.is_empty() && matches!(api, ApiKey::CreateTopics | ApiKey::CreatePartitions)
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        ready(self.limit(cx))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let added = match cx.take_note::<Refused>() {
            None => Ok(()),
            Some(Refused::Created(refused)) => {
                cx.message.decoded_mut::<CreateTopicsResponse>().map(|r| r.topics.extend(refused))
            }
            Some(Refused::Grown(refused)) => {
                cx.message.decoded_mut::<CreatePartitionsResponse>().map(|r| r.results.extend(refused))
            }
        };
        ready(added.map_err(FilterError::BadResponse))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.rules = snapshot.topic_creation.clone();
    }
}

impl TopicLimitsFilter {
    fn limit(&self, cx: &mut RequestContext<'_>) -> Result<RequestAction, FilterError> {
        let version = cx.header.api_version;
        let message = |why: String| Some(StrBytes::from_string(why));
        match cx.header.api_key {
            ApiKey::CreateTopics => {
                let mut request: CreateTopicsRequest = decode(cx)?;
                let mut refused = Vec::new();
                request.topics.retain(|topic| {
                    // Explicit assignments say the count and the factor; -1 leaves them to the broker.
                    let first = topic.assignments.first();
                    let ask = TopicAsk {
                        name: &topic.name,
                        partitions: match topic.num_partitions {
                            -1 if !topic.assignments.is_empty() => Some(topic.assignments.len() as i32),
                            -1 => None,
                            n => Some(n),
                        },
                        replication_factor: match topic.replication_factor {
                            -1 => first.map(|a| a.broker_ids.len() as i16),
                            n => Some(n),
                        },
                        retention_ms: topic
                            .configs
                            .iter()
                            .find(|c| &*c.name == "retention.ms")
                            .and_then(|c| c.value.as_deref()),
                    };
                    let Some(why) = self.judge(cx.services, &ask) else { return true };
                    refused.push(crate::answers::refused_topic_creation(
                        topic.name.clone(),
                        POLICY_VIOLATION,
                        message(why),
                        version,
                    ));
                    false
                });
                if refused.is_empty() {
                    return Ok(RequestAction::Continue);
                }
                let nothing_left = request.topics.is_empty();
                let answer = || CreateTopicsResponse::default().with_topics(refused.clone());
                answer_or_forward(cx, &request, nothing_left, answer, Refused::Created(refused.clone()))
            }
            ApiKey::CreatePartitions => {
                let mut request: CreatePartitionsRequest = decode(cx)?;
                let mut refused = Vec::new();
                request.topics.retain(|topic| {
                    let ask = TopicAsk { name: &topic.name, partitions: Some(topic.count), ..TopicAsk::default() };
                    let Some(why) = self.judge(cx.services, &ask) else { return true };
                    refused.push(
                        CreatePartitionsTopicResult::default()
                            .with_name(topic.name.clone())
                            .with_error_code(POLICY_VIOLATION)
                            .with_error_message(message(why)),
                    );
                    false
                });
                if refused.is_empty() {
                    return Ok(RequestAction::Continue);
                }
                let nothing_left = request.topics.is_empty();
                let answer = || CreatePartitionsResponse::default().with_results(refused.clone());
                answer_or_forward(cx, &request, nothing_left, answer, Refused::Grown(refused.clone()))
            }
            _ => Ok(RequestAction::Continue),
        }
    }
}
