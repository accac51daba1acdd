//! Transformation on fetch: what a rule's principals read of its topics. Per record, in this
//! order: a record for which any rule's `drop_if` holds is taken out; headers of the keys
//! removed go; masked JSON fields are replaced. Batches are refilled by
//! [`crate::fetched::refill_partition`], every record kept at its own offset: positions,
//! commits and seeks stay true, a record taken out is a gap (as after compaction).

use bytes::Bytes;
use weir_core::policy::Pattern;
use weir_wire::record_view::RecordView;

use super::expr::{Expr, RecordFacts};
use super::json_path::{select, JsonPath};
use super::{json_document, TransformRule};
use crate::fetched::{refill_partition, Fate, Rewritten};

/// What a masked field becomes.
#[derive(Debug, Clone)]
enum Replacement {
    /// This JSON text.
    Json(Vec<u8>),
    /// `"sha256:<hex>"` of the field's JSON text.
    Hash,
}

/// The fetch part of one rule, ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledFetchTransform {
    pub rule: String,
    topics: Vec<Pattern>,
    remove: Vec<Vec<u8>>,
    masks: Vec<(JsonPath, Replacement)>,
    drop_if: Option<Expr>,
}

impl CompiledFetchTransform {
    /// The fetch part of `rule`, if it has one (validated: see `FetchTransform::validate`).
    pub fn new(rule: &TransformRule) -> Option<Self> {
        let fetch = rule.fetch.as_ref()?;
        let masks = fetch
            .mask
            .iter()
            .filter_map(|mask| {
                let path = JsonPath::parse(&mask.path).ok()?;
                let with = match &mask.replace {
                    Some(value) => Replacement::Json(value.to_string().into_bytes()),
                    None => Replacement::Hash,
                };
                Some((path, with))
            })
            .collect();
        Some(CompiledFetchTransform {
            rule: rule.name.clone(),
            topics: rule.topics.iter().map(|p| Pattern::parse(p)).collect(),
            remove: fetch.remove_headers.iter().map(|k| k.as_bytes().to_vec()).collect(),
            masks,
            drop_if: fetch.drop_if.as_deref().and_then(|p| Expr::parse(p).ok()),
        })
    }

    pub fn covers(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }
}

/// What became of a partition's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records served as they were.
    pub kept: u64,
    pub changed: u64,
    pub dropped: u64,
    /// Records taken out because a mask could not be applied (the value is not JSON).
    pub unreadable: u64,
}

/// The rules covering one topic, applied to a partition's records.
pub struct FetchPlan<'r> {
    rules: Vec<&'r CompiledFetchTransform>,
    paths: Vec<&'r JsonPath>,
    replacements: Vec<&'r Replacement>,
}

impl<'r> FetchPlan<'r> {
    /// The plan of the `rules` that cover `topic`; None when none does.
    pub fn for_topic(rules: &'r [CompiledFetchTransform], topic: &str) -> Option<Self> {
        let rules: Vec<&CompiledFetchTransform> = rules.iter().filter(|r| r.covers(topic)).collect();
        if rules.is_empty() {
            return None;
        }
        let masks = rules.iter().flat_map(|r| r.masks.iter());
        let (paths, replacements) = masks.map(|(path, with)| (path, with)).unzip();
        Some(FetchPlan { rules, paths, replacements })
    }

    /// The first rule's name, for messages.
    pub fn rule(&self) -> &str {
        &self.rules[0].rule
    }

