//! The authorization bypasses an outside review found, each tried the way it was found: raw
//! Kafka frames from a hostile client, against the real cluster, with SASL at the sidecar and
//! the review's policy (alice reads and writes `orders`, bob reads `public.*`, carol reads
//! and writes every topic, and no one may touch `*.pii`).

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{call, sasl_plain};
use common::{direct_bootstrap, rd, sasl_users_file, unique, Sidecar, SidecarOptions};
use weir_core::sasl::ScramMechanism;
use weir_wire::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_wire::kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use weir_wire::kafka_protocol::protocol::StrBytes;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const UNKNOWN_TOPIC_ID: i16 = 100;

/// The review's cluster: topics `<p>.orders`, `<p>.public.news`, `<p>.x.pii`; users alice,
/// bob and carol (password: their name reversed).
struct Review {
    prefix: String,
    dir: PathBuf,
    sidecar: Sidecar,
}

impl Review {
    async fn start() -> Self {
        common::kafka();
        let prefix = unique("rv");
        let dir = std::env::temp_dir().join(format!("weir-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let users = sasl_users_file(
            &dir,
            &[
                ("alice", "ecila", ScramMechanism::Sha512),
                ("bob", "bob-secret", ScramMechanism::Sha512),
                ("carol", "lorac", ScramMechanism::Sha512),
            ],
        );
        let policy = dir.join("policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "rules:\n\
                 - effect: allow\n  principals: [alice]\n  resources: ['topic:{prefix}.orders', 'group:*']\n  operations: [read, write]\n\
                 - effect: allow\n  principals: [bob]\n  resources: ['topic:{prefix}.public.*', 'group:*']\n  operations: [read]\n\
                 - effect: allow\n  principals: [carol]\n  resources: ['topic:*', 'group:*']\n  operations: [read, write]\n\
                 - effect: deny\n  principals: ['*']\n  resources: ['topic:*.pii']\n  operations: [all]\n"
            ),
        )
        .unwrap();
        let sidecar = Sidecar::start_with(SidecarOptions {
            extra_yaml: format!(
                "sasl: {{credentials: {}}}\nauthorization: {{policy: {}}}\naudit: {{path: {}}}\n",
                users.display(),
                policy.display(),
                dir.join("audit.jsonl").display()
            ),
            ..Default::default()
        });
        Self { prefix, dir, sidecar }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// A topic with one partition and `count` records, made directly on the cluster (so the
    /// sidecar has not seen it).
    async fn topic_with_records(&self, name: &str, count: usize) -> Topic {
        let topic = self.topic(name);
        rd::create_topic(&direct_bootstrap(), &topic, 1).await;
        rd::produce(&rd::producer(&direct_bootstrap(), &[]), &topic, "secret", count).await;
        Topic::describe(&topic)
    }

    /// A raw connection to a broker's listener on the sidecar, authenticated as `user`.
    fn connect_as(&self, user: &str, broker: i32) -> TcpStream {
        let password = match user {
            "alice" => "ecila",
            "bob" => "bob-secret",
            _ => "lorac",
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.sidecar.broker_port_base + broker as u16)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        sasl_plain(&mut stream, user, password);
        stream
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        common::audit_lines(&self.dir.join("audit.jsonl"))
    }
}

impl Drop for Review {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A topic as the cluster itself describes it (asked directly, not through the sidecar).
struct Topic {
    name: String,
    id: uuid::Uuid,
    leader: i32,
}

impl Topic {
    fn describe(name: &str) -> Self {
        let first = direct_bootstrap().split(',').next().unwrap().to_owned();
        let mut stream = TcpStream::connect(first).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]));
        let answer: MetadataResponse = call(&mut stream, ApiKey::Metadata, 12, &request);
        let topic = &answer.topics[0];
        assert_eq!(topic.error_code, 0, "{name}: {topic:?}");
        Self { name: name.to_owned(), id: topic.topic_id, leader: topic.partitions[0].leader_id.0 }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A Fetch (v12: topics by name) of partition 0 of `topics` from offset 0, in a session.
fn fetch_request(session_id: i32, epoch: i32, topics: &[&str]) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    FetchTopic::default().with_topic(topic_name(t)).with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        )
}

fn fetch(stream: &mut TcpStream, request: &FetchRequest) -> FetchResponse {
    call(stream, ApiKey::Fetch, 12, request)
}

