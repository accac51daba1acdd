//! The rules a sidecar in front of one broker (MQTT, AMQP) lives by — how clients prove who
//! they are (TLS and its client certificates), who may log in (the credentials file), what
//! they may do (the policy), and how the sidecar reaches the broker (TLS towards it) — loaded at start and followed for changes into a `watch`, so that
//! open connections judge by the new rules from their next operation on and new ones shake
//! hands with the new certificate and log in against the new users.
//!
//! A sidecar managed by the control plane gets new sources with each snapshot
//! ([`RuleKeeper::replace`]); its credentials file is then followed as a local one is.
//!
//! The protocol brings its policy words and the checks its patterns need; this module knows
//! no protocol.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::policy::{AuthorizationConfig, Policy, Vocabulary};
use crate::reload::FileStamps;
use crate::sasl::Credentials;
use crate::tls::{TlsListenerConfig, TlsOriginConfig, TlsOriginator, TlsTerminator};

/// How clients prove who they are, who may log in and what they may do, as one version.
pub struct Rules {
    /// TLS towards clients, from its PEM files; connections keep the one they shook hands with.
    pub tls: Option<Arc<TlsTerminator>>,
    /// TLS towards the broker, for the next broker connection.
    pub upstream_tls: Option<Arc<TlsOriginator>>,
    pub credentials: Option<Credentials>,
    /// Who a client is when there are no credentials to check (and no certificate names it).
    pub fixed_principal: Option<String>,
    pub policy: Option<Arc<Policy>>,
}

/// What a protocol checks of a policy beyond its words (MQTT: patterns are topic filters);
/// `origin` names the policy in errors.
pub type PolicyCheck = fn(&Policy, &Path) -> Result<(), ConfigError>;

/// The rules in force; a session keeps one and sees new versions as they come.
pub type CurrentRules = watch::Receiver<Arc<Rules>>;

/// Where the rules come from and how a protocol reads them.
#[derive(Clone)]
pub struct RuleSources {
    pub tls: Option<TlsListenerConfig>,
    pub upstream_tls: Option<TlsOriginConfig>,
    pub credentials: Option<PathBuf>,
    pub fixed_principal: Option<String>,
    pub authorization: Option<AuthorizationConfig>,
    /// The sidecar's config file (named in errors of inline rules).
    pub origin: PathBuf,
    pub words: &'static Vocabulary,
    /// What the protocol checks beyond the words (MQTT: patterns are topic filters).
    pub check: PolicyCheck,
}

impl RuleSources {
    pub fn load(&self) -> Result<Rules, ConfigError> {
        let tls = self
            .tls
            .clone()
            .map(TlsTerminator::new)
            .transpose()
            .map_err(|err| crate::config::invalid(&self.origin, "tls", err.to_string()))?;
        let upstream_tls = self
            .upstream_tls
            .clone()
            .map(TlsOriginator::new)
            .transpose()
            .map_err(|err| crate::config::invalid(&self.origin, "upstream_tls", err.to_string()))?;
        let credentials = self.credentials.as_deref().map(Credentials::load).transpose()?;
        let policy = match &self.authorization {
            Some(authorization) => {
                let policy = authorization.load(&self.origin, self.words)?;
                (self.check)(&policy, authorization.policy.as_deref().unwrap_or(&self.origin))?;
                Some(Arc::new(policy))
            }
            None => None,
        };
        Ok(Rules { tls, upstream_tls, credentials, fixed_principal: self.fixed_principal.clone(), policy })
    }

    /// The files the rules are read from.
    fn files(&self) -> Vec<PathBuf> {
        let policy = self.authorization.as_ref().and_then(|a| a.policy.clone());
        let tls = self.tls.iter().flat_map(|t| [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]);
        let upstream_tls = self.upstream_tls.iter().flat_map(|t| [Some(&t.ca), t.cert.as_ref(), t.key.as_ref()]);
        let tls = tls.chain(upstream_tls).flatten().cloned();
        tls.chain(self.credentials.iter().cloned()).chain(policy).collect()
    }

    fn reload_every(&self) -> Duration {
        Duration::from_millis(self.authorization.as_ref().map_or(1000, |a| a.reload_interval_ms).max(10))
    }
}

/// Keeps the rules current: loaded at start, reloaded when their files change, replaced when
/// the control plane sends new sources. Sessions hold the [`CurrentRules`] it publishes to.
pub struct RuleKeeper {
    /// The sources in force, and how many times they were replaced (so that a reload of
    /// files begun before a replacement cannot undo it).
    sources: Mutex<(u64, RuleSources)>,
    rules: watch::Sender<Arc<Rules>>,
}

impl RuleKeeper {
    /// Loads the rules now.
    pub fn load(sources: RuleSources) -> Result<Arc<Self>, ConfigError> {
        let (rules, _) = watch::channel(Arc::new(sources.load()?));
        Ok(Arc::new(Self { sources: Mutex::new((0, sources)), rules }))
    }

    pub fn current(&self) -> CurrentRules {
        self.rules.subscribe()
    }

    /// Loads `sources` and puts them in force, and follows their files from now on; rules
    /// that do not load change nothing. Reads files: call it off the runtime's workers.
    pub fn replace(&self, sources: RuleSources) -> Result<(), ConfigError> {
        let loaded = sources.load()?;
        let mut current = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        *current = (current.0 + 1, sources);
        self.rules.send_replace(Arc::new(loaded));
        Ok(())
    }

    fn sources(&self) -> (u64, RuleSources) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads the sources of `generation` again; nothing if they were replaced meanwhile.
    fn reload(&self, (generation, sources): (u64, RuleSources)) -> Result<Option<usize>, ConfigError> {
        let loaded = sources.load()?;
        let current = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != generation {
            return Ok(None);
        }
        let rules_in_policy = loaded.policy.as_ref().map_or(0, |p| p.rule_count());
        self.rules.send_replace(Arc::new(loaded));
        Ok(Some(rules_in_policy))
    }

    /// Until `stop`: reloads the rules whenever their files change (checked every
    /// `authorization.reload_interval_ms`, 1 s by default). Rules that no longer load are
    /// logged and the last good ones kept.
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let (mut generation, first) = self.sources();
        let mut stamps = FileStamps::new(first.files());
        loop {
            let (now, sources) = self.sources();
            if now != generation {
                // Replaced (and loaded) by the control plane: follow the new files.
                (generation, stamps) = (now, FileStamps::new(sources.files()));
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(sources.reload_every()) => {}
            }
            if !stamps.changed() {
                continue;
            }
            // Reading files and checking patterns: off the runtime's workers.
            let keeper = self.clone();
            let sources = self.sources();
            match tokio::task::spawn_blocking(move || keeper.reload(sources)).await {
                Ok(Ok(Some(rules))) => tracing::info!(rules, "TLS files, credentials and policy reloaded"),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the changed TLS files, credentials or policy do not load; the last good ones stay")
                }
                Err(error) => tracing::warn!(%error, "reloading the TLS files, credentials and policy failed"),
            }
        }
    }
}
