//! The filters of the Kafka sidecar, each one policy in one file. `Shared::filters_for` puts
//! them in a chain for each connection.
//!
//! Chain order (requests pass it forwards, responses backwards):
//!
//! 1. [`sasl`]: SASL terminated at the sidecar; until a client authenticated nothing of it
//!    reaches a broker.
//! 2. [`fetch_sessions`]: a fetch session serves only the principal that opened it.
//! 3. [`alias`]: topic aliases; the client's names become the cluster's here, so that every
//!    policy after it speaks of the topics really read and written.
//! 4. [`authz`]: topic-level authorization, with partial answers.
//! 5. [`topic_limits`]: topics created or grown outside the limits refused (POLICY_VIOLATION).
//!    After authorization, so that a topic the principal may not create is refused as such.
//! 6. [`safeguard`]: writes that break a produce safeguard (acks, compression, batch size,
//!    client id, read-only, record size, required headers) refused per partition. After
//!    authorization, like topic limits.
//! 7. [`schema`]: records whose key or value is not of the rule's format and schema refused,
//!    per partition. After the safeguards, whose checks cost less than a schema's.
//! 8. [`transform`]: records' headers changed on produce (lineage added, some removed).
//!    After the checks, which judge what the client sent; before quotas, which meter it.
//! 9. [`fetch_transform`]: what a consumer reads changed per principal (headers removed, JSON
//!    fields masked, records taken out, offsets kept). Responses pass it before authorization
//!    and aliases, so it sees the cluster's topic names and only partitions that are served.
//! 10. [`encryption`]: records of covered topics sealed on produce (after every filter that
//!     reads or changes them in plaintext), opened on fetch for the principals a rule names
//!     (before any that reads them: responses pass it before `fetch_transform`).
//! 11. [`trace`]: spans for produced and fetched records that carry a sampled `traceparent`
//!     (added where a sampled trace starts). Last of the record filters on produce, so the
//!     header it adds is written; first on fetch, reading what the broker served.
//! 12. [`quota`]: byte rates and request time per principal; a client over its quota is told
//!     to back off.
//! 13. [`traffic`]: records, bytes and errors per topic and principal.
//! 14. [`fault`]: fault injection (chaos), off unless configured. After traffic, so that
//!     traffic counts the responses as the faults left them: what clients were told.
//! 15. [`shadow`]: accepted writes to shadowed topics copied to their shadow topics. After
//!     fault, so that it sees only writes that reached the broker, and the broker's answer
//!     before a fault changes it.
//! 16. [`canary`]: a share of a topic's partitions written to a canary topic instead. After
//!     shadow, whose copies of a split topic's writes include the canary's; before addresses,
//!     which must see the answer the client gets.
//! 17. [`addresses`]: broker addresses rewritten to the sidecar's, ApiVersions narrowed.

pub(crate) mod addresses;
pub(crate) mod alias;
pub(crate) mod authz;
pub(crate) mod canary;
pub(crate) mod encryption;
pub(crate) mod fault;
pub mod fetch_sessions;
pub(crate) mod fetch_transform;
pub(crate) mod quota;
pub(crate) mod safeguard;
pub(crate) mod sasl;
pub(crate) mod schema;
pub(crate) mod shadow;
pub(crate) mod topic_limits;
pub(crate) mod trace;
pub(crate) mod traffic;
pub(crate) mod transform;

/// Scratch space (decompressed batches) a filter keeps between requests; more is given
/// back after the request that needed it.
const SCRATCH_KEPT: usize = 1 << 20;

/// Gives back a filter's scratch space if a request grew it past [`SCRATCH_KEPT`].
pub(crate) fn release_scratch(scratch: &mut Vec<u8>) {
    if scratch.capacity() > SCRATCH_KEPT {
        *scratch = Vec::new();
    }
}

/// The first Fetch version that names topics by id.
pub(crate) const FIRST_FETCH_BY_ID: i16 = 13;

/// Whether the response to a Fetch request may carry a topic `covered` says yes to: one the
/// request names (by name, or by an id not learned yet, which may be any), and any at all
/// for an incremental request, whose session holds partitions it does not name. What a
/// filter that changes fetched records asks to have the response read whole.
pub(crate) fn fetch_may_carry(
    cx: &crate::filter::RequestContext<'_>,
    covered: impl Fn(&str) -> bool,
) -> Result<bool, crate::filter::FilterError> {
    let session = weir_wire::fetch::request_session(cx.body(), cx.header.api_version);
    if session.is_some_and(|s| s.epoch > 0) {
        return Ok(true);
    }
    let request: kafka_protocol::messages::FetchRequest =
        weir_wire::message::decode_request(cx.frame(), cx.header).map_err(crate::filter::FilterError::BadRequest)?;
    let ids = cx.services.topic_ids();
    Ok(request.topics.iter().any(|topic| {
        if cx.header.api_version < FIRST_FETCH_BY_ID {
            return covered(topic.topic.as_str());
        }
        ids.name(&topic.topic_id).is_none_or(|name| covered(name.as_str()))
    }))
}

