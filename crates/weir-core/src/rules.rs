//! The rules a sidecar in front of one broker (MQTT, AMQP) lives by — who may log in (the
//! credentials file) and what they may do (the policy) — loaded at start and followed for
//! changes into a `watch`, so that open connections judge by the new rules from their next
//! operation on and new ones log in against the new users.
//!
//! The protocol brings its policy words and the checks its patterns need; this module knows
//! no protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::policy::{AuthorizationConfig, Policy, Vocabulary};
use crate::reload::FileStamps;
use crate::sasl::Credentials;

/// Who may log in and what they may do, as one version.
pub struct Rules {
    pub credentials: Option<Credentials>,
    pub policy: Option<Arc<Policy>>,
}

/// The rules in force; a session keeps one and sees new versions as they come.
pub type CurrentRules = watch::Receiver<Arc<Rules>>;

/// Where the rules come from and how a protocol reads them.
#[derive(Clone)]
pub struct RuleSources {
    pub credentials: Option<PathBuf>,
    pub authorization: Option<AuthorizationConfig>,
    /// The sidecar's config file (named in errors of inline rules).
    pub origin: PathBuf,
    pub words: &'static Vocabulary,
    /// What the protocol checks beyond the words (MQTT: patterns are topic filters).
    pub check: fn(&Policy, &Path) -> Result<(), ConfigError>,
}

impl RuleSources {
    pub fn load(&self) -> Result<Rules, ConfigError> {
        let credentials = self.credentials.as_deref().map(Credentials::load).transpose()?;
        let policy = match &self.authorization {
            Some(authorization) => {
                let policy = authorization.load(&self.origin, self.words)?;
                (self.check)(&policy, authorization.policy.as_deref().unwrap_or(&self.origin))?;
                Some(Arc::new(policy))
            }
            None => None,
        };
        Ok(Rules { credentials, policy })
    }

    /// The files the rules are read from.
    fn files(&self) -> Vec<PathBuf> {
        let policy = self.authorization.as_ref().and_then(|a| a.policy.clone());
        self.credentials.iter().cloned().chain(policy).collect()
    }

    /// Loads the rules now, and returns them in a `watch` that [`RuleSources::follow`] keeps
    /// current.
    pub fn watch(&self) -> Result<(watch::Sender<Arc<Rules>>, CurrentRules), ConfigError> {
        Ok(watch::channel(Arc::new(self.load()?)))
    }

    /// Until `stop`: reloads the rules whenever their files change (checked every
    /// `authorization.reload_interval_ms`, 1 s by default). Rules that no longer load are
    /// logged and the last good ones kept.
    pub async fn follow(self, rules: watch::Sender<Arc<Rules>>, stop: CancellationToken) {
        let files = self.files();
        if files.is_empty() {
            return;
        }
        let every = Duration::from_millis(self.authorization.as_ref().map_or(1000, |a| a.reload_interval_ms).max(10));
        let mut stamps = FileStamps::new(files);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !stamps.changed() {
                continue;
            }
            // Reading files and checking patterns: off the runtime's workers.
            let sources = self.clone();
            match tokio::task::spawn_blocking(move || sources.load()).await {
                Ok(Ok(loaded)) => {
                    let rules_in_policy = loaded.policy.as_ref().map_or(0, |p| p.rule_count());
                    tracing::info!(rules = rules_in_policy, "credentials and policy reloaded");
                    rules.send_replace(Arc::new(loaded));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the changed credentials or policy do not load; the last good ones stay")
                }
                Err(error) => tracing::warn!(%error, "reloading the credentials and policy failed"),
            }
        }
    }
}
