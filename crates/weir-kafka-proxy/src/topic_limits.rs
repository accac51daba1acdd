//! Topic creation limits: the rules of the sidecar's `topic_creation:` config. A topic a client
//! asks to create (CreateTopics) or to grow (CreatePartitions) outside a rule's limits is
//! refused with POLICY_VIOLATION and a message naming the rule, as a broker's
//! `create.topic.policy.class.name` refuses it; the topics of the same request within the
//! limits are created. The `topic_limits` filter ([`crate::filters::topic_limits`]) applies
//! them.

use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;

use crate::quota::covers;

/// One rule of `topic_creation:`. Every rule that covers the principal applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicCreationRule {
    /// Its name, in refusals, metrics and logs.
    pub name: String,
    /// Whose requests (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// The names topics may have: literal, `prefix*` or globs with `*` and `?`; absent: any.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The most partitions a topic may have (created, or grown to).
    #[serde(default)]
    pub max_partitions: Option<i32>,
    #[serde(default)]
    pub min_replication_factor: Option<i16>,
    #[serde(default)]
    pub max_replication_factor: Option<i16>,
    /// The longest `retention.ms` a topic may be created with; infinite (-1) is refused
    /// under it.
    #[serde(default)]
    pub max_retention_ms: Option<i64>,
}

/// What a client asks for one topic. `None`: left to the broker's defaults, which the rules
/// do not judge (the operator chose them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicAsk<'a> {
    pub name: &'a str,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub retention_ms: Option<&'a str>,
}

impl TopicCreationRule {
    fn validate(&self, origin: &Path, at: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a rule needs a name"));
        }
        if self.max_partitions.is_some_and(|n| n < 1) {
            return Err(invalid(origin, &field("max_partitions"), "must be at least 1"));
        }
        for (name, factor) in [
            ("min_replication_factor", self.min_replication_factor),
            ("max_replication_factor", self.max_replication_factor),
        ] {
            if factor.is_some_and(|n| n < 1) {
                return Err(invalid(origin, &field(name), "must be at least 1"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_replication_factor, self.max_replication_factor) {
            if min > max {
                return Err(invalid(
                    origin,
                    &field("max_replication_factor"),
                    format!("{max} is below the minimum {min}"),
                ));
            }
        }
        if self.max_retention_ms.is_some_and(|ms| ms < 1) {
            return Err(invalid(origin, &field("max_retention_ms"), "must be at least 1 ms"));
        }
        if self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("topics"), "an empty name pattern matches no topic"));
        }
        let limits_nothing = self.topics.is_empty()
            && self.max_partitions.is_none()
            && self.min_replication_factor.is_none()
            && self.max_replication_factor.is_none()
            && self.max_retention_ms.is_none();
        if limits_nothing {
            let why = format!(
                "rule `{}` limits nothing: set topics, max_partitions, min_replication_factor, max_replication_factor or max_retention_ms",
                self.name
            );
            return Err(invalid(origin, at, why));
        }
        Ok(())
    }

    /// Whether the rule covers requests of `principal`.
    pub fn applies_to(&self, principal: &str) -> bool {
        covers(&self.principals, principal)
    }

    /// Why the rule refuses `ask`, if it does: the message the client is told.
    pub fn refusal(&self, ask: &TopicAsk<'_>) -> Option<String> {
        let rule = &self.name;
        if !self.topics.is_empty() && !self.topics.iter().any(|p| Pattern::parse(p).matches(ask.name)) {
            return Some(format!(
                "topic name `{}` is not one rule `{rule}` allows ({})",
                ask.name,
                self.topics.join(", ")
            ));
        }
        if let (Some(max), Some(n)) = (self.max_partitions, ask.partitions) {
            if n > max {
                return Some(format!("{n} partitions; rule `{rule}` allows at most {max}"));
            }
        }
        if let Some(factor) = ask.replication_factor {
            if let Some(min) = self.min_replication_factor.filter(|min| factor < *min) {
                return Some(format!("replication factor {factor}; rule `{rule}` asks for at least {min}"));
            }
            if let Some(max) = self.max_replication_factor.filter(|max| factor > *max) {
                return Some(format!("replication factor {factor}; rule `{rule}` allows at most {max}"));
            }
        }
        if let (Some(max), Some(value)) = (self.max_retention_ms, ask.retention_ms) {
            match value.trim().parse::<i64>() {
                Ok(ms) if (0..=max).contains(&ms) => {}
                Ok(-1) => return Some(format!("infinite retention.ms; rule `{rule}` allows at most {max} ms")),
                Ok(ms) => return Some(format!("retention.ms {ms}; rule `{rule}` allows at most {max} ms")),
                // The broker would refuse it too; say so here, with the rule that looked.
                Err(_) => return Some(format!("retention.ms `{value}` is not a number (rule `{rule}`)")),
            }
        }
        None
    }
}

