//! Topic aliases: the rules of the sidecar's `topic_aliases:` config. Under an alias, the
//! topic a client names is another topic of the cluster: a workload is pointed at `orders-v2`
//! while its code still says `orders` (a consumer moved to a new topic, a producer of a
//! canary release writing to its own topic). The alias filter ([`crate::filters::alias`])
//! applies them.

use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};

use crate::vocabulary::check_topic_name as check_name;

/// One rule of `topic_aliases:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicAlias {
    /// The topic as clients name it.
    pub topic: String,
    /// The cluster's topic they get instead.
    pub to: String,
    /// Whose clients (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
}

/// Checks a list of aliases: each names two different legal topics, and one name means one
/// topic in each direction (no topic aliased twice, no two aliases onto one topic, and no
/// alias onto a topic that is itself aliased), so that the cluster's answers can be named
/// back without doubt.
pub fn validate_aliases(aliases: &[TopicAlias], origin: &Path) -> Result<(), ConfigError> {
    for (i, alias) in aliases.iter().enumerate() {
        let field = |name: &str| format!("topic_aliases[{i}].{name}");
        check_name(&alias.topic).map_err(|why| invalid(origin, &field("topic"), why))?;
        check_name(&alias.to).map_err(|why| invalid(origin, &field("to"), why))?;
        if alias.to == alias.topic {
            return Err(invalid(origin, &field("to"), format!("`{}` is the aliased topic itself", alias.to)));
        }
        for (j, other) in aliases[..i].iter().enumerate() {
            let clash = if other.topic == alias.topic {
                Some(("topic", format!("`{}` is also topic_aliases[{j}]'s topic", alias.topic)))
            } else if other.to == alias.to {
                Some(("to", format!("`{}` is also topic_aliases[{j}]'s target", alias.to)))
            } else if other.topic == alias.to || other.to == alias.topic {
                Some(("to", format!("topic_aliases[{j}] aliases one of these names too: aliases do not chain")))
            } else {
                None
            };
            if let Some((name, why)) = clash {
                return Err(invalid(origin, &field(name), why));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_aliases_are_refused_with_the_field_named() {
        let origin = Path::new("sidecar.yaml");
        let check = |yaml: &str| {
            let aliases: Vec<TopicAlias> = weir_core::config::parse_yaml(yaml, origin).unwrap();
            validate_aliases(&aliases, origin).map_err(|e| e.to_string())
        };
        assert!(check("[{topic: orders, to: orders-v2}, {topic: payments, to: payments.v2}]").is_ok());
        let err = check("[{topic: orders, to: orders}]").unwrap_err();
        assert!(err.contains("topic_aliases[0].to") && err.contains("itself"), "{err}");
        let err = check("[{topic: 'or ders', to: b}]").unwrap_err();
        assert!(err.contains("topic_aliases[0].topic") && err.contains("not a topic name"), "{err}");
        let err = check(&format!("[{{topic: a, to: {}}}]", "x".repeat(250))).unwrap_err();
        assert!(err.contains("topic_aliases[0].to"), "{err}");
        let err = check("[{topic: a, to: b}, {topic: a, to: c}]").unwrap_err();
        assert!(err.contains("topic_aliases[1].topic"), "{err}");
        let err = check("[{topic: a, to: b}, {topic: c, to: b}]").unwrap_err();
        assert!(err.contains("topic_aliases[1].to"), "{err}");
        let err = check("[{topic: a, to: b}, {topic: b, to: c}]").unwrap_err();
        assert!(err.contains("topic_aliases[1].to") && err.contains("do not chain"), "{err}");
    }
}
