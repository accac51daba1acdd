//! `weir`: the one binary of the mesh: the Kafka sidecar (`weir proxy`), the control plane
//! (`weir control`) and its CLI (`weir ctl`); the gateways join as subcommands.
//!
//! This crate only turns flags and files into configuration and reports errors to a person;
//! all behaviour lives in the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_core::telemetry::{LogConfig, LogFormat};
use weir_kafka_proxy::{Sidecar, SidecarConfig};

mod ctl;
mod gateway;
mod managed;

#[derive(Parser)]
#[command(name = "weir", version, about = "A service mesh for event-driven microservices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Kafka sidecar: clients bootstrap against it and never see a broker address.
    Proxy(ProxyArgs),
    /// Run the control plane: stores the mesh's resources and serves the API `weir ctl` uses.
    Control(ControlArgs),
    /// Talk to the control plane: apply, get, describe, delete, diff resources.
    Ctl(ctl::CtlArgs),
    /// Run a gateway into Kafka for clients without a Kafka client (MQTT, HTTP).
    Gateway(gateway::GatewayArgs),
}

#[derive(Args)]
struct ControlArgs {
    /// Where the mesh state and the API token live (created if missing).
    #[arg(long, default_value = "weir-control-data")]
    data_dir: PathBuf,
    /// Address of the API `weir ctl` talks to.
    #[arg(long, default_value = "127.0.0.1:15080")]
    api: SocketAddr,
    /// Address sidecars stream their configuration from and get certificates at (gRPC over TLS).
    #[arg(long, default_value = "127.0.0.1:15012")]
    listen: SocketAddr,
    /// The SPIFFE trust domain of workload identities (spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE).
    #[arg(long, default_value = "weir.local")]
    trust_domain: String,
    /// Lifetime of workload certificates, in seconds (sidecars renew at 70 % of it; at least 10).
    #[arg(long, default_value_t = 24 * 3600)]
    cert_ttl_seconds: u64,
    /// Names (DNS or IP) sidecars reach the control plane by, for its serving certificate;
    /// repeatable (default: localhost, 127.0.0.1 and the --listen IP).
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// An intermediate CA to sign with, instead of the root made in DATA_DIR/ca (with
    /// --ca-key and --ca-bundle).
    #[arg(long, requires_all = ["ca_key", "ca_bundle"])]
    ca_cert: Option<PathBuf>,
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// The roots peers trust (PEM), with --ca-cert.
    #[arg(long, requires = "ca_cert")]
    ca_bundle: Option<PathBuf>,
    /// Keep the mesh state in a compacted Kafka topic on these brokers (host:port,...) instead of
    /// the data directory, so several replicas share it (each with its own data directory
    /// holding the same CA and tokens).
    #[arg(long)]
    kafka_store: Option<String>,
    /// The Kafka store's topic.
    #[arg(long, default_value = "weir.mesh", requires = "kafka_store")]
    kafka_store_topic: String,
    /// A librdkafka property for the Kafka store's clients (TLS, SASL), KEY=VALUE; repeatable.
    #[arg(long = "kafka-store-property", requires = "kafka_store")]
    kafka_store_properties: Vec<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Log filter, RUST_LOG syntax (RUST_LOG itself wins when set).
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// Flags override the config file; without a file, --listen and --bootstrap (Kafka) or
/// --upstream (MQTT) are required.
#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// The protocol of the clients and the server behind: kafka (the default), mqtt (3.1.1
    /// and 5.0, in front of an MQTT broker) or amqp (0.9.1, in front of RabbitMQ). With
    /// --control the workload says; given, it must agree.
    #[arg(long)]
    protocol: Option<Protocol>,
    /// YAML config file (see README for every key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The MQTT or AMQP broker, host:port (with --protocol mqtt or amqp).
    #[arg(long)]
    upstream: Option<String>,
    /// Address clients bootstrap against, e.g. 127.0.0.1:19092.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The cluster's bootstrap servers, comma-separated host:port.
    #[arg(long, value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Admin HTTP address serving /metrics, /healthz and /readyz.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Host written into rewritten broker addresses (default: the listen IP).
    #[arg(long)]
    advertised_host: Option<String>,
    /// First per-broker port: broker N is served at BASE+N (default: listen port + 1).
    #[arg(long)]
    broker_port_base: Option<u16>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG syntax (RUST_LOG itself wins when set).
    #[arg(long)]
    log_level: Option<String>,
    /// Threads serving connections (default 1).
    #[arg(long)]
    workers: Option<usize>,
    /// Take the configuration from the control plane at this host:port (its sidecar listener)
    /// instead of a file; replicas comma-separated. Needs --workload, --join-token-file and
    /// --control-ca.
    #[arg(long, conflicts_with = "config")]
    control: Option<String>,
    /// The Workload resource this sidecar serves (with --control).
    #[arg(long, requires = "control")]
    workload: Option<String>,
    /// The control plane's join token: `DATA_DIR/join-token` of `weir control` (with --control).
    #[arg(long, requires = "control")]
    join_token_file: Option<PathBuf>,
    /// The roots that vouch for the control plane: `DATA_DIR/ca/bundle.pem` (with --control).
    #[arg(long, requires = "control")]
    control_ca: Option<PathBuf>,
    /// Where the last configuration applied is kept, to start from when the control plane is
    /// unreachable (with --control).
    #[arg(long, default_value = "weir-sidecar-state")]
    state_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Kafka,
    Mqtt,
    Amqp,
}

