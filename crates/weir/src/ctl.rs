//! `weir ctl`: flags to calls of `weir_control::ctl`, answers to stdout, refusals to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use weir_control::client::ApiClient;
use weir_control::ctl::{self as commands, Output};
use weir_mesh::Kind;

#[derive(Args)]
pub struct CtlArgs {
    /// The control plane's API, host:port.
    #[arg(long, env = "WEIR_CONTROL", default_value = "127.0.0.1:15080", global = true)]
    server: String,
    /// The API token (see --token-file).
    #[arg(long, env = "WEIR_CTL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the API token: the control plane writes it to `DATA_DIR/ctl-token`.
    #[arg(long, env = "WEIR_CTL_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Create or replace the resources in files, directories or `-` (stdin), all or nothing.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Check and report what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the resources of a kind, or show one.
    Get {
        /// KafkaCluster, MqttBroker, AmqpBroker, Workload, AuthorizationPolicy, PeerAuthentication,
        /// CertificateRevocation (any case, plural, or kc/mb/ab/wl/ap/pa/revocation).
        kind: String,
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: OutputArg,
    },
    /// Show one resource and how it relates to the rest of the mesh.
    Describe { kind: String, name: String },
    /// Delete one resource (refused while others refer to it).
    Delete {
        kind: String,
        name: String,
        /// Delete only if the resource is still at this version.
        #[arg(long)]
        resource_version: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Every sidecar the control plane knows: its workload, address, the configuration version
    /// it applied (ACK) or refused (NACK, with the reason), and when it was last heard from.
    Status,
    /// Who produces to and consumes from which topic, with rates, as the sidecars report it.
    Topology {
        #[arg(short, long, value_enum, default_value = "table")]
        output: TopologyArg,
    },
    /// Revoke every certificate issued to a workload until now (a CertificateRevocation named
    /// WORKLOAD-revoked-UNIXTIME): its sidecars must get new ones with the join token.
    Revoke {
        workload: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Give a workload a join token of its own (printed once; the mesh keeps only its SHA-256):
    /// from then on its sidecars' first certificate needs it, not the mesh-wide token.
    Token { workload: String },
    /// The mesh's certificate authority: its roots, and rotating them.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Show what applying these files would change; exits 1 when something would.
    Diff {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// The roots in the trust bundle, and where a rotation stands.
    Status,
    /// Start a root rotation: a new root signs from now on, the bundle holds the old and the
    /// new, every sidecar is sent the new bundle and renews its certificate at once.
    Rotate,
    /// Finish the rotation: only the new root stays in the bundle. Refused while a connected
    /// sidecar still holds a certificate from the old root, unless --force.
    FinishRotation {
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TopologyArg {
    Table,
    Json,
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Yaml,
    Json,
}

pub fn run(args: CtlArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weir ctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("cannot read the token file {}", file.display()))?,
        (None, None) => anyhow::bail!("the API token is needed: --token-file DATA_DIR/ctl-token (or WEIR_CTL_TOKEN_FILE, --token, WEIR_CTL_TOKEN)"),
    };
    let client = ApiClient::new(&args.server, &token);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let (text, code) = match args.command {
            CtlCommand::Apply { files, dry_run } => {
                let resources = commands::read_sources(&files)?;
                (commands::apply(&client, &resources, dry_run).await?, ExitCode::SUCCESS)
            }
            CtlCommand::Get { kind, name, output } => {
                let output = match output {
                    OutputArg::Table => Output::Table,
                    OutputArg::Yaml => Output::Yaml,
                    OutputArg::Json => Output::Json,
                };
                (commands::get(&client, kind_of(&kind)?, name.as_deref(), output).await?, ExitCode::SUCCESS)
            }
            CtlCommand::Describe { kind, name } => {
                (commands::describe(&client, kind_of(&kind)?, &name).await?, ExitCode::SUCCESS)
            }
            CtlCommand::Delete { kind, name, resource_version, dry_run } => {
                let text =
                    commands::delete(&client, kind_of(&kind)?, &name, resource_version.as_deref(), dry_run).await?;
                (text, ExitCode::SUCCESS)
            }
            CtlCommand::Status => (commands::status(&client).await?, ExitCode::SUCCESS),
            CtlCommand::Topology { output } => {
                let output = match output {
                    TopologyArg::Table => commands::TopologyOutput::Table,
                    TopologyArg::Json => commands::TopologyOutput::Json,
                    TopologyArg::Dot => commands::TopologyOutput::Dot,
                };
                (commands::topology(&client, output).await?, ExitCode::SUCCESS)
            }
            CtlCommand::Revoke { workload, dry_run } => {
                (commands::revoke(&client, &workload, dry_run).await?, ExitCode::SUCCESS)
            }
            CtlCommand::Token { workload } => (commands::token(&client, &workload).await?, ExitCode::SUCCESS),
            CtlCommand::Ca { command } => {
                let text = match command {
                    CaCommand::Status => commands::ca(&client, commands::CaAction::Status).await?,
                    CaCommand::Rotate => commands::ca(&client, commands::CaAction::Rotate).await?,
                    CaCommand::FinishRotation { force } => {
                        commands::ca(&client, commands::CaAction::FinishRotation { force }).await?
                    }
                };
                (text, ExitCode::SUCCESS)
            }
            CtlCommand::Diff { files } => {
                let resources = commands::read_sources(&files)?;
                let (text, changed) = commands::diff(&client, &resources).await?;
                (text, if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
            }
        };
        print!("{text}");
        Ok(code)
    })
}

fn kind_of(text: &str) -> anyhow::Result<Kind> {
    Kind::parse(text).with_context(|| format!("unknown kind `{text}`; expected one of {}", Kind::names()))
}
