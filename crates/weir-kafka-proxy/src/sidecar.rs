//! The sidecar process: listeners, the readiness probe, and orderly shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_core::admission::Admission;
use weir_core::audit::AuditLog;
use weir_core::listener::Acceptor;

use crate::breaker::BrokerSlots;
use crate::config::SidecarConfig;
use crate::directory::{self, BrokerDirectory, OpenedListener};
use crate::metrics::KafkaMetrics;
use crate::outlier::Outliers;
use crate::rewrite;
use crate::session::{self, Target};
use crate::shared::Shared;
use crate::snapshot::{FileSource, Snapshot};
use crate::upstream::Connector;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("kms: {0}")]
    Kms(String),
    #[error("cannot open the audit log {path}: {error}")]
    Audit { path: String, error: std::io::Error },
    #[error(transparent)]
    Config(#[from] crate::snapshot::SnapshotError),
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind { addr: SocketAddr, what: &'static str, error: std::io::Error },
    #[error(
        "broker ports {first}-{last} (broker_ports.base + node id) overlap the kernel's ephemeral port range \
         {low}-{high} (net.ipv4.ip_local_port_range), where outgoing connections can hold them when a broker \
         is discovered; choose broker_ports.base (and broker_ports.count) to stay below {low} or above {high}"
    )]
    EphemeralBrokerPorts { first: u16, last: u16, low: u16, high: u16 },
}

/// The kernel's range for outgoing connections' local ports (Linux; its default elsewhere).
fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
            Some((numbers.next()?, numbers.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// A bound, not yet running sidecar.
pub struct Sidecar {
    shared: Arc<Shared>,
    bootstrap: TcpListener,
    admin: Option<TcpListener>,
    opened: mpsc::UnboundedReceiver<OpenedListener>,
    registry: Arc<Registry>,
    ready: (watch::Sender<bool>, watch::Receiver<bool>),
    /// Connection limits, checked at accept.
    admission: Arc<Admission>,
    /// Where new configuration snapshots are published, and the source that watches files.
    publisher: watch::Sender<Arc<Snapshot>>,
    files: FileSource,
}

impl Sidecar {
    /// Binds the bootstrap and admin listeners; fails fast when an address is taken.
    pub async fn bind(config: SidecarConfig) -> Result<Self, SidecarError> {
        // Broker listeners open as brokers are discovered, long after start: a port that an
        // outgoing connection holds by then cannot be bound, so refuse such a range up front.
        let (first, last) = config.broker_port_range();
        let (low, high) = ephemeral_port_range();
        if config.broker_ports.count > 0 && first <= high && last >= low {
            return Err(SidecarError::EphemeralBrokerPorts { first, last, low, high });
        }
        let mut registry = Registry::default();
        let metrics = KafkaMetrics::register(&mut registry);
        let (port_base, _) = config.broker_port_range();
        let (directory, opened) =
            BrokerDirectory::new(config.advertised_host(), config.listen.ip(), port_base, config.broker_ports.count);
        let bootstrap = directory::bind(config.listen).map_err(|error| SidecarError::Bind {
            addr: config.listen,
            what: "bootstrap listener",
            error,
        })?;
        let admin = match config.admin {
            Some(addr) => Some(weir_core::admin::bind(addr).await.map_err(|error| SidecarError::Bind {
                addr,
                what: "admin listener",
                error,
            })?),
            None => None,
        };
        let audit = config.audit.as_ref().map(AuditLog::open).transpose().map_err(|error| SidecarError::Audit {
            path: config.audit.as_ref().map(|a| a.path.display().to_string()).unwrap_or_default(),
            error,
        })?;
        let files = FileSource::new(&config);
        let (publisher, snapshots) = watch::channel(Arc::new(Snapshot::load(&config).await?));
        let connector = Connector::new(
            config.upstream.resolve.clone(),
            config.connect_timeout(),
            snapshots.clone(),
            config.upstream.sasl.clone(),
            &config.upstream.sasl_by_principal,
        );
        let max_connections = weir_core::admission::fit_to_descriptors(config.limits.max_connections);
        if max_connections != config.limits.max_connections {
            tracing::info!(
                configured = config.limits.max_connections,
                max_connections,
                "the descriptor limit allows fewer connections than limits.max_connections; using the lower"
            );
        }
        let admission = Admission::with_creation_rate(
            max_connections,
            config.limits.max_connections_per_source,
            config.limits.connections_per_second,
        );
        let shutdown = CancellationToken::new();
        let own_cluster = Arc::new(crate::side::ClusterAccess::new(connector.clone(), config.bootstrap.clone()));
        let shadows = crate::shadow::ShadowWriters::new(own_cluster.clone(), metrics.shadows.clone(), shutdown.clone());
        let schema_registry = config
            .schema_registry
            .clone()
            .map(|registry| Arc::new(weir_schema::judge::SchemaRegistry::new(registry, weir_schema::judge::compile)));
        let data_keys = match &config.kms {
            Some(kms) => Some(Arc::new(weir_envelope::DataKeys::new(kms.kms().map_err(SidecarError::Kms)?))),
            None => None,
        };
        let spans = config.otlp.clone().map(|otlp| {
            let resource = vec![("weir.listen".to_owned(), config.listen.to_string())];
            weir_core::otlp::SpanSink::start(otlp, resource, &mut registry)
        });
        let shared = Arc::new(Shared {
            schema_registry,
            data_keys,
            spans,
            own_cluster,
            shadows: Arc::new(shadows),
            fetch_sessions: Arc::default(),
            quotas: Arc::default(),
            outliers: Arc::new(Outliers::new(config.upstream.outlier_detection.clone())),
            slots: Arc::new(BrokerSlots::new(config.upstream.circuit_breaker.clone())),
            config,
            metrics,
            directory: Arc::new(directory),
            connector,
            shutdown,
            snapshots,
            audit,
            topic_ids: Arc::default(),
            broker_versions: RwLock::new(None),
        });
        let registry = Arc::new(registry);
        Ok(Self {
            shared,
            bootstrap,
            admin,
            opened,
            registry,
            ready: watch::channel(false),
            admission,
            publisher,
            files,
        })
    }

    /// For a sidecar the control plane configures: its snapshots come from there (through the
    /// returned sender), not from following the config's files.
    pub fn managed(mut self) -> (Self, watch::Sender<Arc<Snapshot>>) {
        self.files = FileSource::none();
        let publisher = self.publisher.clone();
        (self, publisher)
    }

    /// What this sidecar has seen flow (for the control plane's topology).
    pub fn flows(&self) -> weir_core::control::FlowSource {
        let shared = self.shared.clone();
        Arc::new(move || shared.metrics.flows.totals())
    }

    /// Where clients bootstrap (the bound address, useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bootstrap.local_addr().ok()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(weir_core::admin::local_addr)
    }

    /// Serves until `stop` is cancelled, then stops accepting, lets in-flight requests finish
    /// for at most the configured grace period, and returns.
    pub async fn run(self, stop: CancellationToken) {
        let Sidecar { shared, bootstrap, admin, mut opened, registry, ready, admission, publisher, files } = self;
        let tracker = TaskTracker::new();
        let (ready_tx, ready_rx) = ready;
        tracing::info!(listen = %shared.config.listen, bootstrap = ?shared.config.bootstrap, "sidecar started");

        if let Some(admin) = admin {
            let (outliers, slots) = (shared.outliers.clone(), shared.slots.clone());
            let upstreams: weir_core::admin::Report = Arc::new(move || {
                let brokers = outliers.states(std::time::Instant::now());
                let in_flight = slots.states();
                serde_json::json!({ "brokers_with_failures": brokers, "requests_in_flight": in_flight }).to_string()
            });
            let reports = vec![("/upstreams", upstreams)];
            let state = weir_core::admin::AdminState { registry, ready: ready_rx, reports };
            tokio::spawn(weir_core::admin::serve(admin, state, shared.shutdown.clone()));
        }
        tokio::spawn(probe_until_ready(shared.clone(), ready_tx));
        tokio::spawn(files.run(publisher, shared.shutdown.clone()));
        tokio::spawn(forget_removed_quota_meters(shared.clone()));
        if let Some(tokens) = shared.snapshots.borrow().sasl.as_ref().and_then(|s| s.tokens.clone()) {
            tokio::spawn(tokens.reload_on_change(shared.shutdown.clone()));
        }
        let acceptor =
            Acceptor::new(admission, shared.metrics.connections.clone(), shared.shutdown.clone(), tracker.clone());
        let accept = |listener, target: Target| {
            let shared = shared.clone();
            acceptor.clone().run(listener, target.listener_name(), move |stream, peer| {
                session::serve(shared.clone(), stream, peer, target)
            })
        };
        tracker.spawn(accept(bootstrap, Target::Bootstrap));

        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(OpenedListener { node_id, listener }) = opened.recv() => {
                    tracker.spawn(accept(listener, Target::Broker(node_id)));
                }
            }
        }

        tracing::info!(grace = ?shared.config.shutdown_grace(), "stopping: no new connections, finishing in-flight requests");
        shared.shutdown.cancel();
        tracker.close();
        if tokio::time::timeout(shared.config.shutdown_grace(), tracker.wait()).await.is_err() {
            tracing::warn!("grace period over with requests still in flight; closing them");
        }
        tracing::info!("sidecar stopped");
    }
}

