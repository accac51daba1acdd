//! librdkafka (through the `rdkafka` crate) as a real client in tests.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4").set("log_level", "4");
    c
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().expect("admin client")
}

/// Creates a topic with RF 3 and waits until it is usable.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin = admin(bootstrap);
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(3))], &AdminOptions::new())
        .await
        .expect("create_topics");
    for r in results {
        match r {
            Ok(_) => {}
            // Topic names are unique to a test: one that exists was made by this very request,
            // retried by librdkafka after a timeout on a slow cluster.
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("create topic {t}: {e}"),
        }
    }
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = config(bootstrap);
    c.set("linger.ms", "5").set("message.timeout.ms", "60000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Produces `count` records `prefix-i` with two headers of the same key; returns once all are acked.
pub async fn produce(producer: &FutureProducer, topic: &str, prefix: &str, count: usize) {
    let futures: Vec<_> = (0..count)
        .map(|i| {
            let value = format!("{prefix}-{i}");
            let key = format!("k-{i}");
            let headers = OwnedHeaders::new()
                .insert(Header { key: "dup", value: Some("a") })
                .insert(Header { key: "dup", value: Some("b") });
            let record = FutureRecord::to(topic).key(&key).payload(&value).headers(headers);
            producer.send_result(record).expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await.expect("delivery future").unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }
}

pub const AUTHENTICATION: RDKafkaErrorCode = RDKafkaErrorCode::Authentication;
pub const TRANSPORT: RDKafkaErrorCode = RDKafkaErrorCode::BrokerTransportFailure;
pub const ALL_BROKERS_DOWN: RDKafkaErrorCode = RDKafkaErrorCode::AllBrokersDown;
pub const SSL: RDKafkaErrorCode = RDKafkaErrorCode::SSL;
pub const RESOLVE: RDKafkaErrorCode = RDKafkaErrorCode::Resolve;

/// What a refused client heard: the errors librdkafka reported (its error callback: failed
/// connections, authentication, TLS), and the delivery error of the one record it tried.
#[derive(Debug)]
pub struct Refusal {
    pub client_errors: Vec<RDKafkaErrorCode>,
    pub delivery: RDKafkaErrorCode,
}

impl Refusal {
    /// Asserts the client was told one of `expected` (the reason, not merely a timeout).
    pub fn assert_heard(&self, expected: &[RDKafkaErrorCode], what: &str) {
        assert!(
            self.client_errors.iter().any(|e| expected.contains(e)),
            "{what}: expected one of {expected:?}, heard {self:?}"
        );
    }
}

/// Records the errors librdkafka reports outside any one request.
#[derive(Default, Clone)]
struct ErrorRecorder(Arc<Mutex<Vec<RDKafkaErrorCode>>>);

impl ClientContext for ErrorRecorder {
    fn error(&self, error: KafkaError, _reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.0.lock().unwrap().push(code);
        }
    }
}

/// Tries to produce one record with a short delivery timeout and returns what the client
/// heard; panics if the record was delivered.
pub async fn produce_refused(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Refusal {
    let mut c = config(bootstrap);
    c.set("message.timeout.ms", "4000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let heard = ErrorRecorder::default();
    let producer: FutureProducer<ErrorRecorder> = c.create_with_context(heard.clone()).expect("producer");
    let sent = producer.send(FutureRecord::<(), _>::to(topic).payload("x"), Duration::from_secs(4)).await;
    let delivery = match sent {
        Ok(_) => panic!("a record reached {topic} through {bootstrap} with {extra:?}"),
        Err((error, _)) => error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown),
    };
    let client_errors = heard.0.lock().unwrap().clone();
    Refusal { client_errors, delivery }
}

/// A consumed record: key, value and headers in wire order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumed {
    pub key: String,
    pub value: String,
    pub headers: Vec<(String, String)>,
}

pub fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = config(bootstrap);
    c.set("group.id", group).set("auto.offset.reset", "earliest").set("enable.partition.eof", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// Consumes `count` records from `topic` (subscribing as `group`), failing after `timeout`.
pub fn consume(bootstrap: &str, topic: &str, group: &str, count: usize, extra: &[(&str, &str)]) -> Vec<Consumed> {
    let consumer = consumer(bootstrap, group, extra);
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        assert!(Instant::now() < deadline, "consumed only {} of {count} records from {topic}", out.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Consumed {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    // Anything beyond `count` within a short grace is an error too (duplicates).
    let grace = Instant::now() + Duration::from_millis(500);
    while Instant::now() < grace {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            panic!("unexpected extra record at offset {} of partition {}", m.offset(), m.partition());
        }
    }
    out
}

/// The values of consumed records, as a set.
pub fn values(records: &[Consumed]) -> BTreeSet<String> {
    records.iter().map(|r| r.value.clone()).collect()
}
