//! Record transformation: the rules of the sidecar's `transforms:` config.
//!
//! On produce, a rule removes headers from every record written to its topics and adds
//! headers of its own (lineage: who wrote it, through which client, when), replacing any the
//! client sent under the same keys, so that a client cannot forge them. The transform filter
//! ([`crate::filters::transform`]) rewrites the batches; records keep their number, order,
//! keys, values and timestamps, and batches their producer's sequence.
//!
//! On fetch ([`fetch`]), a rule changes what its principals read of its topics: headers
//! removed, JSON fields masked ([`json_path`]), records matching a predicate ([`expr`])
//! taken out. Every record kept keeps its offset; see [`crate::filters::fetch_transform`].

pub mod expr;
pub mod fetch;
pub mod json_path;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;

use crate::quota::covers;

/// One rule of `transforms:`. Every rule that covers a topic and the principal applies, in
/// order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRule {
    /// Its name, in metrics and logs.
    pub name: String,
    /// The topics it covers: literal, `prefix*` or globs with `*` and `?`.
    pub topics: Vec<String>,
    /// Whose writes and reads (principals as authorization names them; absent or `*`:
    /// everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// What happens to records written to the topics.
    #[serde(default)]
    pub produce: Option<ProduceTransform>,
    /// What the principals read of records fetched from the topics.
    #[serde(default)]
    pub fetch: Option<FetchTransform>,
}

/// What a rule does to records its principals fetch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchTransform {
    /// Header keys removed (every header of each key).
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// JSON fields of the value replaced, by path.
    #[serde(default)]
    pub mask: Vec<MaskRule>,
    /// Records for which this predicate holds are taken out (their offsets become gaps).
    #[serde(default)]
    pub drop_if: Option<String>,
}

/// One masked JSON field: replaced by a JSON value, or by its hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// `$.field.inner`, `$.list[*].field`, `$['odd key']`, `$.list[0]`.
    pub path: String,
    /// The JSON value written in its place (`null` included).
    #[serde(default, deserialize_with = "present")]
    pub replace: Option<serde_json::Value>,
    /// Replace it by `"sha256:<hex>"` of its JSON text as written.
    #[serde(default)]
    pub hash: bool,
}

/// A field that is present is `Some`, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The JSON document of a value: after the five bytes of the schema registry's framing
/// (magic byte 0, schema id) when it has them (a JSON document never starts with a 0 byte).
pub fn json_document(value: &[u8]) -> &[u8] {
    match value {
        [0, rest @ ..] if rest.len() >= 4 => &rest[4..],
        _ => value,
    }
}

/// What a rule does to records on produce.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceTransform {
    /// Header keys removed (every header of each key).
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// Headers added, after removing: key → value, a text in which `{principal}`,
    /// `{client_id}`, `{topic}` and `{time}` (milliseconds since the epoch, the sidecar's
    /// clock) are replaced. Headers the client sent under these keys are removed first.
    #[serde(default)]
    pub add_headers: BTreeMap<String, String>,
}

/// The words a header value may name.
const PLACEHOLDERS: [&str; 4] = ["principal", "client_id", "topic", "time"];

/// Where a record is written, and by whom: what a header value's placeholders become.
pub struct Lineage<'a> {
    pub principal: &'a str,
    pub client_id: &'a str,
    pub topic: &'a str,
    pub time_ms: i64,
}

/// A header value: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Principal,
    ClientId,
    Topic,
    Time,
}

/// A produce transform as the filter applies it.
#[derive(Debug, Clone)]
pub struct CompiledTransform {
    pub rule: String,
    topics: Vec<Pattern>,
    /// Keys whose headers go: those removed and those added.
    dropped: Vec<Vec<u8>>,
    added: Vec<(Vec<u8>, Vec<Piece>)>,
}

