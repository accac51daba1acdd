//! Produce safeguards: the rules of the sidecar's `produce_safeguards:` config. What a client
//! writes to a guarded topic must be acknowledged by all replicas, compressed with an allowed
//! codec, in batches no larger than a limit, from an allowed client id, of records no larger
//! than a limit and carrying the required headers, or not written at all (a read-only topic).
//! The request and batch headers are judged as they are; the records themselves are read (a
//! compressed batch decompressed within `limits.max_decompressed_batch_bytes`) only for a
//! rule about records. The safeguard filter ([`crate::filters::safeguard`]) refuses the
//! partitions that break a rule with the error a broker would give.

use std::path::Path;

use serde::{Deserialize, Deserializer};
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;
use weir_wire::compression::Codec;
use weir_wire::compression::DecompressError;
use weir_wire::record_view::{batch_records, BatchError, RecordView};

use crate::quota::covers;

/// One rule of `produce_safeguards:`. Every rule that covers a topic and the principal applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceSafeguard {
    /// Its name, in refusals, metrics and logs.
    pub name: String,
    /// The topics it guards: literal, `prefix*` or globs with `*` and `?`.
    pub topics: Vec<String>,
    /// Whose writes (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Writes must be acknowledged by all in-sync replicas (`acks=all`, -1).
    #[serde(default)]
    pub require_acks_all: bool,
    /// The codecs batches may be compressed with (`none` for uncompressed); absent: any.
    #[serde(default, deserialize_with = "codecs")]
    pub compression: Vec<Codec>,
    /// The largest record batch, in bytes as written (compressed).
    #[serde(default)]
    pub max_batch_bytes: Option<u32>,
    /// The client ids that may write: literal, `prefix*` or globs; absent: any.
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Nobody it covers may write to the topics at all.
    #[serde(default)]
    pub read_only: bool,
    /// The largest record: key, value and headers as the record is written, uncompressed.
    #[serde(default)]
    pub max_record_bytes: Option<u32>,
    /// Header keys every record must carry (with any value, null included).
    #[serde(default)]
    pub required_headers: Vec<String>,
}

/// `compression:` as Kafka's `compression.type` names codecs.
fn codecs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Codec>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    names
        .iter()
        .map(|name| {
            Codec::named(name).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown codec `{name}`, expected none, gzip, snappy, lz4 or zstd"))
            })
        })
        .collect()
}

/// Why a write is refused: what the metrics count and the error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    ReadOnly,
    ClientId,
    Acks,
    Compression,
    BatchSize,
    RecordSize,
    MissingHeader,
    /// The records of a batch a rule must read cannot be read: malformed, or compressed data
    /// that is corrupt (what a broker refuses too).
    Unreadable,
    /// A batch a rule must read decompresses to more than the sidecar reads.
    TooLargeToRead,
}

impl Breach {
    pub fn as_str(self) -> &'static str {
        match self {
            Breach::ReadOnly => "read_only",
            Breach::ClientId => "client_id",
            Breach::Acks => "acks",
            Breach::Compression => "compression",
            Breach::BatchSize => "batch_size",
            Breach::RecordSize => "record_size",
            Breach::MissingHeader => "missing_header",
            Breach::Unreadable => "unreadable",
            Breach::TooLargeToRead => "too_large_to_read",
        }
    }

    /// The Kafka error a broker would answer with.
    pub fn error_code(self) -> i16 {
        use kafka_protocol::error::ResponseError;
        match self {
            Breach::Acks => ResponseError::InvalidRequiredAcks.code(),
            Breach::BatchSize | Breach::RecordSize => ResponseError::MessageTooLarge.code(),
            Breach::MissingHeader | Breach::Unreadable => ResponseError::InvalidRecord.code(),
            Breach::ReadOnly | Breach::ClientId | Breach::Compression | Breach::TooLargeToRead => {
                ResponseError::PolicyViolation.code()
            }
        }
    }
}

/// A refusal: which rule, why, and the message the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: String,
    pub breach: Breach,
    pub message: String,
    /// The records that broke the rule (index in the batch, why), for Produce v8+'s
    /// `record_errors`; at most [`MAX_RECORD_ERRORS`].
    pub record_errors: Vec<(i32, String)>,
}

/// The most records one refusal names: a batch of a million bad records is not answered with
/// a million messages.
pub const MAX_RECORD_ERRORS: usize = 100;

/// What one record batch's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFacts {
    pub size: usize,
    pub codec: Option<Codec>,
}

