//! The answers to denied requests, at every version a client may use: what is forwarded, what
//! comes back, and in which shape. (The real-cluster tests in crates/weir/tests/authz.rs cover
//! the common paths end to end.)

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use weir_core::policy::Policy;
use weir_wire::message::{decode_response, encode_response};
use weir_wire::RequestHeaderPeek;

use super::{AuthzEnv, AuthzError, ConnectionAuthz, Verdict};
use crate::filter::testing::request;
use crate::metrics::KafkaMetrics;
use crate::topic_ids::TopicIds;

mod share;

const PRINCIPAL: &str = "svc";
const POLICY: &str = "rules:
  - {effect: allow, principals: [svc], resources: ['topic:ok', 'group:g-ok', 'transactional-id:tx-ok'], operations: [all]}
";

/// A policy and what authorization needs around it; no sidecar, no sockets.
struct Setup {
    topic_ids: Arc<TopicIds>,
    metrics: KafkaMetrics,
    policy: Arc<Policy>,
}

fn policy(text: &str) -> Arc<Policy> {
    Arc::new(Policy::parse(text, std::path::Path::new("policy.yaml"), &crate::vocabulary::KAFKA).unwrap())
}

impl Setup {
    async fn new(_name: &str) -> Self {
        let metrics = KafkaMetrics::register(&mut prometheus_client::registry::Registry::default());
        Self { topic_ids: Arc::default(), metrics, policy: policy(POLICY) }
    }

    fn connection(&self) -> ConnectionAuthz {
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        ConnectionAuthz::new(Some(self.policy.clone()), Some(PRINCIPAL), client, "bootstrap")
    }

    fn check<T: Encodable>(&self, conn: &mut ConnectionAuthz, key: ApiKey, version: i16, body: &T) -> Verdict {
        self.try_check(conn, key, version, body).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))
    }

    fn try_check<T: Encodable>(
        &self,
        conn: &mut ConnectionAuthz,
        key: ApiKey,
        version: i16,
        body: &T,
    ) -> Result<Verdict, AuthzError> {
        let frame = request(key, version, body);
        let peek = RequestHeaderPeek::parse(&frame).unwrap();
        let env = AuthzEnv { topic_ids: &self.topic_ids, metrics: &self.metrics, audit: None };
        conn.check(&env, &frame, &peek, true)
    }
}

fn decode_forwarded<T: Decodable>(frame: &Bytes) -> T {
    let peek = RequestHeaderPeek::parse(frame).unwrap();
    assert_eq!(peek.correlation_id, 42, "the forwarded request keeps the client's header");
    weir_wire::message::decode_request(frame, &peek).unwrap()
}

