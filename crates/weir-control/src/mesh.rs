//! The `Mesh` gRPC service, over TLS with the mesh's CA.
//!
//! `Certify`: a sidecar's certificate signing request, authenticated by the join token (its
//! first certificate) or by its current certificate (renewal), signed for its workload's SPIFFE
//! id only. `Stream`: a sidecar that presents its workload's certificate says Hello and is sent
//! its rendered configuration, and again whenever a change alters what it renders to — not for
//! changes that concern other workloads. Bursts coalesce: the stream follows the state's
//! `watch`, so a sidecar slower than the changes gets the latest.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status, Streaming};
use weir_control_api::v1::mesh_server::Mesh;
use weir_control_api::v1::{
    control_message, sidecar_message, CertifyRequest, CertifyResponse, ControlMessage, Hello, SidecarMessage, Snapshot,
};

use crate::ca::{unix_seconds, CaError, MeshCa};
use crate::plane::ControlPlane;
use crate::sidecars::{now, Sidecars};

/// How a refusal for a revoked certificate begins; the sidecar's client knows it by this.
pub use weir_control_api::REVOKED;

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MeshService {
    plane: Arc<ControlPlane>,
    sidecars: Arc<Sidecars>,
    topology: Arc<crate::topology::Topology>,
    ca: Arc<MeshCa>,
    /// What a sidecar without a certificate must present to get its first.
    join_token: String,
    renders: Arc<Renders>,
    hello_timeout: Duration,
}

/// Each workload's rendered config at the latest version, shared by all its sidecars' streams:
/// a change is rendered once per workload, not once per sidecar.
#[derive(Default)]
struct Renders {
    by_workload: std::sync::Mutex<std::collections::HashMap<String, (u64, Arc<str>)>>,
}

impl Renders {
    /// The rendered config of `workload` at this state: (version, JSON text).
    fn get(&self, state: &weir_mesh::MeshState, workload: &str) -> Result<(u64, Arc<str>), String> {
        let mut by_workload = self.by_workload.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((version, config)) = by_workload.get(workload) {
            if *version == state.version {
                return Ok((*version, config.clone()));
            }
        }
        let config: Arc<str> = state.sidecar_config(workload).map_err(|e| e.to_string())?.to_string().into();
        by_workload.insert(workload.to_owned(), (state.version, config.clone()));
        Ok((state.version, config))
    }
}

/// The verified client certificate on a request's connection: TLS has already checked that it
/// chains to the trust bundle and is within its validity.
struct PeerCertificate {
    spiffe_id: String,
    /// Unix seconds.
    issued_at: u64,
    not_after: u64,
    /// The subject of who signed it.
    issuer: String,
}

fn peer_certificate<T>(request: &Request<T>) -> Option<PeerCertificate> {
    let certs = request.peer_certs()?;
    let cert = certs.first()?;
    let spiffe_id = weir_core::tls::principal_of(cert, &[weir_core::tls::PrincipalSource::SpiffeUri])?;
    let (not_before, not_after) = weir_core::tls::validity(cert)?;
    let issuer = crate::ca::issuer_of(cert);
    Some(PeerCertificate { spiffe_id, issued_at: crate::ca::issued_at(not_before), not_after, issuer })
}

/// Refuses a certificate a `CertificateRevocation` names. The status is what the sidecar
/// takes as "get a new certificate with the join token".
fn check_not_revoked(state: &weir_mesh::MeshState, workload: &str, issued_at: u64) -> Result<(), Status> {
    match state.revocation_of(workload, issued_at) {
        None => Ok(()),
        Some(revocation) => Err(Status::unauthenticated(format!(
            "{REVOKED}: {} (issued at {})",
            revocation.id(),
            weir_mesh::kinds::certificate_revocation::format_time(issued_at)
        ))),
    }
}

impl MeshService {
    pub fn new(
        plane: Arc<ControlPlane>,
        sidecars: Arc<Sidecars>,
        topology: Arc<crate::topology::Topology>,
        ca: Arc<MeshCa>,
        join_token: String,
    ) -> Self {
        Self { plane, sidecars, topology, ca, join_token, renders: Arc::default(), hello_timeout: HELLO_TIMEOUT }
    }

