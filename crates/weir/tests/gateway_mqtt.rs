//! The MQTT gateway (`weir gateway mqtt`) in front of the real Kafka test cluster: Mosquitto's
//! own clients (mosquitto_pub, mosquitto_sub, MQTT 3.1.1 and 5) on the MQTT side, librdkafka
//! on the Kafka side. What MQTT clients publish is in Kafka under the mapped topic and key;
//! what Kafka producers write reaches the MQTT subscribers whose filters match; the mesh's
//! Kafka policy judges both.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker_sidecar::BrokerSidecar;
use common::brokers::{mqtt_client, publish, publish_until_received, stopped, subscriber};
use common::{direct_bootstrap, rd, sasl_users_file, unique};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use weir_core::sasl::ScramMechanism;

/// The gateway, its topics' root, and the clients' arguments to reach it.
struct Gateway {
    process: BrokerSidecar,
    root: String,
    /// Its config and directory, for a second instance of it.
    config: String,
    dir: std::path::PathBuf,
}

impl std::ops::Deref for Gateway {
    type Target = BrokerSidecar;
    fn deref(&self) -> &BrokerSidecar {
        &self.process
    }
}

/// Who may do what: the sensor writes temperatures, the dashboard reads them; nobody reads
/// or writes the secrets. In Kafka's words, on the Kafka topics, with users named as the Kafka
/// sidecar names SASL users.
const POLICY: &str = r#"
rules:
  - {effect: allow, principals: ["sensor"], resources: ["topic:R.temp"], operations: [write]}
  - {effect: allow, principals: ["dash"], resources: ["topic:R.temp"], operations: [read]}
"#;

impl Gateway {
    /// Kafka topics `R.temp` (3 partitions) and `R.secret`, and a gateway mapping
    /// `R/sensors/+/temp` → `R.temp` (key: the sensor) and `R/secret/#` → `R.secret`, with users
    /// `sensor` and `dash` (password: the name reversed) and [`POLICY`].
    fn start(prefix: &str) -> Self {
        common::kafka();
        let root = unique(prefix);
        runtime().block_on(async {
            rd::create_topic(&direct_bootstrap(), &format!("{root}.temp"), 3).await;
            rd::create_topic(&direct_bootstrap(), &format!("{root}.secret"), 1).await;
        });
        let dir = std::env::temp_dir().join(unique("weir-mqtt-gateway"));
        std::fs::create_dir_all(&dir).unwrap();
        let users = sasl_users_file(
            &dir,
            &[("sensor", "rosnes", ScramMechanism::Sha256), ("dash", "hsad", ScramMechanism::Sha256)],
        );
        std::fs::write(dir.join("policy.yaml"), POLICY.replace("R.", &format!("{root}."))).unwrap();
        let config = format!(
            "kafka: {{bootstrap: \"{}\"}}\n\
             mappings:\n\
             \x20 - {{mqtt: \"{root}/sensors/+/temp\", kafka: {root}.temp, key: \"{{1}}\"}}\n\
             \x20 - {{mqtt: \"{root}/secret/#\", kafka: {root}.secret}}\n\
             credentials: {}\nauthorization: {{policy: {}}}\n\
             limits: {{connect_timeout_ms: 1500}}\n\
             log: {{format: json, level: \"info,weir_mqtt_gateway=debug\"}}\n",
            direct_bootstrap(),
            users.display(),
            dir.join("policy.yaml").display()
        );
        Gateway { process: BrokerSidecar::gateway("mqtt", dir.clone(), &config), root, config, dir }
    }

    /// Another instance of the same gateway (same mappings, users, policy and Kafka topics for
    /// sessions and retained messages) on ports of its own.
    fn second_instance(&self) -> BrokerSidecar {
        let dir = self.dir.join("second");
        std::fs::create_dir_all(&dir).unwrap();
        BrokerSidecar::gateway("mqtt", dir, &self.config)
    }

    fn client(&self, user: &str, version: &str) -> Vec<String> {
        mqtt_client(self.addr.port(), user, version)
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.root)
    }

    fn kafka_topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.root)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `args` plus the words given.
fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

