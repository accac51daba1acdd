//! The generated programs checked against kafka-protocol's decoders for every api key, both
//! directions and every version the sidecar lets through (`header::codec_versions`): a body
//! written by the program (every array with one element, every nullable value present, every
//! known tagged field set) is walked to its end and read in full by the decoder. A program that
//! disagrees with the decoder on any field's place or width fails here.

use super::*;
use crate::header::codec_versions;
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

/// Writes a body the program accepts, as full as the program allows.
fn write(program: &Program, out: &mut Vec<u8>) {
    for op in program.ops {
        write_op(op, program.flexible, out);
    }
    if program.flexible {
        let known: Vec<_> = program.tags.iter().filter_map(|t| t.op.map(|op| (t.tag, op))).collect();
        uvarint(known.len() as u32, out);
        for (tag, op) in known {
            let mut value = Vec::new();
            write_op(&op, true, &mut value);
            uvarint(tag, out);
            uvarint(value.len() as u32, out);
            out.extend(value);
        }
    }
}

fn write_op(op: &Op, flexible: bool, out: &mut Vec<u8>) {
    let length = |n: usize, out: &mut Vec<u8>, wide: bool| match (flexible, wide) {
        (true, _) => uvarint(n as u32 + 1, out),
        (false, true) => out.extend((n as i32).to_be_bytes()),
        (false, false) => out.extend((n as i16).to_be_bytes()),
    };
    match *op {
        Op::Skip(n) => out.extend(std::iter::repeat_n(0, n as usize)),
        Op::Int { width, .. } => out.extend(std::iter::repeat_n(0, usize::from(width))),
        Op::Bool(_) => out.push(1),
        Op::Uuid(_) => out.extend([7; 16]),
        Op::String { .. } => {
            length(1, out, false);
            out.push(b'a');
        }
        Op::Bytes { .. } => {
            length(2, out, true);
            out.extend([1, 2]);
        }
        Op::Struct { nullable, program } => {
            if nullable {
                out.push(1);
            }
            write(program, out);
        }
        Op::Array { element, .. } => {
            length(1, out, true);
            write_op(element, flexible, out);
        }
    }
}