impl ProduceSafeguard {
    fn validate(&self, origin: &Path, at: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a rule needs a name"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("topics"), "name the topics it guards (`*` for every topic)"));
        }
        if self.max_batch_bytes == Some(0) {
            return Err(invalid(origin, &field("max_batch_bytes"), "must be at least 1"));
        }
        if self.max_record_bytes == Some(0) {
            return Err(invalid(origin, &field("max_record_bytes"), "must be at least 1"));
        }
        if self.required_headers.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("required_headers"), "a header key is not empty"));
        }
        if self.client_ids.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("client_ids"), "an empty pattern matches no client id"));
        }
        let guards_nothing = !self.require_acks_all
            && self.compression.is_empty()
            && self.max_batch_bytes.is_none()
            && self.client_ids.is_empty()
            && !self.read_only
            && !self.reads_records();
        if guards_nothing {
            let why = format!(
                "rule `{}` guards nothing: set require_acks_all, compression, max_batch_bytes, client_ids, \
                 max_record_bytes, required_headers or read_only",
                self.name
            );
            return Err(invalid(origin, at, why));
        }
        Ok(())
    }

    /// Whether the rule covers writes of `principal`.
    pub fn covers_principal(&self, principal: &str) -> bool {
        covers(&self.principals, principal)
    }

    /// Whether the rule judges the records themselves (and so must read them).
    pub fn reads_records(&self) -> bool {
        self.max_record_bytes.is_some() || !self.required_headers.is_empty()
    }

    fn refuse(&self, breach: Breach, message: String) -> Option<Refusal> {
        let message = format!("{message} (rule `{}`)", self.name);
        Some(Refusal { rule: self.name.clone(), breach, message, record_errors: Vec::new() })
    }

    /// Why the rule refuses the records of a whole v2 `batch`, if it does; a compressed batch
    /// is decompressed into `scratch`, to at most `limit` bytes.
    fn refuses_records(&self, batch: &[u8], limit: usize, scratch: &mut Vec<u8>) -> Option<Refusal> {
        if !self.reads_records() {
            return None;
        }
        let records = match batch_records(batch, limit, scratch) {
            Ok(records) => records,
            Err(BatchError::Decompress(DecompressError::TooLarge { .. })) => {
                let why = format!("a batch that decompresses to more than {limit} bytes cannot be checked");
                return self.refuse(Breach::TooLargeToRead, why);
            }
            Err(err) => return self.refuse(Breach::Unreadable, err.to_string()),
        };
        let (mut first, mut errors, mut count) = (None, Vec::new(), 0usize);
        for (index, record) in records.enumerate() {
            let record = match record {
                Ok(record) => record,
                Err(err) => return self.refuse(Breach::Unreadable, err.to_string()),
            };
            let breach = self.record_breach(&record, index);
            if let Some((breach, why)) = breach {
                count += 1;
                first.get_or_insert(breach);
                if errors.len() < MAX_RECORD_ERRORS {
                    errors.push((index as i32, format!("{why} (rule `{}`)", self.name)));
                }
            }
        }
        let breach = first?;
        let (_, first_why) = &errors[0];
        let message = match count {
            1 => first_why.clone(),
            n => format!("{first_why}; {} more record(s) of the batch break the rule", n - 1),
        };
        Some(Refusal { rule: self.name.clone(), breach, message, record_errors: errors })
    }

    /// How one record breaks the rule, if it does.
    fn record_breach(&self, record: &RecordView<'_>, index: usize) -> Option<(Breach, String)> {
        if let Some(max) = self.max_record_bytes.filter(|max| record.size > *max as usize) {
            return Some((Breach::RecordSize, format!("record {index} is {} bytes; at most {max}", record.size)));
        }
        let missing = self.required_headers.iter().find(|key| !record.headers().any(|(k, _)| k == key.as_bytes()))?;
        Some((Breach::MissingHeader, format!("record {index} has no header `{missing}`")))
    }

    /// Why the rule refuses every write of this request to `topic`, if it does.
    fn refuses_request(&self, topic: &str, client_id: &str, acks: i16, client_ids: &[Pattern]) -> Option<Refusal> {
        if self.read_only {
            return self.refuse(Breach::ReadOnly, format!("topic `{topic}` is read-only"));
        }
        if !client_ids.is_empty() && !client_ids.iter().any(|p| p.matches(client_id)) {
            let allowed = self.client_ids.join(", ");
            return self
                .refuse(Breach::ClientId, format!("client id `{client_id}` may not write to `{topic}` ({allowed})"));
        }
        if self.require_acks_all && acks != -1 {
            return self.refuse(Breach::Acks, format!("acks={acks}; `{topic}` requires acks=all"));
        }
        None
    }

    /// Why the rule refuses a batch, if it does.
    fn refuses_batch(&self, batch: &BatchFacts) -> Option<Refusal> {
        if !self.compression.is_empty() {
            let allowed = |codec| self.compression.contains(&codec);
            if !batch.codec.is_some_and(allowed) {
                let codec = batch.codec.map_or("unknown", Codec::as_str);
                let list: Vec<&str> = self.compression.iter().map(|c| c.as_str()).collect();
                return self.refuse(Breach::Compression, format!("compression {codec}; allowed: {}", list.join(", ")));
            }
        }
        if let Some(max) = self.max_batch_bytes.filter(|max| batch.size > *max as usize) {
            return self.refuse(Breach::BatchSize, format!("a batch of {} bytes; at most {max}", batch.size));
        }
        None
    }
}