fn answer<T: Decodable>(verdict: Verdict, key: ApiKey, version: i16) -> T {
    match verdict {
        Verdict::Answer(frame) => {
            let (header, body) = decode_response(&frame, key, version).unwrap();
            assert_eq!(header.correlation_id, 42);
            body
        }
        _ => panic!("{key:?} v{version}: expected a local answer"),
    }
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

fn versions<T: Message>() -> std::ops::RangeInclusive<i16> {
    T::VERSIONS.min..=T::VERSIONS.max
}

#[tokio::test]
async fn produce_serves_the_allowed_topics_and_merges_errors_for_the_rest() {
    let s = Setup::new("produce").await;
    let ids = [(topic("ok"), uuid::Uuid::from_u128(1)), (topic("secret"), uuid::Uuid::from_u128(2))];
    s.topic_ids.learn(
        &MetadataResponse::default().with_topics(
            ids.iter()
                .map(|(name, id)| {
                    metadata_response::MetadataResponseTopic::default().with_name(Some(name.clone())).with_topic_id(*id)
                })
                .collect(),
        ),
    );
    for version in versions::<ProduceRequest>() {
        let by_id = version >= 13;
        let data = |(name, id): &(TopicName, uuid::Uuid)| {
            let t = produce_request::TopicProduceData::default().with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from_static(b"x"))),
                produce_request::PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(Bytes::from_static(b"y"))),
            ]);
            if by_id {
                t.with_topic_id(*id)
            } else {
                t.with_name(name.clone())
            }
        };
        let body = ProduceRequest::default().with_acks(-1).with_topic_data(ids.iter().map(data).collect());
        let mut conn = s.connection();
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, ApiKey::Produce, version, &body) else {
            panic!("v{version}: expected a rewritten request");
        };
        let forwarded: ProduceRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.topic_data, vec![data(&ids[0])], "v{version}: only the allowed topic goes upstream");
        assert_eq!(forwarded.topic_data[0].partition_data[0].records, Some(Bytes::from_static(b"x")));

        let broker = ProduceResponse::default().with_responses(vec![{
            let t = produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default().with_index(0).with_base_offset(7),
            ]);
            if by_id {
                t.with_topic_id(ids[0].1)
            } else {
                t.with_name(ids[0].0.clone())
            }
        }]);
        let merged = after
            .apply_to(encode_response(42, ApiKey::Produce, version, &broker).unwrap(), ApiKey::Produce, version)
            .unwrap();
        let (_, merged): (_, ProduceResponse) = decode_response(&merged, ApiKey::Produce, version).unwrap();
        assert_eq!(merged.responses.len(), 2, "v{version}");
        assert_eq!(merged.responses[0].partition_responses[0].base_offset, 7);
        let denied = &merged.responses[1];
        assert!(if by_id { denied.topic_id == ids[1].1 } else { denied.name == ids[1].0 }, "v{version}");
        let codes: Vec<i16> = denied.partition_responses.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, [29, 29], "v{version}");

        // Fire-and-forget: nothing to answer, the denied records are simply not forwarded.
        let only_denied = ProduceRequest::default().with_acks(0).with_topic_data(vec![data(&ids[1])]);
        assert!(matches!(s.check(&mut conn, ApiKey::Produce, version, &only_denied), Verdict::Drop), "v{version}");
        // A transactional id outside the policy denies the whole request.
        let txn = body.clone().with_transactional_id(Some(StrBytes::from_static_str("tx-other").into()));
        let response: ProduceResponse =
            answer(s.check(&mut conn, ApiKey::Produce, version, &txn), ApiKey::Produce, version);
        assert!(response.responses.iter().flat_map(|t| &t.partition_responses).all(|p| p.error_code == 53));
    }
}

#[tokio::test]
async fn fetch_denied_entirely_is_answered_locally_at_every_version() {
    let s = Setup::new("fetch").await;
    for version in versions::<FetchRequest>() {
        let t = fetch_request::FetchTopic::default()
            .with_partitions(vec![fetch_request::FetchPartition::default().with_partition(3)]);
        let t = if version >= 13 { t.with_topic_id(uuid::Uuid::from_u128(99)) } else { t.with_topic(topic("secret")) };
        let body = FetchRequest::default().with_max_wait_ms(500).with_topics(vec![t]);
        let mut conn = s.connection();
        let response: FetchResponse = answer(s.check(&mut conn, ApiKey::Fetch, version, &body), ApiKey::Fetch, version);
        let partition = &response.responses[0].partitions[0];
        // An id the cluster could not name is an unknown topic id, never judged by its text.
        let expected = if version >= 13 { 100 } else { 29 };
        assert_eq!((partition.partition_index, partition.error_code), (3, expected), "v{version}");
    }
}

#[tokio::test]
async fn a_policy_change_closes_open_fetch_sessions() {
    let s = Setup::new("session").await;
    let mut conn = s.connection();
    let body = FetchRequest::default()
        .with_session_id(5)
        .with_session_epoch(3)
        .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic("ok"))]);
    assert!(matches!(s.check(&mut conn, ApiKey::Fetch, 12, &body), Verdict::Forward));
    conn.set_policy(Some(&s.policy));
    assert!(matches!(s.check(&mut conn, ApiKey::Fetch, 12, &body), Verdict::Forward), "the same policy again");
    let changed = policy(&format!(
        "{POLICY}  - {{effect: allow, principals: [svc], resources: ['topic:x'], operations: [read]}}\n"
    ));
    conn.set_policy(Some(&changed));
    let Verdict::Rewritten(frame, None) = s.check(&mut conn, ApiKey::Fetch, 12, &body) else {
        panic!("the session was not closed after the policy changed");
    };
    let forwarded: FetchRequest = decode_forwarded(&frame);
    assert_eq!((forwarded.session_id, forwarded.session_epoch), (5, -1));
    // Only once: the client's next (full) fetch is checked as usual.
    assert!(matches!(s.check(&mut conn, ApiKey::Fetch, 12, &body), Verdict::Forward));
}

