//! Who a request comes from, in this order: a bearer token (`Authorization: Bearer <JWT>`,
//! checked as the Kafka sidecar checks SASL/OAUTHBEARER tokens; its principal claim names the
//! principal), else the connection's client certificate (mTLS), else the configured
//! `fixed_principal`; with none of these the request is refused (401). A request that brings a
//! token acts as the token's principal: a service holding a mesh certificate may forward the
//! identity of the user it serves.

use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;
use weir_core::jwt::JwtValidator;

use crate::api::ApiError;

/// A request's principal and how it was proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    /// `bearer`, `mtls` or `fixed`.
    pub mechanism: &'static str,
}

/// Who sent a request with `headers` on a connection whose certificate named `certified`.
pub async fn caller(
    headers: &HeaderMap,
    certified: Option<&str>,
    bearer: Option<&JwtValidator>,
    fixed: Option<&str>,
) -> Result<Caller, ApiError> {
    let unauthorized = |message: String| ApiError::new(StatusCode::UNAUTHORIZED, message);
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| unauthorized("an Authorization header that is not text".into()))?;
        let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
            return Err(unauthorized("only `Authorization: Bearer <token>` is accepted".into()));
        };
        let Some(validator) = bearer else {
            return Err(unauthorized("bearer tokens are not accepted here (no `bearer` configured)".into()));
        };
        let verified = validator.validate_fetching(token.trim()).await.map_err(|e| unauthorized(e.to_string()))?;
        return Ok(Caller { principal: verified.principal, mechanism: "bearer" });
    }
    if let Some(principal) = certified {
        return Ok(Caller { principal: principal.to_owned(), mechanism: "mtls" });
    }
    match fixed {
        Some(principal) => Ok(Caller { principal: principal.to_owned(), mechanism: "fixed" }),
        None => {
            Err(unauthorized("no credentials: send `Authorization: Bearer <token>` or a client certificate".into()))
        }
    }
}
