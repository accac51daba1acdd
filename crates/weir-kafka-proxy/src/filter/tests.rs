//! The chain's promises to filters, without sockets: order, interests, short-circuits, notes,
//! authentication, and one decode per response however many filters read it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceRequest};
use kafka_protocol::protocol::StrBytes;
use weir_wire::message::{decode_response, encode_response, ResponseMessage};
use weir_wire::RequestHeaderPeek;

use super::testing::{connection, request, TestServices};
use super::*;

type Log = Arc<Mutex<Vec<String>>>;

/// A filter that writes down every hook call and does what it was told.
struct Probe {
    name: &'static str,
    wants: Vec<ApiKey>,
    log: Log,
    /// Answer requests instead of passing them on.
    answer: bool,
    /// Leave a note on each request.
    note: bool,
    /// Authenticate the client as this principal.
    authenticate: Option<&'static str>,
    /// Want the responses of what it wants the requests of.
    responses: bool,
}

impl Probe {
    fn new(name: &'static str, wants: &[ApiKey], log: &Log) -> Self {
        Self {
            name,
            wants: wants.to_vec(),
            log: log.clone(),
            answer: false,
            note: false,
            authenticate: None,
            responses: true,
        }
    }

    fn write(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }
}

impl Filter for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        self.wants.contains(&api)
    }

    fn wants_response(&self, api: ApiKey, _version: i16) -> bool {
        self.responses && self.wants.contains(&api)
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        self.write(format!("{} request", self.name));
        if self.note {
            cx.remember(format!("note of {}", self.name));
        }
        if let Some(principal) = self.authenticate {
            cx.authenticated(principal.to_owned());
        }
        let action = match self.answer {
            true => RequestAction::Answer(Bytes::from_static(b"answer")),
            false => RequestAction::Continue,
        };
        ready(Ok(action))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let note = cx.take_note::<String>().map(|n| format!(" with {n}")).unwrap_or_default();
        let principal = cx.connection.principal.clone().unwrap_or_default();
        self.write(format!("{} response{note} as {principal:?}", self.name));
        ready(Ok(()))
    }

    fn on_authenticated(&mut self, principal: &str) {
        self.write(format!("{} heard {principal}", self.name));
    }
}

fn metadata_request() -> (RequestHeaderPeek, Bytes) {
    let frame = request(ApiKey::Metadata, 12, &MetadataRequest::default());
    (RequestHeaderPeek::parse(&frame).unwrap(), frame)
}

fn metadata_response() -> ResponseMessage {
    let body = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(1.into())
            .with_host(StrBytes::from_static_str("broker-1"))
            .with_port(9092)])
        .with_topics(vec![MetadataResponseTopic::default().with_name(Some(StrBytes::from_static_str("t").into()))]);
    ResponseMessage::new(encode_response(42, ApiKey::Metadata, 12, &body).unwrap(), ApiKey::Metadata, 12)
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn requests_go_forwards_responses_backwards_and_only_to_filters_that_want_them() {
    let log = Log::default();
    let filters: Vec<Box<dyn Filter>> = vec![
        Box::new(Probe::new("a", &[ApiKey::Metadata], &log)),
        Box::new(Probe::new("b", &[ApiKey::Produce], &log)),
        Box::new(Probe::new("c", &[ApiKey::Metadata, ApiKey::Produce], &log)),
    ];
    let mut chain = FilterChain::new(filters, connection(Some("svc")));
    let services = TestServices::default();
    let (peek, frame) = metadata_request();

    let outcome = chain.on_request(&services, &peek, frame.clone()).await.unwrap();
    assert!(matches!(outcome.action, RequestAction::Continue));
    assert_eq!(outcome.frame, frame, "nobody changed it: the very bytes go on");
    assert!(!outcome.changes_response);
    assert_eq!(taken(&log), ["a request", "c request"]);

    let mut message = metadata_response();
    chain.on_response(&services, &mut message, outcome.notes).await.unwrap();
    assert_eq!(taken(&log), ["c response as \"svc\"", "a response as \"svc\""]);

    let produce = request(ApiKey::Produce, 9, &ProduceRequest::default());
    let peek = RequestHeaderPeek::parse(&produce).unwrap();
    chain.on_request(&services, &peek, produce).await.unwrap();
    assert_eq!(taken(&log), ["b request", "c request"]);
}