#[tokio::test]
async fn metadata_hides_what_may_not_be_described_and_does_not_auto_create() {
    let s = Setup::new("metadata").await;
    let broker = |version: i16| {
        let topics = ["ok", "secret"]
            .map(|n| {
                metadata_response::MetadataResponseTopic::default()
                    .with_name(Some(topic(n)))
                    .with_partitions(vec![metadata_response::MetadataResponsePartition::default()])
            })
            .to_vec();
        encode_response(42, ApiKey::Metadata, version, &MetadataResponse::default().with_topics(topics)).unwrap()
    };
    for version in versions::<MetadataRequest>() {
        let mut conn = s.connection();
        // A listing of all topics (v1+; v0 lists all with an empty array).
        let all = MetadataRequest::default().with_topics(if version == 0 { Some(vec![]) } else { None });
        let Verdict::Filter(after) = s.check(&mut conn, ApiKey::Metadata, version, &all) else {
            panic!("v{version}: expected a filtered listing");
        };
        let (_, listed): (_, MetadataResponse) = decode_response(
            &after.apply_to(broker(version), ApiKey::Metadata, version).unwrap(),
            ApiKey::Metadata,
            version,
        )
        .unwrap();
        let names: Vec<_> = listed.topics.iter().map(|t| t.name.clone().unwrap().0.to_string()).collect();
        assert_eq!(names, ["ok"], "v{version}");

        // Named explicitly: the denied topic comes back as TOPIC_AUTHORIZATION_FAILED, and the
        // request no longer allows auto-creation (the client may not create it).
        let named = MetadataRequest::default()
            .with_topics(Some(
                ["ok", "secret"]
                    .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(topic(n))))
                    .to_vec(),
            ))
            .with_allow_auto_topic_creation(true);
        let after = match s.check(&mut conn, ApiKey::Metadata, version, &named) {
            Verdict::Rewritten(frame, Some(after)) if version >= 4 => {
                let forwarded: MetadataRequest = decode_forwarded(&frame);
                assert!(!forwarded.allow_auto_topic_creation, "v{version}");
                after
            }
            Verdict::Filter(after) if version < 4 => after,
            _ => panic!("v{version}: unexpected verdict"),
        };
        let (_, named): (_, MetadataResponse) = decode_response(
            &after.apply_to(broker(version), ApiKey::Metadata, version).unwrap(),
            ApiKey::Metadata,
            version,
        )
        .unwrap();
        let codes: Vec<_> =
            named.topics.iter().map(|t| (t.name.clone().unwrap().0.to_string(), t.error_code)).collect();
        assert_eq!(codes, [("ok".to_owned(), 0), ("secret".to_owned(), 29)], "v{version}");
        assert!(named.topics[1].partitions.is_empty());
    }
}