    /// Whether `token` may get `workload` its first certificate: the workload's own join token
    /// when it has one (`spec.join_token_sha256`), else the mesh-wide one.
    fn join_token_accepted(&self, workload: &str, token: &str) -> bool {
        let state = self.plane.current();
        let own =
            state.get(weir_mesh::Kind::Workload, workload).and_then(weir_mesh::kinds::workload::join_token_sha256);
        match own {
            Some(digest) => {
                weir_core::sasl::constant_time_eq(crate::api::sha256_hex(token).as_bytes(), digest.as_bytes())
            }
            None => weir_core::sasl::constant_time_eq(token.as_bytes(), self.join_token.as_bytes()),
        }
    }

    /// How long a new stream may take to say Hello (default 10 s).
    pub fn with_hello_timeout(self, hello_timeout: Duration) -> Self {
        Self { hello_timeout, ..self }
    }

    /// The identity `workload` is certified as; an unknown workload is an error for the caller.
    fn identity_of(&self, workload: &str) -> Result<String, Status> {
        self.plane
            .current()
            .spiffe_id(workload, &self.ca.trust_domain)
            .ok_or_else(|| Status::not_found(format!("Workload/{workload}: not found")))
    }
}

#[tonic::async_trait]
impl Mesh for MeshService {
    type StreamStream = Outbound;

