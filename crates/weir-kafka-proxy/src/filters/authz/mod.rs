//! Topic-level authorization of Kafka requests, enforced in the sidecar.
//!
//! Every request is read in place ([`weir_wire::resources`]) for the resources it names, and
//! each is mapped onto the operation Kafka's own authorizer would check ([`need`]). All
//! allowed, the very same bytes go upstream. Otherwise [`answers`] either answers locally
//! with the error codes a broker would use, or forwards the request stripped of its denied
//! parts and merges their errors back into the broker's response, so the allowed parts are
//! still served. Metadata and ListGroups are filtered on the way back, so a client never sees
//! the topics and groups it may not describe.
//!
//! The policy is consulted through a [`PrincipalPolicy`] narrowed to the connection's
//! principal; a new policy (a new configuration snapshot) reaches the connection at its next
//! request.

mod answers;
mod filter;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;
use weir_core::audit::AuthorizationEvent;
use weir_core::policy::{Operation, Policy, PrincipalPolicy, ResourceType, ANONYMOUS};

use crate::vocabulary::*;
use weir_wire::message::{MessageError, ResponseMessage};
use weir_wire::resources::{scan_request_resources, Named, RequestFacts};
use weir_wire::scan::TopicRef;
use weir_wire::RequestHeaderPeek;

use weir_core::audit::AuditLog;
use weir_wire::scan::ScanError;

use crate::metrics::KafkaMetrics;
use crate::topic_ids::TopicIds;

/// What authorization needs of the sidecar: topic names for ids, where denials are counted
/// and audited. Narrow on purpose, so the policy is testable without sockets.
pub(crate) struct AuthzEnv<'a> {
    pub topic_ids: &'a Arc<TopicIds>,
    pub metrics: &'a KafkaMetrics,
    pub audit: Option<&'a AuditLog>,
}

/// Why a request cannot be authorized: the session closes the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthzError {
    #[error("malformed request: {0}")]
    BadRequest(MessageError),
    #[error(transparent)]
    BadRequestBody(ScanError),
    #[error("{api:?} denied by policy ({operation} on {resource}) and it has no partial answer")]
    Denied { api: ApiKey, operation: &'static str, resource: String },
}

/// What the session does with a request after authorization.
pub(crate) enum Verdict {
    /// Everything it names is allowed: forward the same bytes.
    Forward,
    /// Forward the same bytes and pass the response through this step.
    Filter(AfterResponse),
    /// Forward this request instead (denied parts removed), then apply the step, if any.
    Rewritten(Bytes, Option<AfterResponse>),
    /// Answer locally with this response frame.
    Answer(Bytes),
    /// Denied entirely and no response is expected (`acks=0` produce).
    Drop,
    /// It names topic ids whose names the sidecar has not learned: nothing can be decided
    /// until they are looked up (then `check` again, with `ids_looked_up`).
    Unresolved(Vec<Uuid>),
}

type ResponseChange = Box<dyn FnOnce(&mut ResponseMessage) -> Result<(), MessageError> + Send + Sync>;
type TopicIdReader = Box<dyn Fn(&mut ResponseMessage) -> Result<Vec<Uuid>, MessageError> + Send + Sync>;

/// A change to the broker's response: denied parts merged back, or entries filtered.
pub(crate) struct AfterResponse {
    change: ResponseChange,
    /// Reads the topic ids of the response that `change` judges by name: they are looked up
    /// first when unknown.
    topic_ids: Option<TopicIdReader>,
}

impl AfterResponse {
    pub(crate) fn apply(self, message: &mut ResponseMessage) -> Result<(), MessageError> {
        (self.change)(message)
    }

    /// Applies the change to a whole response frame.
    #[cfg(test)]
    pub(crate) fn apply_to(self, frame: Bytes, key: ApiKey, version: i16) -> Result<Bytes, MessageError> {
        let mut message = ResponseMessage::new(frame, key, version);
        self.apply(&mut message)?;
        message.into_frame()
    }