#[tokio::test]
async fn group_and_transaction_requests_get_their_own_error_codes() {
    let s = Setup::new("groups").await;
    let mut conn = s.connection();
    let group = |id: &'static str| GroupId(StrBytes::from_static_str(id));
    for version in versions::<FindCoordinatorRequest>() {
        let body = if version <= 3 {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g-other"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("g-other")])
        };
        let r: FindCoordinatorResponse =
            answer(s.check(&mut conn, ApiKey::FindCoordinator, version, &body), ApiKey::FindCoordinator, version);
        let code = if version <= 3 { r.error_code } else { r.coordinators[0].error_code };
        assert_eq!(code, 30, "v{version}");
    }
    for version in versions::<JoinGroupRequest>() {
        let body = JoinGroupRequest::default().with_group_id(group("g-other"));
        let r: JoinGroupResponse =
            answer(s.check(&mut conn, ApiKey::JoinGroup, version, &body), ApiKey::JoinGroup, version);
        assert_eq!(r.error_code, 30, "v{version}");
    }
    for version in versions::<OffsetFetchRequest>() {
        let topics = vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(topic("secret"))
            .with_partition_indexes(vec![0])];
        let body = if version <= 7 {
            OffsetFetchRequest::default().with_group_id(group("g-ok")).with_topics(Some(topics))
        } else {
            OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group("g-other"))
                .with_topics(None)])
        };
        let r: OffsetFetchResponse =
            answer(s.check(&mut conn, ApiKey::OffsetFetch, version, &body), ApiKey::OffsetFetch, version);
        let code = if version <= 7 { r.topics[0].partitions[0].error_code } else { r.groups[0].error_code };
        assert_eq!(code, if version <= 7 { 29 } else { 30 }, "v{version}");
    }
    for version in versions::<InitProducerIdRequest>() {
        let body = InitProducerIdRequest::default()
            .with_transactional_id(Some(StrBytes::from_static_str("tx-other").into()))
            .with_transaction_timeout_ms(1000);
        let r: InitProducerIdResponse =
            answer(s.check(&mut conn, ApiKey::InitProducerId, version, &body), ApiKey::InitProducerId, version);
        assert_eq!((r.error_code, i64::from(r.producer_id)), (53, -1), "v{version}");
    }
    // A request only brokers send has no answer here: the connection is closed, naming why.
    let err = s.try_check(&mut conn, ApiKey::AlterPartition, 3, &AlterPartitionRequest::default()).err().unwrap();
    assert!(err.to_string().contains("alter on cluster"), "{err}");
}

#[tokio::test]
async fn admin_requests_are_served_in_part() {
    let s = Setup::new("admin").await;
    let mut conn = s.connection();
    for version in versions::<CreateTopicsRequest>() {
        let body = CreateTopicsRequest::default().with_topics(
            ["ok", "secret"]
                .map(|n| create_topics_request::CreatableTopic::default().with_name(topic(n)).with_num_partitions(1))
                .to_vec(),
        );
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, ApiKey::CreateTopics, version, &body) else {
            panic!("v{version}: expected the allowed topic forwarded");
        };
        let forwarded: CreateTopicsRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.topics.len(), 1);
        let broker = CreateTopicsResponse::default()
            .with_topics(vec![create_topics_response::CreatableTopicResult::default().with_name(topic("ok"))]);
        let merged = after
            .apply_to(
                encode_response(42, ApiKey::CreateTopics, version, &broker).unwrap(),
                ApiKey::CreateTopics,
                version,
            )
            .unwrap();
        let (_, merged): (_, CreateTopicsResponse) = decode_response(&merged, ApiKey::CreateTopics, version).unwrap();
        let codes: Vec<_> = merged.topics.iter().map(|t| (t.name.0.to_string(), t.error_code)).collect();
        assert_eq!(codes, [("ok".to_owned(), 0), ("secret".to_owned(), 29)], "v{version}");
    }
    for version in versions::<DescribeConfigsRequest>() {
        let body = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("secret")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1")),
        ]);
        let r: DescribeConfigsResponse =
            answer(s.check(&mut conn, ApiKey::DescribeConfigs, version, &body), ApiKey::DescribeConfigs, version);
        let codes: Vec<_> = r.results.iter().map(|r| (r.resource_type, r.error_code)).collect();
        assert_eq!(codes, [(2, 29), (4, 31)], "v{version}");
    }
    for version in versions::<DeleteGroupsRequest>() {
        let body = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_static_str("g-x"))]);
        let r: DeleteGroupsResponse =
            answer(s.check(&mut conn, ApiKey::DeleteGroups, version, &body), ApiKey::DeleteGroups, version);
        assert_eq!(r.results[0].error_code, 30, "v{version}");
    }
}

#[tokio::test]
async fn cluster_administration_gets_cluster_authorization_failed() {
    let s = Setup::new("cluster").await;
    let mut conn = s.connection();
    for version in versions::<DescribeAclsRequest>() {
        let r: DescribeAclsResponse = answer(
            s.check(&mut conn, ApiKey::DescribeAcls, version, &DescribeAclsRequest::default()),
            ApiKey::DescribeAcls,
            version,
        );
        assert_eq!(r.error_code, 31, "v{version}");
    }
    for version in versions::<ListTransactionsRequest>() {
        let body = ListTransactionsRequest::default();
        let r: ListTransactionsResponse =
            answer(s.check(&mut conn, ApiKey::ListTransactions, version, &body), ApiKey::ListTransactions, version);
        assert_eq!(r.error_code, 31, "v{version}");
    }
    for version in versions::<AlterPartitionReassignmentsRequest>() {
        let body = AlterPartitionReassignmentsRequest::default();
        let key = ApiKey::AlterPartitionReassignments;
        let r: AlterPartitionReassignmentsResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        assert_eq!(r.error_code, 31, "v{version}");
    }
}

