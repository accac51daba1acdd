//! The MQTT sidecar's listener: accepts clients and serves each (see `session`).

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_core::config::ConfigError;
use weir_core::sasl::Credentials;

use crate::authz::{check_policy, MQTT};
use crate::config::MqttConfig;
use crate::metrics::MqttMetrics;
use crate::session::{serve, Shared};
use prometheus_client::registry::Registry;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttSidecarError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: std::net::SocketAddr, error: std::io::Error },
}

pub struct MqttSidecar {
    shared: Arc<Shared>,
    listener: TcpListener,
    admin: Option<(TcpListener, Arc<Registry>)>,
}

impl MqttSidecar {
    /// Reads the credentials and the policy, and binds the listener.
    pub async fn bind(config: MqttConfig, origin: &Path) -> Result<Self, MqttSidecarError> {
        let credentials = config.credentials.as_deref().map(Credentials::load).transpose()?;
        let policy = match &config.authorization {
            Some(authorization) => {
                let policy = authorization.load(origin, &MQTT)?;
                check_policy(&policy, authorization.policy.as_deref().unwrap_or(origin))?;
                Some(Arc::new(policy))
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|error| MqttSidecarError::Bind { addr: config.listen, error })?;
        let admin = match config.admin {
            Some(addr) => {
                Some(weir_core::admin::bind(addr).await.map_err(|error| MqttSidecarError::Bind { addr, error })?)
            }
            None => None,
        };
        let mut registry = Registry::default();
        let metrics = MqttMetrics::new(&mut registry, config.limits.max_metric_topics);
        let shared = Arc::new(Shared { config, credentials, policy, metrics });
        Ok(MqttSidecar { shared, listener, admin: admin.map(|listener| (listener, Arc::new(registry))) })
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
        tracing::info!(
            listen = %self.shared.config.listen,
            upstream = %self.shared.config.upstream,
            authenticated = self.shared.credentials.is_some(),
            authorized = self.shared.policy.is_some(),
            "MQTT sidecar ready"
        );
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((client, peer)) => {
                    self.shared.metrics.connection();
                    tokio::spawn(serve(self.shared.clone(), client, peer));
                }
                Err(error) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "accepting an MQTT connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
