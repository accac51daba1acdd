//! One MQTT connection to the gateway: its CONNECT read (bounded in size and time) and
//! authenticated, then its packets served — publishes written to Kafka ([`crate::publish`]),
//! subscriptions fed from Kafka ([`crate::subscribe`]), pings, and the will written when the
//! client goes without saying goodbye.
//!
//! One task per connection waits on whatever comes first: a packet from the client, Kafka's
//! answer to the oldest publish not yet acknowledged (answers go back in the order the
//! publishes came, as MQTT requires), or a message for the client's subscriptions. Writing to
//! a slow client holds only this connection back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::audit::{AuditLog, AuthorizationEvent};
use weir_core::flows::Party;
use weir_core::identity::identify;
use weir_core::io::{BoxRead, BoxWrite};
use weir_core::relay::{self, RelayError};
use weir_core::rules::CurrentRules;
use weir_gateway::authz::KafkaAuthz;
use weir_gateway::store::KeyedStore;
use weir_gateway::{KafkaProducer, ProduceError, Tail};
use weir_mqtt::frame::{header_of, packet_len};
use weir_mqtt::packet::{
    self, connack_accepted, connack_refused, property, reason, Connect, Property, Refusal, Version, Will, PINGRESP,
};
use weir_mqtt::{MqttError, PacketType};
use weir_mqtt_proxy::login::{audit_login, authenticate, Login};
use weir_mqtt_proxy::metrics::MqttMetrics;

use crate::config::MqttGatewayConfig;
use crate::mapping::Mappings;
use crate::publish::Publishing;
use crate::sessions::Sessions;
use crate::subscribe::Subscriptions;

/// The listener's name in logs, metrics and audit lines.
pub const LISTENER: &str = "mqtt-gateway";

/// What every connection of a gateway shares.
pub struct Shared {
    pub config: MqttGatewayConfig,
    pub mappings: Arc<Mappings>,
    /// TLS, credentials and the Kafka policy, current (weir-core's `rules`).
    pub rules: CurrentRules,
    pub audit: Option<AuditLog>,
    pub metrics: Arc<MqttMetrics>,
    pub producer: KafkaProducer,
    pub tail: Arc<Tail>,
    pub clients: Clients,
    pub sessions: Sessions,
    /// Retained messages by MQTT topic name.
    pub retained: Arc<KeyedStore>,
}

/// Open connections by client id: MQTT lets one connection hold a client id, so a new one with
/// the same id ends the old — if it is the same principal's.
#[derive(Default)]
pub struct Clients {
    by_id: Mutex<HashMap<String, Holder>>,
    next: AtomicU64,
}

struct Holder {
    serial: u64,
    principal: Arc<str>,
    taken_over: CancellationToken,
}

/// A connection's hold on its client id; released when the connection ends.
struct ClientIdHold<'c> {
    clients: &'c Clients,
    client_id: String,
    serial: u64,
    taken_over: CancellationToken,
}

impl Clients {
    /// Takes `client_id` for `principal`, ending the connection that had it; None if another
    /// principal's connection has it.
    fn hold(&self, client_id: &str, principal: &Arc<str>) -> Option<ClientIdHold<'_>> {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let taken_over = CancellationToken::new();
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if by_id.get(client_id).is_some_and(|holder| holder.principal != *principal) {
            return None;
        }
        let holder = Holder { serial, principal: principal.clone(), taken_over: taken_over.clone() };
        if let Some(earlier) = by_id.insert(client_id.to_owned(), holder) {
            earlier.taken_over.cancel();
        }
        Some(ClientIdHold { clients: self, client_id: client_id.to_owned(), serial, taken_over })
    }
}