    /// The topic ids in the response that the change needs named.
    pub(crate) fn topic_ids(&self, message: &mut ResponseMessage) -> Result<Vec<Uuid>, MessageError> {
        self.topic_ids.as_ref().map_or(Ok(Vec::new()), |read| read(message))
    }
}

/// What a request needs for one resource it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    pub resource: ResourceType,
    pub operation: Operation,
}

const fn need(resource: ResourceType, operation: Operation) -> Need {
    Need { resource, operation }
}

/// The operation Kafka's authorizer checks for each resource a request names (after
/// `KafkaApis`). `None`: the name needs no check of its own.
pub(crate) fn need_for(api: ApiKey, version: i16, named: &Named<'_>) -> Option<Need> {
    use crate::vocabulary::{ALTER, ALTER_CONFIGS, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS, READ, WRITE};
    use crate::vocabulary::{CLUSTER, GROUP as G, TOPIC as T, TRANSACTIONAL_ID as TX};
    use ApiKey::*;
    let needed = match (api, named) {
        (Produce, Named::Topic(_)) => need(T, WRITE),
        (Produce, Named::TransactionalId(_)) => need(TX, WRITE),
        (Fetch | OffsetCommit | TxnOffsetCommit | DescribeProducers | OffsetDelete, Named::Topic(_)) => need(T, READ),
        (ListOffsets | Metadata | OffsetFetch | OffsetForLeaderEpoch | DescribeTopicPartitions, Named::Topic(_)) => {
            need(T, DESCRIBE)
        }
        (ConsumerGroupHeartbeat | ShareGroupHeartbeat, Named::Topic(_)) => need(T, DESCRIBE),
        (ShareFetch | ShareAcknowledge, Named::Topic(_)) => need(T, READ),
        (ShareGroupHeartbeat | ShareFetch | ShareAcknowledge, Named::Group(_)) => need(G, READ),
        (ShareGroupDescribe, Named::Group(_)) => need(G, DESCRIBE),
        // KIP-932 offset administration, as KafkaApis.handle{Describe,Alter,Delete}ShareGroupOffsetsRequest.
        (DescribeShareGroupOffsets, Named::Group(_)) => need(G, DESCRIBE),
        (DescribeShareGroupOffsets, Named::Topic(_)) => need(T, DESCRIBE),
        (AlterShareGroupOffsets, Named::Group(_)) => need(G, READ),
        (DeleteShareGroupOffsets, Named::Group(_)) => need(G, DELETE),
        (AlterShareGroupOffsets | DeleteShareGroupOffsets, Named::Topic(_)) => need(T, READ),
        (CreateTopics, Named::Topic(_)) => need(T, CREATE),
        (DeleteTopics | DeleteRecords, Named::Topic(_)) => need(T, DELETE),
        (CreatePartitions, Named::Topic(_)) => need(T, ALTER),
        (AddPartitionsToTxn, Named::Topic(_)) if version <= 3 => need(T, WRITE),
        (AddPartitionsToTxn, _) if version > 3 => need(CLUSTER, ALTER), // broker-to-broker batching
        (
            OffsetCommit
            | JoinGroup
            | Heartbeat
            | LeaveGroup
            | SyncGroup
            | ConsumerGroupHeartbeat
            | AddOffsetsToTxn
            | TxnOffsetCommit,
            Named::Group(_),
        ) => need(G, READ),
        (OffsetFetch | DescribeGroups | ConsumerGroupDescribe, Named::Group(_)) => need(G, DESCRIBE),
        (DeleteGroups | OffsetDelete, Named::Group(_)) => need(G, DELETE),
        (
            InitProducerId | AddPartitionsToTxn | AddOffsetsToTxn | EndTxn | TxnOffsetCommit,
            Named::TransactionalId(_),
        ) => need(TX, WRITE),
        (DescribeTransactions, Named::TransactionalId(_)) => need(TX, DESCRIBE),
        (FindCoordinator, Named::CoordinatorKey { key_type: 1, .. }) => need(TX, DESCRIBE),
        (FindCoordinator, Named::CoordinatorKey { .. }) => need(G, DESCRIBE),
        (DescribeConfigs, Named::ConfigResource { resource_type, .. }) => {
            need(config_type(*resource_type), DESCRIBE_CONFIGS)
        }
        (AlterConfigs | IncrementalAlterConfigs, Named::ConfigResource { resource_type, .. }) => {
            need(config_type(*resource_type), ALTER_CONFIGS)
        }
        _ => return None,
    };
    Some(needed)
}

