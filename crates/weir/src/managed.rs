//! `weir proxy --control`: a sidecar whose configuration comes from the control plane.
//!
//! It first needs one configuration to start from: the control plane's (waited for a few
//! seconds), else the last one it applied (kept on disk), else it keeps asking. That
//! configuration says the workload's protocol (a Kafka one has no `protocol` key), and so which
//! sidecar serves. Then it serves, and follows the control plane for every later snapshot
//! (applied live, ACKed; or NACKed).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_core::control::{self, Applied, Backoff, ControlSettings, FlowSource, IdentityWatch, Update};
use weir_core::rules::{RuleKeeper, RuleSources};
use weir_kafka_proxy::managed::{read_config, use_workload_certificate, Managed, WorkloadCertificate};
use weir_kafka_proxy::Sidecar;
use weir_mesh::Protocol;

use crate::ProxyArgs;

/// How long a start waits for the control plane before using the last applied configuration.
const WAIT_FOR_CONTROL: Duration = Duration::from_secs(5);

/// What a snapshot changes in a running MQTT or AMQP sidecar or gateway: how clients prove who
/// they are (TLS), who may log in and what they may do, and TLS towards the broker (for new
/// connections). The rest (where it listens, the broker, limits, audit, a gateway's mappings
/// and bearer token keys) waits for a restart.
const BROKER_LIVE: [&str; 5] = ["tls", "upstream_tls", "credentials", "fixed_principal", "authorization"];

pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let workload = args.workload.clone().context("--control needs --workload NAME")?;
    let token_file = args.join_token_file.clone().context("--control needs --join-token-file FILE")?;
    let join_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read the join token {}", token_file.display()))?;
    let ca_file =
        args.control_ca.clone().context("--control needs --control-ca FILE (the control plane's ca/bundle.pem)")?;
    let ca_bundle_pem =
        std::fs::read_to_string(&ca_file).with_context(|| format!("cannot read {}", ca_file.display()))?;
    let format = args.log_format.unwrap_or_default();
    let level = args.log_level.clone().unwrap_or_else(|| "info".into());
    weir_core::telemetry::init(format, &level).map_err(anyhow::Error::msg)?;
    let addresses: Vec<String> = args.control.iter().flat_map(|c| c.split(',')).map(|a| a.trim().to_owned()).collect();
    let settings =
        ControlSettings::new(addresses, workload, join_token.trim().to_owned(), args.state_dir.clone(), ca_bundle_pem);
    let identity = Arc::new(IdentityWatch::new(None));
    let asked = args.protocol.map(Protocol::from);

    // The runtime's size is part of the configuration, so the first one is fetched before it.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(first_configuration(&settings, &identity, asked));
    let (protocol, config) = read_snapshot(first.version, &first.config_json, asked).map_err(anyhow::Error::msg)?;
    match protocol {
        Protocol::Kafka => run_kafka(args, settings, identity, first),
        // A gateway's runtime serves its Kafka client's callbacks beside its own clients.
        gateway @ (Protocol::MqttGateway | Protocol::HttpGateway) => {
            run_broker(gateway, args.workers.unwrap_or(2), settings, identity, first.version, config)
        }
        broker @ (Protocol::Mqtt | Protocol::Amqp) => {
            run_broker(broker, args.workers.unwrap_or(1), settings, identity, first.version, config)
        }
    }
}

/// A snapshot's protocol and config (without `protocol`), read as that protocol's sidecar
/// reads its file; `asked`: the protocol given on the command line, if any.
fn read_snapshot(version: u64, config_json: &str, asked: Option<Protocol>) -> Result<(Protocol, Value), String> {
    let value: Value = serde_json::from_str(config_json).map_err(|e| format!("the snapshot is not JSON: {e}"))?;
    let (protocol, config) = Protocol::split(value)?;
    if let Some(asked) = asked.filter(|asked| *asked != protocol) {
        return Err(format!("the workload's protocol is {protocol}; this sidecar was started with --protocol {asked}"));
    }
    protocol.check_config(config.clone(), &origin(version)).map_err(|e| e.to_string())?;
    Ok((protocol, config))
}

