//! Tracing through record headers (`otlp:`, `traces:`) with a real trace backend: Jaeger
//! (scripts/jaeger.sh) receives the sidecars' spans over OTLP/HTTP and the test reads the
//! traces back through Jaeger's query API. A producer's sidecar and a consumer's sidecar,
//! each its own service: one trace shows the producer's span and the consumer's fetch span,
//! its child.

mod common;

use std::time::{Duration, Instant};

use common::{direct_bootstrap, http_get, jaeger, rd, unique, Sidecar, SidecarOptions};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

fn sidecar(principal: &str, service: &str, topic: &str, extra: &str) -> Sidecar {
    let (otlp, _) = jaeger();
    let extra_yaml = format!(
        "fixed_principal: '{principal}'
otlp: {{endpoint: '{otlp}', service_name: '{service}', interval_ms: 200}}
traces: {{topics: ['{topic}'], sample_ratio: 1.0{extra}}}
"
    );
    Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() })
}

/// GET a path of Jaeger's query API, as JSON.
fn query(path: &str) -> Value {
    let (_, base) = jaeger();
    let addr = base.trim_start_matches("http://").parse().expect("the query API's address");
    let (status, body) = http_get(addr, path).expect("Jaeger's query API answers");
    if status != 200 {
        return Value::Null;
    }
    serde_json::from_str(&body).expect("JSON from Jaeger")
}

