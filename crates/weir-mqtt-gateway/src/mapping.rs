//! How MQTT topics map onto Kafka topics and keys: `mappings:` in the gateway's config.
//!
//! ```yaml
//! mappings:
//!   - {mqtt: sensors/+/temp, kafka: sensors.temp, key: "{1}"}     # sensors/7/temp → sensors.temp, key 7
//!   - {mqtt: devices/+/events/#, kafka: device-events, key: "{1}/{2}"}
//!   - {mqtt: alerts, kafka: alerts}                               # no key: Kafka spreads them
//! ```
//!
//! A rule's `mqtt` is a topic filter; `kafka` the one Kafka topic every name it matches is
//! written to; `key` a template of the record key, `{N}` standing for what the N-th wildcard
//! of the filter matched (`+`: one level; `#`: the remaining levels, `/` between them). The
//! first rule whose filter matches a published name decides. Each record also carries the
//! MQTT topic name in the header [`TOPIC_HEADER`].
//!
//! Back from Kafka to MQTT subscribers, a record's MQTT topic is that header when the record
//! has it and it maps to the record's own Kafka topic; else (a record a Kafka client wrote) it
//! is rebuilt from the rules that write to the record's topic: a rule without wildcards gives
//! its filter; one with wildcards fills them from the key as its template reads it. A record
//! neither way names is not delivered to MQTT subscribers.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_kafka_proxy::vocabulary::check_topic_name;
use weir_mqtt::topic::{check_filter, matches, overlaps};

/// The record header that names the MQTT topic a record was published to.
pub const TOPIC_HEADER: &str = "mqtt.topic";

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub mqtt: String,
    pub kafka: String,
    #[serde(default)]
    pub key: Option<String>,
}

/// A piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// The wildcard with this index (0-based).
    Wildcard(usize),
}

#[derive(Debug, Clone)]
struct Mapping {
    filter: String,
    topic: Arc<str>,
    key: Option<Vec<Piece>>,
    /// Whether each wildcard of the filter (in order) is `#`.
    multi_level: Vec<bool>,
}

/// Where a published MQTT message goes in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'m> {
    pub topic: &'m Arc<str>,
    pub key: Option<String>,
}

/// The rules, checked.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    rules: Vec<Mapping>,
}

impl Mappings {
    /// Checks and compiles `configs`; `origin` names the file in errors.
    pub fn new(configs: &[MappingConfig], origin: &Path) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let field = |name: &str| format!("mappings[{i}].{name}");
            check_filter(&config.mqtt).map_err(|why| invalid(origin, &field("mqtt"), why))?;
            if config.mqtt.starts_with("$share/") {
                return Err(invalid(origin, &field("mqtt"), "a shared subscription is no topic filter to map"));
            }
            check_topic_name(&config.kafka).map_err(|why| invalid(origin, &field("kafka"), why))?;
            let multi_level: Vec<bool> =
                config.mqtt.split('/').filter(|l| *l == "+" || *l == "#").map(|l| l == "#").collect();
            let key = config
                .key
                .as_deref()
                .map(|template| parse_template(template, multi_level.len()))
                .transpose()
                .map_err(|why| invalid(origin, &field("key"), why))?;
            rules.push(Mapping { filter: config.mqtt.clone(), topic: config.kafka.as_str().into(), key, multi_level });
        }
        Ok(Mappings { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The Kafka topic and key a message published to `name` is written with: the first rule
    /// whose filter matches it.
    pub fn forward(&self, name: &str) -> Option<Target<'_>> {
        let rule = self.rules.iter().find(|rule| matches(&rule.filter, name))?;
        let key = rule.key.as_ref().map(|pieces| {
            let captured = captures(&rule.filter, name);
            let mut key = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(text) => key.push_str(text),
                    Piece::Wildcard(n) => key.push_str(captured.get(*n).copied().unwrap_or_default()),
                }
            }
            key
        });
        Some(Target { topic: &rule.topic, key })
    }

    /// The MQTT topic name of a record of Kafka `topic`: its `header` (the [`TOPIC_HEADER`]) if it
    /// has one that maps to `topic`, else rebuilt from a rule writing to `topic` and the key.
    pub fn reverse(&self, topic: &str, header: Option<&[u8]>, key: Option<&[u8]>) -> Option<String> {
        if let Some(name) = header.and_then(|h| std::str::from_utf8(h).ok()) {
            if weir_mqtt::topic::check_name(name).is_ok() && self.forward(name).is_some_and(|t| &**t.topic == topic) {
                return Some(name.to_owned());
            }
        }
        let key = key.and_then(|k| std::str::from_utf8(k).ok());
        self.rules.iter().filter(|rule| &*rule.topic == topic).find_map(|rule| rule.rebuild(key))
    }

    /// The Kafka topics a subscription to `filter` can receive records from: those of every rule
    /// whose filter overlaps it, each once.
    pub fn topics_for(&self, filter: &str) -> Vec<Arc<str>> {
        let mut topics: Vec<Arc<str>> = Vec::new();
        for rule in self.rules.iter().filter(|rule| overlaps(&rule.filter, filter)) {
            if !topics.contains(&rule.topic) {
                topics.push(rule.topic.clone());
            }
        }
        topics
    }
}

