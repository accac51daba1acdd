//! Outlier detection against the real cluster: a bootstrap server that refuses connections is
//! ejected after failed connects in a row, and later clients are served by the others without
//! trying it again; /metrics and the admin endpoint's /upstreams show the ejection.

mod common;

use common::{http_get, mesh_bootstrap, rd, unique, Sidecar, SidecarOptions};

/// Nothing listens on port 1.
const DEAD: &str = "127.0.0.1:1";

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_bootstrap_server_is_ejected_and_clients_are_served_by_the_others() {
    let sidecar = Sidecar::start_with(SidecarOptions {
        bootstrap: format!("{DEAD},{}", mesh_bootstrap()),
        upstream_yaml:
            "  outlier_detection: {consecutive_failures: 2, base_ejection_ms: 60000, max_ejection_ms: 60000}\n".into(),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("outlier");
    // Each producer opens a bootstrap connection of its own; every one is served.
    for round in 0..4 {
        let producer = rd::producer(&bs, &[]);
        rd::produce(&producer, &topic, &format!("round{round}"), 5).await;
    }
    let failures = sidecar.metric("weir_kafka_upstream_connect_failures_total", &[("broker", DEAD)]);
    assert_eq!(failures, 2.0, "tried until ejected, then not again:\n{}", sidecar.metrics());
    assert_eq!(sidecar.metric("weir_kafka_upstream_ejections_total", &[("broker", DEAD)]), 1.0);
    assert_eq!(sidecar.metric("weir_kafka_upstream_ejected", &[("broker", DEAD)]), 1.0);

    let (status, body) = http_get(sidecar.admin, "/upstreams").unwrap();
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let dead = &report["brokers_with_failures"][0];
    assert_eq!(dead["address"], DEAD, "{report}");
    assert_eq!(dead["ejections_in_a_row"], 1);
    assert!(dead["ejected_for_ms"].as_u64().unwrap() > 50_000, "{report}");

    let records = rd::consume(&bs, &topic, &unique("outlier"), 20, &[]);
    assert_eq!(rd::values(&records).len(), 20);
    sidecar.assert_quiet_except(&["broker ejected after failed connects in a row"]);
}