/// Checks `topic_creation:`: each rule named, unique and limiting something, with sane
/// numbers.
pub fn validate_rules(rules: &[TopicCreationRule], origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("topic_creation[{i}]"))?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "topic_creation", origin)
}

/// The first refusal of `ask` by a rule of `rules` covering `principal`, if any.
pub fn refusal(rules: &[TopicCreationRule], principal: &str, ask: &TopicAsk<'_>) -> Option<(String, String)> {
    rules
        .iter()
        .filter(|rule| rule.applies_to(principal))
        .find_map(|rule| rule.refusal(ask).map(|why| (rule.name.clone(), why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<Vec<TopicCreationRule>, String> {
        let origin = Path::new("sidecar.yaml");
        let rules: Vec<TopicCreationRule> = weir_core::config::parse_yaml(yaml, origin).map_err(|e| e.to_string())?;
        validate_rules(&rules, origin).map_err(|e| e.to_string())?;
        Ok(rules)
    }

    #[test]
    fn a_topic_outside_any_limit_is_refused_with_the_rule_named() {
        let rules = rules(
            "[{name: team-a, principals: ['User:a'], topics: ['team-a.*'], max_partitions: 12,
               min_replication_factor: 2, max_replication_factor: 3, max_retention_ms: 604800000}]",
        )
        .unwrap();
        let ok = TopicAsk {
            name: "team-a.orders",
            partitions: Some(12),
            replication_factor: Some(3),
            retention_ms: Some("86400000"),
        };
        assert_eq!(refusal(&rules, "User:a", &ok), None);
        assert_eq!(
            refusal(&rules, "User:a", &TopicAsk { name: "team-a.x", ..Default::default() }),
            None,
            "broker defaults"
        );
        let refused = |ask: TopicAsk<'_>| refusal(&rules, "User:a", &ask).map(|(rule, why)| format!("{rule}: {why}"));
        assert_eq!(
            refused(TopicAsk { name: "team-b.orders", ..ok }).unwrap(),
            "team-a: topic name `team-b.orders` is not one rule `team-a` allows (team-a.*)"
        );
        assert!(refused(TopicAsk { partitions: Some(13), ..ok }).unwrap().contains("13 partitions"));
        assert!(refused(TopicAsk { replication_factor: Some(1), ..ok }).unwrap().contains("at least 2"));
        assert!(refused(TopicAsk { replication_factor: Some(4), ..ok }).unwrap().contains("at most 3"));
        assert!(refused(TopicAsk { retention_ms: Some("-1"), ..ok }).unwrap().contains("infinite retention.ms"));
        assert!(refused(TopicAsk { retention_ms: Some("604800001"), ..ok }).unwrap().contains("at most 604800000 ms"));
        assert!(refused(TopicAsk { retention_ms: Some("a week"), ..ok }).unwrap().contains("not a number"));
        assert_eq!(refusal(&rules, "User:b", &TopicAsk { name: "anything", ..ok }), None, "the rule names User:a");
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let err = |yaml: &str| rules(yaml).unwrap_err();
        assert!(err("[{name: x, max_partitions: 0}]").contains("topic_creation[0].max_partitions"));
        assert!(err("[{name: x, min_replication_factor: 3, max_replication_factor: 2}]")
            .contains("topic_creation[0].max_replication_factor"));
        assert!(err("[{name: x}]").contains("limits nothing"));
        assert!(err("[{name: x, max_partitions: 1}, {name: x, max_partitions: 2}]").contains("topic_creation[1].name"));
        assert!(err("[{name: x, max_partitoins: 1}]").contains("unknown field"));
        assert!(err("[{name: '', max_partitions: 1}]").contains("topic_creation[0].name"));
    }
}