    async fn stream(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let presented = peer_certificate(&request);
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(self.hello_timeout, inbound.message()).await {
            Ok(Ok(Some(SidecarMessage { message: Some(sidecar_message::Message::Hello(hello)) }))) => hello,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message of a stream must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                tracing::warn!(%peer, "stream refused: no Hello within {:?}", self.hello_timeout);
                return Err(Status::deadline_exceeded(format!("no Hello within {:?}", self.hello_timeout)));
            }
        };
        let identity = self.identity_of(&hello.workload)?;
        let certificate = match presented {
            Some(presented) if presented.spiffe_id == identity => presented,
            Some(presented) => {
                let presented = presented.spiffe_id;
                tracing::warn!(%peer, workload = %hello.workload, %presented, "sidecar refused: its certificate is another workload's");
                return Err(Status::permission_denied(format!("the certificate is {presented}, not {identity}")));
            }
            None => return Err(Status::unauthenticated("a stream needs the workload's certificate (from Certify)")),
        };
        if let Err(status) = check_not_revoked(&self.plane.current(), &hello.workload, certificate.issued_at) {
            tracing::warn!(%peer, workload = %hello.workload, reason = status.message(), "sidecar refused");
            return Err(status);
        }
        if hello.sidecar_id.is_empty() || hello.workload.is_empty() {
            return Err(Status::invalid_argument("Hello needs workload and sidecar_id"));
        }
        // The first snapshot is rendered now, so that an unknown workload is an error the
        // sidecar sees at once (it retries: the Workload may be applied later).
        let state = self.plane.subscribe();
        let first = self.renders.get(&state.borrow(), &hello.workload).map_err(Status::not_found)?;
        tracing::info!(%peer, workload = %hello.workload, sidecar = %hello.sidecar_id, "sidecar connected");
        self.sidecars.update(&hello.sidecar_id, |s| {
            s.workload = hello.workload.clone();
            s.address = hello.address.clone();
            s.weir_version = hello.weir_version.clone();
            s.peer = peer.clone();
            s.connected = true;
            s.connected_since = now();
            s.acked_version = s.acked_version.max(hello.running_version);
            if certificate.not_after >= s.certificate_not_after {
                s.certificate_issuer = certificate.issuer.clone();
            }
            s.certificate_not_after = s.certificate_not_after.max(certificate.not_after);
        });
        let follower = Follower {
            hello,
            issued_at: certificate.issued_at,
            pending: Some(first),
            state,
            inbound,
            sidecars: self.sidecars.clone(),
            topology: self.topology.clone(),
            renders: self.renders.clone(),
            bundle: self.ca.subscribe_bundle(),
            sent_config: Arc::from(""),
            sent_version: 0,
            bundle_sent: false,
            last: None,
            ended: false,
        };
        let stream = futures_util::stream::unfold(follower, |mut follower| async move {
            let message = follower.next().await?;
            Some((message, follower))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<CertifyResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let presented = peer_certificate(&request);
        let asked = request.into_inner();
        let identity = self.identity_of(&asked.workload)?;
        match presented.map(|p| (p.spiffe_id, p.issued_at)) {
            // Renewal: the current certificate vouches for the workload, unless revoked.
            Some((presented, issued_at)) if presented == identity => {
                if let Err(status) = check_not_revoked(&self.plane.current(), &asked.workload, issued_at) {
                    tracing::warn!(%peer, %identity, reason = status.message(), "renewal refused");
                    return Err(status);
                }
            }
            Some((presented, _)) => {
                tracing::warn!(%peer, %presented, %identity, "certificate request refused: made with another workload's certificate");
                return Err(Status::permission_denied(format!(
                    "the certificate presented is {presented}, not {identity}"
                )));
            }
            None if self.join_token_accepted(&asked.workload, &asked.token) => {}
            None => {
                tracing::warn!(%peer, workload = %asked.workload, "certificate request refused: wrong join token");
                return Err(Status::unauthenticated("wrong join token"));
            }
        }
        let issued = self.ca.certify(&asked.csr_pem, &identity).map_err(|err| match err {
            CaError::Refused(reason) => {
                tracing::warn!(%peer, %identity, %reason, "certificate request refused");
                Status::permission_denied(reason)
            }
            other => {
                tracing::error!(%other, "cannot sign a certificate");
                Status::internal("the CA failed; see the control plane's log")
            }
        })?;
        let not_after = unix_seconds(issued.not_after);
        tracing::info!(%peer, %identity, not_after, "certificate issued");
        if !asked.sidecar_id.is_empty() {
            self.sidecars.update(&asked.sidecar_id, |s| {
                s.workload = asked.workload.clone();
                s.certificate_not_after = not_after;
                s.certificate_issuer = issued.issuer.clone();
            });
        }
        Ok(Response::new(CertifyResponse {
            certificate_chain_pem: issued.chain_pem,
            trust_bundle_pem: self.ca.bundle_pem().to_string(),
            not_after,
            spiffe_id: identity,
        }))
    }
}

fn snapshot(version: u64, workload: &str, config: &str, bundle: &str) -> ControlMessage {
    ControlMessage {
        message: Some(control_message::Message::Snapshot(Snapshot {
            version,
            workload: workload.to_owned(),
            config_json: config.to_owned(),
            trust_bundle_pem: bundle.to_owned(),
        })),
    }
}

/// What a stream sends a sidecar: a message, or the status that ends the stream.
type Outgoing = Result<ControlMessage, Status>;

/// The control plane's half of a sidecar stream: the [`Follower`] itself, polled by the
/// connection as it has room to send. No task and no channel of its own — ~2 KiB less for
/// each connected sidecar than a task feeding a channel (docs/benchmarks.md).
pub type Outbound = std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Outgoing> + Send>>;

/// How a stream ends when the bundle changed; the sidecar reconnects.
const BUNDLE_CHANGED: &str = "the mesh's trust bundle changed (root rotation); reconnect";

/// One sidecar's stream: follows the mesh state and the trust bundle, records what the
/// sidecar says (ACK, NACK, flows). It ends when the sidecar goes, when a revocation names
/// its certificate, or when the trust bundle changes (a root rotation): then the sidecar is
/// sent the new bundle first, as the listener restarts with the new roots.
struct Follower {
    hello: Hello,
    issued_at: u64,
    /// A rendering to send, if it differs from the last sent.
    pending: Option<(u64, Arc<str>)>,
    state: tokio::sync::watch::Receiver<Arc<weir_mesh::MeshState>>,
    inbound: Streaming<SidecarMessage>,
    sidecars: Arc<Sidecars>,
    topology: Arc<crate::topology::Topology>,
    renders: Arc<Renders>,
    /// The trust bundle, sent with a stream's first snapshot and when it changes.
    bundle: tokio::sync::watch::Receiver<Arc<str>>,
    sent_config: Arc<str>,
    sent_version: u64,
    /// The bundle goes with a stream's first snapshot only (and when it changes): the
    /// sidecar keeps it, and later snapshots stay small.
    bundle_sent: bool,
    /// The status that ends the stream, sent after the message before it.
    last: Option<Status>,
    ended: bool,
}

impl Follower {
    /// The next message for the sidecar; `None` ends the stream.
    async fn next(&mut self) -> Option<Outgoing> {
        if let Some(status) = self.last.take() {
            return Some(Err(status));
        }
        if self.ended {
            return None;
        }
        let id = &self.hello.sidecar_id;
        loop {
            if let Some((version, config)) = self.pending.take() {
                if !Arc::ptr_eq(&config, &self.sent_config) && config != self.sent_config {
                    let current_bundle = self.bundle.borrow_and_update().clone();
                    let with_bundle = if self.bundle_sent { "" } else { &current_bundle };
                    let message = snapshot(version, &self.hello.workload, &config, with_bundle);
                    (self.sent_config, self.sent_version, self.bundle_sent) = (config, version, true);
                    self.sidecars.update(id, |s| s.sent_version = version);
                    return Some(Ok(message));
                }
            }
            tokio::select! {
                Ok(()) = self.bundle.changed() => {
                    let new_bundle = self.bundle.borrow_and_update().clone();
                    tracing::info!(sidecar = %id, "sending the new trust bundle; the stream ends for the listener's restart");
                    (self.last, self.ended) = (Some(Status::unavailable(BUNDLE_CHANGED)), true);
                    return Some(Ok(snapshot(self.sent_version, &self.hello.workload, &self.sent_config, &new_bundle)));
                }
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let current = self.state.borrow_and_update().clone();
                    if let Err(status) = check_not_revoked(&current, &self.hello.workload, self.issued_at) {
                        tracing::warn!(sidecar = %id, reason = status.message(), "ending a stream: its certificate is revoked");
                        self.ended = true;
                        return Some(Err(status));
                    }
                    match self.renders.get(&current, &self.hello.workload) {
                        Ok(next) => self.pending = Some(next),
                        // The workload was deleted: the sidecar keeps what it has.
                        Err(err) => tracing::info!(sidecar = %id, %err, "a sidecar's workload is gone; nothing more is sent"),
                    }
                }
                message = self.inbound.message() => match message {
                    Ok(Some(SidecarMessage { message: Some(message) })) => self.record(message),
                    Ok(Some(_)) => self.sidecars.update(id, |_| {}),
                    Ok(None) | Err(_) => return None,
                },
            }
        }
    }

