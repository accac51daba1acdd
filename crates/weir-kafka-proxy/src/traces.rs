//! Tracing through record headers: the sidecar's `traces:` config. Records of covered
//! topics carry a W3C `traceparent` (the sidecar adds one to sampled records that have none);
//! the sidecar exports a span for each produce and fetch of traced records (to the `otlp:`
//! endpoint), the fetch span a child of the producer's, so one trace shows producer → topic →
//! consumer. See [`crate::filters::trace`].

use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;

/// The header trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRules {
    /// The topics whose records are traced: literal, `prefix*` or globs.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Of batches whose records carry no sampled `traceparent`: the share that starts a
    /// sampled trace (0 to 1). Records that carry a sampled one are always traced.
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// The share of Kafka requests given a span of the sidecar's own, with the time spent at
    /// the broker and in the sidecar (0, the default: none): for finding where latency is.
    #[serde(default)]
    pub request_spans: f64,
}

fn one() -> f64 {
    1.0
}

impl TraceRules {
    pub fn validate(&self, origin: &Path, has_otlp: bool) -> Result<(), ConfigError> {
        if !has_otlp {
            return Err(invalid(origin, "traces", "traces need an endpoint: set `otlp` (endpoint: http://HOST:4318)"));
        }
        if self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, "traces.topics", "a topic pattern is not empty"));
        }
        for (field, ratio) in [("traces.sample_ratio", self.sample_ratio), ("traces.request_spans", self.request_spans)]
        {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(invalid(origin, field, format!("a share from 0 to 1, not {ratio}")));
            }
        }
        Ok(())
    }

    /// The topics' patterns.
    pub fn patterns(&self) -> Vec<Pattern> {
        self.topics.iter().map(|p| Pattern::parse(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_name_the_field() {
        let origin = Path::new("sidecar.yaml");
        let rules = |yaml: &str| -> TraceRules { weir_core::config::parse_yaml(yaml, origin).unwrap() };
        let err = |yaml: &str, otlp: bool| rules(yaml).validate(origin, otlp).unwrap_err().to_string();
        assert!(err("{topics: [a]}", false).contains("at `traces`: traces need an endpoint"));
        assert!(err("{topics: [a], sample_ratio: 1.5}", true)
            .contains("at `traces.sample_ratio`: a share from 0 to 1, not 1.5"));
        assert!(err("{topics: [a], request_spans: -1}", true).contains("traces.request_spans"));
        assert_eq!(rules("{topics: [a]}").sample_ratio, 1.0);
    }
}