/// A rule with its name patterns parsed, as the filter applies it.
#[derive(Debug, Clone)]
pub struct Guard {
    rule: ProduceSafeguard,
    topics: Vec<Pattern>,
    client_ids: Vec<Pattern>,
}

impl Guard {
    pub fn new(rule: &ProduceSafeguard) -> Self {
        let parse = |list: &[String]| list.iter().map(|p| Pattern::parse(p)).collect();
        Self { topics: parse(&rule.topics), client_ids: parse(&rule.client_ids), rule: rule.clone() }
    }

    pub fn guards(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }

    /// Why the rule refuses every write of this request to `topic`, if it does.
    pub fn refuses_request(&self, topic: &str, client_id: &str, acks: i16) -> Option<Refusal> {
        self.rule.refuses_request(topic, client_id, acks, &self.client_ids)
    }

    /// Why the rule refuses a batch, if it does.
    pub fn refuses_batch(&self, batch: &BatchFacts) -> Option<Refusal> {
        self.rule.refuses_batch(batch)
    }

    /// Why the rule refuses the records of a whole v2 `batch`, if it does: see
    /// [`ProduceSafeguard::reads_records`].
    pub fn refuses_records(&self, batch: &[u8], limit: usize, scratch: &mut Vec<u8>) -> Option<Refusal> {
        self.rule.refuses_records(batch, limit, scratch)
    }
}