/// Config resource types: 2 topic, 32 group; brokers, loggers and client metrics are the cluster.
fn config_type(resource_type: i8) -> ResourceType {
    match resource_type {
        2 => TOPIC,
        32 => GROUP,
        _ => CLUSTER,
    }
}

/// For requests that name nothing: what they need of the cluster, if anything.
fn cluster_need(api: ApiKey) -> Option<Operation> {
    use ApiKey::*;
    match api {
        ApiVersions | SaslHandshake | SaslAuthenticate | GetTelemetrySubscriptions | PushTelemetry => None,
        // Filtered on the way back instead.
        ListGroups => None,
        DescribeCluster
        | DescribeAcls
        | DescribeLogDirs
        | DescribeQuorum
        | ListPartitionReassignments
        | DescribeUserScramCredentials
        | ListTransactions => Some(DESCRIBE),
        DescribeClientQuotas | ListConfigResources => Some(DESCRIBE_CONFIGS),
        AlterClientQuotas => Some(ALTER_CONFIGS),
        _ => Some(ALTER),
    }
}

/// One connection's view of the policy.
pub(crate) struct ConnectionAuthz {
    /// The policy of the current snapshot; none: authorization is off and every request passes.
    policy: Option<Arc<Policy>>,
    principal: Option<String>,
    /// `policy` narrowed to `principal`.
    view: Arc<PrincipalPolicy>,
    decided: DecisionCache,
    /// Set when the policy changed: an open fetch session may hold partitions that are now
    /// denied, so the next incremental Fetch is turned into a full one.
    reset_fetch_session: bool,
    client: SocketAddr,
    listener: String,
}

/// A denied part of a request, for the audit log and metrics.
struct Denial {
    need: Need,
    name: String,
}

impl ConnectionAuthz {
    pub(crate) fn new(
        policy: Option<Arc<Policy>>,
        principal: Option<&str>,
        client: SocketAddr,
        listener: &str,
    ) -> Self {
        let view = Arc::new(policy.clone().unwrap_or_default().for_principal(principal));
        Self {
            policy,
            principal: principal.map(str::to_owned),
            view,
            decided: DecisionCache::default(),
            reset_fetch_session: false,
            client,
            listener: listener.to_owned(),
        }
    }

    /// Whether a policy is in force.
    pub(crate) fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    /// The client authenticated (SASL) after the connection opened.
    pub(crate) fn set_principal(&mut self, principal: &str) {
        self.principal = Some(principal.to_owned());
        self.view = Arc::new(self.policy.clone().unwrap_or_default().for_principal(Some(principal)));
        self.decided = DecisionCache::default();
    }

