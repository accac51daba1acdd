//! Produce safeguards: the rules of the sidecar's `produce_safeguards:` config. What a client
//! writes to a guarded topic must be acknowledged by all replicas, compressed with an allowed
//! codec, in batches no larger than a limit, from an allowed client id, or not written at all
//! (a read-only topic). Each is judged from the request and the record batches' headers
//! alone: nothing is decompressed. The safeguard filter ([`crate::filters::safeguard`])
//! refuses the partitions that break a rule with the error a broker would give.

use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;

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
    #[serde(default)]
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
}

/// A record batch's compression codec (the low three bits of its attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a v2 batch whose attributes are `attributes`; None for one Kafka does not
    /// define (the broker refuses it).
    pub fn of_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x07 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why a write is refused: what the metrics count and the error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    ReadOnly,
    ClientId,
    Acks,
    Compression,
    BatchSize,
}

impl Breach {
    pub fn as_str(self) -> &'static str {
        match self {
            Breach::ReadOnly => "read_only",
            Breach::ClientId => "client_id",
            Breach::Acks => "acks",
            Breach::Compression => "compression",
            Breach::BatchSize => "batch_size",
        }
    }

    /// The Kafka error a broker would answer with.
    pub fn error_code(self) -> i16 {
        use kafka_protocol::error::ResponseError;
        match self {
            Breach::Acks => ResponseError::InvalidRequiredAcks.code(),
            Breach::BatchSize => ResponseError::MessageTooLarge.code(),
            Breach::ReadOnly | Breach::ClientId | Breach::Compression => ResponseError::PolicyViolation.code(),
        }
    }
}

/// A refusal: which rule, why, and the message the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: String,
    pub breach: Breach,
    pub message: String,
}

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
        if self.client_ids.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("client_ids"), "an empty pattern matches no client id"));
        }
        let guards_nothing = !self.require_acks_all
            && self.compression.is_empty()
            && self.max_batch_bytes.is_none()
            && self.client_ids.is_empty()
            && !self.read_only;
        if guards_nothing {
            let why = format!(
                "rule `{}` guards nothing: set require_acks_all, compression, max_batch_bytes, client_ids or read_only",
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

    fn refuse(&self, breach: Breach, message: String) -> Option<Refusal> {
        Some(Refusal { rule: self.name.clone(), breach, message: format!("{message} (rule `{}`)", self.name) })
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

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let err = |yaml: &str| rules(yaml).unwrap_err();
        assert!(err("[{name: x, topics: [], read_only: true}]").contains("produce_safeguards[0].topics"));
        assert!(err("[{name: x, topics: [a]}]").contains("guards nothing"));
        assert!(err("[{name: x, topics: [a], max_batch_bytes: 0}]").contains("produce_safeguards[0].max_batch_bytes"));
        assert!(err("[{name: x, topics: [a], compression: [brotli]}]").contains("unknown variant"));
        assert!(err("[{name: x, topics: [a], read_only: true}, {name: x, topics: [b], read_only: true}]")
            .contains("produce_safeguards[1].name"));
    }
}