#[test]
fn mqtt_and_kafka_clients_meet_on_mapped_topics() {
    let gw = Gateway::start("gwmqtt");
    let (temp, sensor7) = (gw.kafka_topic("temp"), gw.topic("sensors/7/temp"));

    // MQTT → Kafka: each version and QoS lands in the mapped topic, keyed by the sensor, with
    // its MQTT topic in a header.
    let sent = [("mqttv311", "0"), ("mqttv311", "1"), ("mqttv5", "1"), ("mqttv5", "2")];
    for (version, qos) in sent {
        let args = with(gw.client("sensor", version), &["-t", &sensor7, "-q", qos, "-m", &format!("{version}-q{qos}")]);
        let (published, stderr) = publish(&args);
        assert!(published, "{version} QoS {qos}: {stderr}");
    }
    let records = rd::consume(&direct_bootstrap(), &temp, &unique("check"), sent.len(), &[]);
    let expected: std::collections::BTreeSet<String> = sent.iter().map(|(v, q)| format!("{v}-q{q}")).collect();
    assert_eq!(rd::values(&records), expected);
    for record in &records {
        assert_eq!(record.key, "7", "{record:?}");
        assert!(record.headers.contains(&("mqtt.topic".to_owned(), sensor7.clone())), "{record:?}");
    }

    // The Java client reads them alike.
    let said = common::java_client(&["consume", "--bootstrap", &direct_bootstrap(), "--topic", &temp, "--count", "4"]);
    let java: Vec<&String> = said.iter().filter(|l| l.starts_with("record ")).collect();
    assert_eq!(java.len(), 4, "{said:?}");
    assert!(java.iter().all(|l| l.contains("key=7 ") && l.contains(&format!("mqtt.topic:{sensor7}"))), "{said:?}");

    // Kafka → MQTT: a record a Kafka producer writes (no header) reaches the dashboard under
    // the MQTT topic its key names; a subscriber of another sensor gets nothing.
    let other = subscriber(&with(gw.client("dash", "mqttv311"), &["-t", &gw.topic("sensors/8/temp"), "-q", "1"]));
    let dash =
        subscriber(&with(gw.client("dash", "mqttv5"), &["-t", &gw.topic("sensors/+/temp"), "-q", "1", "-C", "1"]));
    let producer = rd::producer(&direct_bootstrap(), &[]);
    let lines = runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut dash = dash;
        while dash.try_wait().unwrap().is_none() && Instant::now() < deadline {
            let record = FutureRecord::to(&temp).key("9").payload("from-kafka");
            producer.send(record, Duration::from_secs(10)).await.expect("produce");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stopped(dash)
    });
    assert_eq!(
        lines.0.first().map(String::as_str),
        Some(&*format!("{} from-kafka", gw.topic("sensors/9/temp"))),
        "{lines:?}"
    );

    // The Java producer's records alike (its keys are k-<i>).
    let java_sensor = gw.topic("sensors/k-0/temp");
    let mut dash = subscriber(&with(gw.client("dash", "mqttv311"), &["-t", &java_sensor, "-q", "1", "-C", "1"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while dash.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let args =
            ["produce", "--bootstrap", &direct_bootstrap(), "--topic", &temp, "--count", "1", "--prefix", "java"];
        common::java_client(&args);
    }
    let (lines, stderr) = stopped(dash);
    assert_eq!(lines, [format!("{java_sensor} java-0")], "{stderr}");

    // MQTT → Kafka → MQTT.
    let dash = subscriber(&with(gw.client("dash", "mqttv311"), &["-t", &sensor7, "-q", "1", "-C", "1"]));
    let (lines, stderr) = publish_until_received(
        dash,
        &with(gw.client("sensor", "mqttv311"), &["-t", &sensor7, "-q", "1", "-m", "via-kafka"]),
    );
    assert_eq!(lines, [format!("{sensor7} via-kafka")], "{stderr}");

    // A record whose header names another sensor goes by the header.
    let headers =
        OwnedHeaders::new().insert(Header { key: "mqtt.topic", value: Some(gw.topic("sensors/8/temp").as_str()) });
    runtime().block_on(async {
        let record = FutureRecord::to(&temp).key("7").payload("for-eight").headers(headers);
        producer.send(record, Duration::from_secs(10)).await.expect("produce");
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (lines, _) = stopped(other);
    assert_eq!(lines, [format!("{} for-eight", gw.topic("sensors/8/temp"))], "sensor 8's subscriber sees only its own");

    let published = [("direction", "publish"), ("topic", temp.as_str()), ("principal", "sensor")];
    assert!(gw.metric("weir_mqtt_messages_total", &published) >= 5.0);
    let delivered = [("direction", "deliver"), ("topic", temp.as_str()), ("principal", "dash")];
    assert!(gw.metric("weir_mqtt_messages_total", &delivered) >= 3.0);
    gw.assert_quiet();
}

#[test]
fn the_mesh_kafka_policy_judges_mqtt_publishes_and_subscriptions() {
    let gw = Gateway::start("gwpolicy");
    let secret = gw.topic("secret/plans");

    // MQTT 5: the PUBACK says Not authorized, and nothing reaches Kafka; an unmapped topic is
    // a Topic Name invalid.
    let (_, stderr) = publish(&with(gw.client("sensor", "mqttv5"), &["-t", &secret, "-q", "1", "-m", "leak"]));
    assert!(stderr.contains("Not authorized"), "{stderr}");
    let (_, stderr) =
        publish(&with(gw.client("sensor", "mqttv5"), &["-t", &gw.topic("unmapped"), "-q", "1", "-m", "x"]));
    assert!(stderr.contains("Topic Name invalid"), "{stderr}");
    // MQTT 3.1.1 cannot say no: the gateway closes the connection rather than acknowledge.
    let (published, _) = publish(&with(gw.client("sensor", "mqttv311"), &["-t", &secret, "-q", "1", "-m", "leak"]));
    assert!(!published, "a 3.1.1 publish the gateway did not write is not acknowledged");
    assert!(gw.logged(&["MQTT 3.1.1 cannot refuse a publish", "may not write to Kafka topic"]));
    rd::consume(&direct_bootstrap(), &gw.kafka_topic("secret"), &unique("check"), 0, &[]);

    // Subscriptions need read on every Kafka topic they can receive from: the dashboard may
    // read temperatures, not secrets, so `R/#` (reaching both) is refused whole.
    for (user, filter) in
        [("dash", gw.topic("secret/#")), ("dash", gw.topic("#")), ("sensor", gw.topic("sensors/+/temp"))]
    {
        let out = Command::new("mosquitto_sub")
            .args(with(gw.client(user, "mqttv5"), &["-t", &filter, "-C", "1", "-W", "3"]))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("All subscription requests were denied"), "{user} {filter}: {stderr}");
    }
    assert!(gw.logged(&["MQTT subscription denied", "no read on the Kafka topic"]));
    let denied = [("operation", "subscribe"), ("principal", "dash")];
    assert_eq!(gw.metric("weir_mqtt_denied_total", &denied), 2.0);

    // A wrong password is refused at CONNECT.
    let mut wrong = gw.client("dash", "mqttv311");
    let at = wrong.iter().position(|a| a == "-P").unwrap();
    wrong[at + 1] = "guess".into();
    let (published, stderr) = publish(&with(wrong, &["-t", &gw.topic("sensors/1/temp"), "-m", "x"]));
    assert!(!published && stderr.contains("bad user name or password"), "{stderr}");
    gw.assert_quiet();
}

#[test]
fn qos1_publishes_are_acknowledged_only_once_kafka_has_them_and_keep_their_order() {
    let gw = Gateway::start("gwqos");
    let sensor = gw.topic("sensors/3/temp");
    let messages: Vec<String> = (0..300).map(|i| format!("reading-{i}")).collect();
    for version in ["mqttv311", "mqttv5"] {
        let mut publisher = Command::new("mosquitto_pub")
            .args(with(gw.client("sensor", version), &["-t", &sensor, "-q", "1", "-l"]))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        publisher.stdin.take().unwrap().write_all((messages.join("\n") + "\n").as_bytes()).unwrap();
        assert!(publisher.wait().unwrap().success(), "{version}: every publish acknowledged");
    }
    // One key, one partition: Kafka has all 600, each version's in the order sent.
    let records = rd::consume(&direct_bootstrap(), &gw.kafka_topic("temp"), &unique("check"), 600, &[]);
    let values: Vec<&str> = records.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values[..300], messages.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert_eq!(values[300..], values[..300]);
    gw.assert_quiet();
}

#[test]
fn hostile_connections_close_alone_with_a_reason() {
    let gw = Gateway::start("gwhostile");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "a PUBLISH before CONNECT",
            vec![0x30, 0x05, 0x00, 0x01, b'a', b'x', b'y'],
            "the first packet was PUBLISH, not CONNECT",
        ),
        ("a CONNECT declaring 1 MiB", vec![0x10, 0x80, 0x80, 0x40], "over the limit of 65536"),
        ("nothing at all", vec![], "no CONNECT within"),
    ];
    for (case, bytes, logged) in cases {
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(&bytes).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{case}: nothing answered, got {rest:?}");
        assert!(gw.logged(&["MQTT gateway connection closed", logged]), "{case}");
    }
    // MQTT 5 after CONNECT: a packet a client never sends is answered with DISCONNECT
    // (Protocol Error) and the reason, then the connection closes.
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut connect = vec![0x10, 0];
    let body: Vec<u8> =
        [&[0, 4][..], b"MQTT", &[5, 0xc2, 0, 30, 0], &[0, 1, b'h'], &[0, 6], b"sensor", &[0, 6], b"rosnes"].concat();
    connect[1] = body.len() as u8;
    connect.extend(body);
    stream.write_all(&connect).unwrap();
    stream.write_all(&[0x90, 3, 0, 1, 0]).unwrap(); // a SUBACK, from a client
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(answer[0], 0x20, "CONNACK first: {answer:?}");
    let disconnect = &answer[answer[1] as usize + 2..];
    assert_eq!(&disconnect[..1], &[0xe0], "then DISCONNECT: {answer:?}");
    assert_eq!(disconnect[2], 0x82, "Protocol Error");
    assert!(String::from_utf8_lossy(disconnect).contains("SUBACK"), "{disconnect:?}");

    // The gateway serves the next client as ever.
    let (published, stderr) =
        publish(&with(gw.client("sensor", "mqttv311"), &["-t", &gw.topic("sensors/1/temp"), "-q", "1", "-m", "fine"]));
    assert!(published, "{stderr}");
    gw.assert_quiet();
}

