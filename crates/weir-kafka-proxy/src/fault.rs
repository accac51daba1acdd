//! Fault injection (chaos): the rules of the sidecar's `faults:` config, checked and compiled
//! into what the fault filter ([`crate::filters::fault`]) applies per request.
//!
//! Off by default. A rule picks requests by principal, api key and topic, fires on a share of
//! them (`rate`), and injects one fault: a delay, an error code in the broker's answer, a
//! dropped connection, or, on Fetch, duplicated or corrupted record batches.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};

/// The longest delay a rule may inject: past it, clients time out rather than slow down.
const MAX_DELAY_MS: u64 = 300_000;

/// One rule of `faults:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Its name, in metrics and logs.
    pub name: String,
    /// Whose requests (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Which requests, by Kafka's api key names (`Produce`, `Fetch`, ...); absent: all.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Only requests that name one of these topics; absent: any request.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The share of the chosen requests it fires on, above 0 and at most 1.
    pub rate: f64,
    /// What it does.
    pub inject: Fault,
}

/// What a rule injects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Holds the request (or its response) back.
    Delay(Delay),
    /// The client is told this error (a Kafka error name such as `NOT_LEADER_OR_FOLLOWER`, or
    /// the number). A produce is answered by the sidecar, nothing written, as a broker fails a
    /// write; any other request is served by the broker and its answer carries the code.
    Error(ErrorName),
    /// The broker serves the request; the client's connection is closed before the answer
    /// reaches it.
    DropConnection,
    /// Fetch: the records of a partition are sent twice.
    DuplicateBatches,
    /// Fetch: the first record batch of a partition fails its CRC check.
    CorruptBatch,
}

/// A Kafka error by name or number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ErrorName {
    Code(i16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// A fixed delay.
    #[serde(default)]
    pub ms: Option<u64>,
    /// A delay drawn uniformly from `min_ms..=max_ms`.
    #[serde(default)]
    pub min_ms: Option<u64>,
    #[serde(default)]
    pub max_ms: Option<u64>,
    /// Whether the request waits before it goes to the broker (the default) or its answer
    /// waits before it goes to the client.
    #[serde(default)]
    pub on: DelayOn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayOn {
    #[default]
    Request,
    Response,
}

/// A rule checked and ready to apply.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub name: Arc<str>,
    pub principals: Vec<String>,
    /// Empty: every api key.
    pub api_keys: Vec<ApiKey>,
    pub topics: Vec<String>,
    pub rate: f64,
    pub action: FaultAction,
}

/// What a plan does, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Delay { min: Duration, max: Duration, on: DelayOn },
    Error(i16),
    DropConnection,
    DuplicateBatches,
    CorruptBatch,
}

impl FaultAction {
    /// Its label in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delay { on: DelayOn::Request, .. } => "request_delay",
            Self::Delay { on: DelayOn::Response, .. } => "response_delay",
            Self::Error(_) => "error",
            Self::DropConnection => "drop_connection",
            Self::DuplicateBatches => "duplicate_batches",
            Self::CorruptBatch => "corrupt_batch",
        }
    }
}

impl FaultPlan {
    /// Whether the plan may fire on a request of `api`.
    pub fn wants(&self, api: ApiKey) -> bool {
        self.api_keys.is_empty() || self.api_keys.contains(&api)
    }

    /// Draws whether it fires this time.
    pub fn fires(&self) -> bool {
        self.rate >= 1.0 || fastrand::f64() < self.rate
    }

    /// A delay drawn from its range.
    pub fn delay(min: Duration, max: Duration) -> Duration {
        if max <= min {
            return min;
        }
        let span = (max - min).as_micros() as u64;
        min + Duration::from_micros(fastrand::u64(0..=span))
    }
}

impl FaultRule {
    /// Checks the rule and resolves its names; `at` names it in errors (`faults[0]`).
    pub fn compile(&self, origin: &Path, at: &str) -> Result<FaultPlan, ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a fault rule needs a name"));
        }
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(invalid(
                origin,
                &field("rate"),
                format!("expected a share of requests above 0 and at most 1, not {}", self.rate),
            ));
        }
        let api_keys = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, name)| {
                api_key_named(name).ok_or_else(|| {
                    invalid(origin, &format!("{at}.api_keys[{i}]"), format!("`{name}` is not a Kafka api key name"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let only_fetch = |what: &str| -> Result<(), ConfigError> {
            if api_keys != [ApiKey::Fetch] {
                return Err(invalid(
                    origin,
                    &field("api_keys"),
                    format!("{what} applies to Fetch only: set api_keys: [Fetch]"),
                ));
            }
            Ok(())
        };
        let action = match &self.inject {
            Fault::Delay(delay) => delay.compile(origin, &format!("{at}.inject.delay"))?,
            Fault::Error(name) => FaultAction::Error(error_code(name).ok_or_else(|| {
                invalid(origin, &format!("{at}.inject.error"), format!("{name} is not a Kafka error code"))
            })?),
            Fault::DropConnection => FaultAction::DropConnection,
            Fault::DuplicateBatches => {
                only_fetch("duplicate_batches")?;
                FaultAction::DuplicateBatches
            }
            Fault::CorruptBatch => {
                only_fetch("corrupt_batch")?;
                FaultAction::CorruptBatch
            }
        };
        Ok(FaultPlan {
            name: Arc::from(self.name.as_str()),
            principals: self.principals.clone(),
            api_keys,
            topics: self.topics.clone(),
            rate: self.rate,
            action,
        })
    }
}

impl Delay {
    fn compile(&self, origin: &Path, at: &str) -> Result<FaultAction, ConfigError> {
        let (min, max) = match (self.ms, self.min_ms, self.max_ms) {
            (Some(ms), None, None) => (ms, ms),
            (None, Some(min), Some(max)) if min <= max => (min, max),
            (None, Some(min), Some(max)) => {
                return Err(invalid(origin, &format!("{at}.min_ms"), format!("{min} is above max_ms ({max})")))
            }
            _ => return Err(invalid(origin, at, "set either ms, or both min_ms and max_ms")),
        };
        if max > MAX_DELAY_MS {
            return Err(invalid(origin, at, format!("{max} ms is longer than the {MAX_DELAY_MS} ms a delay may be")));
        }
        Ok(FaultAction::Delay { min: Duration::from_millis(min), max: Duration::from_millis(max), on: self.on })
    }
}

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "{code}"),
            Self::Name(name) => write!(f, "`{name}`"),
        }
    }
}

