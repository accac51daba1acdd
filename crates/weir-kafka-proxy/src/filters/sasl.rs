//! SASL terminated at the sidecar: until a client has authenticated, only ApiVersions goes to
//! the broker; SaslHandshake and SaslAuthenticate are answered here, and anything else closes
//! the connection (as a broker would). SCRAM-SHA-256/512 run the RFC 5802 exchange over two
//! SaslAuthenticate round trips; PLAIN passwords are checked against the same SCRAM entries;
//! OAUTHBEARER (RFC 7628) tokens are JWTs checked against the issuer's keys.
//!
//! Sessions end (KIP-368): an OAUTHBEARER session when its token expires, any session after
//! `sasl.max_session_ms` when that is set. The lifetime is told to the client in
//! SaslAuthenticate v1+; a client re-authenticates on the same connection (SaslHandshake and
//! SaslAuthenticate again, as the same principal) before it ends, and a connection whose
//! session ended gets closed at its next other request.
//!
//! Password guessing is bounded (`weir_core::sasl_guard`): every exchange is charged to the
//! failure budgets of its source address and (for names in the credentials file) its user
//! before anything is checked, and refunded when it succeeds; a spent budget refuses at once.
//! PLAIN's PBKDF2 runs on blocking threads at bounded concurrency, skipped for a password that
//! verified recently (which also passes a spent budget, so guessing cannot lock a client out
//! that logged in before).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_core::sasl::{
    parse_oauthbearer, parse_plain, SaslServer, ScramError, ScramMechanism, ScramServer, OAUTHBEARER,
};
use weir_core::sasl_guard::{Source, Throttled, Ticket};
use weir_wire::message::{decode_request, encode_response};
use weir_wire::RequestHeaderPeek;

