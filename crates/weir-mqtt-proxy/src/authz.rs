//! MQTT operations as the policy engine sees them.
//!
//! One resource type, `topic`, whose patterns are MQTT topic filters (`sensors/+/temp`,
//! `sensors/#`, `$SYS/#`), and two operations, `publish` (alias `write`) and `subscribe`
//! (alias `read`); neither implies the other. A policy for MQTT reads:
//!
//! ```yaml
//! rules:
//!   - {effect: allow, principals: ["User:sensor-*"], resources: ["topic:sensors/+/temp"], operations: [publish]}
//!   - {effect: allow, principals: ["User:dashboard"], resources: ["topic:sensors/#"], operations: [subscribe]}
//!   - {effect: deny, principals: ["*"], resources: ["topic:sensors/secret/#"], operations: [all]}
//! ```
//!
//! - **Publish** to a topic name (a PUBLISH, a will message, a retained message): allowed
//!   when an allow rule's filter matches the name and no deny rule's filter does.
//! - **Subscribe** to a topic filter: allowed when one allow rule's filter covers the whole
//!   subscription ([`weir_mqtt::topic::within`]: every name the subscription can match, the
//!   rule matches too) and no deny rule's filter overlaps it
//!   ([`weir_mqtt::topic::overlaps`]: a subscription to `sensors/#`, or to `sensors/+/temp`,
//!   could receive what a deny of `sensors/secret/#` speaks of, so it is refused whole;
//!   `sensors/7/#` is not).
//!   Several allow rules that only together cover a subscription do not allow it.
//! - `$`-topics follow MQTT: a filter starting with a wildcard covers none of them, so
//!   `topic:#` does not grant `$SYS/...`.

use std::path::Path;
use std::sync::Arc;

use weir_core::config::{invalid, ConfigError};
use weir_core::policy::{Operation, Policy, PrincipalPolicy, ResourceType, Vocabulary};
use weir_mqtt::topic::{check_filter, matches, overlaps, within};

pub const TOPIC: ResourceType = ResourceType(0);
pub const PUBLISH: Operation = Operation(0);
pub const SUBSCRIBE: Operation = Operation(1);

/// The words of MQTT policies.
pub static MQTT: Vocabulary = Vocabulary {
    resource_types: &["topic"],
    singleton: None,
    operations: &["publish", "subscribe"],
    aliases: &[("write", PUBLISH), ("read", SUBSCRIBE)],
    implies: &[],
};

/// Checks that every `topic:` pattern of `policy` is an MQTT topic filter; `origin` names the
/// policy in the error.
pub fn check_policy(policy: &Policy, origin: &Path) -> Result<(), ConfigError> {
    for (rule, pattern) in policy.patterns(TOPIC) {
        if let Err(why) = check_filter(pattern.text()) {
            let key = format!("rules[{rule}].resources");
            return Err(invalid(
                origin,
                &key,
                format!("`topic:{}` is not an MQTT topic filter: {why}", pattern.text()),
            ));
        }
    }
    Ok(())
}

/// One connection's rules, asked in MQTT's terms.
#[derive(Debug, Clone)]
pub struct MqttAuthz {
    rules: PrincipalPolicy,
}

impl MqttAuthz {
    pub fn new(policy: &Arc<Policy>, principal: Option<&str>) -> Self {
        MqttAuthz { rules: policy.for_principal(principal) }
    }

    /// Whether the principal may publish to the topic `name`.
    pub fn may_publish(&self, name: &str) -> bool {
        self.rules.allows_judged(TOPIC, PUBLISH, |p| matches(p.text(), name), |p| matches(p.text(), name))
    }

    /// Whether the principal may subscribe to the topic filter `filter` (a valid one). A
    /// shared subscription (`$share/GROUP/FILTER`, MQTT 5 and Mosquitto's 3.1.1) receives
    /// what FILTER matches, and is judged as FILTER.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = shared_filter(filter).unwrap_or(filter);
        self.rules.allows_judged(TOPIC, SUBSCRIBE, |p| within(p.text(), filter), |p| overlaps(p.text(), filter))
    }
}