impl From<Protocol> for weir_mesh::Protocol {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Kafka => weir_mesh::Protocol::Kafka,
            Protocol::Mqtt => weir_mesh::Protocol::Mqtt,
            Protocol::Amqp => weir_mesh::Protocol::Amqp,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) if args.control.is_some() => managed::run(args),
        Command::Proxy(args) => match args.protocol.unwrap_or(Protocol::Kafka) {
            Protocol::Kafka => run_proxy(args),
            Protocol::Mqtt => run_mqtt_proxy(args),
            Protocol::Amqp => run_amqp_proxy(args),
        },
        Command::Control(args) => run_control(args),
        Command::Ctl(args) => return ctl::run(args),
        Command::Gateway(args) => gateway::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weir: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn proxy_config(args: ProxyArgs) -> anyhow::Result<SidecarConfig> {
    anyhow::ensure!(
        args.upstream.is_none(),
        "--upstream is for --protocol mqtt and amqp; a Kafka sidecar takes --bootstrap"
    );
    let origin = args.config.clone().unwrap_or_else(|| PathBuf::from("command line"));
    let mut config = match &args.config {
        Some(file) => SidecarConfig::from_file(file)?,
        None => {
            let listen = args.listen.context("--listen is required without --config")?;
            anyhow::ensure!(!args.bootstrap.is_empty(), "--bootstrap is required without --config");
            SidecarConfig::new(listen, args.bootstrap.clone())
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.bootstrap.is_empty() {
        config.bootstrap = args.bootstrap;
    }
    if args.admin.is_some() {
        config.admin = args.admin;
    }
    if args.advertised_host.is_some() {
        config.advertised_host = args.advertised_host;
    }
    if args.broker_port_base.is_some() {
        config.broker_ports.base = args.broker_port_base;
    }
    if let Some(format) = args.log_format {
        config.log.format = format;
    }
    if let Some(level) = args.log_level {
        config.log.level = level;
    }
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    config.validate(&origin)?;
    Ok(config)
}

/// The config of a sidecar in front of one broker (MQTT, AMQP): the file's, or `--listen`
/// and `--upstream`, with the flags given overriding it. `fields` lends what flags override.
fn broker_proxy_config<C>(
    args: &ProxyArgs,
    from_file: impl FnOnce(&std::path::Path) -> Result<C, weir_core::config::ConfigError>,
    new: impl FnOnce(SocketAddr, String) -> C,
    fields: impl FnOnce(&mut C) -> (&mut SocketAddr, &mut String, &mut Option<SocketAddr>, &mut LogConfig),
) -> anyhow::Result<(C, PathBuf)> {
    let name = match args.protocol {
        Some(Protocol::Mqtt) => "MQTT",
        _ => "AMQP",
    };
    anyhow::ensure!(args.bootstrap.is_empty(), "--bootstrap is Kafka's; the {name} sidecar's broker is --upstream");
    let origin = args.config.clone().unwrap_or_else(|| PathBuf::from("command line"));
    let mut config = match &args.config {
        Some(file) => from_file(file)?,
        None => {
            let listen = args.listen.context("--listen is required without --config")?;
            let upstream = args.upstream.clone().context("--upstream is required without --config")?;
            new(listen, upstream)
        }
    };
    let (listen, upstream, admin, log) = fields(&mut config);
    if let Some(flag) = args.listen {
        *listen = flag;
    }
    if let Some(flag) = &args.upstream {
        upstream.clone_from(flag);
    }
    if args.admin.is_some() {
        *admin = args.admin;
    }
    if let Some(format) = args.log_format {
        log.format = format;
    }
    if let Some(level) = &args.log_level {
        log.level.clone_from(level);
    }
    Ok((config, origin))
}

fn run_mqtt_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    use weir_mqtt_proxy::MqttConfig;
    let (config, origin) = broker_proxy_config(&args, MqttConfig::from_file, MqttConfig::new, |c| {
        (&mut c.listen, &mut c.upstream, &mut c.admin, &mut c.log)
    })?;
    config.validate(&origin)?;
    weir_core::telemetry::init(config.log.format, &config.log.level).map_err(anyhow::Error::msg)?;
    sidecar_runtime(args.workers.unwrap_or(1))?.block_on(async {
        let sidecar = weir_mqtt_proxy::MqttSidecar::bind(config, &origin).await?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        sidecar.run(stop).await;
        Ok(())
    })
}

fn run_amqp_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    use weir_amqp_proxy::AmqpConfig;
    let (config, origin) = broker_proxy_config(&args, AmqpConfig::from_file, AmqpConfig::new, |c| {
        (&mut c.listen, &mut c.upstream, &mut c.admin, &mut c.log)
    })?;
    config.validate(&origin)?;
    weir_core::telemetry::init(config.log.format, &config.log.level).map_err(anyhow::Error::msg)?;
    sidecar_runtime(args.workers.unwrap_or(1))?.block_on(async {
        let sidecar = weir_amqp_proxy::AmqpSidecar::bind(config, &origin).await?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        sidecar.run(stop).await;
        Ok(())
    })
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let config = proxy_config(args)?;
    weir_core::telemetry::init(config.log.format, &config.log.level).map_err(anyhow::Error::msg)?;
    sidecar_runtime(config.workers)?.block_on(async {
        let sidecar = Sidecar::bind(config).await?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        sidecar.run(stop).await;
        Ok(())
    })
}

