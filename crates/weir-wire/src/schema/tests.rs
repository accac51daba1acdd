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
