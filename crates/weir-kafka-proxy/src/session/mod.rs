//! One client connection and its one upstream connection.
//!
//! Two halves run side by side. The request half reads client frames, peeks at each header,
//! decides (forward the same bytes, or answer locally) and queues what the response half must
//! expect. The response half takes that queue in order: a local answer is written as is, an
//! upstream one is read from the broker, checked against the correlation id, rewritten or
//! counted when needed, and written back. So responses leave in request order, `acks=0`
//! produce (no response) never shifts the pairing, and the bounded queue caps requests in
//! flight: when it is full the sidecar stops reading from that client.

mod error;
mod requests;
mod responses;
mod sasl;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use weir_core::audit::{AuthenticationEvent, ConnectionEvent};
use weir_core::io::{split_any, split_tcp, BoxRead, BoxWrite};
use weir_wire::FrameReader;

pub use error::SessionError;
use requests::RequestHalf;
use responses::ResponseHalf;
use sasl::SaslGate;

use crate::authz::{AfterResponse, ConnectionAuthz};
use crate::metrics::{Direction, TopicCache, TrafficPrincipal};
use crate::sidecar::Shared;
use crate::upstream::Reauthentication;

/// Which upstream a listener stands for.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The bootstrap listener: any of the configured bootstrap servers.
    Bootstrap,
    /// A port-per-broker listener.
    Broker(i32),
}

impl Target {
    /// The listener's name in logs and metrics.
    pub fn listener_name(&self) -> String {
        match self {
            Target::Bootstrap => "bootstrap".to_owned(),
            Target::Broker(id) => format!("broker-{id}"),
        }
    }
}

/// What the response half must deliver next.
enum InFlight {
    /// A response the broker owes for a forwarded request.
    Upstream(Pending),
    /// A response the sidecar produced itself.
    Local(ApiKey, Bytes),
    /// A response the broker owes the sidecar itself (its re-authentication): handed to
    /// `reply`, never to the client.
    Internal { correlation_id: i32, reply: oneshot::Sender<Bytes> },
}

/// A broker connection still to be made (see `run`): where to, and how to hand its reading
/// half to the response half.
struct Deferred {
    target: Target,
    sender: oneshot::Sender<FrameReader<BoxRead>>,
}

/// The reading half of a broker connection not made yet: never ready.
struct NotConnected;

impl tokio::io::AsyncRead for NotConnected {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

struct Pending {
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    sent_at: Instant,
    proxy_time: Duration,
    /// Authorization's change to the response (denied parts merged back, entries filtered).
    after: Option<AfterResponse>,
}

/// Serves one accepted client connection until either side closes.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, target: Target) {
    let listener = target.listener_name();
    let _open = shared.metrics.connections.opened(&listener);
    tracing::debug!(%listener, "client connected");
    if let Err(err) = run(&shared, client, peer, &listener, target).await {
        shared.metrics.closed(err.reason());
        err.log();
    } else {
        tracing::debug!("connection closed");
    }
}

/// Notes an authentication outcome: on success the principal goes into the connection's
/// span (so onto every later log line) and the metrics; every outcome goes to the audit log.
fn record_authentication(
    shared: &Shared,
    peer: SocketAddr,
    listener: &str,
    mechanism: &str,
    principal: Option<&str>,
    failure: Option<&str>,
) {
    if failure.is_none() {
        let name = principal.unwrap_or("");
        tracing::Span::current().record("principal", name);
        tracing::debug!(principal = name, mechanism, "client authenticated");
        shared.metrics.authenticated(name);
    } else {
        shared.metrics.authentication_failed(mechanism);
    }
    if let Some(audit) = &shared.audit {
        audit.authentication(&AuthenticationEvent {
            mechanism,
            success: failure.is_none(),
            principal,
            client: peer,
            listener,
            reason: failure,
        });
    }
}

/// Establishes who the client is: TLS (with the principal from its certificate) when the
/// listener has it, else the configured fixed principal, if any. Every outcome is audited.
async fn client_streams(
    shared: &Shared,
    client: TcpStream,
    peer: SocketAddr,
    listener: &str,
) -> Result<(BoxRead, BoxWrite, Option<String>), SessionError> {
    let fixed = shared.config.fixed_principal.as_deref();
    let ((read, write), principal, mechanism) = match &shared.tls {
        None => (split_tcp(client), fixed.map(str::to_owned), "fixed"),
        Some(tls) => match tls.accept(client).await {
            Ok(accepted) => {
                let mechanism = if accepted.principal.is_some() { "mtls" } else { "tls" };
                let principal = accepted.principal.or_else(|| fixed.map(str::to_owned));
                (split_any(accepted.stream), principal, mechanism)
            }
            Err(err) => {
                record_authentication(shared, peer, listener, "tls", None, Some(&err.to_string()));
                return Err(SessionError::Tls(err));
            }
        },
    };
    if principal.is_some() || mechanism != "fixed" {
        record_authentication(shared, peer, listener, mechanism, principal.as_deref(), None);
    }
    Ok((read, write, principal))
}