fn origin(version: u64) -> PathBuf {
    PathBuf::from(format!("control plane snapshot v{version}"))
}

fn run_kafka(
    args: ProxyArgs,
    mut settings: ControlSettings,
    identity: Arc<IdentityWatch>,
    first: Applied,
) -> anyhow::Result<()> {
    let (mut config, started_with) = read_config(first.version, &first.config_json).map_err(anyhow::Error::msg)?;
    let (cert, key) = control::identity_pem_files(&settings.state_dir, &settings.workload);
    let certificate = WorkloadCertificate { cert, key };
    use_workload_certificate(&mut config, &certificate);
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    settings.proxy_address = config.listen.to_string();
    crate::sidecar_runtime(config.workers)?.block_on(async {
        let (sidecar, publisher) = Sidecar::bind(config).await?.managed();
        let flows = sidecar.flows();
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        let (updates, received) = mpsc::channel(1);
        let managed = Managed::new(started_with, publisher).with_workload_certificate(certificate);
        tokio::spawn(managed.run(received, identity.subscribe(), (first.version, first.config_json.clone())));
        tokio::spawn(control::follow(settings, identity, first.version, updates, Some(flows), stop.clone()));
        sidecar.run(stop).await;
        Ok(())
    })
}

/// A sidecar serving until stopped.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An MQTT or AMQP sidecar, or a gateway: started from the first config; each later snapshot
/// puts its TLS, credentials, fixed principal and policy in force (the policy for open
/// connections too).
fn run_broker(
    protocol: Protocol,
    workers: usize,
    mut settings: ControlSettings,
    identity: Arc<IdentityWatch>,
    version: u64,
    started_with: Value,
) -> anyhow::Result<()> {
    let origin = origin(version);
    let (cert, key) = control::identity_pem_files(&settings.state_dir, &settings.workload);
    let certificate = WorkloadCertificate { cert, key };
    crate::sidecar_runtime(workers)?.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        let (rules, flows, serve): (Arc<RuleKeeper>, FlowSource, Serving) = match protocol {
            Protocol::Mqtt => {
                let mut config = weir_mqtt_proxy::MqttConfig::from_json(started_with.clone(), &origin)?;
                with_workload_certificate(config.upstream_tls.as_mut(), &certificate);
                settings.proxy_address = config.listen.to_string();
                let sidecar = weir_mqtt_proxy::MqttSidecar::bind(config, &origin).await?;
                (sidecar.rule_keeper(), sidecar.flows(), Box::pin(sidecar.run(stop.clone())))
            }
            Protocol::Amqp => {
                let mut config = weir_amqp_proxy::AmqpConfig::from_json(started_with.clone(), &origin)?;
                with_workload_certificate(config.upstream_tls.as_mut(), &certificate);
                settings.proxy_address = config.listen.to_string();
                let sidecar = weir_amqp_proxy::AmqpSidecar::bind(config, &origin).await?;
                (sidecar.rule_keeper(), sidecar.flows(), Box::pin(sidecar.run(stop.clone())))
            }
            Protocol::MqttGateway => {
                let config = weir_mqtt_gateway::MqttGatewayConfig::from_json(started_with.clone(), &origin)?;
                settings.proxy_address = config.listen.to_string();
                let gateway = weir_mqtt_gateway::MqttGateway::bind(config, &origin).await?;
                (gateway.rule_keeper(), gateway.flows(), Box::pin(gateway.run(stop.clone())))
            }
            Protocol::HttpGateway => {
                let config = weir_http_gateway::HttpGatewayConfig::from_json(started_with.clone(), &origin)?;
                settings.proxy_address = config.listen.to_string();
                let gateway = weir_http_gateway::HttpGateway::bind(config, &origin).await?;
                (gateway.rule_keeper(), gateway.flows(), Box::pin(gateway.run(stop.clone())))
            }
            Protocol::Kafka => anyhow::bail!("a Kafka workload is served by run_kafka"),
        };
        let (updates, received) = mpsc::channel(1);
        tokio::spawn(apply_broker_snapshots(protocol, rules, started_with, certificate, received));
        tokio::spawn(control::follow(settings, identity, version, updates, Some(flows), stop.clone()));
        serve.await;
        anyhow::Ok(())
    })
}

