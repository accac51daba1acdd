//! Topic-level authorization at the sidecar, against the real cluster: what the policy allows
//! works as before, what it denies fails with the exception each real client raises for a
//! broker's own authorization errors, denied topics are invisible, a request mixing allowed
//! and denied topics is served in part, denials are audited and counted, and a policy edit
//! applies to open connections.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::raw::{partition_zero, read_frame, request, to_leader_of};
use common::{direct_bootstrap, java_client_output, rd, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use weir_wire::kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use weir_wire::message::decode_response;

const PRINCIPAL: &str = "spiffe://weir.test/ns/shop/sa/orders";

/// One scenario's names and files: topics `<p>.allowed.*` (all operations), `<p>.readonly.*`
/// (read only) and `<p>.secret.*` (nothing); groups and transactional ids `<p>.allowed.*`.
struct Scenario {
    prefix: String,
    dir: PathBuf,
}

impl Scenario {
    fn new() -> Self {
        common::kafka();
        let prefix = unique("az");
        let dir = std::env::temp_dir().join(format!("weir-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let scenario = Self { prefix, dir };
        scenario.write_policy(&[]);
        scenario
    }

    fn topic(&self, kind: &str) -> String {
        format!("{}.{kind}.t", self.prefix)
    }

    fn policy_file(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    fn audit_file(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// The policy, plus extra allow rules as `(resource, operation)`.
    fn write_policy(&self, extra: &[(&str, &str)]) {
        let p = &self.prefix;
        let mut yaml = format!(
            "rules:\n\
             - effect: allow\n  principals: ['{PRINCIPAL}']\n  resources: ['topic:{p}.allowed.*', 'group:{p}.allowed.*', 'transactional-id:{p}.allowed.*']\n  operations: [all]\n\
             - effect: allow\n  principals: ['spiffe://weir.test/ns/shop/*']\n  resources: ['topic:{p}.readonly.*']\n  operations: [read]\n\
             - effect: deny\n  principals: ['*']\n  resources: ['topic:*.forbidden']\n  operations: [all]\n"
        );
        for (resource, operation) in extra {
            yaml += &format!(
                "- effect: allow\n  principals: ['{PRINCIPAL}']\n  resources: ['{resource}']\n  operations: [{operation}]\n"
            );
        }
        // Write then rename, as config management does, so the sidecar never reads half a file.
        let tmp = self.dir.join("policy.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(tmp, self.policy_file()).unwrap();
    }

    fn sidecar(&self) -> Sidecar {
        Sidecar::start_with(SidecarOptions {
            extra_yaml: format!(
                "fixed_principal: '{PRINCIPAL}'\nauthorization: {{policy: {}, reload_interval_ms: 200}}\naudit: {{path: {}}}\n",
                self.policy_file().display(),
                self.audit_file().display()
            ),
            ..Default::default()
        })
    }

    /// Creates the three topics directly on the cluster and writes `count` records into the
    /// read-only and secret ones.
    async fn topics_with_records(&self, count: usize) {
        let direct = direct_bootstrap();
        for kind in ["allowed", "readonly", "secret"] {
            rd::create_topic(&direct, &self.topic(kind), 1).await;
        }
        let producer = rd::producer(&direct, &[]);
        rd::produce(&producer, &self.topic("readonly"), "ro", count).await;
        rd::produce(&producer, &self.topic("secret"), "secret", count).await;
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        common::audit_lines(&self.audit_file())
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Sends one record; the delivery error code, if any.
async fn send_one(producer: &rdkafka::producer::FutureProducer, topic: &str) -> Option<RDKafkaErrorCode> {
    match producer.send(FutureRecord::<(), _>::to(topic).payload("x"), Duration::from_secs(10)).await {
        Ok(_) => None,
        Err((KafkaError::MessageProduction(code), _)) => Some(code),
        Err((other, _)) => panic!("unexpected producer error: {other}"),
    }
}

/// Polls a consumer subscribed to `topic` as `group` until it reports an error; its code.
fn first_consumer_error(bootstrap: &str, topic: &str, group: &str) -> RDKafkaErrorCode {
    let consumer = rd::consumer(bootstrap, group, &[]);
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => return e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown),
            Some(Ok(m)) => panic!("consumed offset {} of {topic} that the policy denies", m.offset()),
            None => {}
        }
    }
    panic!("no error within 30 s consuming {topic} as {group}");
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_gets_kafka_authorization_errors_and_only_sees_what_it_may_describe() {
    let s = Scenario::new();
    s.topics_with_records(5).await;
    let sidecar = s.sidecar();
    let bs = sidecar.bootstrap();
    let (allowed, readonly, secret) = (s.topic("allowed"), s.topic("readonly"), s.topic("secret"));
    let group = |name: &str| format!("{}.{name}", s.prefix);

    // Allowed: produce and consume as if no policy were there.
    let producer = rd::producer(&bs, &[]);
    rd::produce(&producer, &allowed, "ok", 10).await;
    assert_eq!(rd::consume(&bs, &allowed, &group("allowed.g1"), 10, &[]).len(), 10);

    // Read-only: consuming works, producing fails with the broker's error.
    assert_eq!(rd::consume(&bs, &readonly, &group("allowed.g2"), 5, &[]).len(), 5);
    assert_eq!(send_one(&producer, &readonly).await, Some(RDKafkaErrorCode::TopicAuthorizationFailed));

    // A group outside the policy, and a topic outside it.
    assert_eq!(first_consumer_error(&bs, &allowed, &group("denied.g")), RDKafkaErrorCode::GroupAuthorizationFailed);
    assert_eq!(first_consumer_error(&bs, &secret, &group("allowed.g3")), RDKafkaErrorCode::TopicAuthorizationFailed);

    // Listing all topics shows the describable ones only.
    let metadata = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}: {}", sidecar.logs().join("\n")));
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(names.contains(&allowed.as_str()) && names.contains(&readonly.as_str()), "{names:?}");
    assert!(!names.contains(&secret.as_str()), "a topic the policy hides was listed: {names:?}");

    // Denials are audited with principal, operation and resource, and counted.
    let audit = s.audit_lines();
    let denied_write = audit.iter().any(|l| {
        l["event"] == "authorization"
            && l["decision"] == "deny"
            && l["principal"] == PRINCIPAL
            && l["operation"] == "write"
            && l["resource_type"] == "topic"
            && l["resource"] == readonly.as_str()
    });
    assert!(denied_write, "no audit line for the denied write: {audit:#?}");
    // The group is refused at its first step, FindCoordinator (describe), as a broker refuses it.
    let denied_group = group("denied.g");
    assert!(
        audit.iter().any(|l| l["resource_type"] == "group" && l["resource"] == denied_group.as_str()),
        "{audit:#?}"
    );
    let counted = sidecar.metric(
        "weir_kafka_authorization_denials_total",
        &[("principal", PRINCIPAL), ("operation", "write"), ("resource_type", "topic")],
    );
    assert!(counted >= 1.0, "denials not counted: {counted}");
    // Traffic is counted per principal too.
    let produced =
        sidecar.metric("weir_kafka_produced_records_total", &[("topic", &allowed), ("principal", PRINCIPAL)]);
    let fetched = sidecar.metric("weir_kafka_fetched_records_total", &[("topic", &allowed), ("principal", PRINCIPAL)]);
    assert!(produced >= 10.0 && fetched >= 10.0, "traffic per principal: produced {produced}, fetched {fetched}");

    // A policy edit reaches the open connection: the same producer may now write.
    s.write_policy(&[(&format!("topic:{readonly}"), "write")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match send_one(&producer, &readonly).await {
            None => break,
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Some(code) => panic!("still refused after the policy allowed it: {code:?}"),
        }
    }
    assert_eq!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "denied")]), 0.0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_mixing_allowed_and_denied_topics_is_served_in_part() {
    let s = Scenario::new();
    s.topics_with_records(1).await;
    let sidecar = s.sidecar();
    let (allowed, readonly) = (s.topic("allowed"), s.topic("readonly"));
    // Produce must reach the allowed partition's leader; the denied part never leaves the sidecar.
    let mut stream = to_leader_of(&sidecar, &allowed);
    let part = partition_zero;
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![part(&readonly, b"must-not-land"), part(&allowed, b"mixed-ok")]);
    for (correlation_id, version) in [(7, 9), (8, 3)] {
        stream.write_all(&request(ApiKey::Produce, version, correlation_id, &produce)).unwrap();
        let frame = read_frame(&mut stream).unwrap();
        let (header, response): (_, ProduceResponse) = decode_response(&frame, ApiKey::Produce, version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let code_of = |topic: &str| {
            let entry = response.responses.iter().find(|t| t.name.as_str() == topic);
            entry.unwrap_or_else(|| panic!("v{version}: no entry for {topic}: {response:?}")).partition_responses[0]
                .error_code
        };
        assert_eq!(code_of(&allowed), 0, "v{version}: the allowed part was not served");
        assert_eq!(code_of(&readonly), 29, "v{version}: TOPIC_AUTHORIZATION_FAILED expected");
    }
    let got = rd::consume(&sidecar.bootstrap(), &allowed, &format!("{}.allowed.g", s.prefix), 2, &[]);
    assert!(got.iter().all(|r| r.value == "mixed-ok"), "{got:?}");
    let direct = rd::consume(&direct_bootstrap(), &readonly, &unique("g"), 1, &[]);
    assert_eq!(direct[0].value, "ro-0", "the denied record reached the broker");
    sidecar.assert_quiet();
}

/// The Java client's exception class, from its error line.
fn java_failure(args: &[&str]) -> String {
    let out = java_client_output(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "java client {args:?} succeeded where the policy denies:\n{stderr}");
    stderr.lines().filter(|l| l.starts_with("error: ")).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_java_client_raises_the_usual_authorization_exceptions() {
    let s = Scenario::new();
    s.topics_with_records(3).await;
    let sidecar = s.sidecar();
    let bs = sidecar.bootstrap();
    let (allowed, secret) = (s.topic("allowed"), s.topic("secret"));
    let name = |rest: &str| format!("{}.{rest}", s.prefix);
    let short = ["--timeout-ms", "20000"];

    // Transactions with an allowed transactional id work end to end.
    let txn_id = name("allowed.tx");
    let out = common::java_client(&[
        "txn",
        "--bootstrap",
        &bs,
        "--topic",
        &allowed,
        "--commit-count",
        "4",
        "--abort-count",
        "2",
        "--transactional-id",
        &txn_id,
    ]);
    assert!(out.contains(&"committed=4 aborted=2".to_owned()), "{out:?}");
    let out = common::java_client(&[
        "consume",
        "--bootstrap",
        &bs,
        "--topic",
        &allowed,
        "--count",
        "4",
        "--group",
        &name("allowed.g"),
        "--isolation",
        "read_committed",
    ]);
    assert!(out.contains(&"consumed=4".to_owned()), "{out:?}");

    // The same under KIP-848 groups (ConsumerGroupHeartbeat instead of JoinGroup/SyncGroup).
    let out = common::java_client(&[
        "consume",
        "--bootstrap",
        &bs,
        "--topic",
        &allowed,
        "--count",
        "4",
        "--group",
        &name("allowed.g848"),
        "--isolation",
        "read_committed",
        "--group-protocol",
        "consumer",
    ]);
    assert!(out.contains(&"consumed=4".to_owned()), "{out:?}");

    let denied_txn = name("denied.tx");
    let cases: [(&str, Vec<&str>); 5] = [
        ("TopicAuthorizationException", vec!["produce", "--bootstrap", &bs, "--topic", &secret, "--count", "1"]),
        (
            "GroupAuthorizationException",
            vec!["consume", "--bootstrap", &bs, "--topic", &allowed, "--count", "1", "--group", "outsiders"],
        ),
        (
            "GroupAuthorizationException",
            vec![
                "consume",
                "--bootstrap",
                &bs,
                "--topic",
                &allowed,
                "--count",
                "1",
                "--group",
                "outsiders-848",
                "--group-protocol",
                "consumer",
            ],
        ),
        (
            "TransactionalIdAuthorizationException",
            vec![
                "txn",
                "--bootstrap",
                &bs,
                "--topic",
                &allowed,
                "--commit-count",
                "1",
                "--abort-count",
                "0",
                "--transactional-id",
                &denied_txn,
            ],
        ),
        (
            "TopicAuthorizationException",
            vec!["admin", "--bootstrap", &bs, "--op", "create-topic", "--topic", "created.forbidden"],
        ),
    ];
    for (exception, mut args) in cases {
        args.extend(short);
        let error = java_failure(&args);
        assert!(error.contains(exception), "{args:?}: expected {exception}, got: {error}");
    }

    // Topic creation inside the policy works.
    let created = name("allowed.created");
    let out = common::java_client(&["admin", "--bootstrap", &bs, "--op", "create-topic", "--topic", &created]);
    assert!(out.iter().any(|l| l.starts_with(&format!("created topic={created}"))), "{out:?}");
    sidecar.assert_quiet();
}

/// Denied cluster administration is answered as a broker would (ClusterAuthorizationException
/// per call in the Java admin client), not by closing the connection: the same Admin client
/// goes on to list topics.
#[tokio::test(flavor = "multi_thread")]
async fn denied_cluster_administration_gets_cluster_authorization_errors() {
    let s = Scenario::new();
    s.topics_with_records(1).await;
    let sidecar = s.sidecar();
    let bs = sidecar.bootstrap();
    let allowed = s.topic("allowed");
    let out = common::java_client(&[
        "admin",
        "--bootstrap",
        &bs,
        "--op",
        "cluster-admin",
        "--topic",
        &allowed,
        "--broker",
        "1",
    ]);
    for op in ["create-acls", "delete-acls", "elect-leaders", "alter-quotas", "alter-scram", "describe-log-dirs"] {
        let line = format!("op={op} error=ClusterAuthorizationException");
        assert!(out.contains(&line), "expected {line}: {out:?}");
    }
    let topics = out.iter().find_map(|l| l.strip_prefix("topics=")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(topics.parse::<usize>().unwrap() >= 1, "{out:?}");

    let denied_apis: Vec<String> = s
        .audit_lines()
        .iter()
        .filter(|l| l["event"] == "authorization" && l["resource_type"] == "cluster")
        .map(|l| l["api"].as_str().unwrap_or_default().to_owned())
        .collect();
    for api in ["CreateAcls", "DeleteAcls", "ElectLeaders", "AlterClientQuotas", "AlterUserScramCredentials"] {
        assert!(denied_apis.iter().any(|a| a == api), "{api} not audited: {denied_apis:?}");
    }
    let metrics = sidecar.metrics();
    assert!(!metrics.contains("weir_kafka_closed_connections_total{reason=\"denied\"}"), "a connection was closed");
    sidecar.assert_quiet();
}

/// Share groups (KIP-932) through the sidecar with the Java share consumer: a share group the
/// policy allows reads a topic it may read; one outside the policy is refused with the
/// broker's error.
#[tokio::test(flavor = "multi_thread")]
async fn share_groups_read_what_the_policy_allows() {
    let s = Scenario::new();
    s.topics_with_records(3).await;
    let sidecar = s.sidecar();
    let bs = sidecar.bootstrap();
    let readonly = s.topic("readonly");
    let group = format!("{}.allowed.share", s.prefix);
    let args = ["share-consume", "--bootstrap", &bs, "--topic", &readonly, "--group", &group, "--count", "3"];
    let out = common::java_client(&[&args[..], &["--from-beginning"]].concat());
    assert!(out.contains(&"share-consumed=3".to_owned()), "{out:?}");

    let outsiders = ["share-consume", "--bootstrap", &bs, "--topic", &readonly, "--group", "outsiders-share"];
    let error = java_failure(&[&outsiders[..], &["--count", "1", "--timeout-ms", "20000"]].concat());
    assert!(error.contains("GroupAuthorizationException"), "{error}");
    let audit = s.audit_lines();
    // The share consumer's first step, FindCoordinator for the share group, is what is denied.
    assert!(
        audit.iter().any(|l| l["resource_type"] == "group" && l["resource"] == "outsiders-share"),
        "the share group denial is not audited"
    );

    // A share group the client may describe but not read: FindCoordinator passes, and the
    // sidecar answers ShareGroupHeartbeat itself with GROUP_AUTHORIZATION_FAILED.
    let watcher = format!("{}.watch.share", s.prefix);
    s.write_policy(&[(&format!("group:{}.watch.*", s.prefix), "describe")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let denied_heartbeat =
        || s.audit_lines().iter().any(|l| l["api"] == "ShareGroupHeartbeat" && l["resource"] == watcher.as_str());
    let watching = ["share-consume", "--bootstrap", &bs, "--topic", &readonly, "--group", &watcher];
    while !denied_heartbeat() {
        assert!(Instant::now() < deadline, "ShareGroupHeartbeat of a describe-only group was not denied");
        let error = java_failure(&[&watching[..], &["--count", "1", "--timeout-ms", "15000"]].concat());
        assert!(error.contains("GroupAuthorizationException"), "{error}");
    }
    sidecar.assert_quiet();
}

/// The Java admin client on a share group's offsets (KIP-932), as the sidecar's policy allows:
/// `admin --op <op> --group <group> [--topic <topic>]`.
fn share_offsets_args<'a>(bootstrap: &'a str, op: &'a str, group: &'a str, topic: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["admin", "--bootstrap", bootstrap, "--op", op, "--group", group, "--timeout-ms", "20000"];
    args.extend(topic.map(|t| ["--topic", t]).into_iter().flatten());
    args
}

/// Share-group offset administration is checked as Kafka checks it: listing needs DESCRIBE on
/// the group and topics (the others' offsets hidden from a full listing), altering READ on
/// both, deleting DELETE on the group and READ on the topics. Denials come back as the
/// exceptions a broker's authorizer raises, never as a closed connection.
#[tokio::test(flavor = "multi_thread")]
async fn share_group_offsets_are_administered_as_the_policy_allows() {
    let s = Scenario::new();
    s.topics_with_records(3).await;
    let sidecar = s.sidecar();
    let bs = sidecar.bootstrap();
    let (readonly, secret) = (s.topic("readonly"), s.topic("secret"));
    let group = format!("{}.allowed.share", s.prefix);
    // The group holds offsets on the read-only topic (through the sidecar) and on the secret
    // one (directly on the cluster).
    let direct = direct_bootstrap();
    for (bootstrap, topic) in [(bs.as_str(), &readonly), (direct.as_str(), &secret)] {
        let args = ["share-consume", "--bootstrap", bootstrap, "--topic", topic, "--group", &group, "--count", "3"];
        let out = common::java_client(&[&args[..], &["--from-beginning"]].concat());
        assert!(out.contains(&"share-consumed=3".to_owned()), "{out:?}");
    }
    let listed = common::java_client(&share_offsets_args(&direct, "list-share-group-offsets", &group, None));
    assert!(listed.contains(&"share-offsets=2".to_owned()), "{listed:?}");

    // All of the group's offsets: only those of the topic the client may describe.
    let listed = common::java_client(&share_offsets_args(&bs, "list-share-group-offsets", &group, None));
    let line = format!("offset topic={readonly} partition=0 start=");
    assert!(listed.iter().any(|l| l.starts_with(&line)), "{listed:?}");
    assert!(listed.contains(&"share-offsets=1".to_owned()), "{listed:?}");
    // Naming the secret topic: the client skips a partition that comes back with an error,
    // and says why.
    let named = java_client_output(&share_offsets_args(&bs, "list-share-group-offsets", &group, Some(&secret)));
    let (stdout, stderr) = (String::from_utf8_lossy(&named.stdout), String::from_utf8_lossy(&named.stderr));
    assert!(named.status.success() && stdout.contains("share-offsets=0"), "{stdout}\n{stderr}");
    assert!(stderr.contains("due to error 29"), "{stderr}");

    // Altering and deleting: READ on the topic is enough, the secret topic is refused.
    for op in ["alter-share-group-offsets", "delete-share-group-offsets"] {
        common::java_client(&share_offsets_args(&bs, op, &group, Some(&readonly)));
        let error = java_failure(&share_offsets_args(&bs, op, &group, Some(&secret)));
        assert!(error.contains("TopicAuthorizationException"), "{op}: {error}");
    }

    // A group the client may describe but neither read nor delete: FindCoordinator passes, and
    // the sidecar answers the offset requests with GROUP_AUTHORIZATION_FAILED.
    let watcher = format!("{}.watch.share", s.prefix);
    s.write_policy(&[(&format!("group:{}.watch.*", s.prefix), "describe")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let denied = |api: &str| s.audit_lines().iter().any(|l| l["api"] == api && l["resource"] == watcher.as_str());
    for (op, api) in [
        ("alter-share-group-offsets", "AlterShareGroupOffsets"),
        ("delete-share-group-offsets", "DeleteShareGroupOffsets"),
    ] {
        // The new policy reaches the sidecar within its reload interval.
        while !denied(api) {
            assert!(Instant::now() < deadline, "{api} of a describe-only group was not denied");
            let error = java_failure(&share_offsets_args(&bs, op, &watcher, Some(&readonly)));
            assert!(error.contains("GroupAuthorizationException"), "{op}: {error}");
        }
    }
    // A group the client may not even describe.
    let outsiders = share_offsets_args(&bs, "list-share-group-offsets", "outsiders-share", None);
    assert!(java_failure(&outsiders).contains("GroupAuthorizationException"));
    sidecar.assert_quiet();
}