async fn run(
    shared: &Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    listener: &str,
    target: Target,
) -> Result<(), SessionError> {
    let started = Instant::now();
    let (client_read, client_write, mut principal) = client_streams(shared, client, peer, listener).await?;
    // With SASL at the sidecar, nothing of a client reaches a broker before it has
    // authenticated: its frames are small (as Kafka's `sasl.server.max.receive.size`), its
    // ApiVersions is answered here, and the broker connection waits for its principal (which
    // also picks the broker credentials when they depend on it).
    let authenticating = shared.sasl.is_some();
    let max_frame = shared.config.limits.max_frame_bytes;
    let first_frames = if authenticating { shared.config.limits.max_unauthenticated_frame_bytes } else { max_frame };
    let mut upstream_reauth = None;
    let mut upstream_open = None;
    let (upstream_read, upstream_write, deferred, connected): (BoxRead, BoxWrite, _, _) = if authenticating {
        let (sender, receiver) = oneshot::channel();
        (Box::new(NotConnected), Box::new(tokio::io::sink()), Some(Deferred { target, sender }), Some(receiver))
    } else {
        let (read, write, reauth) = connect_upstream(shared, target, principal.as_deref()).await?;
        upstream_reauth = reauth;
        upstream_open = Some(shared.metrics.connections.upstream_opened());
        (read, write, None, None)
    };
    let (queue, pending) = mpsc::channel(shared.config.limits.max_in_flight);
    let traffic_principal = TrafficPrincipal::default();
    if let Some(principal) = &principal {
        traffic_principal.set(principal);
    }
    // The principal fetch sessions are bound to: the one authorization sees (with SASL at the
    // sidecar, the SASL one, set once it has authenticated; no Fetch comes before).
    let session_owner = TrafficPrincipal::default();
    if let Some(principal) = principal.as_ref().filter(|_| !authenticating) {
        session_owner.set(principal);
    }
    let mut produced = TopicCache::new(Direction::Produced, traffic_principal.clone());
    let mut fetched = TopicCache::new(Direction::Fetched, traffic_principal);

    let authz = shared.policy.as_ref().map(|policy| ConnectionAuthz::new(policy, principal.as_deref(), peer, listener));
    let sasl = shared.sasl.clone().map(|server| SaslGate::new(server, peer));
    let outcome = {
        let requests = RequestHalf {
            shared,
            client: FrameReader::new(client_read, first_frames),
            authentication_deadline: authenticating.then(|| started + shared.config.authentication_timeout()),
            upstream: upstream_write,
            upstream_open: &mut upstream_open,
            queue,
            peer,
            listener,
            sasl,
            authz,
            deferred,
            reauth: upstream_reauth,
            principal: &mut principal,
            session_owner: session_owner.clone(),
            produced: &mut produced,
        };
        let responses = ResponseHalf {
            shared,
            upstream: FrameReader::new(upstream_read, max_frame),
            client: client_write,
            connected,
            pending,
            session_owner,
            fetched: &mut fetched,
        };
        let requests = requests.run();
        let responses = responses.run();
        tokio::pin!(requests, responses);
        tokio::select! {
            // The client stopped sending (closed, idle, or shutdown): deliver what is owed, then end.
            done = &mut requests => match done {
                Ok(()) => responses.await,
                Err(err) => Err(err),
            },
            done = &mut responses => done,
        }
    };
    if let Some(audit) =
        shared.audit.as_ref().filter(|_| shared.config.audit.as_ref().is_some_and(|a| a.connection_summaries))
    {
        audit.connection(&ConnectionEvent {
            principal: principal.as_deref(),
            client: peer,
            listener,
            duration_ms: started.elapsed().as_millis() as u64,
            produced: produced.totals(),
            fetched: fetched.totals(),
        });
    }
    outcome
}

/// Connects to the broker behind `target`, as the broker identity mapped to `principal`.
async fn connect_upstream(
    shared: &Shared,
    target: Target,
    principal: Option<&str>,
) -> Result<(BoxRead, BoxWrite, Option<Reauthentication>), SessionError> {
    match target {
        Target::Broker(node_id) => {
            let address = shared.directory.upstream_of(node_id).ok_or(SessionError::UnknownBroker(node_id))?;
            Ok(shared.connector.connect_session(&address, principal).await?)
        }
        Target::Bootstrap => {
            let mut last = None;
            for address in &shared.config.bootstrap {
                match shared.connector.connect_session(address, principal).await {
                    Ok(stream) => return Ok(stream),
                    Err(err) => last = Some(err),
                }
            }
            // validate() guarantees at least one bootstrap server, so `last` is set.
            Err(last.map(SessionError::Connect).unwrap_or(SessionError::UnknownBroker(-1)))
        }
    }
}