impl Mapping {
    /// The MQTT name this rule gives a record with `key`, if it can.
    fn rebuild(&self, key: Option<&str>) -> Option<String> {
        if self.multi_level.is_empty() {
            return Some(self.filter.clone());
        }
        let values = read_template(self.key.as_ref()?, key?, &self.multi_level)?;
        let mut name = String::new();
        let mut wildcards = values.iter();
        for (i, level) in self.filter.split('/').enumerate() {
            let value = match level {
                "+" | "#" => *wildcards.next()?,
                literal => literal,
            };
            if level == "#" && value.is_empty() {
                // `#` matched no level: `a/#` names `a`.
                break;
            }
            if i > 0 {
                name.push('/');
            }
            name.push_str(value);
        }
        (weir_mqtt::topic::check_name(&name).is_ok() && matches(&self.filter, &name)).then_some(name)
    }
}

/// What each wildcard of `filter` matched in `name` (which it matches).
fn captures<'n>(filter: &str, name: &'n str) -> Vec<&'n str> {
    let mut captured = Vec::new();
    let mut rest = name;
    for level in filter.split('/') {
        if level == "#" {
            captured.push(rest);
            break;
        }
        let (this, next) = rest.split_once('/').unwrap_or((rest, ""));
        if level == "+" {
            captured.push(this);
        }
        rest = next;
    }
    captured
}

fn parse_template(template: &str, wildcards: usize) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}').ok_or("a `{` without its `}`")?;
                let n: usize = rest[1..end]
                    .parse()
                    .map_err(|_| format!("`{}` is not a wildcard's place ({{1}}, {{2}}, ...)", &rest[..=end]))?;
                if n == 0 || n > wildcards {
                    return Err(format!("`{{{n}}}`: the filter has {wildcards} wildcard(s)"));
                }
                if matches!(pieces.last(), Some(Piece::Wildcard(_))) {
                    return Err("two wildcards with nothing between them cannot be read back".into());
                }
                pieces.push(Piece::Wildcard(n - 1));
                rest = &rest[end + 1..];
            }
            Some(at) => {
                pieces.push(Piece::Text(rest[..at].to_owned()));
                rest = &rest[at..];
            }
            None => {
                pieces.push(Piece::Text(rest.to_owned()));
                rest = "";
            }
        }
    }
    if template.contains('}') && pieces.iter().any(|p| matches!(p, Piece::Text(t) if t.contains('}'))) {
        return Err("a `}` without its `{`".into());
    }
    Ok(pieces)
}

