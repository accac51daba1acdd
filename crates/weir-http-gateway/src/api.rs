//! The API's answers: JSON bodies, and errors as the Strimzi bridge writes them —
//! `{"error_code": 403, "message": "..."}` with the same HTTP status.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// A whole answer or a stream of events.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// `bytes` as a body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A request the gateway refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub fn response(&self) -> Response<Body> {
        #[derive(Serialize)]
        struct Error<'a> {
            error_code: u16,
            message: &'a str,
        }
        json(self.status, &Error { error_code: self.status.as_u16(), message: &self.message })
    }
}

/// `value` as a JSON response with `status`.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(JSON));
    response
}

/// The content type of the gateway's own JSON answers.
pub const JSON: &str = "application/vnd.kafka.v2+json";

/// A JSON body as `T` (`what` names it in errors); what is wrong says where
/// (`records[1]: unknown field \`colour\``), as 422.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let at = error.path().to_string();
        let inner = error.into_inner();
        let message = if at == "." { format!("the body is not {what}: {inner}") } else { format!("{at}: {inner}") };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    })
}
