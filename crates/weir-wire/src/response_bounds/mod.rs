//! Broker responses checked in place before the proxy decodes them with kafka-protocol, whose
//! decoder pre-allocates every array at its declared length (`Vec::with_capacity`): one response
//! declaring 2^31 elements would abort the process on allocation failure.
//!
//! The check is the schema walk ([`crate::schema::walk`]) over the response's table: every
//! array length bounded by the bytes left, every string checked UTF-8 (the decoder refuses those
//! that are not), every tagged field the decoder reads itself (NodeEndpoints, CurrentLeader, ...)
//! filling exactly the size it declares. A body it accepts decodes with every array holding
//! elements that are really there. Record batches are skipped as bytes. Bytes after the last
//! field are ignored, as the decoder ignores them.

use kafka_protocol::messages::ApiKey;

use crate::scan::ScanError;
use crate::schema;

/// Walks a response body (the bytes after the response header) of `api_key` at `version`,
/// checking every array length against the bytes left and every field's width.
///
/// Ok(true): walked, safe to decode with kafka-protocol. Ok(false): Kafka's specs define no
/// response for `api_key` (the caller decides). Err: malformed or hostile, or a version the
/// specs do not define.
pub fn check_response_body(body: &[u8], api_key: ApiKey, version: i16) -> Result<bool, ScanError> {
    walk_response(body, api_key, version).map(|walked| walked.is_some())
}

/// The walk; Ok(Some(bytes walked)) for a known key.
fn walk_response(body: &[u8], api_key: ApiKey, version: i16) -> Result<Option<usize>, ScanError> {
    let Some(spec) = schema::response(api_key as i16) else {
        return Ok(None);
    };
    schema::walk_body(body, spec, version, &mut ()).map(Some)
}

/// [`check_response_body`], refusing bytes left after the walk: in tests, trailing bytes mean the
/// walker and the reference encoder disagree on the schema.
#[cfg(test)]
fn check_response_body_strict(body: &[u8], api_key: ApiKey, version: i16) -> Result<bool, ScanError> {
    match walk_response(body, api_key, version)? {
        Some(consumed) if consumed != body.len() => {
            Err(ScanError { message: "response", version, offset: consumed, what: "trailing bytes" })
        }
        walked => Ok(walked.is_some()),
    }
}

#[cfg(test)]
mod tests;