/// The api key Kafka calls `name` (`Produce`, `Fetch`, `ListOffsets`, ...; any case).
fn api_key_named(name: &str) -> Option<ApiKey> {
    ApiKey::iter().find(|key| format!("{key:?}").eq_ignore_ascii_case(name))
}

/// The code of a Kafka error, by number or by its name in Kafka's `Errors`
/// (`NOT_LEADER_OR_FOLLOWER`; case and underscores do not matter). Zero is no error.
fn error_code(name: &ErrorName) -> Option<i16> {
    // Kafka's codes run from -1 up, with no gaps so far; 1,000 leaves room for new ones.
    let known = |code: i16| ResponseError::try_from_code(code).filter(|e| !matches!(e, ResponseError::Unknown(_)));
    match name {
        ErrorName::Code(code) => known(*code).map(|e| e.code()),
        ErrorName::Name(name) => {
            let wanted = name.replace('_', "").to_ascii_lowercase();
            (-1..1000).filter_map(known).find(|e| e.to_string().to_ascii_lowercase() == wanted).map(|e| e.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<FaultPlan, String> {
        let rule: FaultRule =
            weir_core::config::parse_yaml(yaml, Path::new("sidecar.yaml")).map_err(|e| e.to_string())?;
        rule.compile(Path::new("sidecar.yaml"), "faults[0]").map_err(|e| e.to_string())
    }

    #[test]
    fn error_names_resolve_as_kafka_spells_them_and_an_unknown_one_is_refused_with_its_field() {
        let plan =
            compile("{name: nl, api_keys: [Produce], rate: 0.2, inject: {error: NOT_LEADER_OR_FOLLOWER}}").unwrap();
        assert_eq!(plan.action, FaultAction::Error(6));
        assert_eq!(plan.api_keys, [ApiKey::Produce]);
        assert_eq!(compile("{name: t, rate: 1, inject: {error: 7}}").unwrap().action, FaultAction::Error(7));
        let err = compile("{name: x, rate: 1, inject: {error: NOT_A_LEADER}}").unwrap_err();
        assert!(
            err.contains("faults[0].inject.error") && err.contains("`NOT_A_LEADER` is not a Kafka error code"),
            "{err}"
        );
        let err = compile("{name: x, rate: 1, inject: {error: 0}}").unwrap_err();
        assert!(err.contains("0 is not a Kafka error code"), "{err}");
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        for (yaml, field, says) in [
            ("{name: x, rate: 1.5, inject: drop_connection}", "faults[0].rate", "not 1.5"),
            ("{name: x, rate: 0, inject: drop_connection}", "faults[0].rate", "not 0"),
            ("{name: x, rate: 1, api_keys: [Produse], inject: drop_connection}", "faults[0].api_keys[0]", "`Produse`"),
            ("{name: x, rate: 1, inject: corrupt_batch}", "faults[0].api_keys", "Fetch only"),
            (
                "{name: x, rate: 1, inject: {delay: {min_ms: 9, max_ms: 3}}}",
                "faults[0].inject.delay.min_ms",
                "above max_ms",
            ),
            ("{name: x, rate: 1, inject: {delay: {ms: 5, max_ms: 3}}}", "faults[0].inject.delay", "either ms"),
            ("{name: x, rate: 1, inject: {delay: {ms: 400000}}}", "faults[0].inject.delay", "longer than"),
            ("{name: '', rate: 1, inject: drop_connection}", "faults[0].name", "needs a name"),
        ] {
            let err = compile(yaml).unwrap_err();
            assert!(err.contains(field) && err.contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn a_delay_is_fixed_or_drawn_from_its_range() {
        let plan = compile("{name: d, rate: 1, inject: {delay: {min_ms: 10, max_ms: 20, on: response}}}").unwrap();
        let FaultAction::Delay { min, max, on } = plan.action else { panic!("{plan:?}") };
        assert_eq!(on, DelayOn::Response);
        for _ in 0..100 {
            let d = FaultPlan::delay(min, max);
            assert!((min..=max).contains(&d), "{d:?}");
        }
        let fixed = compile("{name: d, rate: 1, inject: {delay: {ms: 7}}}").unwrap();
        assert_eq!(
            fixed.action,
            FaultAction::Delay { min: Duration::from_millis(7), max: Duration::from_millis(7), on: DelayOn::Request }
        );
    }

    #[test]
    fn a_rate_fires_on_about_its_share() {
        let plan = compile("{name: r, rate: 0.25, inject: drop_connection}").unwrap();
        let fired = (0..20_000).filter(|_| plan.fires()).count();
        assert!((4_400..5_600).contains(&fired), "{fired} of 20000 at 0.25");
    }
}