/// The runtime a sidecar serves on, `workers` threads, with the descriptor limit raised first
/// (each client connection costs two descriptors).
pub(crate) fn sidecar_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    match weir_core::admission::raise_descriptor_limit() {
        Ok((before, after)) => tracing::info!(?before, ?after, "open descriptor limit (soft, hard)"),
        Err(err) => tracing::info!(%err, "cannot raise the open descriptor limit"),
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    weir_core::telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    // A stream per sidecar: thousands of descriptors for a large mesh.
    if let Err(err) = weir_core::admission::raise_descriptor_limit() {
        tracing::info!(%err, "cannot raise the open descriptor limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        use weir_control::api::{load_or_create_secret, JOIN_TOKEN_FILE, TOKEN_FILE};
        let store = weir_control::FileStore::open(&args.data_dir)?;
        let secret = |name| {
            load_or_create_secret(&args.data_dir, name)
                .with_context(|| format!("cannot read or create {name} in {}", args.data_dir.display()))
        };
        let (token, join_token) = (secret(TOKEN_FILE)?, secret(JOIN_TOKEN_FILE)?);
        // With the Kafka store the data directory still holds (and stays locked for) the CA and
        // the tokens: `_data_dir` keeps it until the end.
        let (plane, _data_dir) = match &args.kafka_store {
            None => (weir_control::ControlPlane::open(store)?, None),
            Some(bootstrap) => {
                let mut properties = Vec::new();
                for property in &args.kafka_store_properties {
                    let (key, value) = property
                        .split_once('=')
                        .with_context(|| format!("--kafka-store-property `{property}`: expected KEY=VALUE"))?;
                    properties.push((key.to_owned(), value.to_owned()));
                }
                let settings = weir_control::store::KafkaSettings {
                    bootstrap: bootstrap.clone(),
                    topic: args.kafka_store_topic.clone(),
                    properties,
                    replica: weir_core::control::default_sidecar_id(),
                };
                (weir_control::ControlPlane::open_kafka(settings).await?, Some(store))
            }
        };
        let plane = std::sync::Arc::new(plane);
        let sidecars = std::sync::Arc::<weir_control::sidecars::Sidecars>::default();
        let supplied = match (&args.ca_cert, &args.ca_key, &args.ca_bundle) {
            (Some(cert), Some(key), Some(bundle)) => {
                Some(weir_control::ca::SuppliedCa { cert: cert.clone(), key: key.clone(), bundle: bundle.clone() })
            }
            _ => None,
        };
        let ttl = std::time::Duration::from_secs(args.cert_ttl_seconds.max(10));
        let ca = weir_control::ca::MeshCa::load_or_create(&args.data_dir, supplied.as_ref(), &args.trust_domain, ttl)?;
        let mut names = args.server_names.clone();
        if names.is_empty() {
            names = vec!["localhost".into(), "127.0.0.1".into()];
            if !args.listen.ip().is_unspecified() && !names.contains(&args.listen.ip().to_string()) {
                names.push(args.listen.ip().to_string());
            }
        }
        let api = tokio::net::TcpListener::bind(args.api)
            .await
            .with_context(|| format!("cannot listen on {} for the API", args.api))?;
        let stop = CancellationToken::new();
        tokio::spawn(weir_core::shutdown::cancel_on_signal(stop.clone()));
        let topology = std::sync::Arc::<weir_control::topology::Topology>::default();
        let ca = std::sync::Arc::new(ca);
        let mesh = weir_control::mesh::MeshService::new(
            plane.clone(),
            sidecars.clone(),
            topology.clone(),
            ca.clone(),
            join_token,
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} for sidecars", args.listen))?;
        let streams = weir_control::mesh::serve(listener, &names, mesh, stop.clone())
            .with_context(|| format!("cannot serve sidecars on {}", args.listen))?;
        tracing::info!(
            api = %args.api,
            sidecars = %args.listen,
            token_file = %args.data_dir.join(TOKEN_FILE).display(),
            join_token_file = %args.data_dir.join(JOIN_TOKEN_FILE).display(),
            trust_domain = %args.trust_domain,
            topology_page = %format!("http://{}/ui#token=<ctl-token>", args.api),
            "control plane ready"
        );
        let rotation = match args.kafka_store {
            Some(_) => weir_control::api::Rotation::SharedStore,
            None => weir_control::api::Rotation::Allowed,
        };
        let observed = weir_control::api::Observed { sidecars, topology, ca, rotation };
        let api = tokio::spawn(weir_control::api::serve(api, plane, observed, token, stop.clone()));
        streams.await.context("the sidecar stream server failed")?;
        let _ = api.await;
        Ok(())
    })
}