/// Drops the meters of quota rules a new snapshot no longer has, so that rules removed over a
/// sidecar's life do not keep their meters (one per principal or client id they metered).
async fn forget_removed_quota_meters(shared: Arc<Shared>) {
    let mut snapshots = shared.snapshots.clone();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let rules = snapshots.borrow_and_update().quotas.clone();
        shared.quotas.retain_rules(&rules);
    }
}

/// Asks the bootstrap servers for the brokers until one answers: that makes the sidecar ready
/// and opens a listener for every broker before any client asks.
async fn probe_until_ready(shared: Arc<Shared>, ready: watch::Sender<bool>) {
    let mut logged = false;
    loop {
        for server in &shared.config.bootstrap {
            let probed = shared.connector.probe(server, shared.config.limits.max_frame_bytes).await.map(|probed| {
                let mut versions = probed.versions;
                crate::versions::intersect(&mut versions);
                *shared.broker_versions.write().unwrap_or_else(|p| p.into_inner()) = Some(versions);
                probed.metadata
            });
            match probed {
                Ok(Some(mut metadata)) => match rewrite::metadata(&mut metadata, &*shared.directory) {
                    Ok(_) => {
                        shared.topic_ids.learn(&metadata);
                        tracing::info!(%server, brokers = metadata.brokers.len(), "upstream cluster answered; ready");
                        let _ = ready.send(true);
                        return;
                    }
                    Err(err) => tracing::error!(%err, "cannot map the cluster's brokers"),
                },
                Ok(None) => {
                    tracing::info!(%server, "upstream cluster answered (it requires authentication, so broker listeners open as clients discover brokers); ready");
                    let _ = ready.send(true);
                    return;
                }
                Err(err) if !logged => {
                    tracing::info!(%err, "upstream not reachable yet; retrying every second");
                    logged = true;
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
