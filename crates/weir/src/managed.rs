//! `weir proxy --control`: a sidecar whose configuration comes from the control plane.
//!
//! It first needs one configuration to start from: the control plane's (waited for a few
//! seconds), else the last one it applied (kept on disk), else it keeps asking. Then it serves,
//! and follows the control plane for every later snapshot (applied live, ACKed; or NACKed).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_core::control::{self, Applied, Backoff, ControlSettings, IdentityWatch};
use weir_kafka_proxy::managed::{read_config, use_workload_certificate, Managed, WorkloadCertificate};
use weir_kafka_proxy::Sidecar;

use crate::ProxyArgs;

/// How long a start waits for the control plane before using the last applied configuration.
const WAIT_FOR_CONTROL: Duration = Duration::from_secs(5);

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

    // The runtime's size is part of the configuration, so the first one is fetched before it.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(first_configuration(&settings, &identity));
    let (mut config, started_with) = read_config(first.version, &first.config_json).map_err(anyhow::Error::msg)?;
    let (cert, key) = control::identity_pem_files(&settings.state_dir, &settings.workload);
    let certificate = WorkloadCertificate { cert, key };
    use_workload_certificate(&mut config, &certificate);
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    let mut settings = settings;
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

/// The configuration to start from: the control plane's, else the last applied one.
async fn first_configuration(settings: &ControlSettings, identity: &IdentityWatch) -> Applied {
    let mut cached = control::last_applied(&settings.state_dir, &settings.workload);
    let usable = |version: u64, json: &str| read_config(version, json).map(|_| ());
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
