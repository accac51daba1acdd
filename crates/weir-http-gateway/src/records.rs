//! Records in the API's JSON, both ways: the content types that say how keys and values are
//! written ([`Format`]), and records read from Kafka as the Strimzi bridge answers them
//! ([`RecordOut`]) — a consumer instance's records and an event stream's JSON events.
//!
//! In the JSON format a key or value is the JSON its bytes hold (a key or value that is not
//! JSON goes as a JSON string of its text: use the binary format for such topics); in the
//! binary format they are base64 strings of the bytes. Header values are base64 in both.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::StatusCode;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use weir_gateway::Record;

use crate::api::ApiError;

/// How keys and values are written in a body (its Content-Type or Accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `application/vnd.kafka.json.v2+json` or `application/json`: any JSON, as its text.
    Json,
    /// `application/vnd.kafka.binary.v2+json`: base64 strings.
    Binary,
}

pub const JSON_RECORDS: &str = "application/vnd.kafka.json.v2+json";
pub const BINARY_RECORDS: &str = "application/vnd.kafka.binary.v2+json";

impl Format {
    /// The format a request's body is in.
    pub fn of(content_type: Option<&str>) -> Result<Self, ApiError> {
        let essence = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            JSON_RECORDS | "application/json" => Ok(Format::Json),
            BINARY_RECORDS => Ok(Format::Binary),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type `{other}`: expected {JSON_RECORDS}, {BINARY_RECORDS} or application/json"),
            )),
        }
    }

    /// The content type of records answered in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_RECORDS,
            Format::Binary => BINARY_RECORDS,
        }
    }

    /// Whether a request's `Accept` header takes records in this format (no header, `*/*` and
    /// `application/json` take either).
    pub fn accepted_by(self, accept: Option<&str>) -> bool {
        let Some(accept) = accept else { return true };
        accept.split(',').any(|item| {
            let essence = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(essence.as_str(), "*/*" | "application/*" | "application/json") || essence == self.content_type()
        })
    }
}

/// A record read from Kafka, written as the API answers records.
pub struct RecordOut<'a> {
    pub record: &'a Record,
    pub format: Format,
}

impl Serialize for RecordOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.record;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("topic", &*record.topic)?;
        map.serialize_entry("key", &record.key.as_deref().map(|key| Bytes(key, self.format)))?;
        map.serialize_entry("value", &Bytes(&record.value, self.format))?;
        map.serialize_entry("partition", &record.partition)?;
        map.serialize_entry("offset", &record.offset)?;
        if let Some(timestamp) = record.timestamp {
            map.serialize_entry("timestamp", &timestamp)?;
        }
        if !record.headers.is_empty() {
            map.serialize_entry("headers", &Headers(&record.headers))?;
        }
        map.end()
    }
}

/// A key or value in `format`.
struct Bytes<'a>(&'a [u8], Format);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            Format::Binary => serializer.serialize_str(&B64.encode(self.0)),
            Format::Json => match std::str::from_utf8(self.0).ok().and_then(|text| json_text(text)) {
                Some(raw) => raw.serialize(serializer),
                None => serializer.serialize_str(&String::from_utf8_lossy(self.0)),
            },
        }
    }
}

/// `text` as JSON, when it is JSON.
fn json_text(text: &str) -> Option<&RawValue> {
    serde_json::from_str::<&RawValue>(text).ok()
}

struct Headers<'a>(&'a [(Box<str>, bytes::Bytes)]);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (key, value) in self.0 {
            let mut header = std::collections::BTreeMap::new();
            header.insert("key", key.to_string());
            header.insert("value", B64.encode(value));
            seq.serialize_element(&header)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, OnceLock};

    fn record(key: Option<&'static [u8]>, value: &'static [u8]) -> Record {
        Record {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 41,
            timestamp: Some(1_700_000_000_000),
            key: key.map(bytes::Bytes::from_static),
            value: bytes::Bytes::from_static(value),
            headers: vec![("source".into(), bytes::Bytes::from_static(b"web"))],
            derived: OnceLock::new(),
        }
    }

    #[test]
    fn records_go_out_as_json_or_base64_and_text_that_is_not_json_as_a_string() {
        let json = |record: &Record, format| serde_json::to_value(RecordOut { record, format }).unwrap();
        let out = json(&record(Some(b"\"o-1\""), br#"{"total": 12}"#), Format::Json);
        assert_eq!(
            out,
            serde_json::json!({"topic": "orders", "key": "o-1", "value": {"total": 12}, "partition": 2,
                "offset": 41, "timestamp": 1_700_000_000_000i64, "headers": [{"key": "source", "value": "d2Vi"}]})
        );
        let out = json(&record(None, b"plain words"), Format::Json);
        assert_eq!((&out["key"], &out["value"]), (&serde_json::Value::Null, &serde_json::json!("plain words")));
        let out = json(&record(Some(b"k"), &[0, 1, 2]), Format::Binary);
        assert_eq!((&out["key"], &out["value"]), (&serde_json::json!("aw=="), &serde_json::json!("AAEC")));
    }

    #[test]
    fn content_types_and_accept_headers_name_a_format() {
        assert_eq!(Format::of(Some("application/json; charset=utf-8")), Ok(Format::Json));
        assert_eq!(Format::of(Some("text/plain")).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(Format::Binary.accepted_by(None));
        assert!(Format::Binary.accepted_by(Some("application/vnd.kafka.binary.v2+json")));
        assert!(Format::Json.accepted_by(Some("text/html, */*;q=0.8")));
        assert!(!Format::Json.accepted_by(Some("application/vnd.kafka.binary.v2+json")));
    }
}
