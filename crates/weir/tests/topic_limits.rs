//! Topic creation limits (`topic_creation:`) through a real sidecar in front of the real
//! cluster: in one CreateTopics request from librdkafka, the topics within the limits are
//! created and each one outside them is refused with POLICY_VIOLATION (and is not created);
//! growing a topic past its partition limit is refused the same way; the Java admin client
//! reports the refusal with the rule's reason.

mod common;

use std::time::Duration;

use common::{java_client_output, rd, unique, Sidecar, SidecarOptions};
use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

const LIMITS: &str = "topic_creation:
  - name: team-a
    topics: ['team-a.*']
    max_partitions: 6
    min_replication_factor: 2
    max_retention_ms: 86400000
";

/// Whether the cluster itself (read directly, not through the sidecar) has `topic`.
fn cluster_has(topic: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rd::config(&common::direct_bootstrap()).create().unwrap();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none())
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_outside_the_limits_are_refused_with_policy_violation_and_the_rest_are_created() {
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: LIMITS.into(), ..Default::default() });
    let admin = rd::admin(&sidecar.bootstrap());
    let id = unique("limits");
    let name = |suffix: &str| format!("team-a.{id}-{suffix}");
    let (ok, other) = (name("ok"), format!("other.{id}"));
    let (wide, thin, forever) = (name("wide"), name("thin"), name("forever"));
    let rf = |n| TopicReplication::Fixed(n);
    let topics = [
        NewTopic::new(&ok, 3, rf(3)).set("retention.ms", "3600000"),
        NewTopic::new(&other, 1, rf(3)),
        NewTopic::new(&wide, 12, rf(3)),
        NewTopic::new(&thin, 1, rf(1)),
        NewTopic::new(&forever, 1, rf(3)).set("retention.ms", "-1"),
    ];
    let results = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create_topics");
    let mut refused = Vec::new();
    for result in results {
        match result {
            Ok(topic) => assert_eq!(topic, ok, "only the topic within the limits is created"),
            Err((topic, code)) => {
                assert_eq!(code, RDKafkaErrorCode::PolicyViolation, "{topic}");
                refused.push(topic);
            }
        }
    }
    refused.sort();
    let mut expected = vec![other.clone(), wide.clone(), thin.clone(), forever.clone()];
    expected.sort();
    assert_eq!(refused, expected);
    assert!(cluster_has(&ok));
    for topic in &expected {
        assert!(!cluster_has(topic), "{topic} was refused, so never created");
    }

    // Growing past the limit is refused; within it, done.
    let grow = |count| NewPartitions::new(&ok, count);
    let results = admin.create_partitions(&[grow(12)], &AdminOptions::new()).await.expect("create_partitions");
    assert!(matches!(&results[0], Err((_, RDKafkaErrorCode::PolicyViolation))), "{results:?}");
    let results = admin.create_partitions(&[grow(6)], &AdminOptions::new()).await.expect("create_partitions");
    assert!(results[0].is_ok(), "{results:?}");

    // The Java admin client is told why.
    let java = java_client_output(&[
        "admin",
        "--bootstrap",
        &sidecar.bootstrap(),
        "--op",
        "create-topic",
        "--topic",
        &name("java"),
        "--partitions",
        "12",
        "--replication",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&java.stderr);
    assert!(!java.status.success(), "the Java client's topic was refused");
    assert!(
        stderr.contains("PolicyViolationException") && stderr.contains("12 partitions; rule `team-a` allows at most 6"),
        "{stderr}"
    );
    assert!(!cluster_has(&name("java")));

    assert_eq!(sidecar.metric("weir_kafka_topic_creation_refused_total", &[("rule", "team-a")]), 6.0);
    sidecar.assert_quiet();
}

/// A CreateTopics request that declares a million topics in a few bytes is refused before
/// anything is allocated for them: only its connection is closed, with a warning that says
/// what was wrong and where; another connection is served.
#[test]
fn a_create_topics_request_whose_counts_lie_closes_only_its_connection() {
    use common::raw;
    use weir_wire::kafka_protocol::messages::create_topics_request::CreatableTopic;
    use weir_wire::kafka_protocol::messages::{ApiKey, CreateTopicsRequest, TopicName};
    use weir_wire::kafka_protocol::protocol::StrBytes;

    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: LIMITS.into(), ..Default::default() });
    let topic =
        CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("team-a.x"))).with_num_partitions(1);
    let create = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(1000);
    let mut frame = raw::request(ApiKey::CreateTopics, 7, 1, &create);
    // v7 is flexible: the topics array's length is a varint (n + 1) right after the header,
    // 2 here; make it say a million.
    let header_end = frame.len() - weir_wire::kafka_protocol::protocol::Encodable::compute_size(&create, 7).unwrap();
    assert_eq!(frame[header_end], 2);
    frame.splice(header_end..header_end + 1, [0xc1, 0x84, 0x3d]); // 1_000_001 as a varint
    let length = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&length.to_be_bytes());

    raw::assert_closes_only_its_connection(&sidecar, &frame);
    let warnings = sidecar.unexpected_warnings(&[]);
    assert!(
        warnings.len() == 1 && warnings[0].contains("malformed CreateTopics request v7"),
        "one warning naming the request: {warnings:?}"
    );
}