#[tokio::test]
async fn an_answer_stops_the_chain_and_notes_reach_their_filter_whatever_it_wants() {
    let log = Log::default();
    let noting = Probe { note: true, ..Probe::new("noting", &[ApiKey::Metadata], &log) };
    // Wants no responses, but a note brings its request's response to it.
    let quiet = Probe { note: true, responses: false, ..Probe::new("quiet", &[ApiKey::Metadata], &log) };
    let answering = Probe { answer: true, ..Probe::new("answering", &[ApiKey::Metadata], &log) };
    let later = Probe::new("later", &[ApiKey::Metadata], &log);
    let services = TestServices::default();
    let (peek, frame) = metadata_request();

    let mut chain = FilterChain::new(vec![Box::new(noting), Box::new(answering), Box::new(later)], connection(None));
    let outcome = chain.on_request(&services, &peek, frame.clone()).await.unwrap();
    assert!(matches!(outcome.action, RequestAction::Answer(ref a) if a == "answer"));
    assert_eq!(taken(&log), ["noting request", "answering request"]);

    let mut chain = FilterChain::new(vec![Box::new(quiet), Box::new(Probe::new("b", &[], &log))], connection(None));
    let outcome = chain.on_request(&services, &peek, frame).await.unwrap();
    taken(&log);
    chain.on_response(&services, &mut metadata_response(), outcome.notes).await.unwrap();
    assert_eq!(taken(&log), ["quiet response with note of quiet as \"\""]);
}

#[tokio::test]
async fn authentication_reaches_every_filter_and_later_hooks_see_the_principal() {
    let log = Log::default();
    let sasl = Probe { authenticate: Some("alice"), answer: true, ..Probe::new("sasl", &[ApiKey::Metadata], &log) };
    let other = Probe::new("other", &[ApiKey::Metadata], &log);
    let mut chain = FilterChain::new(vec![Box::new(sasl), Box::new(other)], connection(Some("cert-name")));
    let services = TestServices::default();
    let (peek, frame) = metadata_request();

    let outcome = chain.on_request(&services, &peek, frame).await.unwrap();
    assert_eq!(outcome.authenticated.map(|a| a.principal).as_deref(), Some("alice"));
    assert_eq!(taken(&log), ["sasl request", "sasl heard alice", "other heard alice"]);
    chain.on_response(&services, &mut metadata_response(), Notes::default()).await.unwrap();
    assert_eq!(taken(&log), ["other response as \"alice\"", "sasl response as \"alice\""]);
}

/// Two filters that read and change the same decoded Metadata response.
struct Renamer(&'static str);

impl Filter for Renamer {
    fn name(&self) -> &'static str {
        self.0
    }

    fn wants_response(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Metadata
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let decoded = cx.message.decoded_mut::<MetadataResponse>().map_err(FilterError::BadResponse);
        ready(decoded.map(|r| {
            let host = format!("{}-{}", r.brokers[0].host.as_str(), self.0);
            r.brokers[0].host = StrBytes::from_string(host);
        }))
    }
}

#[tokio::test]
async fn filters_share_one_decode_and_the_response_is_encoded_once_with_every_change() {
    let services = TestServices::default();
    let mut chain = FilterChain::new(vec![Box::new(Renamer("first")), Box::new(Renamer("second"))], connection(None));
    let mut message = metadata_response();
    chain.on_response(&services, &mut message, Notes::default()).await.unwrap();
    let frame = message.into_frame().unwrap();
    let (header, body): (_, MetadataResponse) = decode_response(&frame, ApiKey::Metadata, 12).unwrap();
    assert_eq!(header.correlation_id, 42);
    // Backwards: the second filter changed it first, the first one saw that change.
    assert_eq!(body.brokers[0].host.as_str(), "broker-1-second-first");
}