/// Record bytes of every partition in the answer.
fn record_bytes(answer: &FetchResponse) -> usize {
    answer.responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, Bytes::len)).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_sessions_serve_only_the_principal_that_opened_them() {
    let review = Review::start().await;
    let orders = review.topic_with_records("orders", 5).await;
    let news = review.topic_with_records("public.news", 1).await;

    // Alice opens a fetch session on `orders` and reads it.
    let mut alice = review.connect_as("alice", orders.leader);
    let opened = fetch(&mut alice, &fetch_request(0, 0, &[&orders.name]));
    assert_eq!(opened.error_code, 0);
    assert_ne!(opened.session_id, 0, "the broker opened no fetch session");
    assert!(record_bytes(&opened) > 0);
    let session = opened.session_id;

    // Bob names alice's session in an empty incremental Fetch: on a broker that would return
    // every partition in the session. He gets FETCH_SESSION_ID_NOT_FOUND and nothing else,
    // and the same answer for a wrong epoch of a live id as for an id nobody holds, so
    // guessing tells him nothing.
    let mut bob = review.connect_as("bob", orders.leader);
    for (id, epoch) in [(session, 1), (session, 7), (session.wrapping_add(1), 1), (123_456, 1)] {
        let answer = fetch(&mut bob, &fetch_request(id, epoch, &[]));
        assert_eq!(answer.error_code, FETCH_SESSION_ID_NOT_FOUND, "session {id} epoch {epoch}: {answer:?}");
        assert_eq!(answer.session_id, 0);
        assert_eq!(record_bytes(&answer), 0, "bob read alice's fetch session");
    }

    // A full Fetch naming alice's session (which would close it) opens bob a session of his
    // own instead, and alice's goes on.
    let own = fetch(&mut bob, &fetch_request(session, 0, &[&news.name]));
    assert_eq!(own.error_code, 0);
    assert_ne!(own.session_id, session);
    let next = fetch(&mut alice, &fetch_request(session, 1, &[]));
    assert_eq!((next.error_code, next.session_id), (0, session), "alice's session was disturbed");

    // Bob's own session serves him.
    if own.session_id != 0 {
        let again = fetch(&mut bob, &fetch_request(own.session_id, 1, &[]));
        assert_eq!(again.error_code, 0);
    }
    review.sidecar.assert_quiet();
}

/// Fetch v13 (topics by id) of partition 0 from offset 0, no session.
fn fetch_by_id(id: uuid::Uuid) -> FetchRequest {
    let mut request = fetch_request(0, -1, &["unused"]);
    request.topics[0].topic = TopicName::default();
    request.topics[0].topic_id = id;
    request
}

/// The per-partition error codes of a Fetch answer, and the record bytes it carries.
fn fetched(answer: &FetchResponse) -> (Vec<i16>, usize) {
    (answer.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect(), record_bytes(answer))
}

/// Produce v13 (topics by id) of one record to partition 0.
fn produce_by_id(id: uuid::Uuid) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_topic_id(id)
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(common::raw::record_batch(b"by-id")))])])
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_ids_the_sidecar_has_not_seen_are_looked_up_before_anything_is_decided() {
    let review = Review::start().await;
    // Made directly on the cluster after the sidecar started: it has seen neither id.
    let pii = review.topic_with_records("x.pii", 3).await;
    let misc = review.topic_with_records("misc", 2).await;

    // Carol may read and write `topic:*`, but no one may touch `*.pii`: by id, as by name.
    let mut carol = review.connect_as("carol", pii.leader);
    let answer: FetchResponse = call(&mut carol, ApiKey::Fetch, 13, &fetch_by_id(pii.id));
    assert_eq!(fetched(&answer), (vec![TOPIC_AUTHORIZATION_FAILED], 0), "carol read a *.pii topic by id");
    let answer: ProduceResponse = call(&mut carol, ApiKey::Produce, 13, &produce_by_id(pii.id));
    let codes: Vec<i16> = answer.responses.iter().flat_map(|t| &t.partition_responses).map(|p| p.error_code).collect();
    assert_eq!(codes, vec![TOPIC_AUTHORIZATION_FAILED], "carol wrote a *.pii topic by id");

    // An id no topic has is an unknown topic id, answered by the sidecar.
    let made_up = uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);
    let answer: FetchResponse = call(&mut carol, ApiKey::Fetch, 13, &fetch_by_id(made_up));
    assert_eq!(fetched(&answer), (vec![UNKNOWN_TOPIC_ID], 0));

    // What carol may read, she reads by id, though the sidecar learned the id just now.
    let mut carol = review.connect_as("carol", misc.leader);
    let answer: FetchResponse = call(&mut carol, ApiKey::Fetch, 13, &fetch_by_id(misc.id));
    let (codes, bytes) = fetched(&answer);
    assert_eq!(codes, vec![0]);
    assert!(bytes > 0, "no records from an allowed topic by id");

    // The denials are audited under the topic's name, not its id.
    let denials: Vec<_> = review
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "authorization" && l["principal"] == "carol")
        .map(|l| (l["api"].as_str().unwrap_or("").to_owned(), l["resource"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(denials.contains(&("Fetch".into(), pii.name.clone())), "{denials:?}");
    assert!(denials.contains(&("Produce".into(), pii.name.clone())), "{denials:?}");
    assert!(!denials.iter().any(|(_, resource)| resource == &pii.id.to_string()), "{denials:?}");
    review.sidecar.assert_quiet();
}

/// The broker coordinating `group`, asked through the sidecar as `user`.
fn coordinator(review: &Review, user: &str, group: &str) -> i32 {
    let mut stream = review.connect_as(user, 1);
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())]);
    let answer: FindCoordinatorResponse = call(&mut stream, ApiKey::FindCoordinator, 4, &request);
    assert_eq!(answer.coordinators[0].error_code, 0, "{answer:?}");
    answer.coordinators[0].node_id.0
}