/// The filter of a shared subscription `$share/GROUP/FILTER`, if `filter` is one.
fn shared_filter(filter: &str) -> Option<&str> {
    let (group, filter) = filter.strip_prefix("$share/")?.split_once('/')?;
    (!group.is_empty() && !filter.is_empty()).then_some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_subscription_is_judged_by_the_filter_it_shares() {
        let policy = policy(RULES).unwrap();
        let dashboard = MqttAuthz::new(&policy, Some("User:dashboard"));
        assert!(dashboard.may_subscribe("$share/screens/sensors/7/#"));
        assert!(!dashboard.may_subscribe("$share/screens/#"));
        assert!(!dashboard.may_subscribe("$share/screens/sensors/secret/x"));
        // Not a shared subscription: judged as it is.
        assert!(!dashboard.may_subscribe("$share/screens"));
        assert_eq!(shared_filter("$share//sensors/#"), None);
    }

    fn policy(yaml: &str) -> Result<Arc<Policy>, String> {
        let origin = Path::new("policy.yaml");
        let policy = Policy::parse(yaml, origin, &MQTT).map_err(|e| e.to_string())?;
        check_policy(&policy, origin).map_err(|e| e.to_string())?;
        Ok(Arc::new(policy))
    }

    const RULES: &str = r#"
rules:
  - {effect: allow, principals: ["User:sensor-*"], resources: ["topic:sensors/+/temp"], operations: [publish]}
  - {effect: allow, principals: ["User:dashboard"], resources: ["topic:sensors/#", "topic:$SYS/broker/#"], operations: [read]}
  - {effect: allow, principals: ["User:admin"], resources: ["topic:#"], operations: [all]}
  - {effect: deny, principals: ["*"], resources: ["topic:sensors/secret/#"], operations: [all]}
"#;

    #[test]
    fn publishing_is_judged_by_the_rules_filters() {
        let policy = policy(RULES).unwrap();
        let sensor = MqttAuthz::new(&policy, Some("User:sensor-7"));
        assert!(sensor.may_publish("sensors/7/temp"));
        assert!(!sensor.may_publish("sensors/7/humidity"));
        assert!(!sensor.may_publish("sensors/7/temp/raw"), "+ is one level");
        assert!(!sensor.may_publish("sensors/secret/temp"), "deny wins");
        assert!(!sensor.may_subscribe("sensors/7/temp"), "publish does not imply subscribe");
        let nobody = MqttAuthz::new(&policy, None);
        assert!(!nobody.may_publish("sensors/7/temp"));
        let admin = MqttAuthz::new(&policy, Some("User:admin"));
        assert!(admin.may_publish("a/b") && admin.may_subscribe("a/#"));
        assert!(!admin.may_publish("$SYS/broker/load"), "# covers no $ topic");
        assert!(!admin.may_subscribe("$SYS/#"));
    }

    #[test]
    fn a_subscription_is_allowed_only_within_one_rule_and_clear_of_every_deny() {
        let policy = policy(RULES).unwrap();
        let dashboard = MqttAuthz::new(&policy, Some("User:dashboard"));
        assert!(dashboard.may_subscribe("sensors/7/temp"));
        assert!(dashboard.may_subscribe("sensors/7/#"));
        assert!(!dashboard.may_subscribe("sensors/+/temp"), "could receive sensors/secret/temp");
        assert!(dashboard.may_subscribe("$SYS/broker/load"));
        assert!(!dashboard.may_subscribe("#"), "wider than the rule");
        assert!(!dashboard.may_subscribe("+/7/temp"), "wider than the rule");
        assert!(!dashboard.may_subscribe("sensors/#"), "overlaps the deny of sensors/secret/#");
        assert!(!dashboard.may_subscribe("sensors/+/#"), "overlaps the deny");
        assert!(!dashboard.may_subscribe("sensors/secret/x"));
        assert!(!dashboard.may_publish("sensors/7/temp"));
    }

    #[test]
    fn a_pattern_that_is_no_topic_filter_is_refused_with_its_rule_named() {
        let err =
            policy("rules: [{effect: allow, principals: ['*'], resources: ['topic:a/#/b'], operations: [publish]}]")
                .unwrap_err();
        assert!(
            err.contains("rules[0].resources") && err.contains("`topic:a/#/b` is not an MQTT topic filter"),
            "{err}"
        );
        let err = policy("rules: [{effect: allow, principals: ['*'], resources: ['queue:x'], operations: [publish]}]")
            .unwrap_err();
        assert!(err.contains("topic:PATTERN"), "{err}");
    }
}