/// Applies each snapshot to an MQTT or AMQP sidecar until the control client stops.
async fn apply_broker_snapshots(
    protocol: Protocol,
    rules: Arc<RuleKeeper>,
    started_with: Value,
    certificate: WorkloadCertificate,
    mut updates: mpsc::Receiver<Update>,
) {
    while let Some(update) = updates.recv().await {
        let answer = match broker_rules(protocol, update.version, &update.config_json, &certificate) {
            Ok((sources, config)) => {
                let rules = rules.clone();
                // Reads the TLS and credentials files, checks the policy's patterns: off the workers.
                match tokio::task::spawn_blocking(move || rules.replace(sources)).await {
                    Ok(Ok(())) => Ok(control::restart_only_changes(&started_with, &config, &BROKER_LIVE)),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(err) => Err(format!("applying the snapshot failed: {err}")),
                }
            }
            Err(err) => Err(err),
        };
        match &answer {
            Ok(pending_restart) => {
                tracing::info!(
                    version = update.version,
                    ?pending_restart,
                    "configuration from the control plane applied"
                )
            }
            Err(err) => tracing::warn!(version = update.version, %err, "configuration from the control plane refused"),
        }
        let _ = update.reply.send(answer);
    }
}

/// TLS towards the broker presents the workload certificate's files when it asks for them
/// (renewals rewrite the files, which the rules follow).
fn with_workload_certificate(tls: Option<&mut weir_core::tls::TlsOriginConfig>, files: &WorkloadCertificate) {
    if let Some(tls) = tls {
        tls.use_workload_certificate(&files.cert, &files.key);
    }
}

/// The rules a snapshot puts in force, and its config (to compare with the running one).
fn broker_rules(
    protocol: Protocol,
    version: u64,
    config_json: &str,
    certificate: &WorkloadCertificate,
) -> Result<(RuleSources, Value), String> {
    let (now, config) = read_snapshot(version, config_json, None)?;
    if now != protocol {
        return Err(format!(
            "the workload's protocol is now {now}; this {protocol} sidecar needs a restart to serve it"
        ));
    }
    let origin = origin(version);
    let sources = match protocol {
        Protocol::Mqtt => {
            let mut parsed =
                weir_mqtt_proxy::MqttConfig::from_json(config.clone(), &origin).map_err(|e| e.to_string())?;
            with_workload_certificate(parsed.upstream_tls.as_mut(), certificate);
            weir_mqtt_proxy::sidecar::rule_sources(&parsed, &origin)
        }
        Protocol::Amqp => {
            let mut parsed =
                weir_amqp_proxy::AmqpConfig::from_json(config.clone(), &origin).map_err(|e| e.to_string())?;
            with_workload_certificate(parsed.upstream_tls.as_mut(), certificate);
            weir_amqp_proxy::sidecar::rule_sources(&parsed, &origin)
        }
        Protocol::MqttGateway => weir_mqtt_gateway::MqttGatewayConfig::from_json(config.clone(), &origin)
            .map_err(|e| e.to_string())?
            .rule_sources(&origin),
        Protocol::HttpGateway => weir_http_gateway::HttpGatewayConfig::from_json(config.clone(), &origin)
            .map_err(|e| e.to_string())?
            .rule_sources(&origin),
        Protocol::Kafka => return Err("a Kafka workload's snapshots are applied by weir-kafka-proxy".into()),
    };
    Ok((sources, config))
}

