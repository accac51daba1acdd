//! The topics, groups, transactional ids and config resources a client request names, read in
//! place for authorization, without allocation and without trust in declared lengths.
//!
//! The reading is the schema walk ([`crate::schema::walk`]) over the request's generated table,
//! which visits every array (nested ones too, each bounded by the bytes left) and skips every
//! field and tagged field at its exact width, so the proxy may fully decode an accepted body
//! afterwards with a decoder that pre-allocates declared lengths. What is written here is only
//! which requests Weir authorizes resource by resource, and how their named fields combine into
//! resources. Bytes after the last field are ignored, as brokers ignore them.

use kafka_protocol::messages::ApiKey;

use crate::scan::{ScanError, TopicRef};
use crate::schema::{self, Entity, Value, Visitor};

/// A resource a client request names, as read in place from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    Topic(TopicRef<'a>),
    Group(&'a str),
    TransactionalId(&'a str),
    /// FindCoordinator: key_type 0 = group, 1 = transaction, 2 = share group (v0 has no
    /// key_type: 0).
    CoordinatorKey {
        key_type: i8,
        key: &'a str,
    },
    /// Describe/Alter/IncrementalAlterConfigs: resource_type 2 topic, 4 broker, 8 broker logger,
    /// 16 client metrics, 32 group.
    ConfigResource {
        resource_type: i8,
        name: &'a str,
    },
}

/// Request-level facts beside the names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request covers every topic: Metadata with a null topic list (or an empty one at v0),
    /// OffsetFetch with a null topic list (all committed offsets of the group),
    /// DescribeShareGroupOffsets with a null topic list for some group (all its offsets),
    /// DescribeTopicPartitions with an empty topic list.
    pub all_topics: bool,
    /// Metadata v4+: allow_auto_topic_creation (v0-3: true, as the broker assumes).
    pub allow_auto_topic_creation: bool,
}

/// Walks `body` (the request body: the bytes after the request header, i.e.
/// `&frame[peek.body_offset..]`) of `api_key` at `version`, calling `visit` for every resource it
/// names, in wire order.
///
/// Returns Ok(None) when `api_key` is not authorized resource by resource (the caller then
/// applies its default rule: the cluster), Ok(Some(facts)) when the whole body was walked, Err
/// for a malformed body and for a version Kafka's specs do not define. Requests whose only
/// resource is the cluster but which the caller may decode are walked too (and so refused when
/// malformed) before their Ok(None).
pub fn scan_request_resources<'a>(
    body: &'a [u8],
    api_key: ApiKey,
    version: i16,
    visit: impl FnMut(Named<'a>),
) -> Result<Option<RequestFacts>, ScanError> {
    walk_request(body, api_key, version, visit).map(|walked| walked.map(|(facts, _)| facts))
}

/// The walk; Ok(Some((facts, bytes walked))) for a key this module reads.
fn walk_request<'a>(
    body: &'a [u8],
    api_key: ApiKey,
    version: i16,
    visit: impl FnMut(Named<'a>),
) -> Result<Option<(RequestFacts, usize)>, ScanError> {
    let cluster_only = names_only_the_cluster(api_key);
    if !(names_resources(api_key) || cluster_only) {
        return Ok(None);
    }
    let Some(spec) = schema::request(api_key as i16) else {
        return Ok(None);
    };
    let mut reader = Resources::new(api_key, version, visit);
    reader.cluster_only = cluster_only;
    let walked = schema::walk_body(body, spec, version, &mut reader)?;
    let facts = reader.finish();
    Ok((!cluster_only).then_some((facts, walked)))
}

/// [`scan_request_resources`], refusing bytes left after the walk: in tests, trailing bytes
/// mean the walker and the reference encoder disagree on the schema. On the wire they are
/// tolerated, as brokers and the codec's decoder tolerate them (librdkafka 2.x sends three
/// after a Metadata v13 request).
#[cfg(test)]
fn scan_request_resources_strict<'a>(
    body: &'a [u8],
    api_key: ApiKey,
    version: i16,
    visit: impl FnMut(Named<'a>),
) -> Result<Option<RequestFacts>, ScanError> {
    let mut walked = 0;
    let mut count = |n| walked = n;
    let facts = match walk_request(body, api_key, version, visit)? {
        Some((facts, n)) => {
            count(n);
            Some(facts)
        }
        None if names_only_the_cluster(api_key) => {
            // Walked, but reported like an unknown key: measure the walk again.
            let spec = schema::request(api_key as i16).expect("a spec");
            count(schema::walk_body(body, spec, version, &mut ())?);
            None
        }
        None => return Ok(None),
    };
    if walked != body.len() {
        return Err(ScanError { message: "request", version, offset: walked, what: "trailing bytes" });
    }
    Ok(facts)
}