    fn record(&self, message: sidecar_message::Message) {
        let id = &self.hello.sidecar_id;
        match message {
            sidecar_message::Message::Ack(ack) => {
                tracing::debug!(sidecar = %id, version = ack.version, "ACK");
                self.sidecars.update(id, |s| {
                    s.acked_version = ack.version;
                    s.pending_restart = ack.pending_restart.clone();
                    if s.nack.as_ref().is_some_and(|(v, _)| *v <= ack.version) {
                        s.nack = None;
                    }
                });
            }
            sidecar_message::Message::Nack(nack) => {
                tracing::warn!(sidecar = %id, version = nack.version, reason = %nack.reason, "NACK: the sidecar could not apply its configuration");
                self.sidecars.update(id, |s| s.nack = Some((nack.version, nack.reason.clone())));
            }
            sidecar_message::Message::Report(report) => {
                tracing::trace!(sidecar = %id, flows = report.flows.len(), "flows reported");
                self.topology.record(id, &self.hello.workload, &report.flows);
                self.sidecars.update(id, |_| {});
            }
            _ => self.sidecars.update(id, |_| {}),
        }
    }
}

/// The stream is dropped when it ends and when the connection goes, whichever is first.
impl Drop for Follower {
    fn drop(&mut self) {
        tracing::info!(sidecar = %self.hello.sidecar_id, "sidecar disconnected");
        self.sidecars.update(&self.hello.sidecar_id, |s| s.connected = false);
    }
}