#[tokio::test]
async fn a_response_no_filter_changed_leaves_as_the_brokers_bytes() {
    let services = TestServices::default();
    let log = Log::default();
    let mut chain = FilterChain::new(vec![Box::new(Probe::new("a", &[ApiKey::Metadata], &log))], connection(None));
    let mut message = metadata_response();
    let original = metadata_response().into_frame().unwrap();
    chain.on_response(&services, &mut message, Notes::default()).await.unwrap();
    let frame = message.into_frame().unwrap();
    assert_eq!(frame, original);
}

/// What the default chain costs a Produce round trip (acks=1, one partition of 16 KiB), with
/// no policy: `cargo test --release -p weir-kafka-proxy chain_cost -- --ignored --nocapture`.
/// Prints; asserts nothing (timings belong in benchmarks, not tests).
#[tokio::test]
#[ignore]
async fn chain_cost() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{ProduceResponse, TopicName};

    use crate::directory::BrokerDirectory;
    use crate::filters::{addresses, authz, fetch_sessions, traffic};

    let mut batch = vec![0u8; 16 * 1024];
    batch[8..12].copy_from_slice(&(16 * 1024 - 12i32).to_be_bytes());
    batch[16] = 2;
    batch[57..61].copy_from_slice(&100i32.to_be_bytes());
    let topic = TopicName(StrBytes::from_static_str("bench"));
    let request_body = ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(topic.clone()).with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(Bytes::from(batch)))]),
    ]);
    let response_body = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(topic)
        .with_partition_responses(vec![PartitionProduceResponse::default().with_index(0).with_base_offset(7)])]);
    let frame = request(ApiKey::Produce, 11, &request_body);
    let peek = RequestHeaderPeek::parse(&frame).unwrap();
    let response = encode_response(42, ApiKey::Produce, 11, &response_body).unwrap();

    let connection = connection(Some("svc"));
    let (directory, _opened) = BrokerDirectory::new("127.0.0.1".into(), "127.0.0.1".parse().unwrap(), 20000, 10);
    let filters: Vec<Box<dyn Filter>> = vec![
        Box::new(fetch_sessions::FetchSessionFilter::new(Arc::default())),
        Box::new(authz::ConnectionAuthz::new(None, Some("svc"), connection.peer, "bootstrap")),
        Box::new(traffic::TrafficFilter::new(&connection, false)),
        Box::new(addresses::AddressFilter::new(Arc::new(directory))),
    ];
    let chain = tokio::sync::Mutex::new(FilterChain::new(filters, connection));
    let services = TestServices::default();
    let rounds = 200_000;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        let outcome = chain.lock().await.on_request(&services, &peek, frame.clone()).await.unwrap();
        let mut message = ResponseMessage::new(response.clone(), ApiKey::Produce, 11);
        chain.lock().await.on_response(&services, &mut message, outcome.notes).await.unwrap();
        std::hint::black_box(message.into_frame().unwrap());
    }
    let per_round = started.elapsed() / rounds;
    println!("default chain, Produce request and response: {per_round:?} per round trip");

    // The same work without the chain: what the session did before filters existed.
    let mut produced = crate::metrics::TopicCache::new(
        crate::metrics::Direction::Produced,
        crate::metrics::TrafficPrincipal::default(),
    );
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        weir_wire::produce::scan_produce(&frame, &peek, |topic, _, records| {
            if let weir_wire::scan::TopicRef::Name(name) = topic {
                produced.add(&services.metrics, name, weir_wire::records::count_records(records), records.len() as u64)
            }
        })
        .unwrap();
        let parsed = weir_wire::ResponseFrame::parse(&response, ApiKey::Produce, 11).unwrap();
        let hints = weir_wire::produce::scan_produce_response(&parsed.body(), 11, |_, _, error| {
            if error != 0 {
                services.metrics.response_error(ApiKey::Produce, error);
            }
        })
        .unwrap();
        std::hint::black_box((hints, &response));
    }
    let per_round = started.elapsed() / rounds;
    println!("the same walks without the chain: {per_round:?} per round trip");
}
