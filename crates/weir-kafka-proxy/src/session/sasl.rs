//! SASL terminated at the sidecar: until a client has authenticated, only ApiVersions goes to
//! the broker; SaslHandshake and SaslAuthenticate are answered here, and anything else closes
//! the connection (as a broker would). SCRAM-SHA-256/512 run the RFC 5802 exchange over two
//! SaslAuthenticate round trips; PLAIN passwords are checked against the same SCRAM entries;
//! OAUTHBEARER (RFC 7628) tokens are JWTs checked against the issuer's keys.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_core::sasl::{parse_oauthbearer, parse_plain, SaslServer, ScramMechanism, ScramServer, OAUTHBEARER};
use weir_wire::message::{decode_request, encode_response};
use weir_wire::RequestHeaderPeek;

use super::SessionError;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// A PLAIN message is a user name and a password; anything longer is not one.
const MAX_TOKEN: usize = 16 * 1024;

enum State {
    AwaitingHandshake,
    /// The mechanism the client chose.
    AwaitingAuthenticate(String),
    /// SCRAM: server-first sent, client-final due.
    ScramFinal(ScramServer),
    Authenticated,
}

/// What to do with a request.
pub(super) enum Gate {
    /// Forward it as usual.
    Pass,
    /// Answer it here and carry on.
    Answer(Bytes),
    /// Answer it here: the client is now `principal`, by `mechanism`.
    Authenticated { answer: Bytes, principal: String, mechanism: String },
    /// Answer it here, then close: authentication failed.
    Failed { answer: Bytes, reason: String },
}

pub(super) struct SaslGate {
    server: Arc<SaslServer>,
    state: State,
}

impl SaslGate {
    pub(super) fn new(server: Arc<SaslServer>) -> Self {
        Self { server, state: State::AwaitingHandshake }
    }

    /// How long a failed authentication's answer waits (see `SaslServerConfig`).
    pub(super) fn failure_delay(&self) -> std::time::Duration {
        self.server.failure_delay
    }

    pub(super) async fn check(&mut self, frame: &Bytes, peek: &RequestHeaderPeek) -> Result<Gate, SessionError> {
        if matches!(self.state, State::Authenticated) {
            return Ok(Gate::Pass);
        }
        let (key, version, id) = (peek.api_key, peek.api_version, peek.correlation_id);
        let encode_err = SessionError::BadRequest;
        match key {
            ApiKey::ApiVersions => Ok(Gate::Pass),
            ApiKey::SaslHandshake => {
                let request: SaslHandshakeRequest = decode_request(frame, peek).map_err(SessionError::BadRequest)?;
                let mechanisms = &self.server.mechanisms;
                let offered = mechanisms.iter().map(|m| StrBytes::from_string(m.clone())).collect();
                let supported = mechanisms.iter().any(|m| m.as_str() == request.mechanism.as_str());
                let error = if supported { 0 } else { UNSUPPORTED_SASL_MECHANISM };
                if supported {
                    self.state = State::AwaitingAuthenticate(request.mechanism.as_str().to_owned());
                }
                let body = SaslHandshakeResponse::default().with_error_code(error).with_mechanisms(offered);
                Ok(Gate::Answer(encode_response(id, key, version, &body).map_err(encode_err)?))
            }
            ApiKey::SaslAuthenticate => {
                let failed = |code: i16, reason: String| -> Result<Gate, SessionError> {
                    let body = SaslAuthenticateResponse::default()
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(format!("Authentication failed: {reason}"))));
                    Ok(Gate::Failed { answer: encode_response(id, key, version, &body).map_err(encode_err)?, reason })
                };
                let request: SaslAuthenticateRequest = decode_request(frame, peek).map_err(SessionError::BadRequest)?;
                if request.auth_bytes.len() > MAX_TOKEN {
                    return failed(
                        SASL_AUTHENTICATION_FAILED,
                        format!("SASL token of {} bytes", request.auth_bytes.len()),
                    );
                }
                let answer = |auth: &[u8]| {
                    let body = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::copy_from_slice(auth));
                    encode_response(id, key, version, &body).map_err(SessionError::BadRequest)
                };
                let server = self.server.clone();
                let no_credentials = || failed(UNSUPPORTED_SASL_MECHANISM, "no credentials for this mechanism".into());
                match std::mem::replace(&mut self.state, State::AwaitingHandshake) {
                    State::AwaitingAuthenticate(mechanism) if mechanism == OAUTHBEARER => {
                        let Some(tokens) = &server.tokens else { return no_credentials() };
                        let Some(token) = parse_oauthbearer(&request.auth_bytes) else {
                            return failed(SASL_AUTHENTICATION_FAILED, "malformed OAUTHBEARER message".into());
                        };
                        match tokens.validate_fetching(token).await {
                            Ok(verified) => {
                                self.state = State::Authenticated;
                                let principal = verified.principal;
                                Ok(Gate::Authenticated { answer: answer(&[])?, principal, mechanism })
                            }
                            Err(err) => failed(SASL_AUTHENTICATION_FAILED, err.to_string()),
                        }
                    }
                    State::AwaitingAuthenticate(mechanism) if mechanism == "PLAIN" => {
                        let Some(credentials) = &server.credentials else { return no_credentials() };
                        let Some((_, user, password)) = parse_plain(&request.auth_bytes) else {
                            return failed(SASL_AUTHENTICATION_FAILED, "malformed PLAIN message".into());
                        };
                        if !credentials.verify_password(user, password) {
                            return failed(
                                SASL_AUTHENTICATION_FAILED,
                                format!("invalid user name or password for `{user}`"),
                            );
                        }
                        self.state = State::Authenticated;
                        Ok(Gate::Authenticated { answer: answer(&[])?, principal: user.to_owned(), mechanism })
                    }
                    State::AwaitingAuthenticate(mechanism) => {
                        let Some(credentials) = &server.credentials else { return no_credentials() };
                        let Some(scram) = ScramMechanism::from_name(&mechanism) else {
                            return failed(UNSUPPORTED_SASL_MECHANISM, format!("mechanism {mechanism}"));
                        };
                        match credentials.scram_first(scram, &request.auth_bytes) {
                            Ok((server, server_first)) => {
                                self.state = State::ScramFinal(server);
                                Ok(Gate::Answer(answer(server_first.as_bytes())?))
                            }
                            Err(err) => failed(SASL_AUTHENTICATION_FAILED, err.to_string()),
                        }
                    }
                    State::ScramFinal(server) => match server.finish(&request.auth_bytes) {
                        Ok(server_final) => {
                            self.state = State::Authenticated;
                            let principal = server.user().to_owned();
                            Ok(Gate::Authenticated {
                                answer: answer(server_final.as_bytes())?,
                                principal,
                                mechanism: "SCRAM".into(),
                            })
                        }
                        Err(err) => failed(SASL_AUTHENTICATION_FAILED, err.to_string()),
                    },
                    _ => failed(ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake".into()),
                }
            }
            other => Err(SessionError::Unauthenticated(other)),
        }
    }
}
