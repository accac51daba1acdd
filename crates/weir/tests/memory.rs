//! Memory per connection is bounded: a sidecar holding 1,000 idle client connections while 100
//! consumers pull multi-megabyte Fetch responses through it stays within a fixed budget,
//! because a streamed response passes through a fixed window instead of being held whole, and
//! quiet connections give their read buffers back.
//! The sidecar's resident memory is read from /proc and printed; the data must arrive intact.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{direct_bootstrap, raw, rd, unique, Sidecar, SidecarOptions};
use rdkafka::producer::FutureRecord;
use weir_wire::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use weir_wire::kafka_protocol::protocol::StrBytes;

const IDLE: usize = 1_000;
const STREAMING: usize = 100;
const FETCHES_EACH: usize = 3;
const RECORD: usize = 1024;
const RECORDS: usize = 6 * 1024;
/// Each Fetch asks for all of the partition: ~6 MiB, far above the streaming threshold.
const FETCH_BYTES: i32 = 16 * 1024 * 1024;
const FETCH_VERSION: i16 = 17;
/// What 1,000 idle and 100 streaming connections may add to the sidecar's resident memory:
/// 64 MB in all, less the 10 MB the sidecar itself may take idle.
const CONNECTIONS_BUDGET_BYTES: u64 = (64 - 10) * 1000 * 1000;

fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc status"));
    let kb: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of kB");
    kb * 1024
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn fetch_request(topic_id: uuid::Uuid) -> FetchRequest {
    let partition =
        FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(FETCH_BYTES);
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic_id(topic_id).with_partitions(vec![partition])])
}

/// The records of partition 0 in one Fetch, read over `stream`.
fn fetch_records(stream: &mut TcpStream, topic_id: uuid::Uuid) -> Bytes {
    let response: FetchResponse = raw::call(stream, ApiKey::Fetch, FETCH_VERSION, &fetch_request(topic_id));
    assert_eq!(response.error_code, 0, "Fetch refused");
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "partition error");
    partition.records.clone().expect("records")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_streaming_connections_stay_within_the_memory_budget() {
    // All from one address: above the default per-source limit.
    let options = SidecarOptions {
        extra_yaml: "limits: {max_connections_per_source: 2000}\n".into(),
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::start_with(options);
    let pid = sidecar.pid();
    let topic = unique("memory");
    let direct = direct_bootstrap();
    rd::create_topic(&direct, &topic, 1).await;
    let producer = rd::producer(&direct, &[("batch.size", "1000000"), ("linger.ms", "20")]);
    let value = vec![b'm'; RECORD];
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| {
            let key = i.to_string();
            producer.send_result(FutureRecord::to(&topic).key(&key).payload(&value)).expect("enqueue")
        })
        .collect();
    for delivery in deliveries {
        delivery.await.expect("delivery").unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }

    // Where partition 0 leads, through the sidecar (its own listener for that broker), and
    // directly, for the reference bytes.
    let mut bootstrap = connect(sidecar.addr);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from(topic.clone()))))
    ]));
    let metadata: MetadataResponse = raw::call(&mut bootstrap, ApiKey::Metadata, 12, &metadata);
    let described = &metadata.topics[0];
    let (topic_id, leader) = (described.topic_id, described.partitions[0].leader_id);
    let broker = metadata.brokers.iter().find(|b| b.node_id == leader).expect("leader among brokers");
    let via_sidecar: SocketAddr = format!("{}:{}", broker.host, broker.port).parse().expect("a sidecar address");
    let direct_leader: SocketAddr = format!("127.0.0.1:{}", 9092 + 10 * (leader.0 - 1)).parse().unwrap();
    let reference = fetch_records(&mut connect(direct_leader), topic_id);
    assert!(reference.len() > 4 * 1024 * 1024, "the partition holds {} bytes", reference.len());

    let at_start = status_bytes(pid, "VmRSS:");
    // Idle clients: connected, one ApiVersions exchanged (so each also holds its broker
    // connection), then silent.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| {
            let mut stream = connect(sidecar.addr);
            let versions: ApiVersionsResponse =
                raw::call(&mut stream, ApiKey::ApiVersions, 3, &raw::api_versions_request());
            assert_eq!(versions.error_code, 0);
            stream
        })
        .collect();
    // Long enough for quiet connections to give their read buffers back.
    std::thread::sleep(Duration::from_millis(1500));
    let with_idle = status_bytes(pid, "VmRSS:");

    // The sidecar's resident memory, sampled while the consumers stream.
    let streaming = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (streaming, peak) = (streaming.clone(), peak.clone());
        std::thread::spawn(move || {
            while streaming.load(Ordering::Relaxed) {
                peak.fetch_max(status_bytes(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let consumers: Vec<_> = (0..STREAMING)
        .map(|_| {
            let reference = reference.clone();
            std::thread::spawn(move || {
                let mut stream = connect(via_sidecar);
                for round in 0..FETCHES_EACH {
                    let records = fetch_records(&mut stream, topic_id);
                    assert!(records == reference, "round {round}: {} bytes, not the broker's", records.len());
                }
            })
        })
        .collect();
    for consumer in consumers {
        consumer.join().expect("a streaming consumer failed");
    }
    streaming.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let streaming_peak = peak.load(Ordering::Relaxed);
    let high_water = status_bytes(pid, "VmHWM:");

    // The idle connections are still served.
    for stream in idle.iter().take(10) {
        let mut stream = stream.try_clone().unwrap();
        let versions: ApiVersionsResponse =
            raw::call(&mut stream, ApiKey::ApiVersions, 3, &raw::api_versions_request());
        assert_eq!(versions.error_code, 0);
    }
    let streamed = (STREAMING * FETCHES_EACH) as u64 * reference.len() as u64;
    println!(
        "sidecar RSS: {:.1} MB at start, {:.1} MB with {IDLE} idle connections, peak {:.1} MB (VmHWM {:.1} MB) \
         while {STREAMING} consumers streamed {:.0} MB in Fetch responses of {:.1} MB",
        mb(at_start),
        mb(with_idle),
        mb(streaming_peak),
        mb(high_water),
        mb(streamed),
        mb(reference.len() as u64)
    );
    // The budget is for the release build; a debug build's own footprint is larger, so what
    // the connections add is what is held to it.
    let added = high_water.saturating_sub(at_start);
    assert!(
        added < CONNECTIONS_BUDGET_BYTES,
        "the connections added {:.1} MB to the sidecar's resident memory, above the {:.0} MB budget",
        mb(added),
        mb(CONNECTIONS_BUDGET_BYTES)
    );
    drop((idle, bootstrap));
    sidecar.assert_quiet();
}
