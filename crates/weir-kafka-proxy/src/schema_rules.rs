//! Schema validation rules: the sidecar's `schema_validation:` config. Records written to a
//! covered topic must have keys and values of a format (JSON, or JSON Schema, Avro or Protobuf
//! in the schema registry wire format, with a schema of the topic's subject); a batch holding
//! a record that does not is refused with INVALID_RECORD naming each such record. The schema
//! filter ([`crate::filters::schema`]) applies them; `weir-schema` judges the payloads.

use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;
use weir_schema::judge::Format;
pub use weir_schema::registry::RegistryConfig;

use crate::quota::covers;

/// One rule of `schema_validation:`. Every rule that covers a topic and the principal applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRule {
    /// Its name, in refusals, metrics and logs.
    pub name: String,
    /// The topics it covers: literal, `prefix*` or globs with `*` and `?`.
    pub topics: Vec<String>,
    /// Whose writes (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// What record keys must be; absent: anything.
    #[serde(default)]
    pub key: Option<Format>,
    /// What record values must be; absent: anything.
    #[serde(default)]
    pub value: Option<Format>,
    /// What to do when the registry cannot say whether a record is valid (down, slow).
    #[serde(default)]
    pub on_registry_unavailable: WhenUnavailable,
    /// What to do with a batch holding invalid records: refuse it whole (the default), or
    /// write the invalid records to `dead_letter_topic` and the others to their topic.
    #[serde(default)]
    pub on_invalid: OnInvalid,
    /// Where invalid records go under `on_invalid: dead_letter` (an existing topic).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

/// What a rule does with a batch holding invalid records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Refuse the batch with INVALID_RECORD, naming each invalid record.
    #[default]
    Refuse,
    /// Write the invalid records to the dead-letter topic (with headers saying why) and the
    /// valid ones to their topic; a batch of an idempotent or transactional producer is
    /// refused instead (taking records out of it would break the producer's sequence).
    DeadLetter,
}

/// What a rule does with records the registry cannot judge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// Refuse them, with an error the producer retries (fail closed).
    #[default]
    Refuse,
    /// Write them unchecked, counted (fail open).
    Accept,
}

impl SchemaRule {
    fn validate(&self, origin: &Path, at: &str, has_registry: bool) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a rule needs a name"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("topics"), "name the topics it covers (`*` for every topic)"));
        }
        if self.key.is_none() && self.value.is_none() {
            let why = format!("rule `{}` checks nothing: set key, value or both", self.name);
            return Err(invalid(origin, at, why));
        }
        match (self.on_invalid, &self.dead_letter_topic) {
            (OnInvalid::DeadLetter, None) => {
                return Err(invalid(origin, &field("dead_letter_topic"), "on_invalid: dead_letter needs a topic"));
            }
            (_, Some(topic)) if topic.is_empty() => {
                return Err(invalid(origin, &field("dead_letter_topic"), "an empty topic name"));
            }
            (OnInvalid::Refuse, Some(_)) => {
                let why = "records go to a dead-letter topic only under `on_invalid: dead_letter`";
                return Err(invalid(origin, &field("dead_letter_topic"), why));
            }
            _ => {}
        }
        if self
            .dead_letter_topic
            .as_ref()
            .is_some_and(|dead| self.topics.iter().any(|t| Pattern::parse(t).matches(dead)))
        {
            let why = "the dead-letter topic is one of the topics the rule covers: its records would be judged again";
            return Err(invalid(origin, &field("dead_letter_topic"), why));
        }
        for (part, format) in [("key", self.key), ("value", self.value)] {
            if format.is_some_and(|f| f.schema_kind().is_some()) && !has_registry {
                let why = format!(
                    "{} needs a schema registry: set `schema_registry` (url of its Confluent-compatible API)",
                    format.map_or("", Format::as_str)
                );
                return Err(invalid(origin, &field(part), why));
            }
        }
        Ok(())
    }

    /// Whether the rule covers writes of `principal`.
    pub fn covers_principal(&self, principal: &str) -> bool {
        covers(&self.principals, principal)
    }
}

/// A rule with its topic patterns parsed, as the filter applies it.
#[derive(Debug, Clone)]
pub struct CoveredTopics {
    pub rule: SchemaRule,
    topics: Vec<Pattern>,
}

impl CoveredTopics {
    pub fn new(rule: &SchemaRule) -> Self {
        Self { topics: rule.topics.iter().map(|p| Pattern::parse(p)).collect(), rule: rule.clone() }
    }

    pub fn covers(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }
}

/// Checks `schema_validation:`: each rule named, unique, covering topics and checking
/// something, a registry configured for the formats that need one.
pub fn validate_rules(rules: &[SchemaRule], has_registry: bool, origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("schema_validation[{i}]"), has_registry)?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "schema_validation", origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str, has_registry: bool) -> Result<Vec<SchemaRule>, String> {
        let origin = Path::new("sidecar.yaml");
        let rules: Vec<SchemaRule> = weir_core::config::parse_yaml(yaml, origin).map_err(|e| e.to_string())?;
        validate_rules(&rules, has_registry, origin).map_err(|e| e.to_string())?;
        Ok(rules)
    }

    #[test]
    fn rules_read_as_written_and_bad_ones_are_refused_with_the_field_named() {
        let read = rules("[{name: orders, topics: ['orders*'], value: avro, key: json}]", true).unwrap();
        assert_eq!((read[0].key, read[0].value), (Some(Format::Json), Some(Format::Avro)));
        assert_eq!(read[0].on_registry_unavailable, WhenUnavailable::Refuse, "fail closed by default");
        assert!(CoveredTopics::new(&read[0]).covers("orders.v2"));
        let err = |yaml: &str| rules(yaml, false).unwrap_err();
        assert!(err("[{name: x, topics: [a]}]").contains("checks nothing"));
        assert!(err("[{name: x, topics: [a], value: avro}]")
            .contains("at `schema_validation[0].value`: avro needs a schema registry"));
        assert!(rules("[{name: x, topics: [a], value: json}]", false).is_ok(), "json needs no registry");
        assert!(err("[{name: x, topics: [a], value: xml}]").contains("unknown variant"));
        assert!(err("[{name: x, topics: [], value: json}]").contains("schema_validation[0].topics"));
        assert!(err("[{name: x, topics: [a], value: json}, {name: x, topics: [b], value: json}]")
            .contains("schema_validation[1].name"));
        let dead =
            rules("[{name: x, topics: [a], value: json, on_invalid: dead_letter, dead_letter_topic: a.dlq}]", false);
        assert_eq!(dead.unwrap()[0].on_invalid, OnInvalid::DeadLetter);
        assert!(err("[{name: x, topics: [a], value: json, on_invalid: dead_letter}]")
            .contains("at `schema_validation[0].dead_letter_topic`: on_invalid: dead_letter needs a topic"));
        assert!(err("[{name: x, topics: [a], value: json, dead_letter_topic: b}]").contains("only under"));
        assert!(err("[{name: x, topics: ['a*'], value: json, on_invalid: dead_letter, dead_letter_topic: a.dlq}]")
            .contains("judged again"));
    }
}