#[tokio::test(flavor = "multi_thread")]
async fn regex_subscriptions_are_assigned_and_described_only_with_topics_the_member_may_describe() {
    let review = Review::start().await;
    let orders = review.topic_with_records("orders", 5).await;
    let news = review.topic_with_records("public.news", 1).await;
    let pii = review.topic_with_records("x.pii", 3).await;
    let every_topic = format!("{}\\..*", review.prefix);

    // Bob (read on `public.*` only) joins a KIP-848 group subscribed to every topic by regex.
    let group = review.topic("g-bob");
    let mut bob = review.connect_as("bob", coordinator(&review, "bob", &group));
    let mut heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
        .with_member_id(StrBytes::from_string(uuid::Uuid::from_u128(0xb0b).to_string()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_regex(Some(StrBytes::from_string(every_topic.clone())))
        .with_topic_partitions(Some(vec![]));
    let mut assigned = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !assigned.contains(&news.id) {
        assert!(std::time::Instant::now() < deadline, "bob was never assigned {}: {assigned:?}", news.name);
        let answer: ConsumerGroupHeartbeatResponse = call(&mut bob, ApiKey::ConsumerGroupHeartbeat, 1, &heartbeat);
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assigned.extend(answer.assignment.iter().flat_map(|a| &a.topic_partitions).map(|t| t.topic_id));
        heartbeat = heartbeat
            .with_member_epoch(answer.member_epoch)
            .with_subscribed_topic_regex(None)
            .with_topic_partitions(None);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        assigned,
        [news.id].into(),
        "bob was assigned topics he may not describe ({} is orders, {} x.pii)",
        orders.id,
        pii.id
    );

    // Describing the group would show what the coordinator assigned him: refused as Kafka refuses it.
    let describe =
        ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.clone()))]);
    let answer: ConsumerGroupDescribeResponse = call(&mut bob, ApiKey::ConsumerGroupDescribe, 0, &describe);
    let described = &answer.groups[0];
    assert_eq!(described.error_code, TOPIC_AUTHORIZATION_FAILED, "{described:?}");
    assert!(described.members.is_empty());
    assert_eq!(
        described.error_message.as_deref(),
        Some("The described group uses topics that the client is not authorized to describe.")
    );

    // Carol, with read on every topic but `*.pii`, consumes by regex with the Java client: she
    // gets every record of the topics she may read and none of the denied one.
    let out = common::java_client(&[
        "consume", "--bootstrap", &review.sidecar.bootstrap(), "--topic", &every_topic, "--pattern", &every_topic,
        "--group", &review.topic("g-carol"), "--group-protocol", "consumer", "--count", "6",
        "--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=PLAIN",
        "--property", "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"carol\" password=\"lorac\";",
    ]);
    let topics: std::collections::BTreeSet<&str> =
        out.iter().filter_map(|l| l.strip_prefix("record topic=")).filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(topics, [orders.name.as_str(), news.name.as_str()].into(), "{out:?}");
    assert!(out.contains(&"consumed=6".to_owned()), "{out:?}");
    review.sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_authorization_id_other_than_the_user_name_is_refused() {
    use weir_wire::kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    };
    let review = Review::start().await;
    let login = |message: &'static [u8]| {
        let mut stream = TcpStream::connect(review.sidecar.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let _: SaslHandshakeResponse = call(&mut stream, ApiKey::SaslHandshake, 1, &handshake);
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(message));
        let answer: SaslAuthenticateResponse = call(&mut stream, ApiKey::SaslAuthenticate, 2, &request);
        (answer.error_code, answer.error_message.map(|m| m.to_string()).unwrap_or_default())
    };
    // Bob's own password, asking to act as carol: refused, as Kafka's PLAIN server refuses it.
    let (code, message) = login(b"carol\0bob\0bob-secret");
    assert_eq!(code, 58, "{message}");
    assert!(message.contains("authorization id `carol` differs from the user name `bob`"), "{message}");
    // Naming himself (or no one) is fine.
    assert_eq!(login(b"bob\0bob\0bob-secret").0, 0);
    assert_eq!(login(b"\0bob\0bob-secret").0, 0);
    review.sidecar.assert_quiet();
}