impl Drop for ClientIdHold<'_> {
    fn drop(&mut self) {
        let mut by_id = self.clients.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if by_id.get(&self.client_id).is_some_and(|holder| holder.serial == self.serial) {
            by_id.remove(&self.client_id);
        }
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no CONNECT within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the first packet was {0}, not CONNECT")]
    NotConnect(&'static str),
    #[error(transparent)]
    Relay(#[from] RelayError<MqttError>),
    #[error("CONNECT refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Tls(#[from] weir_core::tls::TlsError),
    #[error("{what}")]
    Protocol { what: String, reason: u8 },
    #[error("nothing from the client within 1.5 × its keep alive of {0} s")]
    KeepAlive(u16),
    #[error("another connection took client id {0}")]
    TakenOver(String),
    #[error("a subscriber {0} messages behind: disconnected so that it reconnects")]
    TooSlow(usize),
    /// MQTT 3.1.1 has no way to refuse a publish: the connection is closed instead of
    /// acknowledging what was not written.
    #[error("{0}; MQTT 3.1.1 cannot refuse a publish, so the connection closes unacknowledged")]
    Unwritten(String),
    #[error(transparent)]
    Kafka(#[from] ProduceError),
}

impl SessionError {
    pub(crate) fn protocol(what: impl Into<String>, reason: u8) -> Self {
        SessionError::Protocol { what: what.into(), reason }
    }

    /// The MQTT 5 DISCONNECT reason this ending is told with.
    fn disconnect_reason(&self) -> Option<u8> {
        Some(match self {
            SessionError::Protocol { reason, .. } => *reason,
            SessionError::Relay(RelayError::Malformed { .. }) => 0x81,
            SessionError::KeepAlive(_) => reason::KEEP_ALIVE_TIMEOUT,
            SessionError::TakenOver(_) => reason::SESSION_TAKEN_OVER,
            SessionError::TooSlow(_) => reason::QUOTA_EXCEEDED,
            SessionError::Kafka(_) => reason::FAILURE,
            _ => return None,
        })
    }
}

pub(crate) type Packets = relay::Frames<BoxRead, MqttError>;
pub(crate) type Writer = relay::Writer<BoxWrite>;

/// Serves one client until it leaves.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    match run(&shared, client, peer).await {
        Ok(()) => tracing::debug!(%peer, "MQTT gateway connection closed"),
        Err(error) => tracing::info!(%peer, %error, "MQTT gateway connection closed"),
    }
}

pub(crate) fn malformed(error: MqttError) -> SessionError {
    RelayError::Malformed { side: "client", error }.into()
}

/// Writes to the client, naming it in the error.
pub(crate) async fn write(to: &Writer, bytes: &[u8]) -> Result<(), SessionError> {
    to.write(bytes).await.map_err(|error| RelayError::Io { side: "client", error }.into())
}

/// What a connection knows of its client, shared by its publishing and subscribing halves.
pub(crate) struct Client<'s> {
    pub shared: &'s Shared,
    pub version: Version,
    pub writer: Writer,
    pub who: Party,
    pub peer: SocketAddr,
    pub principal: Option<String>,
    /// Followed: a new policy applies from the next packet on.
    pub rules: CurrentRules,
    pub authz: Option<KafkaAuthz>,
}

impl Client<'_> {
    /// `operation` of `packet` on `resource` refused: counted and audited.
    pub fn denied(&self, packet: &'static str, operation: &str, resource: &str) {
        self.shared.metrics.denied_on(packet, resource, &self.who);
        if let Some(audit) = &self.shared.audit {
            audit.authorization(&AuthorizationEvent {
                principal: &self.who.principal,
                api: packet,
                operation,
                resource_type: "topic",
                resource,
                client: self.peer,
                listener: LISTENER,
            });
        }
    }

    /// Whether the policy changed since the last look; if so, the client's rules are the new.
    fn rules_changed(&mut self) -> bool {
        if !self.rules.has_changed().unwrap_or(false) {
            return false;
        }
        let rules = self.rules.borrow_and_update().clone();
        self.authz = rules.policy.as_ref().map(|policy| KafkaAuthz::new(policy, self.principal.as_deref()));
        true
    }
}

