//! The `Mesh` gRPC service: each sidecar's stream. After its Hello (workload, join token) the
//! sidecar is sent its rendered configuration, and again whenever a change alters what it
//! renders to — not for changes that concern other workloads. Bursts coalesce: the stream
//! follows the state's `watch`, so a sidecar slower than the changes gets the latest.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_control_api::v1::mesh_server::Mesh;
use weir_control_api::v1::{control_message, sidecar_message, ControlMessage, Hello, SidecarMessage, Snapshot};

use crate::plane::ControlPlane;
use crate::sidecars::{now, Sidecars};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MeshService {
    pub plane: Arc<ControlPlane>,
    pub sidecars: Arc<Sidecars>,
    /// What a sidecar must present to join.
    pub join_token: String,
}

#[tonic::async_trait]
impl Mesh for MeshService {
    type StreamStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(SidecarMessage { message: Some(sidecar_message::Message::Hello(hello)) }))) => hello,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message of a stream must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded(format!("no Hello within {HELLO_TIMEOUT:?}"))),
        };
        if !weir_core::sasl::constant_time_eq(hello.token.as_bytes(), self.join_token.as_bytes()) {
            tracing::warn!(%peer, workload = %hello.workload, "sidecar refused: wrong join token");
            return Err(Status::unauthenticated("wrong join token"));
        }
        if hello.sidecar_id.is_empty() || hello.workload.is_empty() {
            return Err(Status::invalid_argument("Hello needs workload and sidecar_id"));
        }
        // The first snapshot is rendered now, so that an unknown workload is an error the
        // sidecar sees at once (it retries: the Workload may be applied later).
        let state = self.plane.subscribe();
        let first = render(&state.borrow(), &hello.workload).map_err(Status::not_found)?;
        tracing::info!(%peer, workload = %hello.workload, sidecar = %hello.sidecar_id, "sidecar connected");
        self.sidecars.update(&hello.sidecar_id, |s| {
            s.workload = hello.workload.clone();
            s.address = hello.address.clone();
            s.weir_version = hello.weir_version.clone();
            s.peer = peer.clone();
            s.connected = true;
            s.connected_since = now();
            s.acked_version = s.acked_version.max(hello.running_version);
        });
        let (out, receiver) = mpsc::channel(4);
        tokio::spawn(follow(hello, first, state, inbound, out, self.sidecars.clone()));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// The rendered config of `workload` at this state: (version, JSON text).
fn render(state: &weir_mesh::MeshState, workload: &str) -> Result<(u64, String), String> {
    let config = state.sidecar_config(workload).map_err(|e| e.to_string())?;
    Ok((state.version, config.to_string()))
}

/// Serves one sidecar's stream until it ends.
async fn follow(
    hello: Hello,
    first: (u64, String),
    mut state: tokio::sync::watch::Receiver<Arc<weir_mesh::MeshState>>,
    mut inbound: Streaming<SidecarMessage>,
    out: mpsc::Sender<Result<ControlMessage, Status>>,
    sidecars: Arc<Sidecars>,
) {
    let id = hello.sidecar_id.clone();
    let mut sent_config = String::new();
    let mut pending = Some(first);
    loop {
        if let Some((version, config)) = pending.take() {
            if config != sent_config {
                let message = ControlMessage {
                    message: Some(control_message::Message::Snapshot(Snapshot {
                        version,
                        workload: hello.workload.clone(),
                        config_json: config.clone(),
                    })),
                };
                if out.send(Ok(message)).await.is_err() {
                    break;
                }
                sent_config = config;
                sidecars.update(&id, |s| s.sent_version = version);
            }
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let rendered = render(&state.borrow_and_update(), &hello.workload);
                match rendered {
                    Ok(next) => pending = Some(next),
                    // The workload was deleted: the sidecar keeps what it has.
                    Err(err) => tracing::info!(sidecar = %id, %err, "a sidecar's workload is gone; nothing more is sent"),
                }
            }
            message = inbound.message() => match message {
                Ok(Some(SidecarMessage { message: Some(sidecar_message::Message::Ack(ack)) })) => {
                    tracing::debug!(sidecar = %id, version = ack.version, "ACK");
                    sidecars.update(&id, |s| {
                        s.acked_version = ack.version;
                        s.pending_restart = ack.pending_restart.clone();
                        if s.nack.as_ref().is_some_and(|(v, _)| *v <= ack.version) {
                            s.nack = None;
                        }
                    });
                }
                Ok(Some(SidecarMessage { message: Some(sidecar_message::Message::Nack(nack)) })) => {
                    tracing::warn!(sidecar = %id, version = nack.version, reason = %nack.reason, "NACK: the sidecar could not apply its configuration");
                    sidecars.update(&id, |s| s.nack = Some((nack.version, nack.reason.clone())));
                }
                Ok(Some(_)) => sidecars.update(&id, |_| {}),
                Ok(None) | Err(_) => break,
            },
        }
    }
    tracing::info!(sidecar = %id, "sidecar disconnected");
    sidecars.update(&id, |s| s.connected = false);
}

/// Binds `address` and serves sidecar streams until `stop`; the returned future ends then.
pub async fn serve(
    address: std::net::SocketAddr,
    service: MeshService,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = Result<(), tonic::transport::Error>>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = weir_control_api::v1::mesh_server::MeshServer::new(service);
    Ok(async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .serve_with_incoming_shutdown(server, incoming, stop.cancelled_owned())
            .await
    })
}