use crate::filter::{later, record_authentication, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::versions;

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
enum Gate {
    /// Forward it as usual.
    Pass,
    /// Answer it here and carry on.
    Answer(Bytes),
    /// Answer it here: the client is now `principal`, by `mechanism` (`again`: it
    /// re-authenticated, KIP-368, as the principal it already was).
    Authenticated { answer: Bytes, principal: String, mechanism: String, again: bool },
    /// Answer it here, then close: authentication failed (`throttled`: refused unchecked
    /// because the failure budget `source` or `user` was spent).
    Failed { answer: Bytes, reason: String, throttled: Option<&'static str> },
}

struct SaslGate {
    server: Arc<SaslServer>,
    state: State,
    /// Once authenticated: who the client is, and when its session ends, if it does.
    session: Option<(String, Option<Instant>)>,
    /// Where the client connects from, for the failure budgets.
    source: Source,
    /// The running exchange's charge to the failure budgets: refunded if it succeeds.
    ticket: Option<Ticket>,
}

/// A successful exchange, before its session is set up.
struct Success {
    principal: String,
    mechanism: String,
    /// The server's last SASL message.
    auth: Bytes,
    /// When the credential itself expires (a token's `exp`, Unix seconds).
    expires_at: Option<u64>,
}

impl SaslGate {
    fn new(server: Arc<SaslServer>, peer: SocketAddr) -> Self {
        let source = Source::of(peer.ip());
        Self { server, state: State::AwaitingHandshake, session: None, source, ticket: None }
    }

    /// The session a success opens: how long it may last (none: unlimited).
    fn lifetime(&self, expires_at: Option<u64>) -> Option<Duration> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let credential = expires_at.map(|exp| Duration::from_secs(exp.saturating_sub(now)));
        match (credential, self.server.max_session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long a failed authentication's answer waits (see `SaslServerConfig`).
    fn failure_delay(&self) -> Duration {
        self.server.failure_delay
    }

    /// Gates one request; settles the failure budgets when an exchange ends. A failure with a
    /// ticket was charged already; one without (a malformed message, say) is counted here.
    async fn check(&mut self, frame: &Bytes, peek: &RequestHeaderPeek) -> Result<Gate, FilterError> {
        let gate = self.exchange(frame, peek).await?;
        match &gate {
            Gate::Authenticated { .. } => {
                if let Some(ticket) = self.ticket.take() {
                    self.server.budgets.refund(ticket);
                }
            }
            Gate::Failed { throttled: None, .. } => {
                let charged = self.ticket.take().is_some();
                if !charged {
                    self.server.budgets.failed(self.source, None, Instant::now());
                }
            }
            _ => {}
        }
        Ok(gate)
    }

    /// Charges this attempt to the budgets of the client's address and `user` (a name in the
    /// credentials file), or says which budget is spent.
    fn admit(&mut self, user: Option<&str>) -> Result<(), Throttled> {
        self.ticket = Some(self.server.budgets.admit(self.source, user, Instant::now())?);
        Ok(())
    }

    async fn exchange(&mut self, frame: &Bytes, peek: &RequestHeaderPeek) -> Result<Gate, FilterError> {
        let reauthentication = matches!(peek.api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        if matches!(self.state, State::Authenticated) && !reauthentication {
            if let Some((principal, Some(ends))) = &self.session {
                if Instant::now() >= *ends {
                    return Err(FilterError::SessionExpired(principal.clone()));
                }
            }
            return Ok(Gate::Pass);
        }
        let (key, version, id) = (peek.api_key, peek.api_version, peek.correlation_id);
        let encode_err = FilterError::BadRequest;
        match key {
            ApiKey::ApiVersions => Ok(Gate::Pass),
            ApiKey::SaslHandshake => {
                let request: SaslHandshakeRequest = decode_request(frame, peek).map_err(FilterError::BadRequest)?;
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
                let refuse =
                    |code: i16, reason: String, throttled: Option<&'static str>| -> Result<Gate, FilterError> {
                        let body = SaslAuthenticateResponse::default().with_error_code(code).with_error_message(Some(
                            StrBytes::from_string(format!("Authentication failed: {reason}")),
                        ));
                        let answer = encode_response(id, key, version, &body).map_err(encode_err)?;
                        Ok(Gate::Failed { answer, reason, throttled })
                    };
                let failed = |code: i16, reason: String| refuse(code, reason, None);
                let throttled = |t: Throttled| refuse(SASL_AUTHENTICATION_FAILED, t.to_string(), Some(t.by()));
                let request: SaslAuthenticateRequest = decode_request(frame, peek).map_err(FilterError::BadRequest)?;
                if request.auth_bytes.len() > MAX_TOKEN {
                    return failed(
                        SASL_AUTHENTICATION_FAILED,
                        format!("SASL token of {} bytes", request.auth_bytes.len()),
                    );
                }
                let answer = |auth: &[u8]| {
                    let body = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::copy_from_slice(auth));
                    encode_response(id, key, version, &body).map_err(FilterError::BadRequest)
                };
                // The last step of an exchange: opens (or, re-authenticating, renews) the session.
                let succeed = |gate: &mut Self, done: Success| -> Result<Gate, FilterError> {
                    let again = gate.session.is_some();
                    if let Some((before, _)) = gate.session.as_ref().filter(|(p, _)| *p != done.principal) {
                        let reason = format!("re-authentication as `{}`, not `{before}`", done.principal);
                        return failed(SASL_AUTHENTICATION_FAILED, reason);
                    }
                    let lifetime = gate.lifetime(done.expires_at);
                    let mut body = SaslAuthenticateResponse::default().with_auth_bytes(done.auth);
                    if version >= 1 {
                        let ms = lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX).max(1));
                        body = body.with_session_lifetime_ms(ms);
                    }
                    gate.state = State::Authenticated;
                    gate.session = Some((done.principal.clone(), lifetime.map(|l| Instant::now() + l)));
                    Ok(Gate::Authenticated {
                        answer: encode_response(id, key, version, &body).map_err(encode_err)?,
                        principal: done.principal,
                        mechanism: done.mechanism,
                        again,
                    })
                };
                let server = self.server.clone();
                let no_credentials = || failed(UNSUPPORTED_SASL_MECHANISM, "no credentials for this mechanism".into());
                match std::mem::replace(&mut self.state, State::AwaitingHandshake) {
                    State::AwaitingAuthenticate(mechanism) if mechanism == OAUTHBEARER => {
                        let Some(tokens) = &server.tokens else { return no_credentials() };
                        if let Err(spent) = self.admit(None) {
                            return throttled(spent);
                        }
                        let Some(token) = parse_oauthbearer(&request.auth_bytes) else {
                            return failed(SASL_AUTHENTICATION_FAILED, "malformed OAUTHBEARER message".into());
                        };
                        match tokens.validate_fetching(token).await {
                            Ok(verified) => {
                                let expires_at = Some(tokens.accepted_until(&verified));
                                let principal = verified.principal;
                                succeed(self, Success { principal, mechanism, auth: Bytes::new(), expires_at })
                            }
                            Err(err) => failed(SASL_AUTHENTICATION_FAILED, err.to_string()),
                        }
                    }
                    State::AwaitingAuthenticate(mechanism) if mechanism == "PLAIN" => {
                        let Some(credentials) = &server.credentials else { return no_credentials() };
                        let Some((authorization_id, user, password)) = parse_plain(&request.auth_bytes) else {
                            return failed(SASL_AUTHENTICATION_FAILED, "malformed PLAIN message".into());
                        };
                        // As Kafka's PLAIN server: acting as someone else is not offered.
                        if !authorization_id.is_empty() && authorization_id != user {
                            return failed(
                                SASL_AUTHENTICATION_FAILED,
                                format!("authorization id `{authorization_id}` differs from the user name `{user}`"),
                            );
                        }
                        let now = Instant::now();
                        // A password that verified recently passes without a derivation or a budget.
                        let verified = server.password_cache.hit(user, password, now) || {
                            if let Err(spent) = self.admit(credentials.has_user(user).then_some(user)) {
                                return throttled(spent);
                            }
                            let check = credentials.password_check(user, password);
                            let Ok(verified) = server.password_checks.run(move || check.verify()).await else {
                                return failed(
                                    SASL_AUTHENTICATION_FAILED,
                                    "the password check did not complete".into(),
                                );
                            };
                            if verified {
                                server.password_cache.insert(user, password, Instant::now());
                            }
                            verified
                        };
                        if !verified {
                            return failed(
                                SASL_AUTHENTICATION_FAILED,
                                format!("invalid user name or password for `{user}`"),
                            );
                        }
                        let done =
                            Success { principal: user.to_owned(), mechanism, auth: Bytes::new(), expires_at: None };
                        succeed(self, done)
                    }
                    State::AwaitingAuthenticate(mechanism) => {
                        let Some(credentials) = &server.credentials else { return no_credentials() };
                        let Some(scram) = ScramMechanism::from_name(&mechanism) else {
                            return failed(UNSUPPORTED_SASL_MECHANISM, format!("mechanism {mechanism}"));
                        };
                        // Cheap (no derivation on this side); the budgets are checked once the
                        // user is known, before the exchange goes on.
                        match credentials.scram_first(scram, &request.auth_bytes) {
                            Ok((server, server_first)) => {
                                if let Err(spent) = self.admit(Some(server.user())) {
                                    return throttled(spent);
                                }
                                self.state = State::ScramFinal(server);
                                Ok(Gate::Answer(answer(server_first.as_bytes())?))
                            }
                            Err(err) => {
                                let user = match &err {
                                    ScramError::BadCredentials(user) if credentials.has_user(user) => {
                                        Some(user.as_str())
                                    }
                                    _ => None,
                                };
                                if let Err(spent) = self.admit(user) {
                                    return throttled(spent);
                                }
                                failed(SASL_AUTHENTICATION_FAILED, err.to_string())
                            }
                        }
                    }
                    State::ScramFinal(server) => match server.finish(&request.auth_bytes) {
                        Ok(server_final) => succeed(
                            self,
                            Success {
                                principal: server.user().to_owned(),
                                mechanism: "SCRAM".into(),
                                auth: Bytes::copy_from_slice(server_final.as_bytes()),
                                expires_at: None,
                            },
                        ),
                        Err(err) => failed(SASL_AUTHENTICATION_FAILED, err.to_string()),
                    },
                    _ => failed(ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake".into()),
                }
            }
            other => Err(FilterError::Unauthenticated(other)),
        }
    }
}

/// SASL terminated at the sidecar, as the first filter: it sees every request.
pub(crate) struct SaslFilter {
    gate: SaslGate,
}

impl SaslFilter {
    pub(crate) fn new(server: Arc<SaslServer>, peer: SocketAddr) -> Self {
        Self { gate: SaslGate::new(server, peer) }
    }
}

impl Filter for SaslFilter {
    fn name(&self) -> &'static str {
        "sasl"
    }

    fn wants_request(&self, _api: ApiKey, _version: i16) -> bool {
        true
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        later(async move {
            let authenticated = matches!(self.gate.state, State::Authenticated);
            Ok(match self.gate.check(cx.frame(), cx.header).await? {
                // Nothing of an unauthenticated client reaches a broker: its ApiVersions is
                // answered with what the cluster told the sidecar.
                Gate::Pass if cx.header.api_key == ApiKey::ApiVersions && !authenticated => {
                    let cached = cx.services.cluster_versions().ok_or(FilterError::UpstreamNotReady)?;
                    let answer = versions::cached_response(&cached, cx.header.correlation_id, cx.header.api_version)
                        .map_err(FilterError::BadRequest)?;
                    RequestAction::Answer(answer)
                }
                Gate::Pass => RequestAction::Continue,
                Gate::Answer(answer) => RequestAction::Answer(answer),
                Gate::Authenticated { answer, principal, mechanism, again } => {
                    let mechanism = format!("sasl_{}", mechanism.to_ascii_lowercase());
                    record_authentication(cx.services, cx.connection, &mechanism, Some(&principal), None);
                    if again {
                        tracing::debug!(%principal, "re-authenticated (KIP-368)");
                    } else {
                        cx.authenticated(principal);
                    }
                    RequestAction::Answer(answer)
                }
                Gate::Failed { answer, reason, throttled } => {
                    if let Some(by) = throttled {
                        // Debug: a guessing client produces one per attempt (metrics and audit count them).
                        tracing::debug!(%reason, "SASL authentication refused unchecked; closing after the answer");
                        cx.services.metrics().authentication_throttled(by);
                    } else {
                        tracing::info!(%reason, "SASL authentication failed; closing after the answer");
                    }
                    record_authentication(cx.services, cx.connection, "sasl", None, Some(&reason));
                    tokio::time::sleep(self.gate.failure_delay()).await;
                    RequestAction::AnswerAndClose(answer)
                }
            })
        })
    }
}
