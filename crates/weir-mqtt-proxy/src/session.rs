//! One client connection: its CONNECT read (bounded in size and time) and authenticated, then
//! packets passed both ways as the same bytes, except where the policy acts:
//!
//! - a PUBLISH to a topic the principal may not publish is not forwarded: QoS 0 is dropped,
//!   QoS 1 answered with PUBACK and QoS 2 with PUBREC by the sidecar — with reason Not
//!   authorized (0x87) in MQTT 5, plainly in 3.1.1, which has no way to say no (as brokers
//!   do with messages their ACLs deny); a 3.1.1 client's PUBREL for it is answered with
//!   PUBCOMP here. MQTT 5 topic aliases are followed, so an alias cannot hide a topic.
//! - a SUBSCRIBE goes to the broker with only the filters the principal may subscribe; the
//!   broker's SUBACK comes back with the refused ones in their places (0x87 in MQTT 5, 0x80 in
//!   3.1.1); if none is allowed the sidecar answers alone.
//! - a will message is judged as a publish: one the principal may not publish refuses the
//!   CONNECT (Not authorized).
//!
//! Each direction reads into one buffer and writes every run of packets it passes unchanged
//! with one write (weir-core's `relay`); the sidecar's own answers share the writers, so each
//! reaches its side whole.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use weir_core::audit::{AuditLog, AuthorizationEvent};
use weir_core::flows::Party;
use weir_core::front::connect_broker;
use weir_core::identity::identify;
use weir_core::io::{BoxRead, BoxWrite};
use weir_core::relay::{self, RelayError};
use weir_core::rules::CurrentRules;
use weir_mqtt::frame::{header_of, packet_len};
use weir_mqtt::packet::{
    ack, connack_refused, packet_id, reason, suback, suback_merged, Connect, Publish, Refusal, Subscribe, Version,
};
use weir_mqtt::{MqttError, PacketType};

use crate::authz::MqttAuthz;
use crate::config::MqttConfig;
use crate::login::{audit_login, authenticate, Login};
use crate::metrics::{MqttMetrics, TopicCounters};

/// What every connection of a sidecar shares.
pub struct Shared {
    pub config: MqttConfig,
    /// TLS (a client certificate names the principal), the credentials and the policy,
    /// current (see weir-core's `rules`).
    pub rules: CurrentRules,
    pub metrics: Arc<MqttMetrics>,
    pub audit: Option<AuditLog>,
}

/// The listener's name in logs, metrics and audit lines.
pub const LISTENER: &str = "mqtt";

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
    #[error("PUBLISH with topic alias {0}, which this connection never set")]
    UnknownAlias(u16),
    #[error("cannot reach the broker {upstream}: {error}")]
    Upstream { upstream: String, error: String },
    #[error(transparent)]
    Tls(#[from] weir_core::tls::TlsError),
}

/// Serves one client until either side closes.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    match run(&shared, client, peer).await {
        Ok(()) => tracing::debug!(%peer, "MQTT connection closed"),
        Err(error) => tracing::info!(%peer, %error, "MQTT connection closed"),
    }
}

type Packets = relay::Frames<BoxRead, MqttError>;
type Writer = relay::Writer<BoxWrite>;
type Action = relay::Action<SessionError>;

/// Writes `bytes` to one side, naming it in the error.
async fn write(to: &Writer, side: &'static str, bytes: &[u8]) -> Result<(), SessionError> {
    to.write(bytes).await.map_err(|error| RelayError::Io { side, error }.into())
}

fn malformed(side: &'static str, error: MqttError) -> SessionError {
    RelayError::Malformed { side, error }.into()
}