fn uvarint(mut n: u32, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[test]
fn every_program_agrees_with_the_decoder_at_every_version_the_sidecar_lets_through() {
    let mut checked = 0;
    for key in ApiKey::iter() {
        let range = codec_versions(key);
        for (direction, spec) in [("request", request(key as i16)), ("response", response(key as i16))] {
            let spec = spec.unwrap_or_else(|| panic!("{key:?}: no {direction} spec"));
            for v in range.min..=range.max {
                let program = spec.program(v).unwrap_or_else(|| panic!("{key:?} {direction} v{v}: no program"));
                assert_eq!(program.flexible, spec.flexible.contains(v), "{key:?} {direction} v{v}");
                let mut body = Vec::new();
                write(program, &mut body);
                let what = format!("{key:?} {direction} v{v} {body:02x?}");
                assert_eq!(walk_body(&body, spec, v, &mut ()), Ok(body.len()), "{what}");
                let mut buf = Bytes::from(body.clone());
                let decoded = match direction {
                    "request" => RequestKind::decode(key, &mut buf, v).map(drop),
                    _ => ResponseKind::decode(key, &mut buf, v).map(drop),
                };
                assert!(decoded.is_ok(), "{what}: the decoder refuses it: {decoded:?}");
                assert!(buf.is_empty(), "{what}: the decoder leaves {} bytes", buf.len());
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn the_tables_know_which_kafka_they_came_from_and_index_by_api_key() {
    assert!(KAFKA_VERSION.starts_with("4."), "{KAFKA_VERSION}");
    for spec in all() {
        let found = match spec.direction {
            Direction::Request => request(spec.api_key),
            Direction::Response => response(spec.api_key),
        };
        assert_eq!(found.map(|s| s.name), Some(spec.name));
        assert_eq!(spec.programs.len(), (spec.versions.hi - spec.versions.lo + 1) as usize, "{}", spec.name);
    }
    assert!(request(-1).is_none() && request(i16::MAX).is_none());
}

/// The data path keeps hand-written scanners for Produce and Fetch (the programs' interpreter
/// costs about twice as much per field; see docs/benchmarks.md). They must read what the
/// programs read: at every version, a full body is accepted with its one topic and partition
/// found, and every strict prefix of it refused, so the scanner read it to its last byte.
#[test]
fn the_data_path_scanners_read_what_the_programs_read() {
    let body_of = |spec: &'static MessageSpec, v: i16| {
        let mut body = Vec::new();
        write(spec.program(v).expect("a program"), &mut body);
        body
    };
    let produce = codec_versions(ApiKey::Produce);
    for v in produce.min..=produce.max {
        let body = body_of(request(0).unwrap(), v);
        let mut names = Vec::new();
        assert_eq!(crate::produce::scan_produce_names(&body, v, |n| names.push(n)), Ok(()), "Produce request v{v}");
        assert_eq!(names.len(), 2, "Produce request v{v}: the transactional id and one topic: {names:?}");
        for cut in 0..body.len() {
            assert!(crate::produce::scan_produce_names(&body[..cut], v, |_| {}).is_err(), "v{v} cut at {cut}");
        }
        let body = body_of(response(0).unwrap(), v);
        let mut partitions = 0;
        let scanned = crate::produce::scan_produce_response(&body, v, |_, _, _| partitions += 1);
        assert!(scanned.is_ok() && partitions == 1, "Produce response v{v}: {scanned:?}, {partitions}");
        for cut in 0..body.len() {
            assert!(crate::produce::scan_produce_response(&body[..cut], v, |_, _, _| {}).is_err(), "v{v} cut at {cut}");
        }
    }
    let fetch = codec_versions(ApiKey::Fetch);
    for v in fetch.min..=fetch.max {
        let body = body_of(response(1).unwrap(), v);
        let mut partitions = 0;
        let scanned = crate::fetch::scan_fetch_response(&body, v, |_| partitions += 1);
        assert!(scanned.is_ok() && partitions == 1, "Fetch response v{v}: {scanned:?}, {partitions}");
        for cut in 0..body.len() {
            assert!(crate::fetch::scan_fetch_response(&body[..cut], v, |_| {}).is_err(), "v{v} cut at {cut}");
        }
    }
}

/// What a walk costs: `cargo test --release -p weir-wire walk_cost -- --ignored --nocapture`.
/// (The figures in docs/benchmarks.md; the hand-written walkers these replaced were timed with
/// the same bodies at commit b2d4df4.)
#[test]
#[ignore]
fn walk_cost() {
    use crate::test_support::encoded;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let tn = |s: String| TopicName(StrBytes::from_string(s));
    let fetch = {
        use fetch_request::*;
        let partition =
            |p| FetchPartition::default().with_partition(p).with_fetch_offset(100).with_partition_max_bytes(1 << 20);
        let topic =
            FetchTopic::default().with_topic(tn("orders".into())).with_partitions((0..3).map(partition).collect());
        encoded(FetchRequest::default().with_max_wait_ms(500).with_topics(vec![topic]), 17)
    };
    let metadata = {
        let topic = |i| metadata_request::MetadataRequestTopic::default().with_name(Some(tn(format!("topic-{i}"))));
        encoded(MetadataRequest::default().with_topics(Some((0..5).map(topic).collect())), 12)
    };
    let commit = {
        use offset_commit_request::*;
        let partition = |p| OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(1000);
        let topic = OffsetCommitRequestTopic::default()
            .with_name(tn("orders".into()))
            .with_partitions((0..10).map(partition).collect());
        let group = GroupId(StrBytes::from_static_str("group"));
        encoded(OffsetCommitRequest::default().with_group_id(group).with_topics(vec![topic]), 9)
    };
    let metadata_response = {
        use metadata_response::*;
        let broker = |i| {
            let host = StrBytes::from_static_str("broker-1.example");
            MetadataResponseBroker::default().with_node_id(BrokerId(i)).with_host(host).with_port(9092)
        };
        let partition = |p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])
        };
        let topic = |i| {
            MetadataResponseTopic::default()
                .with_name(Some(tn(format!("topic-{i}"))))
                .with_partitions((0..3).map(partition).collect())
        };
        let response = MetadataResponse::default()
            .with_brokers((0..3).map(broker).collect())
            .with_topics((0..10).map(topic).collect());
        encoded(response, 12)
    };
    let time = |name: &str, n: u32, f: &mut dyn FnMut() -> usize| {
        let mut sink = 0;
        for _ in 0..n / 10 {
            sink += f();
        }
        let started = std::time::Instant::now();
        for _ in 0..n {
            sink += f();
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{name:45} {ns:8.1} ns ({sink})");
    };
    let scan = |body: &[u8], key, v| {
        let mut found = 0;
        crate::resources::scan_request_resources(body, key, v, |_| found += 1).unwrap();
        found
    };
    time("Fetch v17 request, 1 topic x 3 partitions", 2_000_000, &mut || scan(&fetch, ApiKey::Fetch, 17));
    time("Metadata v12 request, 5 topics", 2_000_000, &mut || scan(&metadata, ApiKey::Metadata, 12));
    time("OffsetCommit v9 request, 1 topic x 10", 2_000_000, &mut || scan(&commit, ApiKey::OffsetCommit, 9));
    let label = format!("Metadata v12 response ({} bytes), bounds", metadata_response.len());
    time(&label, 500_000, &mut || {
        crate::response_bounds::check_response_body(&metadata_response, ApiKey::Metadata, 12).unwrap() as usize
    });
}