    /// A partition's fetched `records`, transformed (see [`crate::fetched`]): None when
    /// nothing changed (the same bytes go on). Fails when a batch cannot be read: then none
    /// of the partition's records may go.
    pub fn apply(
        &self,
        records: &[u8],
        limit: usize,
        scratch: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> Result<Option<Bytes>, String> {
        refill_partition(records, limit, scratch, |view| Ok(self.fate(view, tally)))
    }

    /// What becomes of one record: taken out by a `drop_if`, or as masked and stripped.
    fn fate(&self, view: &RecordView<'_>, tally: &mut Tally) -> Fate {
        let facts = Facts(view);
        if self.rules.iter().any(|r| r.drop_if.as_ref().is_some_and(|p| p.holds(&facts))) {
            tally.dropped += 1;
            return Fate::Dropped;
        }
        let Ok(masked) = self.mask(view.value) else {
            // A value a mask cannot read is not served: it would escape the mask.
            tally.unreadable += 1;
            return Fate::Dropped;
        };
        let headers_go = view.headers().any(|(key, _)| self.removes(key));
        if masked.is_none() && !headers_go {
            tally.kept += 1;
            return Fate::Unchanged;
        }
        tally.changed += 1;
        let mut rewritten = Rewritten::of(view);
        rewritten.headers.retain(|(key, _)| !self.removes(key));
        rewritten.value = masked.map(Some);
        Fate::Changed(rewritten)
    }

    fn removes(&self, key: &[u8]) -> bool {
        self.rules.iter().any(|r| r.remove.iter().any(|k| k == key))
    }

    /// The value with its masked fields replaced: Ok(None) when there are none to replace,
    /// Err when it must be masked and is not JSON.
    fn mask(&self, value: Option<&[u8]>) -> Result<Option<Vec<u8>>, ()> {
        let Some(value) = value.filter(|_| !self.paths.is_empty()) else { return Ok(None) };
        let doc = json_document(value);
        let spans = select(doc, &self.paths).map_err(|_| ())?;
        if spans.is_empty() {
            return Ok(None);
        }
        let framing = value.len() - doc.len();
        let mut out = Vec::with_capacity(value.len() + 64);
        out.extend_from_slice(&value[..framing]);
        let mut copied = 0;
        for (span, path) in spans {
            out.extend_from_slice(&doc[copied..span.start]);
            match self.replacements[path] {
                Replacement::Json(json) => out.extend_from_slice(json),
                Replacement::Hash => {
                    let digest = ring::digest::digest(&ring::digest::SHA256, &doc[span.clone()]);
                    out.extend_from_slice(b"\"sha256:");
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    for byte in digest.as_ref() {
                        out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]);
                    }
                    out.push(b'"');
                }
            }
            copied = span.end;
        }
        out.extend_from_slice(&doc[copied..]);
        Ok(Some(out))
    }
}

/// A record as a predicate reads it.
struct Facts<'v, 'a>(&'v RecordView<'a>);

impl RecordFacts for Facts<'_, '_> {
    fn key(&self) -> Option<&[u8]> {
        self.0.key
    }

    fn value(&self) -> Option<&[u8]> {
        self.0.value
    }

    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.0.headers().find(|(key, _)| *key == name.as_bytes()).map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;
    use weir_wire::batch::{write_batch, BatchHeader, NewRecord};
    use weir_wire::compression::Codec;

    use super::*;

