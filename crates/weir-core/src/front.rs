//! The front of a sidecar in front of one broker (MQTT, AMQP): what it sets up before its
//! first client — its rules (TLS, credentials, policy) followed for changes, the audit log,
//! the client listener and the admin endpoint with the connection metrics — and the accept loop that hands each
//! client to the protocol's session. The protocol brings its words, its metrics and its
//! session; this module knows no protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::audit::{AuditConfig, AuditLog};
use crate::config::ConfigError;
use crate::io::{split_any, split_tcp, BoxRead, BoxWrite};
use crate::listener::Acceptor;
use crate::metrics::ConnectionMetrics;
use crate::rules::{CurrentRules, RuleKeeper, RuleSources};
use crate::tls::TlsOriginator;

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("cannot open the audit log {path}: {error}")]
    Audit { path: PathBuf, error: std::io::Error },
}

/// What the front is made of, from the sidecar's config.
pub struct FrontConfig<'a> {
    /// The listener's name in logs, metrics (`weir_connections_*{listener}`) and audit lines.
    pub name: &'static str,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub audit: Option<&'a AuditConfig>,
    pub rules: RuleSources,
    /// Client connections at once (0: no limit), and from one address.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
}

/// A bound front: what sessions share ([`Front::rules`], `audit`) and what
/// [`Front::run`] serves with.
pub struct Front {
    pub name: &'static str,
    pub rules: CurrentRules,
    /// Replaces the rules (a managed sidecar's snapshot) and follows their files.
    pub rule_keeper: Arc<RuleKeeper>,
    pub audit: Option<AuditLog>,
    /// Where the protocol registers its own metrics, beside the connection metrics.
    pub registry: Registry,
    listener: TcpListener,
    admin: Option<TcpListener>,
    connections: ConnectionMetrics,
    admission: Arc<Admission>,
}

impl Front {
    /// Reads the rules and the TLS files, opens the audit log and binds the listeners.
    pub async fn bind(config: FrontConfig<'_>) -> Result<Self, FrontError> {
        let rule_keeper = RuleKeeper::load(config.rules)?;
        let audit = match config.audit {
            Some(audit) => {
                Some(AuditLog::open(audit).map_err(|error| FrontError::Audit { path: audit.path.clone(), error })?)
            }
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen).await.map_err(|error| FrontError::Bind { addr: config.listen, error })?;
        let admin = match config.admin {
            Some(addr) => Some(crate::admin::bind(addr).await.map_err(|error| FrontError::Bind { addr, error })?),
            None => None,
        };
        let mut registry = Registry::default();
        let connections = ConnectionMetrics::register(&mut registry);
        Ok(Front {
            name: config.name,
            rules: rule_keeper.current(),
            rule_keeper,
            audit,
            registry,
            listener,
            admin,
            connections,
            admission: Admission::new(config.max_connections, config.max_connections_per_source),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients with `serve` until `stop` (the admin endpoint and the rules' reloading
    /// beside); connections open then end with the process.
    pub async fn run<F, Fut>(self, stop: CancellationToken, serve: F)
    where
        F: Fn(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Some(listener) = self.admin {
            // Ready once listening: the broker is reached per connection.
            let (_ready, ready) = watch::channel(true);
            let state = crate::admin::AdminState { registry: Arc::new(self.registry), ready, reports: Vec::new() };
            tokio::spawn(crate::admin::serve(listener, state, stop.clone()));
        }
        tokio::spawn(self.rule_keeper.follow(stop.clone()));
        let acceptor = Acceptor::new(self.admission, self.connections.clone(), stop, TaskTracker::new());
        let (connections, name) = (self.connections, self.name);
        acceptor
            .run(self.listener, name.to_owned(), move |client, peer| {
                let open = connections.opened(name);
                let session = serve(client, peer);
                async move {
                    session.await;
                    drop(open);
                }
            })
            .await;
    }
}

/// Connects to the broker at `upstream` (`host:port`) within `timeout` (the TCP connection,
/// then the TLS handshake), over TLS when `tls` is given; why not, in words.
pub async fn connect_broker(
    upstream: &str,
    timeout: std::time::Duration,
    tls: Option<&TlsOriginator>,
) -> Result<(BoxRead, BoxWrite), String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(upstream))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|error| error.to_string())?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(split_tcp(tcp)),
        Some(tls) => Ok(split_any(tls.connect(upstream, tcp, timeout).await.map_err(|error| error.to_string())?)),
    }
}