async fn run(shared: &Shared, client: TcpStream, peer: SocketAddr) -> Result<(), SessionError> {
    let limits = &shared.config.limits;
    // TLS first (bounded by its own handshake timeout): a certificate names the client.
    // TLS as the rules have it now: a renewed certificate serves the next handshake.
    let tls = shared.rules.borrow().tls.clone();
    let client = identify(client, tls.as_deref(), None).await?;
    let (client_read, certified) = (client.read, client.principal);
    let client_writer = Writer::new(client.write, "client");
    let mut from_client = Packets::new(client_read, limits.max_connect_bytes, "client", packet_len);
    let wait = Duration::from_millis(limits.connect_timeout_ms);
    let first =
        tokio::time::timeout(wait, from_client.next()).await.map_err(|_| SessionError::ConnectTimeout(wait))??;
    let Some(packet) = first else { return Ok(()) };
    let header = header_of(&packet);
    if header.kind != PacketType::Connect {
        return Err(SessionError::NotConnect(header.kind.name()));
    }
    let connect = Connect::read(&packet, &header).map_err(|error| malformed("client", error))?;
    let version = connect.version;
    let mut rules = shared.rules.clone();
    let current = rules.borrow_and_update().clone();
    let mechanism = if certified.is_some() { "mtls" } else { "password" };
    let principal = match certified {
        // The certificate names the client; CONNECT's credentials are the broker's business.
        Some(certified) => Ok(Some(certified)),
        None => authenticate(&current, &connect).await.map(|login| match login {
            Login::User(name) => Some(format!("User:{name}")),
            Login::Unchecked(fixed) => fixed,
        }),
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(why) => {
            let who: Arc<str> =
                connect.username.map_or(weir_core::policy::ANONYMOUS.into(), |u| format!("User:{u}").into());
            shared.metrics.denied("connect", &who);
            audit_login(shared.audit.as_ref(), LISTENER, mechanism, &who, peer, Some(&why));
            let _ = client_writer.write(&connack_refused(version, Refusal::BadCredentials)).await;
            return Err(SessionError::Refused(why));
        }
    };
    let who: Arc<str> = principal.as_deref().unwrap_or(weir_core::policy::ANONYMOUS).into();
    if current.credentials.is_some() || mechanism == "mtls" {
        audit_login(shared.audit.as_ref(), LISTENER, mechanism, &who, peer, None);
    }
    tracing::Span::current().record("principal", &*who);
    let authz = current.policy.as_ref().map(|policy| MqttAuthz::new(policy, principal.as_deref()));
    let party = Party::new(who.clone(), connect.client_id);
    let denied = Denials { shared, who: party.clone(), peer };
    if let (Some(will), Some(authz)) = (&connect.will, &authz) {
        if !authz.may_publish(will.topic) {
            denied.record("connect", "publish", will.topic);
            let _ = client_writer.write(&connack_refused(version, Refusal::NotAuthorized)).await;
            return Err(SessionError::Refused(format!("{who} may not publish its will to `{}`", will.topic)));
        }
    }
    tracing::debug!(client_id = connect.client_id, principal = principal.as_deref(), "MQTT client connected");

    let upstream = &shared.config.upstream;
    let wait = Duration::from_millis(limits.upstream_connect_timeout_ms);
    let (broker_read, broker_write) = connect_broker(upstream, wait, current.upstream_tls.as_deref())
        .await
        .map_err(|error| SessionError::Upstream { upstream: upstream.clone(), error })?;
    let broker_writer = Writer::new(broker_write, "broker");
    match &shared.config.broker_credentials {
        // The client's own credentials stay here.
        Some(broker) => {
            let connect = connect.with_credentials(&packet, &header, &broker.username, broker.password.as_bytes());
            write(&broker_writer, "broker", &connect).await?;
        }
        None => write(&broker_writer, "broker", &packet).await?,
    }
    from_client.limit = limits.max_packet_bytes;
    let mut from_broker = Packets::new(broker_read, limits.max_packet_bytes, "broker", packet_len);

    let merges = Arc::new(Mutex::new(HashMap::new()));
    let mut upward = Upward {
        authz,
        rules,
        principal,
        who: party.clone(),
        denied,
        metrics: shared.metrics.clone(),
        version,
        aliases: HashMap::new(),
        answered_qos2: HashSet::new(),
        merges: merges.clone(),
        counted: None,
    };
    let mut downward = Downward {
        version,
        merges,
        metrics: shared.metrics.clone(),
        who: party,
        aliases: HashMap::new(),
        counted: None,
    };
    let up = relay::pump(&mut from_client, &broker_writer, &client_writer, |packet| upward.judge(packet));
    let down = relay::pump(&mut from_broker, &client_writer, &broker_writer, |packet| downward.judge(packet));
    // Either side leaving ends the connection; what the other sent before is written already
    // (an MQTT 5 DISCONNECT with the broker's reason, say).
    let result = tokio::select! {
        result = up => result,
        result = down => result,
    };
    client_writer.shutdown().await;
    broker_writer.shutdown().await;
    result
}

