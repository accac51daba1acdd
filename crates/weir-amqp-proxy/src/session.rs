//! One client connection: its protocol header and login read (bounded in size and time) and
//! authenticated before anything of the client's reaches the broker, then frames passed
//! both ways as the same bytes, except where the policy acts:
//!
//! - a method the principal may not use (see `authz`) is not forwarded: the client's channel
//!   is closed with 403 ACCESS_REFUSED and a reason, as RabbitMQ closes it, and the sidecar
//!   closes the broker's side of the channel itself (its close-ok goes no further). Until the
//!   client answers the close, its frames on that channel (a refused publish's content, say)
//!   are dropped, as AMQP says; a channel.open reusing the number waits for the broker's
//!   close-ok, so the broker never sees a channel opened twice.
//! - a failed login is answered with connection.close 403 ACCESS_REFUSED.
//!
//! Each direction reads into one buffer and writes every run of frames it passes unchanged
//! with one write. The sidecar's own frames join the same writers, each whole.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Buf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_amqp::method::{body_size, close, close_ok, ids, reply, start_ok_as, Method, MethodId};
use weir_amqp::{AmqpError, FrameHeader, FrameType, PROTOCOL_HEADER};
use weir_core::audit::{AuditLog, AuthenticationEvent, AuthorizationEvent};
use weir_core::flows::Party;
use weir_core::front::connect_broker;
use weir_core::identity::identify;
use weir_core::io::{BoxRead, BoxWrite};
use weir_core::relay::{self, RelayError};
use weir_core::rules::{CurrentRules, Rules};

use crate::authz::{default_exchange, AmqpAuthz, SERVER_NAMED_QUEUE};
use crate::config::AmqpConfig;
use crate::metrics::{AmqpMetrics, MessageCounters};

/// The listener's name in logs, metrics and audit lines.
pub const LISTENER: &str = "amqp";

/// What every connection of a sidecar shares.
pub struct Shared {
    pub config: AmqpConfig,
    /// TLS (a client certificate names the principal), the credentials and the policy,
    /// current (see weir-core's `rules`).
    pub rules: CurrentRules,
    pub metrics: Arc<AmqpMetrics>,
    pub audit: Option<AuditLog>,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no protocol header and login within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("not AMQP 0.9.1: the connection began with {0:?}")]
    NotAmqp(String),
    #[error("expected connection.start-ok on channel 0, got {0}")]
    NotLogin(String),
    #[error(transparent)]
    Relay(#[from] RelayError<AmqpError>),
    #[error("login refused: {0}")]
    Refused(String),
    #[error("the broker did not begin with connection.start: {0}")]
    Broker(String),
    #[error("cannot reach the broker {upstream}: {error}")]
    Upstream { upstream: String, error: String },
    #[error(transparent)]
    Tls(#[from] weir_core::tls::TlsError),
}

/// Serves one client until either side closes.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    match run(&shared, client, peer).await {
        Ok(()) => tracing::debug!(%peer, "AMQP connection closed"),
        Err(error) => tracing::info!(%peer, %error, "AMQP connection closed"),
    }
}

type Frames = relay::Frames<BoxRead, AmqpError>;
type Writer = relay::Writer<BoxWrite>;
type Action = relay::Action<SessionError>;

/// Where an AMQP frame ends, from its seven header bytes.
fn frame_len(buf: &[u8], limit: usize) -> Result<Option<usize>, AmqpError> {
    Ok(FrameHeader::read(buf, limit)?.map(|header| header.frame_len()))
}

/// Writes `bytes` to one side, naming it in the error.
async fn write(to: &Writer, side: &'static str, bytes: &[u8]) -> Result<(), SessionError> {
    to.write(bytes).await.map_err(|error| RelayError::Io { side, error }.into())
}

fn malformed(side: &'static str, error: AmqpError) -> SessionError {
    RelayError::Malformed { side, error }.into()
}