    /// A new snapshot arrived: a changed policy applies from the next request on.
    pub(crate) fn set_policy(&mut self, policy: Option<&Arc<Policy>>) {
        let same = match (&self.policy, policy) {
            (Some(old), Some(new)) => Arc::ptr_eq(old, new),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.policy = policy.cloned();
        self.view = Arc::new(self.policy.clone().unwrap_or_default().for_principal(self.principal.as_deref()));
        self.decided = DecisionCache::default();
        self.reset_fetch_session = true;
    }

    /// Decides what happens to one request. A topic id whose name is unknown is never judged
    /// by its text: first the ids are handed back to be looked up (`Unresolved`); once
    /// `ids_looked_up`, one still unknown is denied (answered as an unknown topic id).
    pub(crate) fn check(
        &mut self,
        env: &AuthzEnv<'_>,
        frame: &Bytes,
        peek: &RequestHeaderPeek,
        ids_looked_up: bool,
    ) -> Result<Verdict, AuthzError> {
        let (api, version) = (peek.api_key, peek.api_version);
        let body = frame.get(peek.body_offset..).unwrap_or_default();
        let view = &*self.view;
        let decided = &mut self.decided;
        let mut denials = Vec::new();
        let mut unresolved = Vec::new();
        let mut deny = |need: Need, name: &str| denials.push(Denial { need, name: name.to_owned() });
        let mut check = |named: Named<'_>| {
            let Some(needed) = need_for(api, version, &named) else { return };
            let allowed = match named {
                Named::Topic(TopicRef::Id(id)) => match decided.decide_topic_id(env, view, needed, &id, api) {
                    Some(decision) => decision,
                    None if ids_looked_up => false,
                    None => {
                        unresolved.push(Uuid::from_bytes(id));
                        return;
                    }
                },
                _ => decided.decide(view, needed, &resource_name(env, &named), api),
            };
            if !allowed {
                deny(needed, &resource_name(env, &named));
            }
        };
        let facts = if api == ApiKey::Produce {
            weir_wire::produce::scan_produce_names(body, version, &mut check).map_err(AuthzError::BadRequestBody)?;
            Some(RequestFacts::default())
        } else {
            scan_request_resources(body, api, version, &mut check).map_err(AuthzError::BadRequestBody)?
        };
        if !unresolved.is_empty() {
            return Ok(Verdict::Unresolved(unresolved));
        }
        if facts.is_none() {
            if let Some(operation) = cluster_need(api) {
                let needed = need(CLUSTER, operation);
                if !view.allows(CLUSTER, CLUSTER_NAME, operation) {
                    deny(needed, CLUSTER_NAME);
                }
            }
        }
        if api == ApiKey::InitProducerId && !has_transactional_id(body, version)? {
            // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
            let operation = IDEMPOTENT_WRITE;
            if !view.allows(CLUSTER, CLUSTER_NAME, operation) && !view.allows_any(TOPIC, WRITE) {
                deny(need(CLUSTER, operation), CLUSTER_NAME);
            }
        }
        for denial in &denials {
            self.record(env, api, peek.client_id_str(), denial);
        }
        let facts = facts.unwrap_or_default();
        let ctx = answers::Ctx { env, frame, peek, view: &self.view, facts };
        if denials.is_empty() {
            return Ok(match api {
                ApiKey::Fetch if std::mem::take(&mut self.reset_fetch_session) => answers::fetch(&ctx, true)?,
                _ => answers::filter_only(&ctx)?,
            });
        }
        if api == ApiKey::Fetch {
            self.reset_fetch_session = false;
        }
        let denied = &denials[0];
        answers::deny(&ctx).and_then(|verdict| {
            verdict.ok_or_else(|| AuthzError::Denied {
                api,
                operation: KAFKA.operation_name(denied.need.operation),
                resource: format!("{}:{}", KAFKA.resource_type_name(denied.need.resource), denied.name),
            })
        })
    }

    fn record(&self, env: &AuthzEnv<'_>, api: ApiKey, client_id: &str, denial: &Denial) {
        let principal = self.principal.as_deref().unwrap_or(ANONYMOUS);
        let (operation, resource_type) =
            (KAFKA.operation_name(denial.need.operation), KAFKA.resource_type_name(denial.need.resource));
        tracing::debug!(principal, ?api, operation, resource_type, resource = %denial.name, "denied by policy");
        env.metrics.denied(principal, operation, resource_type);
        let direction = match (denial.need.resource, denial.need.operation) {
            (TOPIC, WRITE) => Some(weir_core::control::FlowDirection::Produce),
            (TOPIC, READ) => Some(weir_core::control::FlowDirection::Consume),
            _ => None,
        };
        if let Some(direction) = direction {
            let flow = env.metrics.flows.counters(principal, client_id, &denial.name, direction);
            flow.deny();
        }
        if let Some(audit) = env.audit {
            audit.authorization(&AuthorizationEvent {
                principal,
                api: &format!("{api:?}"),
                operation,
                resource_type,
                resource: &denial.name,
                client: self.client,
                listener: &self.listener,
            });
        }
    }
}