/// The requests Weir authorizes resource by resource (the others: the cluster).
fn names_resources(api_key: ApiKey) -> bool {
    use ApiKey::*;
    matches!(
        api_key,
        Fetch
            | ListOffsets
            | Metadata
            | OffsetCommit
            | OffsetFetch
            | FindCoordinator
            | JoinGroup
            | Heartbeat
            | LeaveGroup
            | SyncGroup
            | DescribeGroups
            | CreateTopics
            | DeleteTopics
            | DeleteRecords
            | InitProducerId
            | OffsetForLeaderEpoch
            | AddPartitionsToTxn
            | AddOffsetsToTxn
            | EndTxn
            | TxnOffsetCommit
            | DescribeConfigs
            | AlterConfigs
            | CreatePartitions
            | DeleteGroups
            | IncrementalAlterConfigs
            | OffsetDelete
            | DescribeProducers
            | DescribeTransactions
            | ConsumerGroupHeartbeat
            | ConsumerGroupDescribe
            | ShareGroupHeartbeat
            | ShareGroupDescribe
            | ShareFetch
            | ShareAcknowledge
            | DescribeShareGroupOffsets
            | AlterShareGroupOffsets
            | DeleteShareGroupOffsets
            | DescribeTopicPartitions
    )
}

/// Cluster administration requests whose only resource is the cluster, but whose denial is
/// answered item by item (one error per ACL, quota entity, user or partition), so the proxy
/// decodes them: they are walked for their bounds and reported like unknown keys (`Ok(None)`).
fn names_only_the_cluster(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::CreateAcls
            | ApiKey::DeleteAcls
            | ApiKey::ElectLeaders
            | ApiKey::AlterClientQuotas
            | ApiKey::AlterUserScramCredentials
            | ApiKey::AlterReplicaLogDirs
    )
}

/// Turns the named fields the walk reports into resources. Fields that together name one
/// resource sit side by side in the wire order, so a pending half waits for its other half:
/// a topic's name and id (Metadata v10+, DeleteTopics v6+: the name when there is one, else the
/// id), a coordinator key and its type, a config resource's type and name.
struct Resources<'a, F> {
    api_key: ApiKey,
    version: i16,
    visit: F,
    facts: RequestFacts,
    /// Walked for bounds only: nothing is reported.
    cluster_only: bool,
    topic_name: Option<Option<&'a str>>,
    topic_id: Option<[u8; 16]>,
    coordinator_key: Option<&'a str>,
    key_type: Option<i8>,
    resource_type: i8,
}

impl<'a, F: FnMut(Named<'a>)> Resources<'a, F> {
    fn new(api_key: ApiKey, version: i16, visit: F) -> Self {
        let facts = RequestFacts { all_topics: false, allow_auto_topic_creation: api_key == ApiKey::Metadata };
        Self {
            api_key,
            version,
            visit,
            facts,
            cluster_only: false,
            topic_name: None,
            topic_id: None,
            coordinator_key: None,
            key_type: None,
            resource_type: 0,
        }
    }

    fn flush_topic(&mut self) {
        let name = self.topic_name.take().flatten();
        let id = self.topic_id.take();
        if let Some(topic) = name.map(TopicRef::Name).or(id.map(TopicRef::Id)) {
            (self.visit)(Named::Topic(topic));
        }
    }

    fn finish(mut self) -> RequestFacts {
        self.flush_topic();
        // FindCoordinator v0: a key and no type (a group).
        if let Some(key) = self.coordinator_key.take() {
            (self.visit)(Named::CoordinatorKey { key_type: 0, key });
        }
        self.facts
    }
}

impl<'a, F: FnMut(Named<'a>)> Visitor<'a> for Resources<'a, F> {
    fn value(&mut self, entity: Entity, value: Value<'a>) {
        if self.cluster_only {
            return;
        }
        if !matches!(entity, Entity::TopicName | Entity::TopicId) {
            self.flush_topic();
        }
        match (entity, value) {
            // A second name (or id) means the first one's topic is complete.
            (Entity::TopicName, Value::Str(name)) => {
                if self.topic_name.is_some() {
                    self.flush_topic();
                }
                self.topic_name = Some(name);
            }
            (Entity::TopicId, Value::Uuid(id)) => {
                if self.topic_id.is_some() {
                    self.flush_topic();
                }
                self.topic_id = Some(id);
            }
            (Entity::Topics, Value::Array(len)) => {
                let everything_when_empty = (self.api_key == ApiKey::Metadata && self.version == 0)
                    || self.api_key == ApiKey::DescribeTopicPartitions;
                if len.is_none() || (len == Some(0) && everything_when_empty) {
                    self.facts.all_topics = true;
                }
            }
            (Entity::GroupId, Value::Str(Some(group))) => (self.visit)(Named::Group(group)),
            (Entity::TransactionalId, Value::Str(Some(id))) => (self.visit)(Named::TransactionalId(id)),
            (Entity::CoordinatorKey, Value::Str(Some(key))) => match self.key_type {
                Some(key_type) => (self.visit)(Named::CoordinatorKey { key_type, key }),
                None => self.coordinator_key = Some(key),
            },
            (Entity::CoordinatorKeyType, Value::Int(t)) => {
                let key_type = t as i8;
                self.key_type = Some(key_type);
                if let Some(key) = self.coordinator_key.take() {
                    (self.visit)(Named::CoordinatorKey { key_type, key });
                }
            }
            (Entity::ConfigResourceType, Value::Int(t)) => self.resource_type = t as i8,
            (Entity::ConfigResourceName, Value::Str(Some(name))) => {
                (self.visit)(Named::ConfigResource { resource_type: self.resource_type, name })
            }
            (Entity::AutoCreateTopics, Value::Bool(allow)) => self.facts.allow_auto_topic_creation = allow,
            _ => {}
        }
    }

    fn end_struct(&mut self) {
        self.flush_topic();
    }
}

#[cfg(test)]
mod tests;