/// The configuration to start from: the control plane's, else the last one applied.
async fn first_configuration(settings: &ControlSettings, identity: &IdentityWatch, asked: Option<Protocol>) -> Applied {
    let mut cached = control::last_applied(&settings.state_dir, &settings.workload);
    let usable = |version: u64, json: &str| read_snapshot(version, json, asked).map(drop);
    let mut backoff = Backoff::for_this_process();
    loop {
        let reason = match tokio::time::timeout(
            WAIT_FOR_CONTROL,
            control::first_snapshot(settings, identity, 0, usable),
        )
        .await
        {
            Ok(Ok(first)) => return first,
            Ok(Err(reason)) => reason,
            Err(_) => format!("no answer within {WAIT_FOR_CONTROL:?}"),
        };
        if let Some(applied) = cached.take().filter(|a| usable(a.version, &a.config_json).is_ok()) {
            tracing::warn!(
                control = %settings.address(),
                %reason,
                version = applied.version,
                "no configuration from the control plane; starting from the last one applied"
            );
            return applied;
        }
        let wait = backoff.wait();
        settings.next_address();
        tracing::warn!(control = %settings.address(), workload = %settings.workload, %reason, retry_in = ?wait, "waiting for a configuration from the control plane");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> WorkloadCertificate {
        WorkloadCertificate { cert: "/state/w.cert.pem".into(), key: "/state/w.key.pem".into() }
    }

    #[test]
    fn a_snapshot_says_its_protocol_and_a_sidecar_started_for_another_refuses_it() {
        let mqtt = r#"{"protocol": "mqtt", "listen": "127.0.0.1:11884", "upstream": "127.0.0.1:1883"}"#;
        let (protocol, config) = read_snapshot(3, mqtt, None).unwrap();
        assert_eq!(protocol, Protocol::Mqtt);
        assert!(config.get("protocol").is_none(), "{config}");
        let err = read_snapshot(3, mqtt, Some(Protocol::Amqp)).unwrap_err();
        assert_eq!(err, "the workload's protocol is mqtt; this sidecar was started with --protocol amqp");
        let kafka = r#"{"listen": "127.0.0.1:19092", "bootstrap": ["127.0.0.1:9092"]}"#;
        assert_eq!(read_snapshot(4, kafka, None).unwrap().0, Protocol::Kafka);
        let err = read_snapshot(5, r#"{"protocol": "mqtt", "listen": "127.0.0.1:1"}"#, None).unwrap_err();
        assert!(err.contains("control plane snapshot v5") && err.contains("upstream"), "{err}");
    }

    #[test]
    fn a_broker_snapshot_gives_the_rules_in_force_and_a_change_of_protocol_needs_a_restart() {
        let policy = r#"{"protocol": "amqp", "listen": "127.0.0.1:15680", "upstream": "127.0.0.1:5672", "fixed_principal": "billing", "authorization": {"rules": [{"effect": "allow", "principals": ["billing"], "resources": ["queue:invoices"], "operations": ["consume"]}]}}"#;
        let (sources, config) = broker_rules(Protocol::Amqp, 7, policy, &files()).unwrap();
        let rules = sources.load().unwrap();
        assert_eq!(rules.fixed_principal.as_deref(), Some("billing"));
        assert_eq!(rules.policy.map(|p| p.rule_count()), Some(1));
        let started = serde_json::json!({"listen": "127.0.0.1:15680", "upstream": "127.0.0.1:5672"});
        assert!(control::restart_only_changes(&started, &config, &BROKER_LIVE).is_empty());
        let moved = serde_json::json!({"listen": "127.0.0.1:15681", "upstream": "127.0.0.1:5672"});
        assert_eq!(control::restart_only_changes(&started, &moved, &BROKER_LIVE), ["listen"]);
        // TLS towards the broker with the workload's certificate: its files, renewed in place.
        let tls = r#"{"protocol": "mqtt", "listen": "127.0.0.1:1", "upstream": "b:1", "upstream_tls": {"ca": "/ca.pem", "workload_identity": true}}"#;
        let tls = broker_rules(Protocol::Mqtt, 10, tls, &files()).unwrap().0.upstream_tls.unwrap();
        assert_eq!((tls.cert, tls.key, tls.workload_identity), (Some(files().cert), Some(files().key), false));
        let err = broker_rules(Protocol::Mqtt, 8, policy, &files()).map(drop).unwrap_err();
        assert!(err.contains("the workload's protocol is now amqp; this mqtt sidecar needs a restart"), "{err}");
        let bad = policy.replace("consume", "eat");
        let (sources, _) = broker_rules(Protocol::Amqp, 9, &bad, &files()).unwrap();
        let err = sources.load().map(drop).unwrap_err().to_string();
        assert!(err.contains("control plane snapshot v9") && err.contains("unknown operation `eat`"), "{err}");
    }
}