async fn run(shared: &Shared, tcp: TcpStream, peer: SocketAddr) -> Result<(), SessionError> {
    let limits = &shared.config.limits;
    let tls = shared.rules.borrow().tls.clone();
    let stream = identify(tcp, tls.as_deref(), None).await?;
    let certified = stream.principal;
    let writer = Writer::new(stream.write, "client");
    let mut from_client = Packets::new(stream.read, limits.max_connect_bytes, "client", packet_len);
    let wait = Duration::from_millis(limits.connect_timeout_ms);
    let first =
        tokio::time::timeout(wait, from_client.next()).await.map_err(|_| SessionError::ConnectTimeout(wait))??;
    let Some(packet) = first else { return Ok(()) };
    let header = header_of(&packet);
    if header.kind != PacketType::Connect {
        return Err(SessionError::NotConnect(header.kind.name()));
    }
    let connect = Connect::read(&packet, &header).map_err(malformed)?;
    let version = connect.version;
    let refuse = |why: Refusal, reason: String| {
        let writer = &writer;
        async move {
            let _ = writer.write(&connack_refused(version, why)).await;
            Err(SessionError::Refused(reason))
        }
    };

    let mut rules = shared.rules.clone();
    let current = rules.borrow_and_update().clone();
    let mechanism = if certified.is_some() { "mtls" } else { "password" };
    let principal = match certified {
        Some(certified) => Ok(Some(certified)),
        // Users by name, as the Kafka sidecar names SASL users: the Kafka policy's principals.
        None => authenticate(&current, &connect).await.map(|login| match login {
            Login::User(name) => Some(name),
            Login::Unchecked(fixed) => fixed,
        }),
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(why) => {
            let who: Arc<str> = connect.username.map_or(weir_core::policy::ANONYMOUS.into(), Arc::from);
            shared.metrics.denied("connect", &who);
            audit_login(shared.audit.as_ref(), LISTENER, mechanism, &who, peer, Some(&why));
            return refuse(Refusal::BadCredentials, why).await;
        }
    };
    let who: Arc<str> = principal.as_deref().unwrap_or(weir_core::policy::ANONYMOUS).into();
    if current.credentials.is_some() || mechanism == "mtls" {
        audit_login(shared.audit.as_ref(), LISTENER, mechanism, &who, peer, None);
    }

    // MQTT 3.1.1 lets a server give a client without an id one only for a clean session.
    let assigned = connect.client_id.is_empty().then(|| format!("weir-{:016x}", fastrand::u64(..)));
    if assigned.is_some() && version != Version::V5 && !connect.clean_start {
        return refuse(Refusal::IdentifierRejected, "no client id, and not a clean session".into()).await;
    }
    let client_id = assigned.as_deref().unwrap_or(connect.client_id);
    let authz = current.policy.as_ref().map(|policy| KafkaAuthz::new(policy, principal.as_deref()));
    let mut client =
        Client { shared, version, writer, who: Party::new(who.clone(), client_id), peer, principal, rules, authz };
    let will = match &connect.will {
        Some(will) => match crate::publish::will_target(&client, will) {
            Ok(()) => Some(OwnedWill::of(will)),
            Err(why) => {
                client.denied("connect", "write", will.topic);
                let writer = client.writer;
                let _ = writer.write(&connack_refused(version, Refusal::NotAuthorized)).await;
                return Err(SessionError::Refused(why));
            }
        },
        None => None,
    };
    // A client id, and the session kept under it, are the principal's that made them.
    let Some(hold) = shared.clients.hold(client_id, &who) else {
        let why = format!("client id {client_id} is connected as another principal");
        return refuse_id(&client, why).await;
    };
    if shared.sessions.owner(client_id).is_some_and(|owner| *owner != *who) {
        let why = format!("client id {client_id} holds another principal's session");
        return refuse_id(&client, why).await;
    }
    // Remembered between connections: MQTT 3.1.1's clean session 0, MQTT 5's expiry above 0.
    let persistent = if version == Version::V5 { connect.session_expiry > 0 } else { !connect.clean_start };
    let expiry_secs = if version == Version::V5 { connect.session_expiry } else { u32::MAX };
    let stored = shared.sessions.resume(client_id, &who, connect.clean_start).await;
    tracing::debug!(
        client_id,
        principal = &*who,
        persistent,
        resumed = stored.is_some(),
        "MQTT gateway client connected"
    );

    let max_packet = u32::try_from(limits.max_packet_bytes).unwrap_or(u32::MAX);
    let receive_maximum = u16::try_from(limits.max_pending_publishes).unwrap_or(u16::MAX);
    let mut properties = vec![
        Property::TwoByte(property::RECEIVE_MAXIMUM, receive_maximum),
        Property::FourByte(property::MAXIMUM_PACKET_SIZE, max_packet),
        Property::Byte(property::SHARED_SUBSCRIPTION_AVAILABLE, 0),
        Property::Byte(property::SUBSCRIPTION_IDENTIFIERS_AVAILABLE, 0),
    ];
    if let Some(assigned) = &assigned {
        properties.push(Property::String(ASSIGNED_CLIENT_IDENTIFIER, assigned));
    }
    let max_inflight = usize::from(limits.max_inflight_deliveries.min(connect.receive_maximum));
    let max_to_client = connect.maximum_packet_size.map(|size| size as usize);
    let mut subscriptions = Subscriptions::new(shared, max_inflight, max_to_client, persistent);
    let session_present = stored.is_some();
    if let Some(stored) = stored {
        subscriptions.resume(&client, stored).await;
    }
    write(&client.writer, &connack_accepted(version, session_present, &properties)).await?;
    from_client.limit = limits.max_packet_bytes;
    let mut publishing = Publishing::new(limits.max_pending_publishes);
    let terms = Terms { hold: &hold, keep_alive_secs: connect.keep_alive, persistent, expiry_secs };
    let ended = serve_packets(&mut client, &mut from_client, &mut publishing, &mut subscriptions, &terms).await;
    publishing.drain(&client).await;
    if persistent {
        shared.sessions.save(client_id, subscriptions.stored(&who, expiry_secs)).await;
    } else if session_present {
        shared.sessions.forget(client_id).await;
    }
    let clean = matches!(ended, Ok(Goodbye::Clean));
    if let (false, Some(will)) = (clean, &will) {
        crate::publish::write_will(&client, will).await;
    }
    let result = match ended {
        Ok(_) => Ok(()),
        Err(error) => {
            if let Some(bytes) =
                error.disconnect_reason().and_then(|r| packet::disconnect(version, r, &error.to_string()))
            {
                let _ = client.writer.write(&bytes).await;
            }
            Err(error)
        }
    };
    client.writer.shutdown().await;
    result
}