/// Where a connection's denials are counted and audited.
struct Denials<'s> {
    shared: &'s Shared,
    who: Party,
    peer: SocketAddr,
}

impl Denials<'_> {
    /// `packet` (`publish`, `subscribe`, `connect` for a will) was refused `operation` on `topic`.
    fn record(&self, packet: &'static str, operation: &str, topic: &str) {
        self.shared.metrics.denied_on(packet, topic, &self.who);
        if let Some(audit) = &self.shared.audit {
            audit.authorization(&AuthorizationEvent {
                principal: &self.who.principal,
                api: packet,
                operation,
                resource_type: "topic",
                resource: topic,
                client: self.peer,
                listener: LISTENER,
            });
        }
    }
}

/// SUBSCRIBEs cut to their allowed filters, by packet identifier: the codes the sidecar
/// puts into the broker's SUBACK (see `suback_merged`).
type Merges = Arc<Mutex<HashMap<u16, Vec<Option<u8>>>>>;

/// The client → broker direction and what it learns on the way.
struct Upward<'s> {
    authz: Option<MqttAuthz>,
    /// Followed: a new policy applies from the next packet on.
    rules: CurrentRules,
    principal: Option<String>,
    /// The principal and client id as metrics, logs and the topology name them.
    who: Party,
    denied: Denials<'s>,
    metrics: Arc<MqttMetrics>,
    version: Version,
    /// MQTT 5 topic aliases the client set.
    aliases: HashMap<u16, String>,
    /// QoS 2 publishes the sidecar refused and acknowledged itself (3.1.1): their PUBREL is
    /// answered here too.
    answered_qos2: HashSet<u16>,
    merges: Merges,
    /// The counters of the topic last published to.
    counted: Option<TopicCounters>,
}

impl Upward<'_> {
    fn judge(&mut self, packet: &[u8]) -> Action {
        match self.judged(packet) {
            Ok(action) => action,
            Err(error) => Action::Fail(error),
        }
    }

    fn judged(&mut self, packet: &[u8]) -> Result<Action, SessionError> {
        let header = header_of(packet);
        if self.rules.has_changed().unwrap_or(false) {
            let rules = self.rules.borrow_and_update().clone();
            self.authz = rules.policy.as_ref().map(|policy| MqttAuthz::new(policy, self.principal.as_deref()));
        }
        let malformed = |error| malformed("client", error);
        let answer = match header.kind {
            PacketType::Publish => {
                let publish = Publish::read(packet, &header, self.version).map_err(malformed)?;
                self.judge_publish(&publish)?
            }
            PacketType::Subscribe if self.authz.is_some() => {
                let subscribe = Subscribe::read(packet, &header, self.version).map_err(malformed)?;
                match self.judge_subscribe(&subscribe) {
                    Judged::Forward => None,
                    Judged::Answer(answer) => Some(answer),
                    Judged::Cut(cut) => return Ok(Action::Replace { onward: cut, back: Vec::new() }),
                }
            }
            PacketType::Pubrel => {
                let id = packet_id(packet, &header).map_err(malformed)?;
                self.answered_qos2.remove(&id).then(|| ack(PacketType::Pubcomp, id, self.version, 0))
            }
            _ => None,
        };
        Ok(match answer {
            // A refused QoS 0 publish: nothing goes anywhere.
            Some(answer) if answer.is_empty() => Action::Drop { back: None },
            Some(answer) => Action::Drop { back: Some(answer) },
            None => Action::Forward,
        })
    }

    /// None to forward the PUBLISH; else the sidecar's answer in the broker's stead (empty
    /// for a refused QoS 0 publish, which has none).
    fn judge_publish(&mut self, publish: &Publish<'_>) -> Result<Option<Vec<u8>>, SessionError> {
        let topic: std::borrow::Cow<'_, str> = if publish.topic.is_empty() {
            let alias = publish.topic_alias.unwrap_or_default();
            self.aliases.get(&alias).ok_or(SessionError::UnknownAlias(alias))?.clone().into()
        } else {
            if let Some(alias) = publish.topic_alias {
                self.aliases.insert(alias, publish.topic.to_owned());
            }
            publish.topic.into()
        };
        if self.authz.as_ref().is_none_or(|authz| authz.may_publish(&topic)) {
            self.metrics.count(&mut self.counted, "publish", &topic, &self.who, publish.payload.len());
            return Ok(None);
        }
        self.denied.record("publish", "publish", &topic);
        tracing::info!(principal = &*self.who.principal, topic = &*topic, qos = publish.qos, "MQTT publish denied");
        Ok(Some(match (publish.qos, publish.packet_id) {
            (1, Some(id)) => ack(PacketType::Puback, id, self.version, reason::NOT_AUTHORIZED),
            (2, Some(id)) => {
                if self.version != Version::V5 {
                    self.answered_qos2.insert(id);
                }
                ack(PacketType::Pubrec, id, self.version, reason::NOT_AUTHORIZED)
            }
            _ => Vec::new(),
        }))
    }

    fn judge_subscribe(&mut self, subscribe: &Subscribe<'_>) -> Judged {
        let Some(authz) = &self.authz else { return Judged::Forward };
        let refused_code = if self.version == Version::V5 { reason::NOT_AUTHORIZED } else { reason::FAILURE };
        let refused: Vec<Option<u8>> =
            subscribe.subscriptions.iter().map(|s| (!authz.may_subscribe(s.filter)).then_some(refused_code)).collect();
        if refused.iter().all(Option::is_none) {
            return Judged::Forward;
        }
        for (subscription, _) in subscribe.subscriptions.iter().zip(&refused).filter(|(_, r)| r.is_some()) {
            self.denied.record("subscribe", "subscribe", subscription.filter);
            tracing::info!(principal = &*self.who.principal, filter = subscription.filter, "MQTT subscription denied");
        }
        if refused.iter().all(Option::is_some) {
            let codes: Vec<u8> = refused.iter().flatten().copied().collect();
            return Judged::Answer(suback(subscribe.packet_id, &codes, self.version));
        }
        let cut = subscribe.keeping(|s| authz.may_subscribe(s.filter));
        self.merges.lock().unwrap_or_else(|p| p.into_inner()).insert(subscribe.packet_id, refused);
        Judged::Cut(cut)
    }
}