/// Cluster administration that names items gets one CLUSTER_AUTHORIZATION_FAILED per item, as
/// the broker answers, so admin clients fail each item with ClusterAuthorizationException.
#[tokio::test]
async fn cluster_administration_fails_every_item_it_names() {
    let s = Setup::new("cluster-items").await;
    let mut conn = s.connection();
    let text = StrBytes::from_static_str;
    for version in versions::<CreateAclsRequest>() {
        let acl =
            create_acls_request::AclCreation::default().with_resource_name(text("t")).with_principal(text("User:x"));
        let body = CreateAclsRequest::default().with_creations(vec![acl.clone(), acl]);
        let r: CreateAclsResponse =
            answer(s.check(&mut conn, ApiKey::CreateAcls, version, &body), ApiKey::CreateAcls, version);
        assert_eq!(r.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), [31, 31], "v{version}");
    }
    for version in versions::<DeleteAclsRequest>() {
        let body = DeleteAclsRequest::default().with_filters(vec![delete_acls_request::DeleteAclsFilter::default(); 3]);
        let r: DeleteAclsResponse =
            answer(s.check(&mut conn, ApiKey::DeleteAcls, version, &body), ApiKey::DeleteAcls, version);
        assert_eq!(r.filter_results.iter().map(|r| r.error_code).collect::<Vec<_>>(), [31, 31, 31], "v{version}");
    }
    for version in versions::<ElectLeadersRequest>() {
        let body = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default().with_topic(topic("ok")).with_partitions(vec![0, 3]),
        ]));
        let key = ApiKey::ElectLeaders;
        let r: ElectLeadersResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        assert_eq!(r.error_code, if version >= 1 { 31 } else { 0 }, "v{version}");
        let partitions: Vec<_> =
            r.replica_election_results[0].partition_result.iter().map(|p| (p.partition_id, p.error_code)).collect();
        assert_eq!(partitions, [(0, 31), (3, 31)], "v{version}");
        // All partitions (a null list): the top-level error alone.
        let all = ElectLeadersRequest::default().with_topic_partitions(None);
        let r: ElectLeadersResponse = answer(s.check(&mut conn, key, version, &all), key, version);
        assert!(r.replica_election_results.is_empty(), "v{version}");
    }
    for version in versions::<AlterClientQuotasRequest>() {
        use alter_client_quotas_request::*;
        let entity = |name| EntityData::default().with_entity_type(text("user")).with_entity_name(name);
        let body = AlterClientQuotasRequest::default().with_entries(vec![
            EntryData::default().with_entity(vec![entity(Some(text("alice")))]),
            EntryData::default().with_entity(vec![entity(None)]),
        ]);
        let key = ApiKey::AlterClientQuotas;
        let r: AlterClientQuotasResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        let entries: Vec<_> = r.entries.iter().map(|e| (e.error_code, e.entity[0].entity_name.clone())).collect();
        assert_eq!(entries, [(31, Some(text("alice"))), (31, None)], "v{version}");
    }
    for version in versions::<AlterUserScramCredentialsRequest>() {
        use alter_user_scram_credentials_request::*;
        let body = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![ScramCredentialDeletion::default().with_name(text("bob"))])
            .with_upsertions(vec![
                ScramCredentialUpsertion::default().with_name(text("alice")),
                ScramCredentialUpsertion::default().with_name(text("bob")),
            ]);
        let key = ApiKey::AlterUserScramCredentials;
        let r: AlterUserScramCredentialsResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        let users: Vec<_> = r.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
        assert_eq!(users, [("bob".to_owned(), 31), ("alice".to_owned(), 31)], "v{version}: one result per user");
    }
    for version in versions::<AlterReplicaLogDirsRequest>() {
        use alter_replica_log_dirs_request::*;
        let body = AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
            .with_path(text("/d"))
            .with_topics(vec![AlterReplicaLogDirTopic::default().with_name(topic("ok")).with_partitions(vec![1])])]);
        let key = ApiKey::AlterReplicaLogDirs;
        let r: AlterReplicaLogDirsResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        assert_eq!((r.results[0].topic_name.clone(), r.results[0].partitions[0].error_code), (topic("ok"), 31));
    }
    for version in versions::<DescribeLogDirsRequest>() {
        let key = ApiKey::DescribeLogDirs;
        let r: DescribeLogDirsResponse =
            answer(s.check(&mut conn, key, version, &DescribeLogDirsRequest::default()), key, version);
        assert_eq!(r.error_code, if version >= 3 { 31 } else { 0 }, "v{version}");
        assert!(r.results.is_empty(), "v{version}");
    }
}

