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
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex, MutexGuard};
use weir_core::identity::{identify, Identified};
use weir_core::io::{BoxRead, BoxWrite};
use weir_wire::FrameReader;

pub use error::SessionError;
use requests::RequestHalf;
use responses::ResponseHalf;

use crate::breaker::WhenFull;
use crate::filter::{record_authentication, ConnectionInfo, FilterChain, Meters, Notes};
use crate::outlier::Failure;
use crate::quota::{CountedConnection, Metered, QuotaMeters, ANONYMOUS};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::upstream::Reauthentication;

/// After this long without traffic, a connection's read buffers are given back, so that idle
/// connections hold almost no memory (the next frame allocates again).
const RELEASE_IDLE_BUFFER_AFTER: Duration = Duration::from_secs(1);

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

/// A broker connection made.
struct Upstream {
    read: BoxRead,
    write: BoxWrite,
    reauth: Option<Reauthentication>,
    slots: Option<BrokerSlot>,
    /// This connection's place under the broker's connection limit, if it has one.
    place: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The request slots of the broker a connection reaches, when they are limited.
struct BrokerSlot {
    slots: Arc<tokio::sync::Semaphore>,
    broker: Arc<str>,
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
    /// What the filters left on the request for its response.
    notes: Notes,
    /// A filter will change the response: it is read whole, never streamed as it arrives.
    changes_response: bool,
    /// How long the client must back off, as the request's filters decided (a quota).
    throttle: Duration,
    /// What meters what the request and its response use (a quota).
    meters: Meters,
    /// The request's slot at its broker (circuit breaking), given back with the response.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// How long after `sent_at` the broker must have begun to answer (circuit breaking).
    timeout: Option<Duration>,
}

/// Until when a throttled client is not read (KIP-219: a broker mutes a throttled client's
/// connection once the response is out). The response half sets it, the request half obeys.
#[derive(Default)]
struct Muted {
    /// Whether `until` may hold a time: every request reads this, a throttle rarely sets it.
    set: AtomicBool,
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Muted {
    fn until(&self, until: tokio::time::Instant) {
        let mut muted = self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *muted = Some(muted.map_or(until, |current| current.max(until)));
        self.set.store(true, Ordering::Release);
    }

    /// When reading may go on, if it must wait.
    fn take(&self) -> Option<tokio::time::Instant> {
        if !self.set.swap(false, Ordering::Acquire) {
            return None;
        }
        let until = self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        until.filter(|until| *until > tokio::time::Instant::now())
    }
}

/// Whether a throttled response goes out at once, the connection then not read until the wait
/// is over (KIP-219). Only Produce and Fetch responses older than KIP-219 are held back
/// instead, as a broker holds them for the clients of its time that relied on it. Any other
/// response goes at once: the muted connection enforces the wait whatever the client does.
fn sent_before_throttling(api: ApiKey, version: i16) -> bool {
    match api {
        ApiKey::Produce => version >= 6,
        ApiKey::Fetch => version >= 8,
        _ => true,
    }
}

/// The connection's filter chain, for one hook call. Both halves run in this connection's one
/// task and never hold the chain across a suspension they do not need, so it is almost
/// always free: `try_lock` takes it without an await, which (unlike `lock`) costs no
/// cooperative-scheduling budget and so never makes the half yield in the middle of a request.
async fn lock_chain(chain: &Mutex<FilterChain>) -> MutexGuard<'_, FilterChain> {
    match chain.try_lock() {
        Ok(guard) => guard,
        Err(_) => chain.lock().await,
    }
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

/// Establishes who the client is: TLS (with the principal from its certificate) when the
/// listener has it, else the configured fixed principal, if any. Every outcome is audited.
async fn client_streams(
    shared: &Shared,
    snapshot: &Snapshot,
    client: TcpStream,
    connection: &ConnectionInfo,
) -> Result<(BoxRead, BoxWrite, Option<String>), SessionError> {
    let fixed = snapshot.fixed_principal.as_deref();
    match identify(client, snapshot.tls.as_deref(), fixed).await {
        Ok(Identified { read, write, principal, mechanism }) => {
            if principal.is_some() || mechanism != "fixed" {
                record_authentication(shared, connection, mechanism, principal.as_deref(), None);
            }
            Ok((read, write, principal))
        }
        Err(err) => {
            record_authentication(shared, connection, "tls", None, Some(&err.to_string()));
            Err(SessionError::Tls(err))
        }
    }
}

async fn run(
    shared: &Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    listener: &str,
    target: Target,
) -> Result<(), SessionError> {
    let mut connection =
        ConnectionInfo { peer, listener: listener.to_owned(), principal: None, opened_at: Instant::now() };
    // TLS, identity and SASL are taken from the snapshot of this moment; the filters follow
    // every later one.
    let mut snapshots = shared.snapshots.clone();
    let snapshot = snapshots.borrow_and_update().clone();
    let (client_read, client_write, principal) = client_streams(shared, &snapshot, client, &connection).await?;
    connection.principal = principal;
    // With SASL at the sidecar, nothing of a client reaches a broker before it has
    // authenticated: its frames are small (as Kafka's `sasl.server.max.receive.size`), its
    // ApiVersions is answered here, and the broker connection waits for its principal (which
    // also picks the broker credentials when they depend on it).
    let authenticating = snapshot.sasl.is_some();
    let max_frame = shared.config.limits.max_frame_bytes;
    let first_frames = if authenticating { shared.config.limits.max_unauthenticated_frame_bytes } else { max_frame };
    // Connection quotas count the client once its principal is known: now, or after SASL.
    let counted = match authenticating {
        false => {
            let (counted, wait) = admit_connection(shared, &snapshot, connection.principal.as_deref())?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Some(counted)
        }
        true => None,
    };
    let mut upstream_reauth = None;
    let mut broker_slots = None;
    let mut broker_place = None;
    let mut upstream_open = None;
    let (upstream_read, upstream_write, deferred, connected): (BoxRead, BoxWrite, _, _) = if authenticating {
        let (sender, receiver) = oneshot::channel();
        (Box::new(NotConnected), Box::new(tokio::io::sink()), Some(Deferred { target, sender }), Some(receiver))
    } else {
        let Upstream { read, write, reauth, slots, place } =
            connect_upstream(shared, target, connection.principal.as_deref()).await?;
        upstream_reauth = reauth;
        broker_slots = slots;
        broker_place = place;
        upstream_open = Some(shared.metrics.connections.upstream_opened());
        (read, write, None, None)
    };
    let (queue, pending) = mpsc::channel(shared.config.limits.max_in_flight);
    let principal = connection.principal.clone();
    let authentication_deadline = authenticating.then(|| connection.opened_at + shared.config.authentication_timeout());
    let chain = Mutex::new(FilterChain::new(shared.filters_for(&snapshot, &connection), connection));
    let muted = Muted::default();
    let outcome = {
        let requests = RequestHalf {
            shared,
            chain: &chain,
            snapshots,
            client: FrameReader::new(client_read, first_frames),
            authentication_deadline,
            upstream: upstream_write,
            upstream_open: &mut upstream_open,
            queue,
            deferred,
            reauth: upstream_reauth,
            principal,
            muted: &muted,
            slots: broker_slots,
            place: broker_place,
            counted,
        };
        let responses = ResponseHalf {
            shared,
            chain: &chain,
            upstream: FrameReader::new(upstream_read, max_frame),
            client: client_write,
            connected,
            pending,
            muted: &muted,
            ids: Default::default(),
            pass_out: Vec::new(),
        };
        both(requests, responses).await
    };
    lock_chain(&chain).await.on_connection_end(&**shared);
    outcome
}

/// Runs the two halves of a connection side by side until it ends.
async fn both(requests: RequestHalf<'_>, responses: ResponseHalf<'_>) -> Result<(), SessionError> {
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
}

/// Counts a connection of `principal` against the connection quotas of `snapshot`: an error
/// when one more is too many, else how long to wait before serving it (its creation rate).
fn admit_connection(
    shared: &Shared,
    snapshot: &Snapshot,
    principal: Option<&str>,
) -> Result<(CountedConnection, Duration), SessionError> {
    let principal = principal.unwrap_or(ANONYMOUS);
    let counted = shared.quotas.admit_connection(&snapshot.quotas, principal).map_err(|over| {
        shared.metrics.over_quota(&over.rule, "connections");
        SessionError::ConnectionQuota { rule: over.rule, principal: principal.to_owned(), max: over.max }
    })?;
    let rate = QuotaMeters::for_client(&snapshot.quotas, Metered::ConnectionRate, principal, "");
    if rate.is_empty() {
        return Ok((counted, Duration::ZERO));
    }
    let (wait, by) = shared.quotas.record(&rate, 1, Instant::now());
    if let Some(rule) = by.filter(|_| !wait.is_zero()) {
        shared.metrics.over_quota(&rule, Metered::ConnectionRate.as_str());
        tracing::debug!(?wait, quota = %rule, "connection over its creation rate: served late");
    }
    Ok((counted, wait))
}

/// Connects to the broker behind `target`, as the broker identity mapped to `principal`.
/// An ejected broker is not tried (see [`crate::outlier`]); the bootstrap listener tries the
/// servers that are not ejected, in order.
async fn connect_upstream(shared: &Shared, target: Target, principal: Option<&str>) -> Result<Upstream, SessionError> {
    match target {
        Target::Broker(node_id) => {
            let address = shared.directory.upstream_of(node_id).ok_or(SessionError::UnknownBroker(node_id))?;
            connect_unless_ejected(shared, &address, principal).await
        }
        Target::Bootstrap => {
            let mut last = None;
            for address in &shared.config.bootstrap {
                match connect_unless_ejected(shared, address, principal).await {
                    Ok(stream) => return Ok(stream),
                    Err(err) => last = Some(err),
                }
            }
            // validate() guarantees at least one bootstrap server, so `last` is set.
            Err(last.unwrap_or(SessionError::UnknownBroker(-1)))
        }
    }
}

async fn connect_unless_ejected(
    shared: &Shared,
    address: &str,
    principal: Option<&str>,
) -> Result<Upstream, SessionError> {
    if let Some(left) = shared.outliers.ejected(address, Instant::now()) {
        return Err(SessionError::Ejected { address: address.to_owned(), left });
    }
    let place = match shared.slots.connections_of(address) {
        None => None,
        Some((places, limit)) => Some(match places.clone().try_acquire_owned() {
            Ok(place) => place,
            Err(_) if shared.slots.when_full() == WhenFull::Reject => {
                shared.metrics.over_connection_limit(address, "rejected");
                return Err(SessionError::BrokerConnectionLimit { address: address.to_owned(), limit });
            }
            Err(_) => {
                shared.metrics.over_connection_limit(address, "queued");
                tokio::select! {
                    biased;
                    _ = shared.shutdown.cancelled() => return Err(SessionError::UpstreamClosed),
                    place = places.acquire_owned() => place.map_err(|_| SessionError::UpstreamClosed)?,
                }
            }
        }),
    };
    match shared.connector.connect_session(address, principal).await {
        Ok((read, write, reauth)) => {
            if shared.outliers.succeeded(address) {
                shared.metrics.broker_back(address);
                tracing::info!(broker = address, "broker reachable again");
            }
            let slots = shared.slots.of(address).map(|slots| BrokerSlot { slots, broker: Arc::from(address) });
            Ok(Upstream { read, write, reauth, slots, place })
        }
        Err(err) if err.is_unreachable() => {
            shared.metrics.connect_failed(address);
            if let Failure::Ejected(ejection) = shared.outliers.failed(address, Instant::now()) {
                shared.metrics.ejected(address);
                tracing::warn!(broker = address, ?ejection, %err, "broker ejected after failed connects in a row");
            }
            Err(err.into())
        }
        Err(err) => Err(err.into()),
    }
}