async fn run(shared: &Shared, client: TcpStream, peer: SocketAddr) -> Result<(), SessionError> {
    let limits = &shared.config.limits;
    // TLS first (bounded by its own handshake timeout): a certificate names the client.
    // TLS as the rules have it now: a renewed certificate serves the next handshake.
    let tls = shared.rules.borrow().tls.clone();
    let client = identify(client, tls.as_deref(), None).await?;
    let (client_read, certified) = (client.read, client.principal);
    let wait = Duration::from_millis(limits.handshake_timeout_ms);
    let deadline = Instant::now() + wait;
    let client_writer = Writer::new(client.write, "client");
    let mut from_client = Frames::new(client_read, limits.max_login_bytes, "client", frame_len);

    tokio::time::timeout_at(deadline, protocol_header(&mut from_client, &client_writer))
        .await
        .map_err(|_| SessionError::HandshakeTimeout(wait))??;

    // The broker hears only the sidecar's own protocol header until the client has logged in.
    let upstream = &shared.config.upstream;
    let unreachable = |error: String| SessionError::Upstream { upstream: upstream.clone(), error };
    let connect_wait = Duration::from_millis(limits.upstream_connect_timeout_ms);
    let upstream_tls = shared.rules.borrow().upstream_tls.clone();
    let (broker_read, broker_write) =
        connect_broker(upstream, connect_wait, upstream_tls.as_deref()).await.map_err(unreachable)?;
    let broker_writer = Writer::new(broker_write, "broker");
    let mut from_broker = Frames::new(broker_read, limits.max_frame_bytes, "broker", frame_len);
    write(&broker_writer, "broker", PROTOCOL_HEADER).await?;
    let start = tokio::time::timeout(connect_wait, from_broker.next())
        .await
        .map_err(|_| unreachable("no connection.start in time".into()))??;
    let Some(start) = start else { return Err(SessionError::Broker("it closed the connection".into())) };
    let id = method_id(&start);
    if id != Some(ids::CONNECTION_START) {
        return Err(SessionError::Broker(id.map_or("a frame that is no method".into(), |id| id.name().into())));
    }
    write(&client_writer, "client", &start).await?;

    let login = tokio::time::timeout_at(deadline, from_client.next())
        .await
        .map_err(|_| SessionError::HandshakeTimeout(wait))??;
    let Some(login) = login else { return Ok(()) };
    let header = header_of(&login);
    let payload = header.payload(&login).map_err(|error| malformed("client", error))?;
    let start_ok = match Method::read(payload) {
        Ok((_, Method::StartOk(start_ok))) if header.channel == 0 => start_ok,
        other => {
            let got = match other {
                Ok((id, _)) => format!("{} on channel {}", id.name(), header.channel),
                Err(error) => error.to_string(),
            };
            let why = format!("expected connection.start-ok, got {got}");
            let _ = client_writer.write(&close(0, reply::UNEXPECTED_FRAME, &why, ids::CONNECTION_START_OK)).await;
            return Err(SessionError::NotLogin(got));
        }
    };
    let mut rules = shared.rules.clone();
    let current = rules.borrow_and_update().clone();
    let mechanism = if certified.is_some() { "mtls" } else { start_ok.mechanism };
    let principal = match certified {
        // The certificate names the client; its login is the broker's business.
        Some(certified) => Ok(Some(certified)),
        None => authenticate(&current, &start_ok).await,
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(why) => {
            let who = start_ok.credentials().ok().flatten().map(|(user, _)| format!("User:{user}"));
            let who: Arc<str> = who.as_deref().unwrap_or(weir_core::policy::ANONYMOUS).into();
            shared.metrics.denied(ids::CONNECTION_START_OK.name(), &who);
            audit_login(shared, mechanism, Some(&who), peer, Some(&why));
            let text = format!(
                "ACCESS_REFUSED - Login was refused using authentication mechanism {}. For details see the sidecar's log.",
                start_ok.mechanism
            );
            let _ = client_writer.write(&close(0, reply::ACCESS_REFUSED, &text, ids::CONNECTION_START_OK)).await;
            return Err(SessionError::Refused(why));
        }
    };
    let who: Arc<str> = principal.as_deref().unwrap_or(weir_core::policy::ANONYMOUS).into();
    if current.credentials.is_some() || mechanism == "mtls" {
        audit_login(shared, mechanism, Some(&who), peer, None);
    }
    tracing::Span::current().record("principal", &*who);
    let who = Party::new(who, &connection_name(&start_ok));
    match &shared.config.broker_credentials {
        // The client's own credentials stay here.
        Some(broker) => {
            write(&broker_writer, "broker", &start_ok_as(&start_ok, &broker.username, &broker.password)).await?
        }
        None => write(&broker_writer, "broker", &login).await?,
    }
    from_client.limit = limits.max_frame_bytes;

    let channels = Arc::new(Channels::default());
    let mut upward = Upward {
        authz: current.policy.as_ref().map(|policy| AmqpAuthz::new(policy, principal.as_deref())),
        rules,
        principal,
        who: who.clone(),
        peer,
        shared,
        channels: channels.clone(),
        publishing: HashMap::new(),
        last_publish: None,
    };
    let mut downward = Downward {
        metrics: shared.metrics.clone(),
        who,
        channels,
        delivering: HashMap::new(),
        last_delivery: None,
        header_of_last: None,
    };
    let up = pump(&mut from_client, &broker_writer, &client_writer, |frame| upward.judge(frame));
    let down = pump(&mut from_broker, &client_writer, &broker_writer, |frame| downward.judge(frame));
    // Either side leaving ends the connection; what the other sent before is written already.
    let result = tokio::select! {
        result = up => result,
        result = down => result,
    };
    client_writer.shutdown().await;
    broker_writer.shutdown().await;
    result
}