/// The spans of trace `trace_id` once at least `count` are in (waits up to 30 s), and the
/// trace's service name of each span's process.
fn trace_spans(trace_id: &str, count: usize) -> Vec<(Value, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let trace = query(&format!("/api/traces/{trace_id}"));
        let found = trace["data"][0]["spans"].as_array().cloned().unwrap_or_default();
        if found.len() >= count {
            let processes = &trace["data"][0]["processes"];
            return found
                .into_iter()
                .map(|span| {
                    let service =
                        processes[span["processID"].as_str().unwrap()]["serviceName"].as_str().unwrap().to_owned();
                    (span, service)
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "trace {trace_id} has {} spans, not {count}: {trace}", found.len());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key).map_or(&Value::Null, |t| &t["value"])
}

fn parent(span: &Value) -> Option<&str> {
    span["references"].as_array()?.iter().find(|r| r["refType"] == "CHILD_OF")?["spanID"].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_shows_the_producers_span_and_the_consumers_fetch_as_its_child() {
    let topic = unique("traced");
    let producer_side = sidecar("User:orders-svc", &format!("{topic}-orders"), &topic, ", request_spans: 1.0");
    let consumer_side = sidecar("User:billing", &format!("{topic}-billing"), &topic, "");
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;

    // Five records without trace context, one with the application's sampled context, one
    // with an unsampled one.
    let producer = rd::producer(&producer_side.bootstrap(), &[("linger.ms", "100")]);
    let app_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (sampled, unsampled) =
        (format!("00-{app_trace}-00f067aa0ba902b7-01"), "00-11111111111111111111111111111111-2222222222222222-00");
    let mut sends = Vec::new();
    for (i, traceparent) in
        [None, None, None, None, None, Some(sampled.as_str()), Some(unsampled)].into_iter().enumerate()
    {
        let value = format!("order-{i}");
        let mut headers = OwnedHeaders::new().insert(Header { key: "n", value: Some(&i.to_string()) });
        if let Some(traceparent) = traceparent {
            headers = headers.insert(Header { key: "traceparent", value: Some(traceparent) });
        }
        let record = FutureRecord::to(&topic).key("k").payload(&value).headers(headers);
        sends.push(producer.send_result(record).unwrap());
    }
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let read = rd::consume(&consumer_side.bootstrap(), &topic, &unique("billing"), 7, &[]);
    let traceparent = |i: usize| -> String {
        let record = read.iter().find(|r| r.value == format!("order-{i}")).unwrap();
        let found: Vec<&String> = record.headers.iter().filter(|(k, _)| k == "traceparent").map(|(_, v)| v).collect();
        assert_eq!(found.len(), 1, "{record:?}");
        found[0].clone()
    };
    // The sidecar gave the records without context one, sampled; the others kept theirs.
    let given = traceparent(0);
    let parts: Vec<&str> = given.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{given}");
    assert_eq!(traceparent(5), sampled);
    assert_eq!(traceparent(6), unsampled);

    // In Jaeger: the producer's span (the one the header names) and the fetch span, its child.
    let (trace_id, produce_span) = (parts[1], parts[2]);
    let spans = trace_spans(trace_id, 2);
    let produce = spans.iter().find(|(s, _)| s["spanID"] == produce_span).expect("the produce span");
    assert_eq!(produce.1, format!("{topic}-orders"));
    assert_eq!(produce.0["operationName"], format!("produce {topic}"));
    assert_eq!(tag(&produce.0, "messaging.destination.name"), topic.as_str());
    assert_eq!(tag(&produce.0, "weir.principal"), "User:orders-svc");
    assert_eq!(tag(&produce.0, "messaging.kafka.offset"), 0, "the first record's offset, from the broker's answer");
    let fetch = spans.iter().find(|(s, _)| s["operationName"] == format!("fetch {topic}")).expect("the fetch span");
    assert_eq!(fetch.1, format!("{topic}-billing"));
    assert_eq!(parent(&fetch.0), Some(produce_span), "the fetch is the produce's child");
    assert_eq!(tag(&fetch.0, "weir.principal"), "User:billing");

    // The application's own context: both spans in its trace, children of its span.
    let spans = trace_spans(app_trace, 2);
    for (span, _) in &spans {
        assert_eq!(parent(span), Some("00f067aa0ba902b7"), "{span}");
    }
    // The unsampled one: no span.
    std::thread::sleep(Duration::from_millis(600));
    assert!(query("/api/traces/11111111111111111111111111111111")["data"][0]["spans"]
        .as_array()
        .is_none_or(|s| s.is_empty()));

    // The producer's sidecar traced its own requests too (request_spans: 1.0).
    let deadline = Instant::now() + Duration::from_secs(30);
    let service = format!("{topic}-orders");
    loop {
        let traces = query(&format!("/api/traces?service={service}&operation=kafka%20Produce&limit=5"));
        if let Some(span) = traces["data"].as_array().and_then(|t| t.first()).map(|t| t["spans"][0].clone()) {
            assert!(tag(&span, "weir.upstream_us").as_i64().unwrap() > 0, "{span}");
            assert!(tag(&span, "weir.sidecar_us").as_i64().is_some(), "{span}");
            break;
        }
        assert!(Instant::now() < deadline, "no request span for {service}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(producer_side.metric("weir_otlp_spans_total", &[("outcome", "exported")]) >= 3.0);
    assert_eq!(producer_side.metric("weir_otlp_spans_total", &[("outcome", "failed")]), 0.0);
    producer_side.assert_quiet();
    consumer_side.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_of_several_batches_is_refused_whole_not_cut_to_its_first() {
    use bytes::BytesMut;
    use common::raw::{batch_of, call, to_leader_of};
    use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use weir_wire::kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    use weir_wire::kafka_protocol::protocol::StrBytes;

    let topic = unique("traced-batches");
    let sidecar = sidecar("User:orders-svc", &format!("{topic}-orders"), &topic, "");
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    let produce = |batches: Vec<bytes::Bytes>| {
        let part =
            TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.clone()))).with_partition_data(
                vec![PartitionProduceData::default().with_index(0).with_records(Some(batches.concat().into()))],
            );
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![part]);
        let answer: ProduceResponse = call(&mut to_leader_of(&sidecar, &topic), ApiKey::Produce, 9, &request);
        answer.responses[0].partition_responses[0].error_code
    };
    // One partition, two batches: one without context (the sidecar rewrites it), then one
    // that declares two records and holds one (tracing cannot read it and lets it go on).
    // Kafka takes one batch per partition and refuses the request with INVALID_RECORD; the
    // sidecar must pass both on, rather than cut the request to the batch it rewrote and have
    // that one acknowledged while the client's other batch is lost.
    let mut unreadable = BytesMut::from(&batch_of(&[(b"second", &[])])[..]);
    unreadable[57..61].copy_from_slice(&2i32.to_be_bytes());
    let refused = produce(vec![batch_of(&[(b"first", &[])]), unreadable.freeze()]);
    assert_ne!(refused, 0, "the broker refuses what it was sent, as without the sidecar");
    assert_eq!(produce(vec![batch_of(&[(b"after", &[("h", b"x")])])]), 0);

    // Nothing of the refused request was written: the one record there is the last one.
    let read = rd::consume(&direct_bootstrap(), &topic, &unique("check"), 1, &[]);
    assert_eq!(read[0].value, "after");
    assert_eq!(read[0].headers[0], ("h".to_owned(), "x".to_owned()), "the record's own headers kept");
    assert_eq!(read[0].headers[1].0, "traceparent", "and a context added");
    sidecar.assert_quiet();
}