/// Reads `key` as `pieces` say: the value of each wildcard (in filter order), when every
/// wildcard is in the template once and the key reads unambiguously.
fn read_template<'k>(pieces: &[Piece], key: &'k str, multi_level: &[bool]) -> Option<Vec<&'k str>> {
    let mut values: Vec<Option<&str>> = vec![None; multi_level.len()];
    let mut rest = key;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Text(text) => rest = rest.strip_prefix(text.as_str())?,
            Piece::Wildcard(n) => {
                let end = match pieces.get(i + 1) {
                    Some(Piece::Text(next)) => rest.find(next.as_str())?,
                    _ => rest.len(),
                };
                let value = &rest[..end];
                if (!multi_level[*n] && value.contains('/')) || values[*n].is_some_and(|v| v != value) {
                    return None;
                }
                values[*n] = Some(value);
                rest = &rest[end..];
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    values.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mappings(yaml: &[(&str, &str, Option<&str>)]) -> Result<Mappings, String> {
        let configs: Vec<MappingConfig> = yaml
            .iter()
            .map(|(mqtt, kafka, key)| MappingConfig {
                mqtt: (*mqtt).into(),
                kafka: (*kafka).into(),
                key: key.map(str::to_owned),
            })
            .collect();
        Mappings::new(&configs, Path::new("gw.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn published_names_map_to_a_topic_and_a_key_from_their_wildcards() {
        let m = mappings(&[
            ("sensors/+/temp", "sensors.temp", Some("{1}")),
            ("devices/+/events/#", "device-events", Some("{1}:{2}")),
            ("alerts", "alerts", None),
            ("sensors/#", "sensors.other", Some("{1}")),
        ])
        .unwrap();
        let target = m.forward("sensors/7/temp").unwrap();
        assert_eq!((&**target.topic, target.key.as_deref()), ("sensors.temp", Some("7")));
        let target = m.forward("devices/d1/events/door/open").unwrap();
        assert_eq!((&**target.topic, target.key.as_deref()), ("device-events", Some("d1:door/open")));
        let target = m.forward("alerts").unwrap();
        assert_eq!((&**target.topic, target.key), ("alerts", None));
        // The first rule that matches decides.
        let target = m.forward("sensors/7/humidity").unwrap();
        assert_eq!((&**target.topic, target.key.as_deref()), ("sensors.other", Some("7/humidity")));
        assert_eq!(m.forward("other/thing"), None);
    }

    #[test]
    fn records_get_their_mqtt_name_back_from_the_header_or_the_key() {
        let m = mappings(&[
            ("sensors/+/temp", "sensors.temp", Some("{1}")),
            ("devices/+/events/#", "device-events", Some("{1}:{2}")),
            ("alerts", "alerts", None),
            ("sites/+/+/power", "power", Some("{2}@{1}")),
        ])
        .unwrap();
        assert_eq!(m.reverse("sensors.temp", None, Some(b"7")).as_deref(), Some("sensors/7/temp"));
        assert_eq!(
            m.reverse("device-events", None, Some(b"d1:door/open")).as_deref(),
            Some("devices/d1/events/door/open")
        );
        assert_eq!(m.reverse("device-events", None, Some(b"d1:")).as_deref(), Some("devices/d1/events"));
        assert_eq!(m.reverse("alerts", None, None).as_deref(), Some("alerts"));
        assert_eq!(m.reverse("power", None, Some(b"meter2@paris")).as_deref(), Some("sites/paris/meter2/power"));
        // A header that names a topic mapped elsewhere, or no topic, is not believed.
        assert_eq!(m.reverse("sensors.temp", Some(b"alerts"), Some(b"7")).as_deref(), Some("sensors/7/temp"));
        assert_eq!(m.reverse("sensors.temp", Some(b"sensors/9/temp"), Some(b"7")).as_deref(), Some("sensors/9/temp"));
        assert_eq!(m.reverse("sensors.temp", Some(b"sensors/+/temp"), None), None);
        // Keys that cannot be read back: no name.
        assert_eq!(m.reverse("sensors.temp", None, None), None);
        assert_eq!(m.reverse("sensors.temp", None, Some(b"a/b")), None, "+ is one level");
        assert_eq!(m.reverse("power", None, Some(b"nothing")), None);
        assert_eq!(m.reverse("unmapped", None, Some(b"7")), None);
    }

    #[test]
    fn subscriptions_reach_the_topics_of_every_rule_they_overlap() {
        let m = mappings(&[
            ("sensors/+/temp", "sensors.temp", Some("{1}")),
            ("sensors/+/humidity", "sensors.humidity", Some("{1}")),
            ("sensors/7/#", "sensors.temp", None),
            ("alerts", "alerts", None),
        ])
        .unwrap();
        let names = |filter| m.topics_for(filter).iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(names("sensors/7/temp"), ["sensors.temp"]);
        assert_eq!(names("sensors/#"), ["sensors.temp", "sensors.humidity"]);
        assert_eq!(names("#"), ["sensors.temp", "sensors.humidity", "alerts"]);
        assert!(names("nothing/here").is_empty());
    }

    #[test]
    fn bad_rules_say_which_and_why() {
        let err = |rules| mappings(rules).unwrap_err();
        assert!(err(&[("a/#/b", "t", None)]).contains("mappings[0].mqtt"));
        assert!(err(&[("a", "no spaces", None)]).contains("mappings[0].kafka"));
        assert!(err(&[("a/+", "t", Some("{2}"))]).contains("the filter has 1 wildcard"));
        assert!(err(&[("a/+/+", "t", Some("{1}{2}"))]).contains("nothing between them"));
        assert!(err(&[("a/+", "t", Some("{x}"))]).contains("not a wildcard's place"));
        assert!(err(&[("a/+", "t", Some("{1"))]).contains("without its `}`"));
        assert!(err(&[("$share/g/a", "t", None)]).contains("shared subscription"));
    }
}
