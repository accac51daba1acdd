//! Canary routing: the rules of the sidecar's `canaries:` config. A rule sends a share of a
//! topic's writes to another topic of the same cluster (a canary release's topic), chosen by
//! partition: a producer's partitioner already sends each key to one partition, so one key
//! always goes one way, and a produce answer gives one base offset per partition, so a
//! partition's batch must go whole to keep the offsets the client is told true. The canary
//! filter ([`crate::filters::canary`]) does the routing.

use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};

/// One rule of `canaries:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRule {
    /// Its name, in metrics and logs.
    pub name: String,
    /// The topic whose writes are split.
    pub topic: String,
    /// The canary topic (same cluster; at least as many partitions as `topic`). Partition
    /// `p`'s writes go to its partition `p`.
    pub to: String,
    /// The share of `topic`'s partitions whose writes go to `to`: above 0, at most 1.
    pub share: f64,
    /// Whose writes (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
}

/// Absorbs the rounding of a share that is not a binary fraction (a third of nine partitions
/// is three, not 2.999…).
const EPSILON: f64 = 1e-9;

impl CanaryRule {
    /// Whether partition `p` of the topic is the canary's. Spread evenly and the same for
    /// any partition count: of partitions `0..n`, `floor(n × share)` are the canary's (with
    /// share 0.25: 3, 7, 11, ...).
    pub fn routes(&self, partition: i32) -> bool {
        if partition < 0 {
            return false;
        }
        let below = |n: i32| (f64::from(n) * self.share + EPSILON).floor();
        below(partition + 1) > below(partition)
    }

    fn validate(&self, origin: &Path, field: &str) -> Result<(), ConfigError> {
        for (name, value) in [("name", &self.name), ("topic", &self.topic), ("to", &self.to)] {
            if value.trim().is_empty() {
                return Err(invalid(origin, &format!("{field}.{name}"), "must not be empty"));
            }
        }
        if self.to == self.topic {
            return Err(invalid(origin, &format!("{field}.to"), format!("`{}` is the split topic itself", self.to)));
        }
        if !(self.share > 0.0 && self.share <= 1.0) {
            let why = format!("must be above 0 and at most 1, not {}", self.share);
            return Err(invalid(origin, &format!("{field}.share"), why));
        }
        Ok(())
    }
}

/// Checks a list of rules: each valid, no two with one name or one topic.
pub fn validate_rules(rules: &[CanaryRule], origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("canaries[{i}]"))?;
        for (j, other) in rules[..i].iter().enumerate() {
            if other.name == rule.name {
                let why = format!("`{}` is also canaries[{j}]'s name", rule.name);
                return Err(invalid(origin, &format!("canaries[{i}].name"), why));
            }
            if other.topic == rule.topic {
                let why = format!("canaries[{j}] splits `{}` already", rule.topic);
                return Err(invalid(origin, &format!("canaries[{i}].topic"), why));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(share: f64) -> CanaryRule {
        CanaryRule { name: "c".into(), topic: "t".into(), to: "t2".into(), share, principals: vec![] }
    }

    #[test]
    fn the_share_of_partitions_is_exact_and_spread() {
        let routed = |share: f64, n: i32| (0..n).filter(|p| rule(share).routes(*p)).collect::<Vec<_>>();
        assert_eq!(routed(0.25, 12), vec![3, 7, 11]);
        assert_eq!(routed(0.5, 6), vec![1, 3, 5]);
        assert_eq!(routed(1.0, 4), vec![0, 1, 2, 3]);
        assert_eq!(routed(0.1, 5), Vec::<i32>::new(), "a tenth of five partitions is none");
        assert_eq!(routed(0.1, 30).len(), 3);
        assert_eq!(routed(1.0 / 3.0, 9).len(), 3);
        assert!(!rule(1.0).routes(-1));
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let origin = Path::new("sidecar.yaml");
        let check = |yaml: &str| {
            let rules: Vec<CanaryRule> = weir_core::config::parse_yaml(yaml, origin).unwrap();
            validate_rules(&rules, origin).map_err(|e| e.to_string())
        };
        assert!(check("[{name: c, topic: t, to: t2, share: 0.1}]").is_ok());
        let err = check("[{name: c, topic: t, to: t2, share: 1.5}]").unwrap_err();
        assert!(err.contains("canaries[0].share") && err.contains("1.5"), "{err}");
        let err = check("[{name: c, topic: t, to: t2, share: 0}]").unwrap_err();
        assert!(err.contains("canaries[0].share"), "{err}");
        let err = check("[{name: c, topic: t, to: t, share: 0.5}]").unwrap_err();
        assert!(err.contains("canaries[0].to"), "{err}");
        let err =
            check("[{name: c, topic: t, to: a, share: 0.5}, {name: d, topic: t, to: b, share: 0.5}]").unwrap_err();
        assert!(err.contains("canaries[1].topic"), "{err}");
        let err =
            check("[{name: c, topic: t, to: a, share: 0.5}, {name: c, topic: u, to: b, share: 0.5}]").unwrap_err();
        assert!(err.contains("canaries[1].name"), "{err}");
    }
}
