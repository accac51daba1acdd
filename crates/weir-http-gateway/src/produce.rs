//! `POST /topics/{topic}`: records in a JSON body, as the Strimzi HTTP bridge takes them,
//! written to Kafka (acks=all) before the answer says where each went.
//!
//! ```text
//! POST /topics/orders
//! Content-Type: application/vnd.kafka.json.v2+json      (or application/json)
//! {"records": [{"key": "o-1", "value": {"total": 12}, "partition": 0,
//!               "headers": [{"key": "source", "value": "d2Vi"}]}]}
//!
//! 200 {"offsets": [{"partition": 0, "offset": 41}]}
//! ```
//!
//! In the JSON format a key or value is any JSON, written as its JSON text; with
//! `application/vnd.kafka.binary.v2+json` they are base64 strings of the bytes. Header values
//! are base64 in both. A `null` value writes a tombstone. A record Kafka does not take gets
//! `{"error_code", "message"}` in its place; when none was taken, the answer's status is the
//! first one's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::StatusCode;
use weir_gateway::producer::{Outgoing, ProduceFailure};
use weir_gateway::{KafkaProducer, ProduceError};

use crate::api::ApiError;
use crate::records::Format;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRequest {
    records: Vec<RecordIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    headers: Vec<HeaderIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    key: String,
    /// Base64.
    value: String,
}

/// A record ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub key: Option<Vec<u8>>,
    /// None: a tombstone.
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Reads a produce request's body; what is wrong says where (`records[2].value: ...`).
pub fn parse(body: &[u8], format: Format, max_records: usize) -> Result<Vec<Prepared>, ApiError> {
    let request: ProduceRequest = crate::api::parse(body, "a produce request")?;
    if request.records.is_empty() {
        return Err(unprocessable("records: no record".into()));
    }
    if request.records.len() > max_records {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} records: at most {max_records} per request", request.records.len()),
        ));
    }
    let bytes = |value: Option<Value>, at: String| -> Result<Option<Vec<u8>>, ApiError> {
        match (value, format) {
            (None | Some(Value::Null), _) => Ok(None),
            (Some(value), Format::Json) => Ok(Some(value.to_string().into_bytes())),
            (Some(Value::String(text)), Format::Binary) => {
                B64.decode(text).map(Some).map_err(|e| unprocessable(format!("{at}: not base64: {e}")))
            }
            (Some(_), Format::Binary) => Err(unprocessable(format!("{at}: expected a base64 string"))),
        }
    };
    let mut prepared = Vec::with_capacity(request.records.len());
    for (i, record) in request.records.into_iter().enumerate() {
        let key = bytes(record.key, format!("records[{i}].key"))?;
        let value = bytes(record.value, format!("records[{i}].value"))?;
        if record.partition.is_some_and(|p| p < 0) {
            return Err(unprocessable(format!("records[{i}].partition: expected 0 or more")));
        }
        let mut headers = Vec::with_capacity(record.headers.len());
        for (j, header) in record.headers.into_iter().enumerate() {
            let value = B64
                .decode(&header.value)
                .map_err(|e| unprocessable(format!("records[{i}].headers[{j}].value: not base64: {e}")))?;
            headers.push((header.key, value));
        }
        prepared.push(Prepared { key, value, partition: record.partition, headers });
    }
    Ok(prepared)
}

/// Where a record went, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProduceResponse {
    pub offsets: Vec<Placed>,
}

/// The HTTP status for what Kafka said.
pub fn status_of(error: &ProduceError) -> StatusCode {
    match error.failure {
        ProduceFailure::NotAuthorized => StatusCode::FORBIDDEN,
        ProduceFailure::UnknownTopic => StatusCode::NOT_FOUND,
        ProduceFailure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ProduceFailure::Quota => StatusCode::TOO_MANY_REQUESTS,
        ProduceFailure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        ProduceFailure::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Writes `records` to `topic`, all handed to the producer before any answer is awaited (one
/// batch's worth of round trips); the status and the answer.
pub async fn produce(producer: &KafkaProducer, topic: &str, records: &[Prepared]) -> (StatusCode, ProduceResponse) {
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let headers: Vec<(&str, &[u8])> = record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let outgoing = Outgoing {
            topic,
            partition: record.partition,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        pending.push(producer.send(outgoing).await);
    }
    let mut offsets = Vec::with_capacity(records.len());
    let mut first_failure = None;
    let mut written = 0;
    for sent in pending {
        let result = match sent {
            Ok(pending) => pending.written().await,
            Err(error) => Err(error),
        };
        offsets.push(match result {
            Ok(at) => {
                written += 1;
                Placed { partition: Some(at.partition), offset: Some(at.offset), error_code: None, message: None }
            }
            Err(error) => {
                let status = status_of(&error);
                first_failure.get_or_insert(status);
                Placed {
                    partition: None,
                    offset: None,
                    error_code: Some(status.as_u16()),
                    message: Some(error.to_string()),
                }
            }
        });
    }
    let status = match (written, first_failure) {
        (0, Some(status)) => status,
        _ => StatusCode::OK,
    };
    (status, ProduceResponse { offsets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_in_either_format_and_mistakes_say_where() {
        let body = br#"{"records": [{"key": "k", "value": {"n": 1}, "headers": [{"key": "h", "value": "aGk="}]},
                                    {"value": null, "partition": 2}]}"#;
        let records = parse(body, Format::Json, 10).unwrap();
        assert_eq!(records[0].key.as_deref(), Some(&br#""k""#[..]));
        assert_eq!(records[0].value.as_deref(), Some(&br#"{"n":1}"#[..]));
        assert_eq!(records[0].headers, [("h".to_owned(), b"hi".to_vec())]);
        assert_eq!((records[1].value.as_deref(), records[1].partition), (None, Some(2)));

        let body = br#"{"records": [{"key": "aGk=", "value": "AAEC"}]}"#;
        let records = parse(body, Format::Binary, 10).unwrap();
        assert_eq!((records[0].key.as_deref(), records[0].value.as_deref()), (Some(&b"hi"[..]), Some(&[0, 1, 2][..])));

        let err = |body: &[u8], format| parse(body, format, 2).unwrap_err();
        let e = err(br#"{"records": [{"value": 1}, {"value": 2, "colour": "red"}]}"#, Format::Json);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("records[1]") && e.message.contains("colour"), "{}", e.message);
        let e = err(br#"{"records": [{"value": {"n": 1}}]}"#, Format::Binary);
        assert!(e.message.contains("records[0].value: expected a base64 string"), "{}", e.message);
        let e = err(br#"{"records": [{"value": "%%"}]}"#, Format::Binary);
        assert!(e.message.contains("records[0].value: not base64"), "{}", e.message);
        let e = err(br#"{"records": [{"value": 1}, {"value": 2}, {"value": 3}]}"#, Format::Json);
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = err(b"{\"records\": [", Format::Json);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = err(br#"{"records": []}"#, Format::Json);
        assert!(e.message.contains("no record"), "{}", e.message);
    }
}