/// Reads the client's eight-byte protocol header; anything else is answered with the one
/// this sidecar speaks, as AMQP says, and ends the connection.
async fn protocol_header(from_client: &mut Frames, client: &Writer) -> Result<(), SessionError> {
    loop {
        let seen = from_client.buf.len().min(PROTOCOL_HEADER.len());
        if from_client.buf[..seen] != PROTOCOL_HEADER[..seen] {
            let _ = client.write(PROTOCOL_HEADER).await;
            let start = String::from_utf8_lossy(&from_client.buf[..seen]).into_owned();
            return Err(SessionError::NotAmqp(start));
        }
        if seen == PROTOCOL_HEADER.len() {
            from_client.buf.advance(seen);
            return Ok(());
        }
        if !from_client.fill_to(seen + 1).await? {
            return Err(RelayError::Cut("client").into());
        }
    }
}

/// The header of a whole frame (its length was checked when it was read).
fn header_of(frame: &[u8]) -> FrameHeader {
    match FrameHeader::read(frame, usize::MAX) {
        Ok(Some(header)) => header,
        _ => unreachable!("a whole frame has a header"),
    }
}

fn method_id(frame: &[u8]) -> Option<MethodId> {
    let header = header_of(frame);
    if header.kind != FrameType::Method {
        return None;
    }
    let payload = header.payload(frame).ok()?;
    Method::read(payload).ok().map(|(id, _)| id)
}

/// The client's name for its connection (`connection_name` in its client properties, which
/// pika and RabbitMQ's own clients set when asked): the topology's client id; empty when none.
fn connection_name(start_ok: &weir_amqp::method::StartOk<'_>) -> String {
    let body = start_ok.client_properties.get(4..).unwrap_or_default();
    match weir_amqp::table::string_field(body, "connection_name") {
        Ok(Some(name)) => String::from_utf8_lossy(name).into_owned(),
        _ => String::new(),
    }
}

/// Who the client is: its login checked against the credentials when there are some.
async fn authenticate(rules: &Rules, start_ok: &weir_amqp::method::StartOk<'_>) -> Result<Option<String>, String> {
    let Some(credentials) = &rules.credentials else { return Ok(rules.fixed_principal.clone()) };
    let (user, password) = match start_ok.credentials() {
        Ok(Some(login)) => login,
        Ok(None) => return Err(format!("mechanism {} without a username and password", start_ok.mechanism)),
        Err(error) => return Err(error.to_string()),
    };
    // PBKDF2: off the runtime's workers.
    let check = credentials.password_check(user, password);
    let verified = tokio::task::spawn_blocking(move || check.verify()).await.unwrap_or(false);
    if verified {
        Ok(Some(format!("User:{user}")))
    } else {
        Err(format!("user {user}: wrong username or password"))
    }
}