/// What becomes of a SUBSCRIBE.
enum Judged {
    Forward,
    /// Answered by the sidecar (every filter refused).
    Answer(Vec<u8>),
    /// This goes to the broker instead (some filters refused).
    Cut(Vec<u8>),
}

/// The broker → client direction: the same bytes, but a SUBACK to a cut SUBSCRIBE made whole
/// again; deliveries counted by topic (following the broker's own MQTT 5 aliases).
struct Downward {
    version: Version,
    merges: Merges,
    metrics: Arc<MqttMetrics>,
    who: Party,
    aliases: HashMap<u16, String>,
    counted: Option<TopicCounters>,
}

impl Downward {
    fn judge(&mut self, packet: &[u8]) -> Action {
        let header = header_of(packet);
        let malformed = |error| Action::Fail(malformed("broker", error));
        match header.kind {
            PacketType::Publish => match Publish::read(packet, &header, self.version) {
                Ok(publish) => self.count(&publish),
                Err(error) => return malformed(error),
            },
            PacketType::Suback => {
                let id = match packet_id(packet, &header) {
                    Ok(id) => id,
                    Err(error) => return malformed(error),
                };
                let refused = self.merges.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                if let Some(refused) = refused {
                    return match suback_merged(packet, &header, self.version, &refused) {
                        Ok(merged) => Action::Replace { onward: merged, back: Vec::new() },
                        Err(error) => malformed(error),
                    };
                }
            }
            _ => {}
        }
        Action::Forward
    }

    fn count(&mut self, publish: &Publish<'_>) {
        let topic = if publish.topic.is_empty() {
            match publish.topic_alias.and_then(|alias| self.aliases.get(&alias)) {
                Some(topic) => topic.as_str(),
                None => return,
            }
        } else {
            if let Some(alias) = publish.topic_alias {
                self.aliases.insert(alias, publish.topic.to_owned());
            }
            publish.topic
        };
        self.metrics.count(&mut self.counted, "deliver", topic, &self.who, publish.payload.len());
    }
}