/// Every cluster-level answer encodes at every version of its response.
#[test]
fn cluster_answers_encode_at_every_version() {
    fn all<R: Message + Encodable + Default>(key: ApiKey, with_error: fn(R) -> R) {
        for version in R::VERSIONS.min..=R::VERSIONS.max {
            encode_response(1, key, version, &with_error(R::default()))
                .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        }
    }
    all::<DescribeClientQuotasResponse>(ApiKey::DescribeClientQuotas, |r| r.with_error_code(31));
    all::<DescribeUserScramCredentialsResponse>(ApiKey::DescribeUserScramCredentials, |r| r.with_error_code(31));
    all::<DescribeQuorumResponse>(ApiKey::DescribeQuorum, |r| r.with_error_code(31));
    all::<ListPartitionReassignmentsResponse>(ApiKey::ListPartitionReassignments, |r| r.with_error_code(31));
    all::<UpdateFeaturesResponse>(ApiKey::UpdateFeatures, |r| r.with_error_code(31));
    all::<DescribeClusterResponse>(ApiKey::DescribeCluster, |r| r.with_error_code(31));
    all::<ListConfigResourcesResponse>(ApiKey::ListConfigResources, |r| r.with_error_code(31));
    all::<UnregisterBrokerResponse>(ApiKey::UnregisterBroker, |r| r.with_error_code(31));
    all::<AddRaftVoterResponse>(ApiKey::AddRaftVoter, |r| r.with_error_code(31));
    all::<RemoveRaftVoterResponse>(ApiKey::RemoveRaftVoter, |r| r.with_error_code(31));
}

/// Delegation tokens are answered, not disconnected: what may not be done is
/// DELEGATION_TOKEN_AUTHORIZATION_FAILED (65), a description lists no token.
#[tokio::test]
async fn denied_delegation_token_requests_are_answered() {
    let s = Setup::new("tokens").await;
    let mut conn = s.connection();
    for version in versions::<CreateDelegationTokenRequest>() {
        let key = ApiKey::CreateDelegationToken;
        let r: CreateDelegationTokenResponse =
            answer(s.check(&mut conn, key, version, &CreateDelegationTokenRequest::default()), key, version);
        assert_eq!(r.error_code, 65, "v{version}");
    }
    for version in versions::<RenewDelegationTokenRequest>() {
        let key = ApiKey::RenewDelegationToken;
        let r: RenewDelegationTokenResponse =
            answer(s.check(&mut conn, key, version, &RenewDelegationTokenRequest::default()), key, version);
        assert_eq!(r.error_code, 65, "v{version}");
    }
    for version in versions::<ExpireDelegationTokenRequest>() {
        let key = ApiKey::ExpireDelegationToken;
        let r: ExpireDelegationTokenResponse =
            answer(s.check(&mut conn, key, version, &ExpireDelegationTokenRequest::default()), key, version);
        assert_eq!(r.error_code, 65, "v{version}");
    }
    for version in versions::<DescribeDelegationTokenRequest>() {
        let key = ApiKey::DescribeDelegationToken;
        let r: DescribeDelegationTokenResponse =
            answer(s.check(&mut conn, key, version, &DescribeDelegationTokenRequest::default()), key, version);
        assert_eq!((r.error_code, r.tokens.len()), (0, 0), "v{version}");
    }
}