impl CompiledTransform {
    /// The produce part of `rule`, if it has one.
    pub fn new(rule: &TransformRule) -> Option<Self> {
        let produce = rule.produce.as_ref()?;
        let mut dropped: Vec<Vec<u8>> = produce.remove_headers.iter().map(|k| k.as_bytes().to_vec()).collect();
        dropped.extend(produce.add_headers.keys().map(|k| k.as_bytes().to_vec()));
        let added = produce
            .add_headers
            .iter()
            .map(|(key, value)| (key.as_bytes().to_vec(), parse(value).unwrap_or_default()))
            .collect();
        Some(CompiledTransform {
            rule: rule.name.clone(),
            topics: rule.topics.iter().map(|p| Pattern::parse(p)).collect(),
            dropped,
            added,
        })
    }

    pub fn covers(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }

    /// Whether a header of this key goes.
    pub fn drops(&self, key: &[u8]) -> bool {
        self.dropped.iter().any(|d| d == key)
    }

    /// The headers added, their values for this record's lineage.
    pub fn added(&self, lineage: &Lineage<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.added.iter().map(|(key, pieces)| (key.clone(), render(pieces, lineage).into_bytes())).collect()
    }
}

fn render(pieces: &[Piece], lineage: &Lineage<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Principal => out.push_str(lineage.principal),
            Piece::ClientId => out.push_str(lineage.client_id),
            Piece::Topic => out.push_str(lineage.topic),
            Piece::Time => out.push_str(&lineage.time_ms.to_string()),
        }
    }
    out
}

