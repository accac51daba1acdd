//! Envelope encryption (`kms:`, `encryption:`) through real sidecars in front of the real
//! cluster: what librdkafka and Java producers write is stored sealed (the brokers' log
//! segments, read from disk, hold no plaintext), data keys rotate and key-encryption keys
//! change while old records still open for the principal the rule names; another principal
//! reads ciphertext, or is refused; a lost KMS writes nothing and serves nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{direct_bootstrap, java_client, rd, topic_log_bytes, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};

fn key_file(name: &str, current: &str, keys: &[(&str, [u8; 32])]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-test-kms-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.json");
    std::fs::write(&path, weir_envelope::LocalKms::key_file(current, keys)).unwrap();
    path
}

fn sidecar(principal: &str, key_file: &Path, payments: &str, cards: &str) -> Sidecar {
    let extra_yaml = format!(
        "fixed_principal: '{principal}'
kms: {{local: {{key_file: '{}', reread_after_ms: 200}}}}
encryption:
  - name: payments
    topics: ['{payments}']
    decrypt_for: ['User:billing']
    rotate_after_records: 50
  - name: cards
    topics: ['{cards}']
    fields: ['$.card']
    decrypt_for: ['User:billing']
    others: refuse
",
        key_file.display()
    );
    Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() })
}

/// (value, `weir.encryption` header) of every record of `topic`, read directly from the brokers.
fn stored(topic: &str, count: usize) -> Vec<(Vec<u8>, Option<String>)> {
    let consumer = rd::consumer(&direct_bootstrap(), &unique("raw"), &[]);
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "read only {} of {count} from {topic}", out.len());
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.unwrap();
        let marker = message.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "weir.encryption")
                .map(|h| String::from_utf8_lossy(h.value.unwrap()).into_owned())
        });
        out.push((message.payload().unwrap_or_default().to_vec(), marker));
    }
    out
}

/// A consumer of `topic` through `sidecar` hears TOPIC_AUTHORIZATION_FAILED and reads nothing.
fn assert_refused(sidecar: &Sidecar, topic: &str) {
    let consumer = rd::consumer(&sidecar.bootstrap(), &unique("refused"), &[]);
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let heard = loop {
        assert!(Instant::now() < deadline, "never refused {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => panic!("a record of {topic} was read: {:?}", m.payload_view::<str>()),
            Some(Err(e)) => break e,
            None => {}
        }
    };
    assert_eq!(heard.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed), "{heard}");
}