/// Refuses a CONNECT whose client id is another principal's.
async fn refuse_id(client: &Client<'_>, why: String) -> Result<(), SessionError> {
    let shared = client.shared;
    shared.metrics.denied("connect", &client.who.principal);
    audit_login(shared.audit.as_ref(), LISTENER, "client-id", &client.who.principal, client.peer, Some(&why));
    let _ = client.writer.write(&connack_refused(client.version, Refusal::IdentifierRejected)).await;
    Err(SessionError::Refused(why))
}

/// MQTT 5's Assigned Client Identifier property.
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;

/// A will message, kept for the connection's end.
pub(crate) struct OwnedWill {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl OwnedWill {
    fn of(will: &Will<'_>) -> Self {
        OwnedWill { topic: will.topic.to_owned(), payload: will.payload.to_vec() }
    }
}

/// What the CONNECT settled for the rest of the connection.
struct Terms<'a> {
    hold: &'a ClientIdHold<'a>,
    /// 0: no keep alive.
    keep_alive_secs: u16,
    persistent: bool,
    expiry_secs: u32,
}

/// How a client left.
enum Goodbye {
    /// DISCONNECT: no will.
    Clean,
    /// Closed without DISCONNECT, or MQTT 5's "disconnect with will message".
    WithWill,
}

