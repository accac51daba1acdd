//! A fleet of simulated sidecars against a running `weir control`, for bench/control.sh: each
//! gets its certificate, opens its mutual-TLS stream and ACKs every snapshot, exactly as a real
//! sidecar's control client does (it *is* that client, `weir_core::control::follow`), without a
//! Kafka proxy behind it. Then policy changes are applied through the API and the time until
//! every sidecar has the new version is measured.
//!
//!   fleet --api HOST:PORT --control HOST:PORT --data-dir DIR --sidecars N --changes K [--hold S]
//!
//! `--hold S`: keep the sidecars connected S seconds after the summary (to look at the control
//! plane meanwhile).
//!
//! DIR is the control plane's data directory (tokens and CA bundle are read from it).
//! Prints one `change` line per change and a summary. A change's `bytes` are what the kernel
//! counts as sent on the control plane's sidecar connections (`ss`'s `bytes_sent`: TLS,
//! HTTP/2 and gRPC framing included) from the apply until half a second after the last
//! sidecar had it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_control::client::ApiClient;
use weir_core::control::{follow, ControlSettings, IdentityWatch};

struct Args {
    api: String,
    control: String,
    data_dir: PathBuf,
    sidecars: usize,
    changes: usize,
    hold: u64,
}

fn args() -> Args {
    let mut parsed = Args {
        api: "127.0.0.1:15080".into(),
        control: "127.0.0.1:15012".into(),
        data_dir: "weir-control-data".into(),
        sidecars: 100,
        changes: 5,
        hold: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--api" => parsed.api = value,
            "--control" => parsed.control = value,
            "--data-dir" => parsed.data_dir = value.into(),
            "--sidecars" => parsed.sidecars = value.parse().expect("--sidecars N"),
            "--changes" => parsed.changes = value.parse().expect("--changes K"),
            "--hold" => parsed.hold = value.parse().expect("--hold SECONDS"),
            other => panic!("unknown flag {other}; see the header of examples/fleet.rs"),
        }
    }
    parsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Bytes sent so far on the established TCP connections from local `port` (the control plane's
/// side of every sidecar stream), from `ss`; none if `ss` cannot run.
fn sent_bytes(port: u16) -> Option<u64> {
    let filter = format!("( sport = :{port} )");
    let out = std::process::Command::new("ss").args(["-tinH", "state", "established", &filter]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split_whitespace()
            .filter_map(|field| field.strip_prefix("bytes_sent:"))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum(),
    )
}

fn policy(change: usize) -> serde_json::Value {
    serde_json::json!({"resources": [{
        "apiVersion": "weir/v1alpha1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "fleet-policy"},
        "spec": {"rules": [{"effect": "allow", "principals": ["fleet"], "resources": [format!("topic:fleet.{change}.*")], "operations": ["all"]}]}
    }]})
}

#[tokio::main]
async fn main() {
    let args = args();
    // Thousands of streams: thousands of descriptors.
    let _ = weir_core::admission::raise_descriptor_limit();
    let read = |name: &str| std::fs::read_to_string(args.data_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let api = ApiClient::new(&args.api, &read("ctl-token"));
    let mesh = serde_json::json!({"resources": [
        {"apiVersion": "weir/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": "fleet"}, "spec": {"bootstrap": ["127.0.0.1:9092"]}},
        {"apiVersion": "weir/v1alpha1", "kind": "Workload", "metadata": {"name": "fleet"}, "spec": {"cluster": "fleet", "listen": "127.0.0.1:29092"}},
    ]});
    api.post("/api/v1/apply", &mesh).await.expect("apply the fleet's workload");
    api.post("/api/v1/apply", &policy(0)).await.expect("apply the first policy");

    // Every snapshot each sidecar applied: version → when.
    let applied: Arc<Mutex<Vec<HashMap<u64, Instant>>>> = Arc::new(Mutex::new(vec![HashMap::new(); args.sidecars]));
    let stop = CancellationToken::new();
    let state_root = std::env::temp_dir().join(format!("weir-fleet-{}", std::process::id()));
    let started = Instant::now();
    for i in 0..args.sidecars {
        let mut settings = ControlSettings::new(
            vec![args.control.clone()],
            "fleet".into(),
            read("join-token").trim().to_owned(),
            state_root.join(i.to_string()),
            read("ca/bundle.pem"),
        );
        settings.sidecar_id = format!("fleet-{i}");
        let (updates, mut received) = mpsc::channel::<weir_core::control::Update>(1);
        let applied = applied.clone();
        tokio::spawn(async move {
            while let Some(update) = received.recv().await {
                applied.lock().unwrap()[i].insert(update.version, Instant::now());
                let _ = update.reply.send(Ok(Vec::new()));
            }
        });
        tokio::spawn(follow(settings, Arc::new(IdentityWatch::new(None)), 0, updates, None, stop.clone()));
    }
    let version_of = |answer: &serde_json::Value| answer["version"].as_u64().unwrap_or_default();
    let first = version_of(&api.get("/api/v1/resources").await.unwrap());
    let all_have = |version: u64| applied.lock().unwrap().iter().filter(|m| m.keys().any(|v| *v >= version)).count();
    while all_have(first) < args.sidecars {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {} sidecars connected",
            all_have(first),
            args.sidecars
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("connected sidecars={} seconds={:.1}", args.sidecars, started.elapsed().as_secs_f64());

    let port = args.control.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    let mut worst = Vec::new();
    for change in 1..=args.changes {
        let sent_before = sent_bytes(port);
        let t0 = Instant::now();
        let answer = api.post("/api/v1/apply", &policy(change)).await.expect("apply a change");
        let version = version_of(&answer);
        while all_have(version) < args.sidecars {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "change {change}: {} of {} sidecars after 120 s",
                all_have(version),
                args.sidecars
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut latencies: Vec<Duration> =
            applied.lock().unwrap().iter().map(|m| m[&version].saturating_duration_since(t0)).collect();
        latencies.sort();
        let (p50, p99, max) =
            (percentile(&latencies, 50.0), percentile(&latencies, 99.0), latencies[latencies.len() - 1]);
        // Let the ACKs land before the next change.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bytes = sent_before.zip(sent_bytes(port)).map(|(before, after)| after.saturating_sub(before)).unwrap_or(0);
        println!(
            "change {change} version={version} sidecars={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} bytes={bytes} bytes_per_sidecar={}",
            latencies.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            bytes / args.sidecars.max(1) as u64,
        );
        worst.push(p99);
    }
    worst.sort();
    println!(
        "summary sidecars={} changes={} median_p99_ms={:.1}",
        args.sidecars,
        args.changes,
        percentile(&worst, 50.0).as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    stop.cancel();
    let _ = std::fs::remove_dir_all(&state_root);
}
