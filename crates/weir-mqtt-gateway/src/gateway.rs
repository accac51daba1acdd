//! The MQTT gateway: weir-core's front (rules, TLS, audit, listeners, accept loop) with the
//! Kafka policy's words, MQTT's metrics and the gateway's session, and the Kafka producer and
//! live tail every connection shares.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_core::config::ConfigError;
use weir_core::front::{Front, FrontConfig, FrontError};
use weir_gateway::store::KeyedStore;
use weir_gateway::{KafkaProducer, Tail};
use weir_mqtt_proxy::metrics::MqttMetrics;

use crate::config::MqttGatewayConfig;
use crate::session::{serve, Clients, Shared, LISTENER};
use crate::sessions::Sessions;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttGatewayError {
    #[error(transparent)]
    Front(#[from] FrontError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka client: {0}")]
    Kafka(#[from] weir_gateway::KafkaError),
    #[error(transparent)]
    Sessions(#[from] weir_gateway::store::StoreError),
}

pub struct MqttGateway {
    front: Front,
    shared: Arc<Shared>,
    /// Stops the tail when the gateway stops.
    tail_stop: CancellationToken,
}

impl MqttGateway {
    /// Reads the rules and mappings, creates the Kafka clients, opens the audit log and binds
    /// the listeners.
    pub async fn bind(config: MqttGatewayConfig, origin: &Path) -> Result<Self, MqttGatewayError> {
        config.validate(origin)?;
        let mappings = Arc::new(config.mappings(origin)?);
        let rules = config.rule_sources(origin);
        let mut front = Front::bind(FrontConfig {
            name: LISTENER,
            listen: config.listen,
            admin: config.admin,
            audit: config.audit.as_ref(),
            rules,
            max_connections: config.limits.max_connections,
            max_connections_per_source: config.limits.max_connections_per_source,
        })
        .await?;
        let metrics = MqttMetrics::new(&mut front.registry, config.limits.max_metric_topics);
        let producer = KafkaProducer::new(&config.kafka)?;
        let tail_stop = CancellationToken::new();
        let tail = Tail::start(&config.kafka, tail_stop.clone())?;
        let store = KeyedStore::open(
            &config.kafka,
            &config.sessions.topic,
            config.sessions.partitions,
            producer.clone(),
            tail_stop.clone(),
        )
        .await?;
        let sessions = Sessions { store, max_expiry_secs: config.sessions.max_expiry_secs };
        let retained = KeyedStore::open(
            &config.kafka,
            &config.retained.topic,
            config.retained.partitions,
            producer.clone(),
            tail_stop.clone(),
        )
        .await?;
        let shared = Arc::new(Shared {
            rules: front.rules.clone(),
            audit: front.audit.clone(),
            metrics,
            producer,
            tail,
            mappings,
            clients: Clients::default(),
            sessions,
            retained,
            config,
        });
        Ok(MqttGateway { front, shared, tail_stop })
    }

    /// What has flowed through it, for the mesh's topology.
    pub fn flows(&self) -> weir_core::control::FlowSource {
        self.shared.metrics.flows()
    }

    /// The rules in force: replaced when the control plane sends new ones.
    pub fn rule_keeper(&self) -> Arc<weir_core::rules::RuleKeeper> {
        self.front.rule_keeper.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.front.local_addr()
    }

    /// Serves clients until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let (config, current) = (&self.shared.config, self.shared.rules.borrow().clone());
        tracing::info!(
            listen = %config.listen,
            kafka = %config.kafka.bootstrap,
            mappings = config.mappings.len(),
            tls = current.tls.is_some(),
            authenticated = current.credentials.is_some(),
            authorized = current.policy.is_some(),
            "MQTT gateway ready"
        );
        let shared = self.shared.clone();
        self.front.run(stop, move |client, peer| serve(shared.clone(), client, peer)).await;
        self.tail_stop.cancel();
    }
}