async fn serve_packets(
    client: &mut Client<'_>,
    from_client: &mut Packets,
    publishing: &mut Publishing,
    subscriptions: &mut Subscriptions,
    terms: &Terms<'_>,
) -> Result<Goodbye, SessionError> {
    let (hold, keep_alive_secs) = (terms.hold, terms.keep_alive_secs);
    let keep_alive = (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500));
    let far = Duration::from_secs(365 * 24 * 3600);
    let shared = client.shared;
    let mut save_every = tokio::time::interval(Duration::from_millis(shared.config.sessions.save_interval_ms));
    save_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    save_every.reset();
    let mut last_saved = None;
    let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
    let overflowed = subscriptions.overflow();
    loop {
        tokio::select! {
            _ = hold.taken_over.cancelled() => return Err(SessionError::TakenOver(hold.client_id.clone())),
            _ = overflowed.cancelled() => return Err(SessionError::TooSlow(client.shared.config.limits.max_queued_deliveries)),
            Some(written) = publishing.pending.next(), if !publishing.pending.is_empty() => {
                publishing.acknowledge(client, written).await?;
            }
            Some(delivery) = subscriptions.next_delivery(), if subscriptions.may_deliver() => {
                subscriptions.deliver(client, delivery).await?;
            }
            packet = from_client.next(), if publishing.may_take() => {
                let Some(packet) = packet? else { return Ok(Goodbye::WithWill) };
                deadline = Instant::now() + keep_alive.unwrap_or(far);
                if client.rules_changed() {
                    subscriptions.rejudge(client);
                }
                if let Some(goodbye) = handle(client, &packet, publishing, subscriptions).await? {
                    return Ok(goodbye);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(SessionError::KeepAlive(keep_alive_secs)),
            _ = save_every.tick(), if terms.persistent => {
                let stored = subscriptions.stored(&client.who.principal, terms.expiry_secs);
                if last_saved.as_ref() != Some(&stored) {
                    shared.sessions.save(&hold.client_id, stored.clone()).await;
                    last_saved = Some(stored);
                }
            }
        }
    }
}

/// One packet from the client; Some when it said goodbye.
async fn handle(
    client: &mut Client<'_>,
    packet: &[u8],
    publishing: &mut Publishing,
    subscriptions: &mut Subscriptions,
) -> Result<Option<Goodbye>, SessionError> {
    let header = header_of(packet);
    match header.kind {
        PacketType::Publish => publishing.publish(client, packet, &header).await?,
        PacketType::Puback => subscriptions.acknowledged(packet::packet_id(packet, &header).map_err(malformed)?),
        PacketType::Pubrel => {
            publishing.released(client, packet::packet_id(packet, &header).map_err(malformed)?).await?
        }
        PacketType::Subscribe => subscriptions.subscribe(client, packet, &header).await?,
        PacketType::Unsubscribe => subscriptions.unsubscribe(client, packet, &header).await?,
        PacketType::Pingreq => write(&client.writer, &PINGRESP).await?,
        PacketType::Disconnect => {
            // MQTT 5's reason 0x04 asks for the will all the same.
            let with_will = client.version == Version::V5 && packet.get(header.header_len) == Some(&0x04);
            return Ok(Some(if with_will { Goodbye::WithWill } else { Goodbye::Clean }));
        }
        other => {
            return Err(SessionError::protocol(
                format!("a {} packet, which a client does not send here", other.name()),
                reason::PROTOCOL_ERROR,
            ))
        }
    }
    Ok(None)
}