fn audit_login(shared: &Shared, mechanism: &str, principal: Option<&str>, client: SocketAddr, reason: Option<&str>) {
    if let Some(audit) = &shared.audit {
        audit.authentication(&AuthenticationEvent {
            mechanism,
            success: reason.is_none(),
            principal,
            client,
            listener: LISTENER,
            reason,
        });
    }
}

/// Passes frames from one side to the other until it closes; a frame that is not AMQP ends
/// the connection with connection.close FRAME_ERROR to the client (whichever side sent it).
async fn pump(
    from: &mut Frames,
    onward: &Writer,
    back: &Writer,
    judge: impl FnMut(&[u8]) -> Action,
) -> Result<(), SessionError> {
    let side = from.side();
    let result = relay::pump(from, onward, back, judge).await;
    if let Err(SessionError::Relay(RelayError::Malformed { error, .. })) = &result {
        let client = if side == "client" { back } else { onward };
        let text = format!("FRAME_ERROR - weir: a malformed frame from the {side}: {error}");
        let _ = client.write(&close(0, reply::FRAME_ERROR, &text, MethodId::new(0, 0))).await;
    }
    result
}

/// What the sidecar knows of each channel, learned from both directions.
#[derive(Default)]
pub struct Channels {
    by_number: Mutex<HashMap<u16, Channel>>,
    /// Bumped whenever the broker answers a close of the sidecar's.
    broker_closes: tokio::sync::watch::Sender<u64>,
    /// Set at the first refusal: until then content frames need no look at the channels.
    any_refused: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Channel {
    /// Set while the sidecar's refusal closes the channel.
    refused: Option<Refused>,
    /// What an empty queue name means: the last queue declared, as the broker named it.
    current_queue: Option<Arc<str>>,
    /// Queue declarations the broker has not answered yet, as declared (a server-named one
    /// as [`SERVER_NAMED_QUEUE`]): an empty name means the last of them once they succeed.
    declares: VecDeque<Arc<str>>,
    /// The queues of consumes and gets not answered yet.
    consumes: VecDeque<Arc<str>>,
    gets: VecDeque<Arc<str>>,
    /// Consumer tag to queue.
    consumers: HashMap<Arc<str>, Arc<str>>,
}

/// A channel the sidecar closed on both sides; it is free once both have answered.
#[derive(Default)]
struct Refused {
    client_done: bool,
    broker_done: bool,
}

impl Channels {
    fn with<T>(&self, channel: u16, f: impl FnOnce(&mut Channel) -> T) -> T {
        let mut channels = self.by_number.lock().unwrap_or_else(|p| p.into_inner());
        f(channels.entry(channel).or_default())
    }

    fn refused(&self, channel: u16) -> bool {
        self.any_refused.load(std::sync::atomic::Ordering::Relaxed) && self.with(channel, |c| c.refused.is_some())
    }