/// A header value's pieces; `{{` and `}}` are literal braces.
fn parse(value: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    while let Some(at) = rest.find(['{', '}']) {
        text.push_str(&rest[..at]);
        let brace = &rest[at..];
        if brace.starts_with("{{") || brace.starts_with("}}") {
            text.push_str(&brace[..1]);
            rest = &brace[2..];
            continue;
        }
        if brace.starts_with('}') {
            return Err("a `}` without its `{` (write `}}` for a brace)".into());
        }
        let end = brace.find('}').ok_or("a `{` without its `}` (write `{{` for a brace)")?;
        let name = &brace[1..end];
        let piece = match name {
            "principal" => Piece::Principal,
            "client_id" => Piece::ClientId,
            "topic" => Piece::Topic,
            "time" => Piece::Time,
            other => {
                return Err(format!("`{{{other}}}` is not a placeholder (expected one of {})", PLACEHOLDERS.join(", ")))
            }
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &brace[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl TransformRule {
    fn validate(&self, origin: &Path, at: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a rule needs a name"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("topics"), "name the topics it covers (`*` for every topic)"));
        }
        if self.produce.is_none() && self.fetch.is_none() {
            let why = format!("rule `{}` transforms nothing: set produce, fetch or both", self.name);
            return Err(invalid(origin, at, why));
        }
        if let Some(fetch) = &self.fetch {
            fetch.validate(origin, &field("fetch"))?;
        }
        let Some(produce) = &self.produce else { return Ok(()) };
        if produce.remove_headers.is_empty() && produce.add_headers.is_empty() {
            let why = "set remove_headers, add_headers or both";
            return Err(invalid(origin, &field("produce"), why));
        }
        if produce.remove_headers.iter().chain(produce.add_headers.keys()).any(String::is_empty) {
            return Err(invalid(origin, &field("produce"), "a header key is not empty"));
        }
        for (key, value) in &produce.add_headers {
            parse(value).map_err(|why| invalid(origin, &format!("{at}.produce.add_headers.{key}"), why))?;
        }
        Ok(())
    }

    /// Whether the rule covers writes of `principal`.
    pub fn covers_principal(&self, principal: &str) -> bool {
        covers(&self.principals, principal)
    }
}

impl FetchTransform {
    fn validate(&self, origin: &Path, at: &str) -> Result<(), ConfigError> {
        if self.remove_headers.is_empty() && self.mask.is_empty() && self.drop_if.is_none() {
            return Err(invalid(origin, at, "set remove_headers, mask, drop_if or several"));
        }
        if self.remove_headers.iter().any(String::is_empty) {
            return Err(invalid(origin, &format!("{at}.remove_headers"), "a header key is not empty"));
        }
        for (i, mask) in self.mask.iter().enumerate() {
            let at = format!("{at}.mask[{i}]");
            json_path::JsonPath::parse(&mask.path).map_err(|why| invalid(origin, &format!("{at}.path"), why))?;
            if mask.replace.is_some() == mask.hash {
                return Err(invalid(origin, &at, "set one of replace (a JSON value) or hash: true"));
            }
        }
        if let Some(predicate) = &self.drop_if {
            expr::Expr::parse(predicate).map_err(|why| invalid(origin, &format!("{at}.drop_if"), why))?;
        }
        Ok(())
    }
}

/// Checks `transforms:`: each rule named, unique, covering topics and doing something, its
/// header values' placeholders known.
pub fn validate_rules(rules: &[TransformRule], origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("transforms[{i}]"))?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "transforms", origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<Vec<TransformRule>, String> {
        let origin = Path::new("sidecar.yaml");
        let rules: Vec<TransformRule> = weir_core::config::parse_yaml(yaml, origin).map_err(|e| e.to_string())?;
        validate_rules(&rules, origin).map_err(|e| e.to_string())?;
        Ok(rules)
    }

    #[test]
    fn header_values_name_the_writer_and_keys_added_replace_the_clients() {
        let rule = rules(
            "[{name: lineage, topics: ['orders*'], produce: {remove_headers: [secret],
               add_headers: {by: '{principal} via {client_id}', at: '{time}', to: '{{{topic}}}'}}}]",
        )
        .unwrap();
        let compiled = CompiledTransform::new(&rule[0]).unwrap();
        assert!(compiled.covers("orders.eu") && !compiled.covers("payments"));
        assert!(compiled.drops(b"secret") && compiled.drops(b"by") && !compiled.drops(b"trace"));
        let lineage = Lineage { principal: "User:ann", client_id: "app", topic: "orders", time_ms: 1_700_000_000_000 };
        let added = compiled.added(&lineage);
        let text: Vec<(String, String)> = added
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        assert_eq!(
            text,
            [
                ("at".into(), "1700000000000".into()),
                ("by".into(), "User:ann via app".into()),
                ("to".into(), "{orders}".into())
            ]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let err = |yaml: &str| rules(yaml).unwrap_err();
        assert!(err("[{name: x, topics: [a]}]").contains("transforms nothing"));
        assert!(err("[{name: x, topics: [a], fetch: {}}]").contains("at `transforms[0].fetch`"));
        assert!(err("[{name: x, topics: [a], fetch: {mask: [{path: '$.a'}]}}]")
            .contains("at `transforms[0].fetch.mask[0]`: set one of replace"));
        assert!(err("[{name: x, topics: [a], fetch: {mask: [{path: 'a', hash: true}]}}]")
            .contains("at `transforms[0].fetch.mask[0].path`: a JSON path starts with `$`"));
        assert!(err("[{name: x, topics: [a], fetch: {drop_if: 'key = 1'}}]")
            .contains("at `transforms[0].fetch.drop_if`: `=` at column 5: compare with `==`"));
        let ok =
            rules("[{name: x, topics: [a], fetch: {mask: [{path: '$.a', replace: null}, {path: '$.b', hash: true}]}}]");
        assert_eq!(ok.unwrap()[0].fetch.as_ref().unwrap().mask[0].replace, Some(serde_json::Value::Null));
        assert!(err("[{name: x, topics: [a], produce: {}}]").contains("at `transforms[0].produce`"));
        assert!(err("[{name: x, topics: [a], produce: {add_headers: {h: '{user}'}}}]")
            .contains("at `transforms[0].produce.add_headers.h`: `{user}` is not a placeholder"));
        assert!(err("[{name: x, topics: [a], produce: {add_headers: {h: 'a{b'}}}]").contains("without its `}`"));
        assert!(err("[{name: x, topics: [], produce: {remove_headers: [a]}}]").contains("transforms[0].topics"));
        assert!(err("[{name: x, topics: [a], produce: {remove_headers: [a]}}, {name: x, topics: [b], produce: {remove_headers: [a]}}]")
            .contains("transforms[1].name"));
    }
}