/// Serves sidecars on `listener` over TLS until `stop` (the returned future ends then).
/// The listener's certificate is issued by the mesh CA for `names`; client certificates are
/// optional at the handshake (a first Certify has none) and checked against the trust bundle.
/// When the bundle changes (a root rotation starts or finishes) the listener restarts with the
/// new roots and serving certificate: streams end after sending the new bundle, and sidecars
/// reconnect.
pub fn serve(
    listener: tokio::net::TcpListener,
    names: &[String],
    service: MeshService,
    stop: tokio_util::sync::CancellationToken,
) -> Result<impl std::future::Future<Output = Result<(), ServeError>>, ServeError> {
    let service = Arc::new(service);
    let address = listener.local_addr().map_err(ServeError::Bind)?;
    let names = names.to_vec();
    let mut tls = tls_settings(&service.ca, &names)?;
    let mut listener = Some(listener);
    Ok(async move {
        let mut bundle = service.ca.subscribe_bundle();
        loop {
            bundle.borrow_and_update();
            let listener = match listener.take() {
                Some(listener) => listener,
                None => tokio::net::TcpListener::bind(address).await.map_err(ServeError::Bind)?,
            };
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let restart = tokio_util::sync::CancellationToken::new();
            let shutdown = {
                let (stop, restart) = (stop.clone(), restart.clone());
                async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = restart.cancelled() => {}
                    }
                }
            };
            let serving = tonic::transport::Server::builder()
                .tls_config(tls)
                .map_err(ServeError::Tls)?
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .serve_with_incoming_shutdown(
                    weir_control_api::v1::mesh_server::MeshServer::from_arc(service.clone()),
                    incoming,
                    shutdown,
                );
            tokio::pin!(serving);
            tokio::select! {
                served = &mut serving => {
                    served.map_err(ServeError::Serve)?;
                    return Ok(());
                }
                Ok(()) = bundle.changed() => {
                    restart.cancel();
                    // Streams end by themselves on the change; a connection that lingers is
                    // left to its task, on the old settings, until its client goes.
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut serving).await;
                    tracing::info!(%address, "the trust bundle changed: serving sidecars with the new roots");
                }
            }
            if stop.is_cancelled() {
                return Ok(());
            }
            tls = tls_settings(&service.ca, &names)?;
        }
    })
}

/// The listener's TLS: a fresh serving certificate and the current bundle for clients.
fn tls_settings(ca: &MeshCa, names: &[String]) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (chain, key) = ca.serving_certificate(names)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key))
        .client_ca_root(Certificate::from_pem(ca.bundle_pem().as_bytes()))
        .client_auth_optional(true))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(tonic::transport::Error),
    #[error("{0}")]
    Serve(tonic::transport::Error),
    #[error(transparent)]
    Ca(#[from] CaError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;

    async fn service(dir: &std::path::Path) -> MeshService {
        let plane = Arc::new(ControlPlane::open(FileStore::open(dir).unwrap()).unwrap());
        let mesh = "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:9092']}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: orders}\nspec: {cluster: main, namespace: shop, listen: '127.0.0.1:19092'}\n";
        plane.apply(&weir_mesh::parse_documents(mesh, "t").unwrap(), false).await.unwrap();
        let ca = MeshCa::load_or_create(dir, None, "weir.test", Duration::from_secs(600)).unwrap();
        MeshService::new(plane, Arc::default(), Arc::default(), Arc::new(ca), "join".into())
    }

    fn csr(uri: Option<&str>) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uri.map(|u| rcgen::SanType::URI(u.try_into().unwrap())).into_iter().collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn request(workload: &str, token: &str, csr: String) -> Request<CertifyRequest> {
        Request::new(CertifyRequest {
            workload: workload.into(),
            token: token.into(),
            csr_pem: csr,
            sidecar_id: "s1".into(),
        })
    }

    #[tokio::test]
    async fn certify_checks_token_workload_and_identity() {
        let dir = std::env::temp_dir().join(format!("weir-certify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let service = service(&dir).await;
        let orders = "spiffe://weir.test/ns/shop/sa/orders";

        let wrong = service.certify(request("orders", "guess", csr(None))).await.unwrap_err();
        assert_eq!((wrong.code(), wrong.message()), (tonic::Code::Unauthenticated, "wrong join token"));
        let unknown = service.certify(request("billing", "join", csr(None))).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let other = service
            .certify(request("orders", "join", csr(Some("spiffe://weir.test/ns/shop/sa/billing"))))
            .await
            .unwrap_err();
        assert_eq!(other.code(), tonic::Code::PermissionDenied);
        assert!(other.message().contains("may only be spiffe://weir.test/ns/shop/sa/orders"), "{}", other.message());

        let issued = service.certify(request("orders", "join", csr(Some(orders)))).await.unwrap().into_inner();
        assert_eq!(issued.spiffe_id, orders);
        assert_eq!(issued.trust_bundle_pem, &*service.ca.bundle_pem());
        assert!(issued.not_after > crate::sidecars::now() + 500);
        let status = service.sidecars.all();
        assert_eq!((status[0].workload.as_str(), status[0].certificate_not_after), ("orders", issued.not_after));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
