//! The sidecar stream's refusals, against the real `Mesh` service over TLS in this process
//! (no Kafka needed): a stream that never says Hello, an expired certificate, a revoked one.
//! The sidecars are the real control client (`weir_core::control`) or, where a test must
//! send what that client never would, a raw gRPC client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use weir_control::api::{Observed, Rotation};
use weir_control::ca::MeshCa;
use weir_control::client::ApiClient;
use weir_control::mesh::MeshService;
use weir_control::plane::ControlPlane;
use weir_control::sidecars::Sidecars;
use weir_control::store::FileStore;
use weir_control_api::v1::mesh_client::MeshClient;
use weir_control_api::v1::{sidecar_message, Hello, SidecarMessage};
use weir_core::control::{certify, first_snapshot, follow, ControlSettings, IdentityWatch, WorkloadIdentity};

const MESH: &str = "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:9092']}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: orders}\nspec: {cluster: main, namespace: shop, listen: '127.0.0.1:19092'}\n";

struct Running {
    address: SocketAddr,
    /// The HTTP API (`weir ctl`'s), token `ctl`.
    api: SocketAddr,
    plane: Arc<ControlPlane>,
    sidecars: Arc<Sidecars>,
    bundle: String,
    dir: PathBuf,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A control plane on a port of the kernel's choosing, with certificates of `ttl`.
async fn start(name: &str, ttl: Duration, hello_timeout: Duration) -> Running {
    let dir = std::env::temp_dir().join(format!("weir-stream-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let plane = Arc::new(ControlPlane::open(FileStore::open(&dir).unwrap()).unwrap());
    plane.apply(&weir_mesh::parse_documents(MESH, "test").unwrap(), false).await.unwrap();
    let ca = Arc::new(MeshCa::load_or_create(&dir, None, "weir.test", ttl).unwrap());
    let bundle = ca.bundle_pem().to_string();
    let sidecars = Arc::<Sidecars>::default();
    let service = MeshService::new(plane.clone(), sidecars.clone(), Arc::default(), ca.clone(), "join".into())
        .with_hello_timeout(hello_timeout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let serving = weir_control::mesh::serve(listener, &["127.0.0.1".into()], service, stop.clone()).unwrap();
    tokio::spawn(serving);
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = api_listener.local_addr().unwrap();
    let observed = Observed { sidecars: sidecars.clone(), topology: Arc::default(), ca, rotation: Rotation::Allowed };
    tokio::spawn(weir_control::api::serve(api_listener, plane.clone(), observed, "ctl".into(), stop.clone()));
    Running { address, api, plane, sidecars, bundle, dir, stop }
}

fn settings(running: &Running, name: &str) -> ControlSettings {
    ControlSettings::new(
        vec![running.address.to_string()],
        "orders".into(),
        "join".into(),
        running.dir.join(format!("sidecar-{name}")),
        running.bundle.clone(),
    )
}

/// Opens a stream presenting `identity`, saying `hello` (or nothing), as no real sidecar would.
async fn raw_stream(
    running: &Running,
    identity: &WorkloadIdentity,
    hello: Option<Hello>,
) -> Result<(mpsc::Sender<SidecarMessage>, tonic::Streaming<weir_control_api::v1::ControlMessage>), String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.bundle_pem))
        .identity(Identity::from_pem(&identity.chain_pem, &identity.key_pem))
        .domain_name("127.0.0.1");
    let endpoint = Endpoint::from_shared(format!("https://{}", running.address)).unwrap().tls_config(tls).unwrap();
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let (outbound, receiver) = mpsc::channel(4);
    if let Some(hello) = hello {
        outbound.send(SidecarMessage { message: Some(sidecar_message::Message::Hello(hello)) }).await.unwrap();
    }
    let inbound = MeshClient::new(channel)
        .stream(ReceiverStream::new(receiver))
        .await
        .map_err(|status| {
            format!("{:?}: {} ({:?})", status.code(), status.message(), std::error::Error::source(&status))
        })?
        .into_inner();
    Ok((outbound, inbound))
}

fn hello(sidecar: &str) -> Hello {
    Hello { workload: "orders".into(), sidecar_id: sidecar.into(), ..Hello::default() }
}

fn connected(running: &Running) -> Vec<String> {
    running.sidecars.all().into_iter().filter(|s| s.connected).map(|s| s.sidecar_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_says_hello_is_closed_at_the_limit() {
    let running = start("hello", Duration::from_secs(600), Duration::from_millis(500)).await;
    let identity = certify(&settings(&running, "a"), None).await.unwrap();
    let started = std::time::Instant::now();
    let refused = raw_stream(&running, &identity, None).await.map(|_| ()).unwrap_err();
    assert!(refused.starts_with("DeadlineExceeded: no Hello within 500ms"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at the limit, not later: {:?}", started.elapsed());
    assert!(connected(&running).is_empty());
    // The same certificate with a Hello is served: only the silence was refused.
    let (_outbound, mut inbound) = raw_stream(&running, &identity, Some(hello("a"))).await.unwrap();
    assert!(inbound.message().await.unwrap().is_some(), "the first snapshot");
    assert_eq!(connected(&running), ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_for_streams_and_renewals() {
    let running = start("expired", Duration::from_secs(2), Duration::from_secs(10)).await;
    let settings = settings(&running, "b");
    let identity = certify(&settings, None).await.unwrap();
    {
        let (_outbound, mut inbound) = raw_stream(&running, &identity, Some(hello("fresh"))).await.unwrap();
        assert!(inbound.message().await.unwrap().is_some(), "served while valid");
    }
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    // The same certificate, the same client, only later: the handshake is refused. With TLS
    // 1.3 the client sees that at the transport, by timing as the server's alert
    // (CertificateExpired), the connection closing, a broken pipe, or the request cancelled
    // because its connection never became ready — never as an answer of the service.
    let refused = raw_stream(&running, &identity, Some(hello("expired"))).await.map(|_| ()).unwrap_err();
    assert!(
        refused.contains("transport error")
            || refused.contains("connection closed")
            || refused.starts_with("connect")
            || refused.contains("connection was not ready"),
        "{refused}"
    );
    let renewal = certify(&settings, Some(&identity)).await.unwrap_err();
    assert!(!renewal.is_empty());
    assert!(!connected(&running).contains(&"expired".to_owned()));
    // The join token still gets the workload a new certificate.
    let renewed = certify(&settings, None).await.unwrap();
    assert!(raw_stream(&running, &renewed, Some(hello("renewed"))).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_ends_its_stream_and_the_sidecar_gets_a_new_one() {
    let running = start("revoked", Duration::from_secs(600), Duration::from_secs(10)).await;
    let settings = settings(&running, "c");
    let old = certify(&settings, None).await.unwrap();
    let (_outbound, mut live) = raw_stream(&running, &old, Some(hello("live"))).await.unwrap();
    assert!(live.message().await.unwrap().is_some(), "the first snapshot");

    let now = weir_control::sidecars::now();
    let revocation = format!(
        "apiVersion: weir/v1alpha1\nkind: CertificateRevocation\nmetadata: {{name: leak}}\nspec: {{workload: orders, issued_before: '{}'}}\n",
        weir_mesh::kinds::certificate_revocation::format_time(now + 1)
    );
    running.plane.apply(&weir_mesh::parse_documents(&revocation, "test").unwrap(), false).await.unwrap();

    // The open stream ends, with the reason.
    let ended = tokio::time::timeout(Duration::from_secs(5), live.message()).await.expect("ended promptly");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().starts_with("certificate revoked: CertificateRevocation/leak"), "{}", status.message());
    // A new stream and a renewal with it are refused.
    let refused = raw_stream(&running, &old, Some(hello("again"))).await.map(|_| ()).unwrap_err();
    assert!(refused.starts_with("Unauthenticated: certificate revoked"), "{refused}");
    let renewal = certify(&settings, Some(&old)).await.unwrap_err();
    assert!(renewal.starts_with("certificate revoked"), "{renewal}");

    // The real client: told its certificate is revoked, it drops it (memory and disk) and the
    // next attempt gets a certificate issued after the revocation, with the join token.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let identity = IdentityWatch::new(Some(Arc::new(old.clone())));
    let first = first_snapshot(&settings, &identity, 0, |_, _| Ok(())).await.unwrap_err();
    assert!(first.starts_with("certificate revoked"), "{first}");
    assert!(identity.borrow().is_none(), "the revoked certificate is forgotten");
    assert!(weir_core::control::kept_identity(&settings.state_dir, "orders").is_none(), "and removed from disk");
    let applied = first_snapshot(&settings, &identity, 0, |_, _| Ok(())).await.unwrap();
    assert_eq!(applied.workload, "orders");
    let renewed = identity.borrow().clone().unwrap();
    assert_ne!(renewed.chain_pem, old.chain_pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_with_its_own_join_token_refuses_the_mesh_wide_one() {
    let running = start("own-token", Duration::from_secs(600), Duration::from_secs(10)).await;
    let own = MESH.replace(
        "namespace: shop,",
        &format!("namespace: shop, join_token_sha256: {},", weir_control::api::sha256_hex("orders-own")),
    );
    running.plane.apply(&weir_mesh::parse_documents(&own, "test").unwrap(), false).await.unwrap();
    let mut settings = settings(&running, "d");
    let refused = certify(&settings, None).await.unwrap_err();
    assert_eq!(refused, "wrong join token", "the mesh-wide token no longer works for orders");
    settings.join_token = "orders-own".into();
    let identity = certify(&settings, None).await.unwrap();
    assert_eq!(identity.spiffe_id, "spiffe://weir.test/ns/shop/sa/orders");
    // The digest is the mesh's business, not the sidecar's: it is not in the rendered config.
    assert!(!running.plane.current().sidecar_config("orders").unwrap().to_string().contains("join_token"));
}

/// The subject of the certificate that signed the first certificate of `chain_pem`.
fn issuer_of(chain_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next().unwrap().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.issuer().to_string()
}

fn roots_in(bundle_pem: &str) -> usize {
    bundle_pem.matches("BEGIN CERTIFICATE").count()
}

/// Polls `check` every 50 ms for up to 15 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "not within 15 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_rotation_reaches_every_sidecar_with_both_roots_trusted_through_the_overlap() {
    let running = start("rotation", Duration::from_secs(600), Duration::from_secs(10)).await;
    let api = ApiClient::new(&running.api.to_string(), "ctl");
    // A real sidecar (the control client of `weir proxy --control`), ACKing every snapshot.
    let mut settings = settings(&running, "e");
    settings.sidecar_id = "real".into();
    let identity = Arc::new(IdentityWatch::new(None));
    let (updates, mut received) = mpsc::channel::<weir_core::control::Update>(1);
    tokio::spawn(async move {
        while let Some(update) = received.recv().await {
            let _ = update.reply.send(Ok(Vec::new()));
        }
    });
    tokio::spawn(follow(settings.clone(), identity.clone(), 0, updates, None, running.stop.clone()));
    eventually("the sidecar connects", || connected(&running).contains(&"real".to_owned())).await;
    let old = (*identity.borrow().clone().unwrap()).clone();
    let old_root = issuer_of(&old.chain_pem);

    let rotated = api.post("/api/v1/ca/rotate", &serde_json::json!({})).await.unwrap();
    let roots: Vec<String> = serde_json::from_value(rotated["ca"]["bundle"].clone()).unwrap();
    assert_eq!(roots.len(), 2, "{rotated}");
    assert_eq!(roots[0], old_root);
    let new_root = roots[1].clone();
    assert_ne!(new_root, old_root);
    let again = api.post("/api/v1/ca/rotate", &serde_json::json!({})).await.unwrap_err().to_string();
    assert!(again.contains("already in progress"), "{again}");

    // The sidecar is sent the new bundle, and renews at once: the new root signs its certificate.
    eventually("the sidecar holds both roots and a certificate from the new one", || {
        let current = identity.borrow().clone().unwrap();
        roots_in(&current.bundle_pem) == 2 && issuer_of(&current.chain_pem) == new_root
    })
    .await;
    eventually("the sidecar streams again", || connected(&running).contains(&"real".to_owned())).await;

    // Through the overlap the old root is still trusted: a certificate it signed still streams.
    let mut old_holder = None;
    for _ in 0..100 {
        if let Ok(stream) = raw_stream(&running, &old, Some(hello("old-holder"))).await {
            old_holder = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_outbound, mut inbound) = old_holder.expect("a certificate from the old root is accepted during the overlap");
    assert!(inbound.message().await.unwrap().is_some());

    // Finishing is refused while a connected sidecar holds an old-root certificate.
    let refused = api.post("/api/v1/ca/finish-rotation", &serde_json::json!({})).await.unwrap_err().to_string();
    assert!(refused.contains("old-holder") && !refused.contains("real"), "{refused}");
    drop((_outbound, inbound));
    eventually("the old holder is gone", || !connected(&running).contains(&"old-holder".to_owned())).await;
    let finished = api.post("/api/v1/ca/finish-rotation", &serde_json::json!({})).await.unwrap();
    assert_eq!(finished["ca"]["bundle"], serde_json::json!([new_root]), "{finished}");
    assert_eq!(finished["ca"]["rotation_started"], serde_json::Value::Null);

    // After it the old root is refused, and the sidecar runs on the new one alone.
    eventually("the sidecar holds only the new root", || roots_in(&identity.borrow().clone().unwrap().bundle_pem) == 1)
        .await;
    eventually("the sidecar streams again", || connected(&running).contains(&"real".to_owned())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(raw_stream(&running, &old, Some(hello("old-again"))).await.is_err(), "the old root is no longer trusted");
    let status = api.get("/api/v1/ca").await.unwrap();
    assert_eq!(status["ca"]["bundle"].as_array().unwrap().len(), 1, "{status}");
}