    /// Waits (at most a few seconds) until the broker has answered the close of `channel`.
    async fn broker_closed(&self, channel: u16) {
        let mut closes = self.broker_closes.subscribe();
        let waiting = async {
            loop {
                let done = self.with(channel, |c| c.refused.as_ref().is_none_or(|r| r.broker_done));
                if done || closes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        self.with(channel, |c| c.refused = None);
    }
}

impl Channel {
    /// The queue an empty name stands for now.
    fn queue(&self) -> Option<Arc<str>> {
        self.declares.back().or(self.current_queue.as_ref()).cloned()
    }

    fn resolve(&self, queue: &str) -> Arc<str> {
        if queue.is_empty() {
            self.queue().unwrap_or_else(|| Arc::from(""))
        } else {
            Arc::from(queue)
        }
    }
}

/// The client → broker direction.
struct Upward<'s> {
    authz: Option<AmqpAuthz>,
    /// Followed: a new policy applies from the next method on.
    rules: CurrentRules,
    principal: Option<String>,
    who: Party,
    peer: SocketAddr,
    shared: &'s Shared,
    channels: Arc<Channels>,
    /// Channels whose publish's content header is next, with the message's labels.
    publishing: HashMap<u16, MessageCounters>,
    /// The last exchange and routing key published to, allowed: most publishers repeat them.
    last_publish: Option<(String, String, MessageCounters)>,
}

impl Upward<'_> {
    fn judge(&mut self, frame: &[u8]) -> Action {
        let header = header_of(frame);
        let channel = header.channel;
        match header.kind {
            FrameType::Heartbeat => return Action::Forward,
            FrameType::Body => {
                return if self.refused(channel) { Action::Drop { back: None } } else { Action::Forward };
            }
            FrameType::Header => {
                if self.refused(channel) {
                    return Action::Drop { back: None };
                }
                if let Some(counters) = self.publishing.remove(&channel) {
                    let size = header.payload(frame).ok().and_then(|p| body_size(p).ok()).unwrap_or(0);
                    counters.count(size);
                }
                return Action::Forward;
            }
            FrameType::Method => {}
        }
        let payload = match header.payload(frame) {
            Ok(payload) => payload,
            Err(error) => return Action::Fail(malformed("client", error)),
        };
        let (id, method) = match Method::read(payload) {
            Ok(read) => read,
            Err(error) => return Action::Fail(malformed("client", error)),
        };
        // Channel methods on channel 0 are the broker's to refuse (as connection errors).
        if channel == 0 {
            return Action::Forward;
        }
        if self.rules.has_changed().unwrap_or(false) {
            let rules = self.rules.borrow_and_update().clone();
            self.authz = rules.policy.as_ref().map(|policy| AmqpAuthz::new(policy, self.principal.as_deref()));
            self.last_publish = None;
        }
        if let Some(action) = self.on_refused_channel(channel, id) {
            return action;
        }
        if let Method::Publish { exchange, routing_key } = method {
            return self.publish(channel, id, &method, exchange, routing_key);
        }
        if let Some(authz) = &self.authz {
            let missing = self.channels.with(channel, |c| authz.missing(id, &method, || c.queue()));
            if let Some(need) = missing {
                return self.refuse(channel, id, &need);
            }
        }
        self.learn(channel, &method);
        Action::Forward
    }

    fn refused(&self, channel: u16) -> bool {
        channel != 0 && self.channels.refused(channel)
    }

    /// What becomes of a method on a channel the sidecar refused, if it was.
    fn on_refused_channel(&mut self, channel: u16, id: MethodId) -> Option<Action> {
        self.channels
            .with(channel, |c| {
                let refused = c.refused.as_mut()?;
                if refused.client_done {
                    // The client has the channel back: it may reopen it once the broker has too.
                    return (id == ids::CHANNEL_OPEN && !refused.broker_done).then(|| {
                        let channels = self.channels.clone();
                        Action::ForwardAfter(Box::pin(async move { channels.broker_closed(channel).await }))
                    });
                }
                Some(match id {
                    ids::CHANNEL_CLOSE_OK => {
                        refused.client_done = true;
                        if refused.broker_done {
                            c.refused = None;
                        }
                        Action::Drop { back: None }
                    }
                    // It closed the channel as the sidecar did: the two closes cross.
                    ids::CHANNEL_CLOSE => {
                        refused.client_done = true;
                        if refused.broker_done {
                            c.refused = None;
                        }
                        Action::Drop { back: Some(close_ok(channel)) }
                    }
                    // AMQP: after sending channel.close, discard everything but close and close-ok.
                    _ => Action::Drop { back: None },
                })
            })
            .or_else(|| {
                // A channel opened afresh forgets what the old one declared.
                if id == ids::CHANNEL_OPEN {
                    self.channels.with(channel, |c| *c = Channel::default());
                }
                None
            })
    }

