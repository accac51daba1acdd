//! The AMQP sidecar's listener: accepts clients (within the connection limits) and serves
//! each (see `session`).

use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_core::admission::Admission;
use weir_core::audit::AuditLog;
use weir_core::config::ConfigError;
use weir_core::listener::Acceptor;
use weir_core::metrics::ConnectionMetrics;
use weir_core::rules::{RuleSources, Rules};
use weir_core::tls::TlsTerminator;

use crate::authz::{check_policy, AMQP};
use crate::config::AmqpConfig;
use crate::metrics::AmqpMetrics;
use crate::session::{serve, Shared, LISTENER};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum AmqpSidecarError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: std::net::SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Tls(#[from] weir_core::tls::TlsError),
    #[error("cannot open the audit log {path}: {error}")]
    Audit { path: std::path::PathBuf, error: std::io::Error },
}

pub struct AmqpSidecar {
    shared: Arc<Shared>,
    /// Followed for changes while the sidecar runs.
    rule_sources: (RuleSources, watch::Sender<Arc<Rules>>),
    listener: TcpListener,
    connections: ConnectionMetrics,
    admin: Option<(TcpListener, Arc<Registry>)>,
}

impl AmqpSidecar {
    /// Reads the credentials, the policy and the TLS files, opens the audit log and binds the
    /// listener.
    pub async fn bind(config: AmqpConfig, origin: &Path) -> Result<Self, AmqpSidecarError> {
        let sources = RuleSources {
            credentials: config.credentials.clone(),
            authorization: config.authorization.clone(),
            origin: origin.to_owned(),
            words: &AMQP,
            check: check_policy,
        };
        let (rules_tx, rules) = sources.watch()?;
        let audit = match &config.audit {
            Some(audit) => Some(
                AuditLog::open(audit).map_err(|error| AmqpSidecarError::Audit { path: audit.path.clone(), error })?,
            ),
            None => None,
        };
        let tls = config.tls.clone().map(TlsTerminator::new).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|error| AmqpSidecarError::Bind { addr: config.listen, error })?;
        let admin = match config.admin {
            Some(addr) => {
                Some(weir_core::admin::bind(addr).await.map_err(|error| AmqpSidecarError::Bind { addr, error })?)
            }
            None => None,
        };
        let mut registry = Registry::default();
        let connections = ConnectionMetrics::register(&mut registry);
        let metrics = AmqpMetrics::new(&mut registry, config.limits.max_metric_names);
        let shared = Arc::new(Shared { config, rules, metrics, audit, tls });
        let admin = admin.map(|listener| (listener, Arc::new(registry)));
        Ok(AmqpSidecar { shared, rule_sources: (sources, rules_tx), listener, connections, admin })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until `stop`; connections open then end with the process.
    pub async fn run(self, stop: CancellationToken) {
        if let Some((listener, registry)) = self.admin {
            // Ready once listening: the broker is reached per connection.
            let (_ready, ready) = tokio::sync::watch::channel(true);
            let state = weir_core::admin::AdminState { registry, ready, reports: Vec::new() };
            tokio::spawn(weir_core::admin::serve(listener, state, stop.clone()));
        }
        let (sources, rules) = self.rule_sources;
        tokio::spawn(sources.follow(rules, stop.clone()));
        let config = &self.shared.config;
        let current = self.shared.rules.borrow().clone();
        tracing::info!(
            listen = %config.listen,
            upstream = %config.upstream,
            tls = self.shared.tls.is_some(),
            authenticated = current.credentials.is_some(),
            authorized = current.policy.is_some(),
            "AMQP sidecar ready"
        );
        let limits = &config.limits;
        let admission = Admission::new(limits.max_connections, limits.max_connections_per_source);
        let acceptor = Acceptor::new(admission, self.connections.clone(), stop, TaskTracker::new());
        let (shared, connections) = (self.shared.clone(), self.connections.clone());
        acceptor
            .run(self.listener, LISTENER.to_owned(), move |client, peer| {
                let open = connections.opened(LISTENER);
                let shared = shared.clone();
                async move {
                    serve(shared, client, peer).await;
                    drop(open);
                }
            })
            .await;
    }
}