/// The topic ids a Fetch response (v13+) names that the sidecar cannot name yet.
pub(crate) fn unknown_fetch_topic_ids(
    cx: &mut crate::filter::ResponseContext<'_>,
) -> Result<Vec<uuid::Uuid>, crate::filter::FilterError> {
    if cx.message.version() < FIRST_FETCH_BY_ID {
        return Ok(Vec::new());
    }
    let ids = cx.services.topic_ids().clone();
    let response: &kafka_protocol::messages::FetchResponse =
        cx.message.decoded().map_err(crate::filter::FilterError::BadResponse)?;
    let mut unknown: Vec<uuid::Uuid> =
        response.responses.iter().map(|t| t.topic_id).filter(|id| ids.name(id).is_none()).collect();
    unknown.dedup();
    Ok(unknown)
}

/// The name of a topic in a Fetch response: as it is, or (from v13) the name learned for its
/// id; None for an id the cluster cannot name.
pub(crate) fn fetched_topic_name(
    ids: &crate::topic_ids::TopicIds,
    version: i16,
    topic: &kafka_protocol::messages::fetch_response::FetchableTopicResponse,
) -> Option<String> {
    if version >= FIRST_FETCH_BY_ID {
        ids.name(&topic.topic_id).map(|n| n.to_string())
    } else {
        Some(topic.topic.to_string())
    }
}

/// The topic ids a produce request names that the sidecar cannot name yet (none before
/// Produce v13, which names topics by name): what a filter judging topics by name must learn
/// first (`Services::resolve_topic_ids`), so that no topic escapes its rules by being named by
/// id.
pub(crate) fn unknown_produce_topic_ids(
    cx: &crate::filter::RequestContext<'_>,
) -> Result<Vec<uuid::Uuid>, crate::filter::FilterError> {
    const FIRST_BY_ID: i16 = 13;
    let mut unknown = Vec::new();
    if cx.header.api_version < FIRST_BY_ID {
        return Ok(unknown);
    }
    let ids = cx.services.topic_ids();
    weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, _, _| {
        if let weir_wire::scan::TopicRef::Id(id) = topic {
            let id = uuid::Uuid::from_bytes(id);
            if ids.name(&id).is_none() && !unknown.contains(&id) {
                unknown.push(id);
            }
        }
    })
    .map_err(crate::filter::FilterError::BadRequestBody)?;
    Ok(unknown)
}

/// The name of a topic a produce request names: as it is, or (from Produce v13) the name the
/// sidecar learned for its id; None for an id the cluster cannot name, which is no topic (the
/// broker refuses it as such).
pub(crate) fn produce_topic_name<'a>(
    ids: &crate::topic_ids::TopicIds,
    topic: weir_wire::scan::TopicRef<'a>,
) -> Option<std::borrow::Cow<'a, str>> {
    match topic {
        weir_wire::scan::TopicRef::Name(name) => Some(std::borrow::Cow::Borrowed(name)),
        weir_wire::scan::TopicRef::Id(id) => ids.name(&uuid::Uuid::from_bytes(id)).map(|n| n.to_string().into()),
    }
}

/// What the produce policies (safeguards, schema validation, transforms) are, beside the
/// judging that makes each one: rules chosen for the connection's principal, again when it
/// authenticates or a snapshot changes them; produce requests wanted only while some rule
/// covers the principal; topics named by id learned before judging; the broker's answer
/// amended for partitions a policy took out or rewrote ([`crate::answers`]).
pub(crate) trait ProducePolicy: Send {
    fn name(&self) -> &'static str;
    /// Whether any rule covers this connection's principal.
    fn has_rules(&self) -> bool;
    /// Judges a produce request whose topic ids are all learned.
    fn judge<'a>(
        &'a mut self,
        cx: &'a mut crate::filter::RequestContext<'_>,
    ) -> crate::filter::Hook<'a, crate::filter::RequestAction>;
    /// The connection's principal is `principal` from now on: choose the rules again.
    fn principal_changed(&mut self, principal: &str);
    /// A snapshot was published: take its rules, if they changed.
    fn snapshot_changed(&mut self, snapshot: &crate::snapshot::Snapshot);
}

/// A [`ProducePolicy`] in the chain.
pub(crate) struct ProduceFilter<P>(pub(crate) P);

impl<P: ProducePolicy> crate::filter::Filter for ProduceFilter<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn wants_request(&self, api: kafka_protocol::messages::ApiKey, _version: i16) -> bool {
        api == kafka_protocol::messages::ApiKey::Produce && self.0.has_rules()
    }

    fn on_request<'a>(
        &'a mut self,
        cx: &'a mut crate::filter::RequestContext<'_>,
    ) -> crate::filter::Hook<'a, crate::filter::RequestAction> {
        let unknown = match unknown_produce_topic_ids(cx) {
            Ok(unknown) => unknown,
            Err(err) => return crate::filter::ready(Err(err)),
        };
        if unknown.is_empty() {
            return self.0.judge(cx);
        }
        crate::filter::later(async move {
            // Named only by ids not learned yet: learn them, so that no topic escapes its rules.
            cx.services.resolve_topic_ids(&unknown).await;
            self.0.judge(cx).await
        })
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut crate::filter::ResponseContext<'_>) -> crate::filter::Hook<'a, ()> {
        crate::filter::ready(crate::answers::amend_produce_answer(cx))
    }

    fn on_authenticated(&mut self, principal: &str) {
        self.0.principal_changed(principal);
    }

    fn on_snapshot(&mut self, snapshot: &crate::snapshot::Snapshot) {
        self.0.snapshot_changed(snapshot);
    }
}