    fn publish(&mut self, channel: u16, id: MethodId, method: &Method<'_>, exchange: &str, key: &str) -> Action {
        if let Some((last_exchange, last_key, counters)) = &self.last_publish {
            if last_exchange == exchange && last_key == key {
                self.publishing.insert(channel, counters.clone());
                return Action::Forward;
            }
        }
        if let Some(authz) = &self.authz {
            if let Some(need) = authz.missing(id, method, || None) {
                return self.refuse(channel, id, &need);
            }
        }
        let metrics = &self.shared.metrics;
        let counters = metrics.counters("publish", default_exchange(exchange), "", &self.who);
        self.publishing.insert(channel, counters.clone());
        self.last_publish = Some((exchange.to_owned(), key.to_owned(), counters));
        Action::Forward
    }

    /// Closes the channel on both sides for a method the principal may not use.
    fn refuse(&mut self, channel: u16, id: MethodId, need: &crate::authz::Need<'_>) -> Action {
        let (operation, resource_type) = (need.operation_name(), need.resource_type());
        tracing::info!(
            principal = &*self.who.principal,
            method = id.name(),
            operation,
            resource = %format_args!("{resource_type}:{}", need.name),
            "AMQP method denied"
        );
        self.shared.metrics.denied_on(id.name(), resource_type, operation, &need.name, &self.who);
        if let Some(audit) = &self.shared.audit {
            audit.authorization(&AuthorizationEvent {
                principal: &self.who.principal,
                api: id.name(),
                operation,
                resource_type,
                resource: &need.name,
                client: self.peer,
                listener: LISTENER,
            });
        }
        self.publishing.remove(&channel);
        self.channels.any_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        self.channels.with(channel, |c| c.refused = Some(Refused::default()));
        let text = format!(
            "ACCESS_REFUSED - {operation} access to {resource_type} '{}' refused for {} by the mesh's policy",
            need.name, self.who.principal
        );
        Action::Replace {
            onward: close(channel, reply::SUCCESS, "weir: access refused", id),
            back: close(channel, reply::ACCESS_REFUSED, &text, id),
        }
    }