/// A consumer of `topic` through `sidecar` reads nothing until the sidecar has logged that
/// sealed records were not served, in a line `says` accepts.
fn serves_nothing_until_it_says(sidecar: &Sidecar, topic: &str, says: impl Fn(&str) -> bool) {
    let consumer = rd::consumer(&sidecar.bootstrap(), &unique("billing"), &[]);
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sidecar.logs().iter().any(|l| l.contains("sealed records not served") && says(l)) {
        assert!(Instant::now() < deadline, "no warning: {:?}", sidecar.logs());
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            panic!("a record was served that could not be opened: {:?}", m.payload_view::<str>());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_stored_sealed_and_open_only_for_the_principals_named() {
    let prefix = unique("sealed");
    let (payments, cards) = (format!("{prefix}-payments"), format!("{prefix}-cards"));
    let keys = key_file(&prefix, "kek-1", &[("kek-1", [11; 32])]);
    let billing = sidecar("User:billing", &keys, &payments, &cards);
    let analyst = sidecar("User:analyst", &keys, &payments, &cards);
    for topic in [&payments, &cards] {
        rd::create_topic(&direct_bootstrap(), topic, 1).await;
    }

    // librdkafka (lz4) and an idempotent Java producer (zstd) write through the sidecar.
    // Batches of 10: a data key is judged spent between requests, not within one.
    let producer = rd::producer(&billing.bootstrap(), &[("compression.type", "lz4"), ("batch.num.messages", "10")]);
    rd::produce(&producer, &payments, "plaintext-rd", 120).await;
    let args = ["produce", "--bootstrap", &billing.bootstrap(), "--topic", &payments, "--count", "100"];
    let lines =
        java_client(&[&args[..], &["--idempotent", "--compression", "zstd", "--prefix", "plaintext-java"]].concat());
    assert!(lines.iter().any(|l| l == "produced=100"), "{lines:?}");
    // The key-encryption key changes; kek-1 stays to open what it wrapped.
    std::fs::write(&keys, weir_envelope::LocalKms::key_file("kek-2", &[("kek-1", [11; 32]), ("kek-2", [22; 32])]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // 60 more in batches of 10: whatever the last key has left, a new one (wrapped under
    // kek-2) seals some of them.
    let late = rd::producer(&billing.bootstrap(), &[("batch.num.messages", "10")]);
    rd::produce(&late, &payments, "plaintext-late", 60).await;

    // What the brokers hold: sealed values, marked, under several data keys and both keks.
    let raw = stored(&payments, 280);
    assert!(raw.iter().all(|(value, marker)| marker.as_deref() == Some("v1") && !value.starts_with(b"plaintext")));
    let heads: std::collections::BTreeSet<Vec<u8>> = raw.iter().map(|(v, _)| v[..2 + 5 + 1 + 60].to_vec()).collect();
    // rd: keys for 0..50, 50..100, 100..; Java's the third or more; the late ones at least one more.
    assert!(heads.len() >= 4, "a data key per 50 records: {} heads", heads.len());
    assert!(raw.iter().any(|(v, _)| v[2..7] == *b"kek-1") && raw.iter().any(|(v, _)| v[2..7] == *b"kek-2"));
    let disk = topic_log_bytes(&payments);
    assert!(disk.len() > 280 * 60, "the segments were read ({} bytes)", disk.len());
    assert!(!disk.windows(9).any(|w| w == b"plaintext"), "plaintext in a log segment on disk");

    // Billing reads every record as written, under retired data keys and the old kek too.
    let read = rd::consume(&billing.bootstrap(), &payments, &unique("billing"), 280, &[]);
    let values = rd::values(&read);
    assert!((0..120).all(|i| values.contains(&format!("plaintext-rd-{i}"))));
    assert!((0..100).all(|i| values.contains(&format!("plaintext-java-{i}"))), "the idempotent producer's records");
    assert!((0..60).all(|i| values.contains(&format!("plaintext-late-{i}"))));
    assert!(read.iter().all(|r| !r.headers.iter().any(|(k, _)| k == "weir.encryption")), "the marker is the sidecar's");
    assert!(
        read.iter().filter(|r| r.value.starts_with("plaintext-rd")).all(|r| r.headers.len() == 2),
        "own headers kept"
    );
    let java = java_client(&["consume", "--bootstrap", &billing.bootstrap(), "--topic", &payments, "--count", "280"]);
    let metric = |name: &str| billing.metric(name, &[("rule", "payments")]);
    assert_eq!(metric("weir_kafka_sealed_records_total"), 280.0);
    assert!(metric("weir_kafka_opened_records_total") >= 280.0);
    assert_eq!(java.iter().filter(|l| l.contains(" value=plaintext-")).count(), 280, "{java:?}");

    // Another principal reads what is stored.
    let sealed = rd::consume(&analyst.bootstrap(), &payments, &unique("analyst"), 280, &[]);
    assert!(sealed
        .iter()
        .all(|r| !r.value.contains("plaintext") && r.headers.iter().any(|(k, v)| k == "weir.encryption" && v == "v1")));

    // Fields: only `$.card` is sealed; others are refused the topic.
    let card = |i: usize| format!(r#"{{"card": {{"number": "4111-{i}", "cvc": "{i}"}}, "amount": {i}}}"#);
    let cards_out = rd::producer(&billing.bootstrap(), &[]);
    for i in 0..20 {
        let value = card(i);
        let record = rdkafka::producer::FutureRecord::to(&cards).key("k").payload(&value);
        cards_out.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let raw = stored(&cards, 20);
    for (i, (value, marker)) in raw.iter().enumerate() {
        let text = String::from_utf8(value.clone()).unwrap();
        assert_eq!(marker.as_deref(), Some("v1;$.card"));
        assert!(!text.contains("4111") && text.ends_with(&format!(r#", "amount": {i}}}"#)), "{text}");
    }
    assert!(!topic_log_bytes(&cards).windows(4).any(|w| w == b"4111"));
    let opened = rd::consume(&billing.bootstrap(), &cards, &unique("billing"), 20, &[]);
    assert_eq!(rd::values(&opened), (0..20).map(card).collect());
    assert_refused(&analyst, &cards);
    billing.assert_quiet();
    analyst.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_its_kms_a_sidecar_writes_nothing_and_serves_no_sealed_record() {
    let prefix = unique("no-kms");
    let (payments, cards) = (format!("{prefix}-payments"), format!("{prefix}-cards"));
    let keys = key_file(&prefix, "kek-1", &[("kek-1", [33; 32])]);
    let writer = sidecar("User:billing", &keys, &payments, &cards);
    rd::create_topic(&direct_bootstrap(), &payments, 1).await;
    rd::produce(&rd::producer(&writer.bootstrap(), &[]), &payments, "plaintext", 10).await;

    let lost = sidecar("User:billing", Path::new("/nonexistent/weir/keys.json"), &payments, &cards);
    let refusal = rd::produce_refused(&lost.bootstrap(), &payments, &[]).await;
    assert_eq!(refusal.delivery, rdkafka::types::RDKafkaErrorCode::MessageTimedOut, "{refusal:?}");
    assert_eq!(stored(&payments, 10).len(), 10);
    assert!(!topic_log_bytes(&payments).windows(9).any(|w| w == b"plaintext"));

    // Nor does it read what is sealed: the partition fails, the sidecar says why.
    serves_nothing_until_it_says(&lost, &payments, |l| l.contains("/nonexistent/weir/keys.json"));
    writer.assert_quiet();
    lost.assert_quiet_except(&["sealed records not served"]);
}

/// Whether the sidecar streamed a Fetch response through its records passes (its debug log).
fn streamed_through_passes(sidecar: &Sidecar) -> bool {
    sidecar.logs().iter().any(|l| l.contains("a Fetch response streamed through its records passes"))
}

#[tokio::test(flavor = "multi_thread")]
async fn large_fetches_are_opened_refused_or_failed_while_they_stream() {
    let prefix = unique("streamed");
    let (payments, cards) = (format!("{prefix}-payments"), format!("{prefix}-cards"));
    let keys = key_file(&prefix, "kek-1", &[("kek-1", [44; 32])]);
    let billing = sidecar("User:billing", &keys, &payments, &cards);
    rd::create_topic(&direct_bootstrap(), &payments, 3).await;
    rd::create_topic(&direct_bootstrap(), &cards, 2).await;

    // 3 MB of sealed records: fetch responses of up to a megabyte per partition, far above
    // what the sidecar reads whole, so they stream with each partition opened on the way.
    let count = 3000;
    let value = |i: usize| format!("plaintext-big-{i}-{}", "x".repeat(1000));
    // Batches well below the broker's 1 MiB limit: sealing adds ~100 bytes a record.
    let producer = rd::producer(&billing.bootstrap(), &[("linger.ms", "20"), ("batch.size", "262144")]);
    let sent: Vec<_> = (0..count)
        .map(|i| {
            let (key, value) = (format!("k-{i}"), value(i));
            producer.send_result(rdkafka::producer::FutureRecord::to(&payments).key(&key).payload(&value)).unwrap()
        })
        .collect();
    for delivery in sent {
        delivery.await.unwrap().unwrap();
    }
    let raw = stored(&payments, count);
    assert!(raw.iter().all(|(value, marker)| marker.as_deref() == Some("v1") && !value.starts_with(b"plaintext")));

    let read = rd::consume(&billing.bootstrap(), &payments, &unique("billing"), count, &[]);
    assert_eq!(rd::values(&read), (0..count).map(value).collect(), "librdkafka read every record opened");
    assert!(read.iter().all(|r| r.headers.is_empty()), "the marker is the sidecar's");
    assert!(streamed_through_passes(&billing), "the responses streamed");
    let java = java_client(&["consume", "--bootstrap", &billing.bootstrap(), "--topic", &payments, "--count", "3000"]);
    let opened = java.iter().filter(|l| l.contains(" value=plaintext-big-")).count();
    assert_eq!(opened, count, "the Java client read every record opened");

    // A principal the cards rule refuses hears TOPIC_AUTHORIZATION_FAILED in a streamed
    // response too, and reads nothing of it.
    let card = |i: usize| format!(r#"{{"card": {{"number": "4111-{i}"}}, "note": "{}"}}"#, "n".repeat(1000));
    let cards_out = rd::producer(&billing.bootstrap(), &[("linger.ms", "20"), ("batch.size", "262144")]);
    let sent: Vec<_> = (0..1000)
        .map(|i| {
            let value = card(i);
            cards_out.send_result(rdkafka::producer::FutureRecord::to(&cards).key("k").payload(&value)).unwrap()
        })
        .collect();
    for delivery in sent {
        delivery.await.unwrap().unwrap();
    }
    let analyst = sidecar("User:analyst", &keys, &payments, &cards);
    assert_refused(&analyst, &cards);
    assert!(streamed_through_passes(&analyst), "the refusal streamed");

    // A sidecar that lost its key file fails each partition it cannot open, and serves none.
    let lost = sidecar("User:billing", Path::new("/nonexistent/weir/streamed.json"), &payments, &cards);
    serves_nothing_until_it_says(&lost, &payments, |l| l.contains("streamed.json"));
    assert!(streamed_through_passes(&lost), "the failure streamed");
    billing.assert_quiet();
    analyst.assert_quiet();
    lost.assert_quiet_except(&["sealed records not served"]);
}

/// The tests' AWS-KMS-speaking service (scripts/kms.sh), started if needed; its endpoint.
fn aws_kms() -> String {
    let script = common::repo_root().join("scripts/kms.sh");
    let status = std::process::Command::new(&script).arg("start").status().expect("run scripts/kms.sh");
    assert!(status.success(), "scripts/kms.sh start failed");
    let out = std::process::Command::new(&script).arg("url").output().expect("scripts/kms.sh url");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs tests/python/kms_admin.py against `endpoint`.
fn kms_admin(endpoint: &str, command: &str, alias: &str) {
    let out = common::python_script("kms_admin.py", &[endpoint, command, alias]);
    assert!(out.status.success(), "kms_admin.py {command} {alias}: {}", String::from_utf8_lossy(&out.stderr));
}

fn aws_sidecar(principal: &str, endpoint: &str, alias: &str, topic: &str) -> Sidecar {
    let extra_yaml = format!(
        "fixed_principal: '{principal}'
kms: {{aws: {{region: us-east-1, key_id: 'alias/{alias}', endpoint: '{endpoint}', timeout_ms: 2000}}}}
encryption:
  - {{name: payments, topics: ['{topic}'], decrypt_for: ['User:billing'], rotate_after_records: 40}}
"
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "weir-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "weir-test-secret".to_owned()),
    ];
    Sidecar::start_with(SidecarOptions { extra_yaml, env, ..Default::default() })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_kms_wraps_the_data_keys_and_a_missing_or_lost_one_stops_both_ways() {
    let endpoint = aws_kms();
    let alias = unique("weir-kms");
    kms_admin(&endpoint, "create", &alias);
    let topic = format!("{alias}-payments");
    let writer = aws_sidecar("User:billing", &endpoint, &alias, &topic);
    rd::create_topic(&direct_bootstrap(), &topic, 2).await;
    let producer = rd::producer(&writer.bootstrap(), &[("batch.num.messages", "10")]);
    rd::produce(&producer, &topic, "plaintext-aws", 100).await;

    // Stored sealed, each envelope naming the KMS key it was wrapped under.
    let raw = stored(&topic, 100);
    let kek = format!("alias/{alias}");
    assert!(raw.iter().all(|(value, marker)| marker.as_deref() == Some("v1")
        && !value.windows(9).any(|w| w == b"plaintext")
        && value.windows(kek.len()).any(|w| w == kek.as_bytes())));
    assert!(!topic_log_bytes(&topic).windows(9).any(|w| w == b"plaintext"));

    // Another sidecar (nothing cached) opens every record through the KMS.
    let reader = aws_sidecar("User:billing", &endpoint, &alias, &topic);
    let read = rd::consume(&reader.bootstrap(), &topic, &unique("billing"), 100, &[]);
    assert_eq!(rd::values(&read), (0..100).map(|i| format!("plaintext-aws-{i}")).collect());

    // The key's name gone from the KMS: a sidecar that needs a new data key writes nothing,
    // one that must unwrap serves nothing; each says why.
    kms_admin(&endpoint, "forget", &alias);
    let late = aws_sidecar("User:billing", &endpoint, &alias, &topic);
    let refusal = rd::produce_refused(&late.bootstrap(), &topic, &[]).await;
    assert_eq!(refusal.delivery, rdkafka::types::RDKafkaErrorCode::PolicyViolation, "{refusal:?}");
    serves_nothing_until_it_says(&late, &topic, |l| l.contains("NotFoundException"));

    // A KMS that does not answer: writes are refused as retriable and time out in the client.
    let lost = aws_sidecar("User:billing", "http://127.0.0.1:9", &alias, &topic);
    let refusal = rd::produce_refused(&lost.bootstrap(), &topic, &[]).await;
    assert_eq!(refusal.delivery, rdkafka::types::RDKafkaErrorCode::MessageTimedOut, "{refusal:?}");
    assert_eq!(stored(&topic, 100).len(), 100, "nothing more was written");
    writer.assert_quiet();
    reader.assert_quiet();
    late.assert_quiet_except(&["sealed records not served"]);
    lost.assert_quiet_except(&[]);
}
