//! `weir gateway mqtt|http`: the gateways that bring clients without a Kafka client onto Kafka.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_core::telemetry::LogFormat;

#[derive(Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    kind: GatewayKind,
}

#[derive(Subcommand)]
enum GatewayKind {
    /// MQTT 3.1.1 and 5.0 clients publish to and subscribe to Kafka topics (docs/gateways.md).
    Mqtt(GatewayFlags),
    /// HTTP clients produce to Kafka topics, the Strimzi bridge's API (docs/gateways.md).
    Http(GatewayFlags),
}

#[derive(Args)]
struct GatewayFlags {
    /// The gateway's config file (docs/gateways.md).
    #[arg(long)]
    config: PathBuf,
    /// Overrides the file's `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides the file's `admin` (/metrics, /healthz, /readyz).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG syntax (RUST_LOG itself wins when set).
    #[arg(long)]
    log_level: Option<String>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    match args.kind {
        GatewayKind::Mqtt(args) => run_mqtt(args),
        GatewayKind::Http(args) => run_http(args),
    }
}

fn run_http(args: GatewayFlags) -> anyhow::Result<()> {
    use weir_http_gateway::{HttpGateway, HttpGatewayConfig};
    let mut config = HttpGatewayConfig::from_file(&args.config)?;
    args.apply(&mut config.listen, &mut config.admin, &mut config.log);
    weir_core::telemetry::init(config.log.format, &config.log.level).map_err(anyhow::Error::msg)?;
    crate::sidecar_runtime(args.workers)?.block_on(async {
        let gateway = HttpGateway::bind(config, &args.config).await?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        gateway.run(stop).await;
        Ok(())
    })
}

impl GatewayFlags {
    /// The flags given, over the file's settings.
    fn apply(
        &self,
        listen: &mut SocketAddr,
        admin: &mut Option<SocketAddr>,
        log: &mut weir_core::telemetry::LogConfig,
    ) {
        if let Some(flag) = self.listen {
            *listen = flag;
        }
        if self.admin.is_some() {
            *admin = self.admin;
        }
        if let Some(format) = self.log_format {
            log.format = format;
        }
        if let Some(level) = &self.log_level {
            log.level.clone_from(level);
        }
    }
}

fn run_mqtt(args: GatewayFlags) -> anyhow::Result<()> {
    use weir_mqtt_gateway::{MqttGateway, MqttGatewayConfig};
    let mut config = MqttGatewayConfig::from_file(&args.config)?;
    args.apply(&mut config.listen, &mut config.admin, &mut config.log);
    weir_core::telemetry::init(config.log.format, &config.log.level).map_err(anyhow::Error::msg)?;
    crate::sidecar_runtime(args.workers)?.block_on(async {
        let gateway = MqttGateway::bind(config, &args.config).await?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        gateway.run(stop).await;
        Ok(())
    })
}