/// Runs tests/python/mqtt_client.py (paho-mqtt); its output lines.
fn paho(args: &[&str]) -> Vec<String> {
    let out = common::python_script("mqtt_client.py", args);
    assert!(out.status.success(), "mqtt_client.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn persistent_sessions_resume_after_a_gateway_restart_with_nothing_lost() {
    let mut gw = Gateway::start("gwsession");
    let port = gw.addr.port().to_string();
    let (filter, sensor) = (gw.topic("sensors/+/temp"), gw.topic("sensors/7/temp"));
    let producer = rd::producer(&direct_bootstrap(), &[]);
    for version in ["3.1.1", "5"] {
        // The dashboard (paho-mqtt) subscribes with a persistent session, and leaves.
        let client_id = unique("dash");
        assert_eq!(paho(&["subscribe", &port, "dash", "hsad", &client_id, version, &filter, "1"]), ["granted=1"]);

        // While it is away the sensor publishes 20 readings over MQTT at QoS 1, the gateway is
        // killed and started again, and a Kafka producer writes 20 more for the same sensor.
        let from_mqtt: Vec<String> = (0..20).map(|i| format!("{version}-mqtt-{i}")).collect();
        let mut publisher = Command::new("mosquitto_pub")
            .args(with(gw.client("sensor", "mqttv311"), &["-t", &sensor, "-q", "1", "-l"]))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        publisher.stdin.take().unwrap().write_all((from_mqtt.join("\n") + "\n").as_bytes()).unwrap();
        assert!(publisher.wait().unwrap().success());
        gw.process.restart();
        let from_kafka: Vec<String> = (0..20).map(|i| format!("{version}-kafka-{i}")).collect();
        let temp = gw.kafka_topic("temp");
        runtime().block_on(async {
            for value in &from_kafka {
                let record = FutureRecord::to(&temp).key("7").payload(value);
                producer.send(record, Duration::from_secs(10)).await.expect("produce");
            }
        });

        // Another principal cannot take the client id, nor the session under it.
        let said = paho(&["drain", &port, "sensor", "rosnes", &client_id, version, "1", "1"]);
        assert_eq!(said.last().map(String::as_str), Some("received=0"), "{said:?}");
        assert!(gw.logged(&["holds another principal's session", &client_id]));

        // The dashboard comes back to its session and gets all 40, in order, once.
        let said = paho(&["drain", &port, "dash", "hsad", &client_id, version, "40", "20"]);
        let received: Vec<&str> = said.iter().filter_map(|l| l.strip_prefix(&format!("message {sensor} "))).collect();
        let expected: Vec<&str> = from_mqtt.iter().chain(&from_kafka).map(String::as_str).collect();
        assert_eq!(received, expected, "MQTT {version}: {said:?}");
        assert_eq!(said.last().map(String::as_str), Some("received=40"));
    }
    gw.assert_quiet();
}

#[test]
fn a_second_gateway_instance_resumes_a_session_the_first_one_kept() {
    let gw = Gateway::start("gwsecond");
    let second = gw.second_instance();
    let (first_port, second_port) = (gw.addr.port().to_string(), second.addr.port().to_string());
    let (filter, sensor) = (gw.topic("sensors/+/temp"), gw.topic("sensors/9/temp"));
    // The dashboard subscribes through the first instance with a persistent session, and leaves.
    let client_id = unique("dash");
    assert_eq!(paho(&["subscribe", &first_port, "dash", "hsad", &client_id, "5", &filter, "1"]), ["granted=1"]);
    // While it is away the sensor publishes 20 readings at QoS 1 through the first instance.
    let readings: Vec<String> = (0..20).map(|i| format!("reading-{i}")).collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args(with(gw.client("sensor", "mqttv311"), &["-t", &sensor, "-q", "1", "-l"]))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    publisher.stdin.take().unwrap().write_all((readings.join("\n") + "\n").as_bytes()).unwrap();
    assert!(publisher.wait().unwrap().success());
    // It comes back through the other instance (a load balancer's choice): the session, kept
    // in Kafka, is there, with every reading in order.
    let said = paho(&["drain", &second_port, "dash", "hsad", &client_id, "5", "20", "20"]);
    let received: Vec<&str> = said.iter().filter_map(|l| l.strip_prefix(&format!("message {sensor} "))).collect();
    assert_eq!(received, readings.iter().map(String::as_str).collect::<Vec<_>>(), "{said:?}");
    assert_eq!(said.last().map(String::as_str), Some("received=20"));
    gw.assert_quiet();
    second.assert_quiet();
}

#[test]
fn retained_messages_reach_new_subscribers_and_outlive_the_gateway() {
    let mut gw = Gateway::start("gwretain");
    let (five, six) = (gw.topic("sensors/5/temp"), gw.topic("sensors/6/temp"));
    for (version, topic, value) in [("mqttv5", &five, "five-last"), ("mqttv311", &six, "six-last")] {
        let (published, stderr) =
            publish(&with(gw.client("sensor", version), &["-t", topic, "-q", "1", "-r", "-m", value]));
        assert!(published, "{version}: {stderr}");
    }
    // Written to Kafka like any publish, too.
    let records = rd::consume(&direct_bootstrap(), &gw.kafka_topic("temp"), &unique("check"), 2, &[]);
    assert_eq!(rd::values(&records), ["five-last", "six-last"].map(str::to_owned).into());

    // A new subscription gets the retained messages it matches at once, before anything new;
    // after a restart (killed) as before.
    let retained = |gw: &Gateway, filter: &str, count: &str| {
        let out = Command::new("mosquitto_sub")
            .args(with(
                gw.client("dash", "mqttv5"),
                &["-t", filter, "-q", "1", "-C", count, "-W", "5", "-F", "%t %p %r"],
            ))
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let both = [format!("{five} five-last 1"), format!("{six} six-last 1")];
    assert_eq!(retained(&gw, &gw.topic("sensors/+/temp"), "2"), both);
    assert_eq!(retained(&gw, &six, "1"), [both[1].clone()]);
    gw.process.restart();
    assert_eq!(retained(&gw, &gw.topic("sensors/+/temp"), "2"), both);

    // An empty retained message removes it.
    let (published, stderr) = publish(&with(gw.client("sensor", "mqttv311"), &["-t", &five, "-q", "1", "-r", "-n"]));
    assert!(published, "{stderr}");
    assert_eq!(retained(&gw, &gw.topic("sensors/+/temp"), "2"), [both[1].clone()]);
    gw.assert_quiet();
}