/// The decision for one resource; cluster-wide grants cover topic creation, as in Kafka.
fn allows(view: &PrincipalPolicy, needed: Need, name: &str, api: ApiKey) -> bool {
    if view.allows(needed.resource, name, needed.operation) {
        return true;
    }
    api == ApiKey::CreateTopics && view.allows(CLUSTER, CLUSTER_NAME, CREATE)
}

/// The name a policy matches, or the audit shows: topic ids are resolved through the names
/// learned (an unknown id stays its text form, for the audit only: no decision is taken on it).
fn resource_name<'a>(env: &AuthzEnv<'_>, named: &Named<'a>) -> Cow<'a, str> {
    match named {
        Named::Topic(TopicRef::Name(name))
        | Named::Group(name)
        | Named::TransactionalId(name)
        | Named::CoordinatorKey { key: name, .. }
        | Named::ConfigResource { name, .. } => Cow::Borrowed(name),
        Named::Topic(TopicRef::Id(id)) => Cow::Owned(env.topic_ids.name_or_id(&Uuid::from_bytes(*id)).to_string()),
    }
}

/// Most connections name the same few topics and groups request after request; their
/// decisions are kept until the policy changes, so a large policy costs one scan per name.
#[derive(Default)]
struct DecisionCache {
    /// Per resource type: name → (operations decided, operations allowed), as bit sets.
    by_type: [HashMap<Box<str>, (u16, u16)>; 4],
    /// Topics named by id (Fetch v13+, Produce v13): decisions for ids whose name is known,
    /// so the hot path resolves no name. Unknown ids are not cached: their name may arrive.
    topic_ids: HashMap<[u8; 16], (u16, u16)>,
}

/// Names remembered per resource type before the cache starts over.
const CACHE_LIMIT: usize = 4096;

impl DecisionCache {
    /// The decision for a topic named by id; `None` when its name is not known.
    fn decide_topic_id(
        &mut self,
        env: &AuthzEnv<'_>,
        view: &PrincipalPolicy,
        needed: Need,
        id: &[u8; 16],
        api: ApiKey,
    ) -> Option<bool> {
        let bit = 1u16 << needed.operation.0;
        if let Some((known, allowed)) = self.topic_ids.get(id) {
            if known & bit != 0 {
                return Some(allowed & bit != 0);
            }
        }
        let name = env.topic_ids.name(&Uuid::from_bytes(*id))?;
        let decision = self.decide(view, needed, &name, api);
        if self.topic_ids.len() >= CACHE_LIMIT {
            self.topic_ids.clear();
        }
        let entry = self.topic_ids.entry(*id).or_default();
        entry.0 |= bit;
        if decision {
            entry.1 |= bit;
        }
        Some(decision)
    }

    fn decide(&mut self, view: &PrincipalPolicy, needed: Need, name: &str, api: ApiKey) -> bool {
        let map = &mut self.by_type[usize::from(needed.resource.0)];
        let bit = 1u16 << needed.operation.0;
        if let Some((known, allowed)) = map.get(name) {
            if known & bit != 0 {
                return allowed & bit != 0;
            }
        }
        let decision = allows(view, needed, name, api);
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        let entry = map.entry(name.into()).or_default();
        entry.0 |= bit;
        if decision {
            entry.1 |= bit;
        }
        decision
    }
}

/// InitProducerId's transactional id is its first field (nullable string).
fn has_transactional_id(body: &[u8], version: i16) -> Result<bool, AuthzError> {
    let mut named = false;
    scan_request_resources(body, ApiKey::InitProducerId, version, |n| {
        named |= matches!(n, Named::TransactionalId(_));
    })
    .map_err(AuthzError::BadRequestBody)?;
    Ok(named)
}