    /// Remembers what later methods and the broker's answers refer to.
    fn learn(&mut self, channel: u16, method: &Method<'_>) {
        match *method {
            Method::QueueDeclare { queue, no_wait, .. } => self.channels.with(channel, |c| {
                let name: Arc<str> = Arc::from(if queue.is_empty() { SERVER_NAMED_QUEUE } else { queue });
                if no_wait {
                    c.current_queue = Some(name);
                } else {
                    c.declares.push_back(name);
                }
            }),
            Method::Consume { queue, consumer_tag, no_wait } => self.channels.with(channel, |c| {
                let queue = c.resolve(queue);
                if no_wait {
                    c.consumers.insert(Arc::from(consumer_tag), queue);
                } else {
                    c.consumes.push_back(queue);
                }
            }),
            Method::Get { queue } => self.channels.with(channel, |c| {
                let queue = c.resolve(queue);
                c.gets.push_back(queue);
            }),
            _ => {}
        }
    }
}

/// The broker → client direction.
struct Downward {
    metrics: Arc<AmqpMetrics>,
    who: Party,
    channels: Arc<Channels>,
    /// Channels whose delivery's content header is next, with the message's labels.
    delivering: HashMap<u16, MessageCounters>,
    /// The channel, consumer tag and exchange of the last delivery, with its counters: most
    /// consumers receive from one queue and exchange message after message.
    last_delivery: Option<(u16, String, String, MessageCounters)>,
    /// The channel whose content header is next and counted with `last_delivery`'s counters
    /// (no map, no clone for a delivery like the last one).
    header_of_last: Option<u16>,
}

impl Downward {
    fn judge(&mut self, frame: &[u8]) -> Action {
        let header = header_of(frame);
        let channel = header.channel;
        match header.kind {
            FrameType::Heartbeat => return Action::Forward,
            FrameType::Body | FrameType::Header if channel != 0 && self.refused(channel) => {
                return Action::Drop { back: None };
            }
            FrameType::Body => return Action::Forward,
            FrameType::Header => {
                let size = || header.payload(frame).ok().and_then(|p| body_size(p).ok()).unwrap_or(0);
                if self.header_of_last == Some(channel) {
                    self.header_of_last = None;
                    if let Some((.., counters)) = &self.last_delivery {
                        counters.count(size());
                    }
                } else if let Some(counters) = self.delivering.remove(&channel) {
                    counters.count(size());
                }
                return Action::Forward;
            }
            FrameType::Method => {}
        }
        let read = header.payload(frame).and_then(Method::read);
        let (id, method) = match read {
            Ok(read) => read,
            Err(error) => return Action::Fail(malformed("broker", error)),
        };
        if channel == 0 {
            return Action::Forward;
        }
        // A delivery like the last one, on a channel that cannot be refused: nothing to look up.
        if let (Method::Deliver { consumer_tag, exchange }, Some((last_channel, tag, last_exchange, _))) =
            (&method, &self.last_delivery)
        {
            let refusals = self.channels.any_refused.load(std::sync::atomic::Ordering::Relaxed);
            if !refusals && *last_channel == channel && tag == consumer_tag && last_exchange == exchange {
                if self.header_of_last.is_some_and(|waiting| waiting != channel) {
                    self.park_last();
                }
                self.header_of_last = Some(channel);
                return Action::Forward;
            }
        }
        let channels = self.channels.clone();
        channels.with(channel, |c| {
            if let Some(refused) = c.refused.as_mut() {
                let back = match id {
                    ids::CHANNEL_CLOSE_OK => None,
                    // The broker closed it too (for a reason of its own): it wants an answer.
                    ids::CHANNEL_CLOSE => Some(close_ok(channel)),
                    _ => return Action::Drop { back: None },
                };
                refused.broker_done = true;
                if refused.client_done {
                    c.refused = None;
                }
                channels.broker_closes.send_modify(|n| *n += 1);
                return Action::Drop { back };
            }
            match method {
                Method::QueueDeclareOk { queue } => {
                    c.declares.pop_front();
                    c.current_queue = Some(Arc::from(queue));
                }
                // A tag may name another queue from now on.
                Method::ConsumeOk { consumer_tag } => {
                    let queue = c.consumes.pop_front().unwrap_or_else(|| Arc::from(""));
                    c.consumers.insert(Arc::from(consumer_tag), queue);
                    self.park_last();
                    self.last_delivery = None;
                }
                Method::Cancel { consumer_tag } => {
                    c.consumers.remove(consumer_tag);
                    self.park_last();
                    self.last_delivery = None;
                }
                Method::Deliver { consumer_tag, exchange } => {
                    let queue = c.consumers.get(consumer_tag).map_or("", |q| q);
                    let counters = self.metrics.counters("deliver", default_exchange(exchange), queue, &self.who);
                    self.park_last();
                    self.last_delivery = Some((channel, consumer_tag.to_owned(), exchange.to_owned(), counters));
                    self.header_of_last = Some(channel);
                }
                Method::GetOk { exchange } => {
                    let queue = c.gets.pop_front().unwrap_or_else(|| Arc::from(""));
                    let counters = self.metrics.counters("deliver", default_exchange(exchange), &queue, &self.who);
                    self.delivering.insert(channel, counters);
                }
                _ if id == ids::BASIC_GET_EMPTY => {
                    c.gets.pop_front();
                }
                _ => {}
            }
            Action::Forward
        })
    }

    fn refused(&self, channel: u16) -> bool {
        self.channels.refused(channel)
    }

    /// The last delivery's header still to come keeps its counters, in the map, before the
    /// last delivery changes.
    fn park_last(&mut self) {
        if let (Some(channel), Some((.., counters))) = (self.header_of_last.take(), &self.last_delivery) {
            self.delivering.insert(channel, counters.clone());
        }
    }
}