    /// A batch as a broker serves it: records at offsets `base..`, with `codec`.
    fn served(base: i64, records: &[NewRecord<'_>], codec: Codec) -> Vec<u8> {
        let mut batch = write_batch(records, codec, None).to_vec();
        batch[..8].copy_from_slice(&base.to_be_bytes());
        batch
    }

    fn record<'a>(key: &'a str, value: &'a str, headers: Vec<(&'a [u8], Option<&'a [u8]>)>) -> NewRecord<'a> {
        NewRecord { timestamp: 1_700_000_000_000, key: Some(key.as_bytes()), value: Some(value.as_bytes()), headers }
    }

    fn rules(yaml: &str) -> Vec<CompiledFetchTransform> {
        let origin = std::path::Path::new("sidecar.yaml");
        let rules: Vec<TransformRule> = weir_core::config::parse_yaml(yaml, origin).unwrap();
        super::super::validate_rules(&rules, origin).unwrap();
        rules.iter().filter_map(CompiledFetchTransform::new).collect()
    }

    /// (offset, key, value, header keys) of every record, through the reference decoder
    /// (which checks CRCs and lengths).
    fn decoded(records: &[u8]) -> Vec<(i64, String, String, Vec<String>)> {
        let mut bytes = bytes::Bytes::copy_from_slice(records);
        let mut out = Vec::new();
        while !bytes.is_empty() {
            for r in RecordBatchDecoder::decode(&mut bytes).unwrap().records {
                let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
                let headers = r.headers.keys().map(|k| k.to_string()).collect();
                out.push((r.offset, text(r.key), text(r.value), headers));
            }
        }
        out
    }

    #[test]
    fn records_taken_out_leave_gaps_and_the_rest_keep_their_offsets() {
        let rules = rules(
            r#"[{name: eu-only, topics: [orders], fetch: {drop_if: 'json("$.region") != "eu"', remove_headers: [secret]}}]"#,
        );
        let plan = FetchPlan::for_topic(&rules, "orders").unwrap();
        assert!(FetchPlan::for_topic(&rules, "payments").is_none());
        let mut records = served(
            100,
            &[
                record("a", r#"{"region": "eu"}"#, vec![(b"secret", Some(b"x")), (b"trace", Some(b"t"))]),
                record("b", r#"{"region": "us"}"#, vec![]),
                record("c", r#"{"region": "eu"}"#, vec![]),
            ],
            Codec::Lz4,
        );
        // A second batch, all of it taken out: an empty batch spanning 103..=104 is left.
        records.extend(served(
            103,
            &[record("d", r#"{"region": "us"}"#, vec![]), record("e", "{}", vec![])],
            Codec::None,
        ));
        let (mut scratch, mut tally) = (Vec::new(), Tally::default());
        let out = plan.apply(&records, 1 << 20, &mut scratch, &mut tally).unwrap().unwrap();
        let got = decoded(&out);
        assert_eq!(
            got,
            [
                (100, "a".into(), r#"{"region": "eu"}"#.into(), vec!["trace".to_owned()]),
                (102, "c".into(), r#"{"region": "eu"}"#.into(), vec![])
            ]
        );
        let second = &out[out.len() - weir_wire::records::BATCH_HEAD..];
        let header = BatchHeader::read(second).unwrap();
        assert_eq!((header.base_offset, header.last_offset_delta, header.records), (103, 1, 0));
        assert_eq!(tally, Tally { kept: 1, changed: 1, dropped: 3, unreadable: 0 });
    }

    #[test]
    fn masks_replace_or_hash_fields_as_written_and_batches_no_rule_changes_are_the_same_bytes() {
        let rules = rules(
            r#"[{name: pii, topics: ['orders*'], fetch: {mask: [{path: '$.card.number', replace: '****'},
                {path: '$.email', hash: true}, {path: '$.lines[*].note', replace: null}]}}]"#,
        );
        let plan = FetchPlan::for_topic(&rules, "orders.eu").unwrap();
        let value =
            r#"{"email":"ann@example.com", "card": {"number": 4111, "cvc": 1}, "lines": [{"note": "x"}, {"sku": 1}]}"#;
        let records = served(7, &[record("k", value, vec![]), record("k2", "not json", vec![])], Codec::Zstd);
        let (mut scratch, mut tally) = (Vec::new(), Tally::default());
        let out = plan.apply(&records, 1 << 20, &mut scratch, &mut tally).unwrap().unwrap();
        let got = decoded(&out);
        let hash = ring::digest::digest(&ring::digest::SHA256, b"\"ann@example.com\"");
        let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let masked = format!(
            r#"{{"email":"sha256:{hex}", "card": {{"number": "****", "cvc": 1}}, "lines": [{{"note": null}}, {{"sku": 1}}]}}"#
        );
        // The record whose value a mask cannot read is not served: it would escape the mask.
        assert_eq!(got, [(7, "k".into(), masked, vec![])]);
        assert_eq!(tally, Tally { kept: 0, changed: 1, dropped: 0, unreadable: 1 });

        let untouched = served(9, &[record("k", r#"{"other": 1}"#, vec![])], Codec::Gzip);
        assert_eq!(plan.apply(&untouched, 1 << 20, &mut scratch, &mut tally).unwrap(), None);
    }

    #[test]
    fn a_partial_tail_goes_and_a_control_batch_stays() {
        let rules = rules("[{name: r, topics: [t], fetch: {remove_headers: [h]}}]");
        let plan = FetchPlan::for_topic(&rules, "t").unwrap();
        let mut control = served(0, &[record("", "", vec![])], Codec::None);
        control[22] |= 0x20; // CRC not made again: the sidecar passes it on as it came
        let plain = served(1, &[record("k", "v", vec![])], Codec::None);
        let mut records = [control.clone(), plain.clone()].concat();
        records.extend_from_slice(&plain[..30]); // what a fetch's byte limit cut
        let (mut scratch, mut tally) = (Vec::new(), Tally::default());
        let out = plan.apply(&records, 1 << 20, &mut scratch, &mut tally).unwrap().unwrap();
        assert_eq!(out, [control, plain].concat());

        let old_format = [0u8; 8].iter().chain(&26i32.to_be_bytes()).chain(&[0u8; 26]).copied().collect::<Vec<u8>>();
        let err = plan.apply(&old_format, 1 << 20, &mut scratch, &mut tally).unwrap_err();
        assert!(err.contains("message format before v2"), "{err}");
    }
}