/// Checks `produce_safeguards:`: each rule named, unique, guarding some topics and something.
pub fn validate_rules(rules: &[ProduceSafeguard], origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("produce_safeguards[{i}]"))?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "produce_safeguards", origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<Vec<ProduceSafeguard>, String> {
        let origin = Path::new("sidecar.yaml");
        let rules: Vec<ProduceSafeguard> = weir_core::config::parse_yaml(yaml, origin).map_err(|e| e.to_string())?;
        validate_rules(&rules, origin).map_err(|e| e.to_string())?;
        Ok(rules)
    }

    #[test]
    fn each_safeguard_refuses_with_the_error_a_broker_would_give_and_names_the_rule() {
        let rule = &Guard::new(
            &rules(
                "[{name: orders, topics: ['orders*'], require_acks_all: true, compression: [lz4, zstd],
                   max_batch_bytes: 1000, client_ids: ['orders-*']}]",
            )
            .unwrap()[0],
        );
        assert!(rule.guards("orders.v2") && !rule.guards("payments"));
        assert_eq!(rule.refuses_request("orders", "orders-api", -1), None);
        let acks = rule.refuses_request("orders", "orders-api", 1).unwrap();
        assert_eq!(
            (acks.breach.error_code(), acks.message.as_str()),
            (21, "acks=1; `orders` requires acks=all (rule `orders`)")
        );
        let id = rule.refuses_request("orders", "billing", -1).unwrap();
        assert_eq!(id.breach, Breach::ClientId);
        assert_eq!(id.breach.error_code(), 44);
        let lz4 = BatchFacts { size: 1000, codec: Codec::of_attributes(3) };
        assert_eq!(rule.refuses_batch(&lz4), None);
        let plain = rule.refuses_batch(&BatchFacts { codec: Codec::of_attributes(0), ..lz4 }).unwrap();
        assert_eq!(plain.message, "compression none; allowed: lz4, zstd (rule `orders`)");
        let big = rule.refuses_batch(&BatchFacts { size: 1001, ..lz4 }).unwrap();
        assert_eq!((big.breach, big.breach.error_code()), (Breach::BatchSize, 10));
        assert_eq!(rule.refuses_batch(&BatchFacts { codec: None, ..lz4 }).unwrap().breach, Breach::Compression);
        let read_only = Guard::new(&rules("[{name: ro, topics: [audit], read_only: true}]").unwrap()[0]);
        assert_eq!(read_only.refuses_request("audit", "x", -1).unwrap().breach, Breach::ReadOnly);
    }

    /// An uncompressed batch of records with values of these sizes and these header keys.
    fn batch(records: &[(usize, &[&'static str])]) -> Vec<u8> {
        use weir_wire::batch::{write_batch, NewRecord};
        let values: Vec<Vec<u8>> = records.iter().map(|(size, _)| vec![b'v'; *size]).collect();
        let records: Vec<NewRecord<'_>> = records
            .iter()
            .zip(&values)
            .map(|((_, headers), value)| NewRecord {
                timestamp: 0,
                key: None,
                value: Some(value),
                headers: headers.iter().map(|k| (k.as_bytes(), None)).collect(),
            })
            .collect();
        write_batch(&records, Codec::None, None).to_vec()
    }

    #[test]
    fn record_rules_name_each_record_that_breaks_them() {
        let rule = &Guard::new(
            &rules("[{name: traced, topics: [t], required_headers: [trace], max_record_bytes: 100}]").unwrap()[0],
        );
        let mut scratch = Vec::new();
        let mut judge = |batch: &[u8]| rule.refuses_records(batch, 1 << 20, &mut scratch);
        assert_eq!(judge(&batch(&[(10, &["trace"]), (80, &["x", "trace"])])), None);
        let refusal = judge(&batch(&[(10, &["trace"]), (10, &["x"]), (200, &["trace"]), (10, &[])])).unwrap();
        assert_eq!((refusal.breach, refusal.breach.error_code()), (Breach::MissingHeader, 87), "the first one found");
        assert_eq!(
            refusal.message,
            "record 1 has no header `trace` (rule `traced`); 2 more record(s) of the batch break the rule"
        );
        let errors: Vec<(i32, &str)> = refusal.record_errors.iter().map(|(i, why)| (*i, why.as_str())).collect();
        assert_eq!(errors[0], (1, "record 1 has no header `trace` (rule `traced`)"));
        assert!(
            errors[1].1.starts_with("record 2 is 2") && errors[1].1.ends_with("bytes; at most 100 (rule `traced`)")
        );
        assert_eq!(errors[2], (3, "record 3 has no header `trace` (rule `traced`)"));
        let big = judge(&batch(&[(500, &["trace"])])).unwrap();
        assert_eq!((big.breach.error_code(), big.record_errors.len()), (10, 1));

        let many: Vec<(usize, &[&str])> = (0..150).map(|_| (1, &[][..])).collect();
        let refusal = judge(&batch(&many)).unwrap();
        assert_eq!(refusal.record_errors.len(), MAX_RECORD_ERRORS, "a million bad records are not a million messages");
        assert!(refusal.message.ends_with("149 more record(s) of the batch break the rule"));

        let mut cut = batch(&[(10, &["trace"])]);
        cut.truncate(cut.len() - 3);
        let unreadable = judge(&cut).unwrap();
        assert_eq!((unreadable.breach, unreadable.breach.error_code()), (Breach::Unreadable, 87));
        assert!(unreadable.message.starts_with("malformed record 0"), "{}", unreadable.message);
        let mut unknown = batch(&[(10, &["trace"])]);
        unknown[22] |= 0x07;
        assert_eq!(judge(&unknown).unwrap().message, "compression codec 7 is not one Kafka defines (rule `traced`)");
        let nothing = Guard::new(&rules("[{name: ro, topics: [t], read_only: true}]").unwrap()[0]);
        assert_eq!(nothing.refuses_records(&cut, 1 << 20, &mut scratch), None, "a rule not about records reads none");
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let err = |yaml: &str| rules(yaml).unwrap_err();
        assert!(err("[{name: x, topics: [], read_only: true}]").contains("produce_safeguards[0].topics"));
        assert!(err("[{name: x, topics: [a]}]").contains("guards nothing"));
        assert!(err("[{name: x, topics: [a], max_batch_bytes: 0}]").contains("produce_safeguards[0].max_batch_bytes"));
        assert!(err("[{name: x, topics: [a], compression: [brotli]}]").contains("unknown codec `brotli`"));
        assert!(err("[{name: x, topics: [a], max_record_bytes: 0}]").contains("produce_safeguards[0].max_record_bytes"));
        assert!(
            err("[{name: x, topics: [a], required_headers: ['']}]").contains("produce_safeguards[0].required_headers")
        );
        assert!(err("[{name: x, topics: [a], read_only: true}, {name: x, topics: [b], read_only: true}]")
            .contains("produce_safeguards[1].name"));
    }
}
