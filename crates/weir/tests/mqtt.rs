//! The MQTT sidecar (`weir proxy --protocol mqtt`) in front of a real Mosquitto
//! (scripts/mosquitto.sh), driven by Mosquitto's own clients (mosquitto_pub, mosquitto_sub),
//! MQTT 3.1.1 and 5: who connects is checked against the credentials file, what they publish
//! and subscribe against the policy, with MQTT's wildcard rules.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker_sidecar::BrokerSidecar;
use common::brokers::{mosquitto, mqtt_client, publish, publish_until_received, stopped, subscriber};
use common::pki::{server_sans, Pki};
use common::{audit_lines_when, repo_root, sasl_users_file, unique};
use weir_core::sasl::ScramMechanism;

/// The MQTT sidecar, with the clients' arguments to reach it.
struct MqttSidecar(BrokerSidecar);

impl std::ops::Deref for MqttSidecar {
    type Target = BrokerSidecar;
    fn deref(&self) -> &BrokerSidecar {
        &self.0
    }
}

impl MqttSidecar {
    /// A sidecar in front of the tests' Mosquitto with users `sensor`, `dash` and `admin`
    /// (password: the name reversed) and `policy` (the rules' YAML).
    fn start(policy: &str) -> Self {
        Self::start_with(policy, &mosquitto(), "")
    }

    /// As [`MqttSidecar::start`], in front of the broker at `upstream`, with `extra` YAML.
    fn start_with(policy: &str, upstream: &str, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("weir-mqtt"));
        std::fs::create_dir_all(&dir).unwrap();
        let users = sasl_users_file(
            &dir,
            &[
                ("sensor", "rosnes", ScramMechanism::Sha256),
                ("dash", "hsad", ScramMechanism::Sha256),
                ("admin", "nimda", ScramMechanism::Sha512),
            ],
        );
        std::fs::write(dir.join("policy.yaml"), policy).unwrap();
        let config = format!(
            "upstream: {upstream}\ncredentials: {}\nauthorization: {{policy: {}}}\n\
             limits: {{connect_timeout_ms: 1500}}\n\
             log: {{format: json, level: \"info,weir_mqtt_proxy=debug\"}}\n{extra}",
            users.display(),
            dir.join("policy.yaml").display()
        );
        MqttSidecar(BrokerSidecar::start("mqtt", dir, &config))
    }

    /// mosquitto_pub/mosquitto_sub arguments reaching this sidecar as `user`.
    fn client(&self, user: &str, version: &str) -> Vec<String> {
        mqtt_client(self.addr.port(), user, version)
    }
}

const POLICY: &str = r#"
rules:
  - {effect: allow, principals: ["User:sensor"], resources: ["topic:T/sensors/+/temp"], operations: [publish]}
  - {effect: allow, principals: ["User:dash"], resources: ["topic:T/sensors/#"], operations: [subscribe]}
  - {effect: allow, principals: ["User:admin"], resources: ["topic:T/#"], operations: [all]}
  - {effect: deny, principals: ["*"], resources: ["topic:T/sensors/secret/#"], operations: [all]}
"#;

#[test]
fn publishes_and_subscriptions_are_judged_by_topic_with_mqtts_wildcards() {
    let root = unique("mqtt");
    let policy = POLICY.replace("T/", &format!("{root}/"));
    let sidecar = MqttSidecar::start(&policy);
    let topic = |rest: &str| format!("{root}/{rest}");
    for version in ["mqttv311", "mqttv5"] {
        // The dashboard subscribes to what it may (sensors/7/#) and, in the same SUBSCRIBE,
        // to what it may not (the whole tree, which would reach the denied secrets).
        let mut args = sidecar.client("dash", version);
        args.extend(["-t", &topic("sensors/7/#"), "-t", &topic("#"), "-q", "1", "-v"].map(str::to_owned));
        let dash = subscriber(&args);

        // The sensor publishes at QoS 0, 1 and 2: to its own topic (delivered) and to one the
        // policy does not give it (not delivered, yet the client sees no error: 3.1.1 cannot
        // say no, and MQTT 5 says so in the PUBACK's reason, which mosquitto_pub reports).
        for qos in ["0", "1", "2"] {
            let mut ok = sidecar.client("sensor", version);
            ok.extend(
                ["-t", &topic("sensors/7/temp"), "-m", &format!("{version}-q{qos}"), "-q", qos].map(str::to_owned),
            );
            let (published, stderr) = publish(&ok);
            assert!(published, "{version} QoS {qos}: {stderr}");
            let mut denied = sidecar.client("sensor", version);
            denied.extend(["-t", &topic("sensors/7/humidity"), "-m", "leak", "-q", qos].map(str::to_owned));
            let _ = publish(&denied);
        }
        let (lines, stderr) = stopped(dash);
        let expected: Vec<String> =
            ["0", "1", "2"].iter().map(|q| format!("{} {version}-q{q}", topic("sensors/7/temp"))).collect();
        assert_eq!(lines, expected, "{version}: {stderr}");
        assert!(sidecar.logged(&["MQTT subscription denied", &topic("#")]));
        assert!(sidecar.logged(&["MQTT publish denied", "humidity"]));
    }

    // Counted per topic, direction and principal: 3 QoS levels in 2 versions each way.
    let sensors = topic("sensors/7/temp");
    let published = [("direction", "publish"), ("topic", sensors.as_str()), ("principal", "User:sensor")];
    assert_eq!(sidecar.metric("weir_mqtt_messages_total", &published), 6.0);
    let delivered = [("direction", "deliver"), ("topic", sensors.as_str()), ("principal", "User:dash")];
    assert_eq!(sidecar.metric("weir_mqtt_messages_total", &delivered), 6.0);
    let payloads = 3 * ("mqttv311-q0".len() + "mqttv5-q0".len());
    assert_eq!(sidecar.metric("weir_mqtt_payload_bytes_total", &delivered), payloads as f64);
    let denied = [("operation", "publish"), ("principal", "User:sensor")];
    assert_eq!(sidecar.metric("weir_mqtt_denied_total", &denied), 6.0);

    // A subscription that is all refused is answered by the sidecar: mosquitto_sub says so.
    let mut args = sidecar.client("sensor", "mqttv311");
    args.extend(["-t", &topic("sensors/#"), "-C", "1", "-W", "3"].map(str::to_owned));
    let out = Command::new("mosquitto_sub").args(&args).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("All subscription requests were denied"), "{said}");

    // Wrong passwords are refused at CONNECT, in each version's words.
    for version in ["mqttv311", "mqttv5"] {
        let port = sidecar.addr.port().to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-u", "sensor", "-P", "wrong", "-V", version, "-t", "x", "-m", "x"];
        let out = Command::new("mosquitto_pub").args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains("bad user name or password") || stderr.contains("not authori"), "{version}: {stderr}");
    }
    sidecar.assert_quiet();
}

#[test]
fn a_shared_subscription_is_judged_by_the_filter_it_shares() {
    let root = unique("mqtt-shared");
    let sidecar = MqttSidecar::start(&POLICY.replace("T/", &format!("{root}/")));
    let topic = format!("{root}/sensors/5/temp");
    // `dash` may read sensors/# (but not sensors/secret/#): so a shared subscription to sensors/5/#.
    let mut args = sidecar.client("dash", "mqttv5");
    args.extend(
        ["-t", &format!("$share/screens/{root}/sensors/5/#"), "-q", "1", "-C", "1", "-W", "10"].map(str::to_owned),
    );
    let dash = subscriber(&args);
    let mut args = sidecar.client("sensor", "mqttv5");
    args.extend(["-t", &topic, "-m", "shared", "-q", "1"].map(str::to_owned));
    let (lines, stderr) = publish_until_received(dash, &args);
    assert_eq!(lines, [format!("{topic} shared")], "{stderr}");
    // Sharing a filter wider than the policy gives is refused as the filter itself would be.
    let mut args = sidecar.client("dash", "mqttv5");
    args.extend(["-t", &format!("$share/screens/{root}/#"), "-C", "1", "-W", "3"].map(str::to_owned));
    let out = Command::new("mosquitto_sub").args(&args).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("All subscription requests were denied"), "{said}");
    sidecar.assert_quiet();
}

#[test]
fn a_will_the_principal_may_not_publish_refuses_the_connect() {
    let root = unique("mqtt-will");
    let sidecar = MqttSidecar::start(&POLICY.replace("T/", &format!("{root}/")));
    let mut args = sidecar.client("sensor", "mqttv5");
    args.extend(
        [
            "-t",
            &format!("{root}/sensors/7/temp"),
            "-m",
            "x",
            "--will-topic",
            &format!("{root}/alarms"),
            "--will-payload",
            "gone",
        ]
        .map(str::to_owned),
    );
    let (published, stderr) = publish(&args);
    assert!(!published, "{stderr}");
    assert!(stderr.to_lowercase().contains("not authori"), "{stderr}");
    assert!(sidecar.logged(&["may not publish its will"]), "{:?}", sidecar.logs());
    sidecar.assert_quiet();
}

#[test]
fn a_client_certificate_names_the_principal_over_tls_denials_are_audited_and_a_renewed_certificate_is_served() {
    let root = unique("mqtt-tls");
    let pki = Pki::new("mqtt");
    pki.issue("server", server_sans(), false);
    let sensor = "spiffe://weir.test/ns/iot/sa/sensor";
    pki.issue("sensor", vec![rcgen::SanType::URI(sensor.try_into().unwrap())], false);
    let policy = format!(
        "{}  - {{effect: allow, principals: [\"{sensor}\"], resources: [\"topic:{root}/sensors/+/temp\"], operations: [publish]}}\n",
        POLICY.replace("T/", &format!("{root}/"))
    );
    let audit = std::env::temp_dir().join(format!("{root}-audit.jsonl"));
    let extra = format!(
        "tls: {{cert: {}, key: {}, client_ca: {}, require_client_cert: false}}\naudit: {{path: {}}}\n",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display(),
        audit.display()
    );
    let sidecar = MqttSidecar::start_with(&policy, &mosquitto(), &extra);
    let port = sidecar.addr.port().to_string();
    let ca = pki.path("ca.pem").display().to_string();
    let over_tls = |args: &[&str]| -> Vec<String> {
        ["-h", "localhost", "-p", &port, "--cafile", &ca, "-V", "mqttv5"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    // The dashboard logs in with its password over TLS (no certificate).
    let dash = subscriber(&over_tls(&[
        "-u",
        "dash",
        "-P",
        "hsad",
        "-t",
        &format!("{root}/sensors/#"),
        "-t",
        &format!("{root}/sensors/7/#"),
        "-q",
        "1",
        "-v",
        "-C",
        "2",
        "-W",
        "20",
    ]));
    let (cert, key) = (pki.path("sensor.crt").display().to_string(), pki.path("sensor.key").display().to_string());
    let as_sensor = |topic: &str, message: &str| {
        publish(&over_tls(&[
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            &format!("{root}/{topic}"),
            "-m",
            message,
            "-q",
            "1",
        ]))
    };
    // Until the subscriber has two messages (it may take a while to subscribe over TLS on a
    // busy machine): the denied publish first each time, so a leak would be among them.
    let mut dash = dash;
    let deadline = Instant::now() + Duration::from_secs(20);
    while dash.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let _ = as_sensor("sensors/7/humidity", "leak");
        let (published, stderr) = as_sensor("sensors/7/temp", "21.5");
        assert!(published, "{stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (lines, stderr) = stopped(dash);
    let temp = format!("{root}/sensors/7/temp 21.5");
    assert_eq!(lines, [temp.clone(), temp], "{stderr}");

    let audit = audit_lines_when(&audit, |lines| lines.len() >= 4);
    let denied = |api: &str, resource: &str, principal: &str| {
        audit.iter().any(|l| {
            l["event"] == "authorization" && l["api"] == api && l["resource"] == resource && l["principal"] == principal
        })
    };
    assert!(denied("publish", &format!("{root}/sensors/7/humidity"), sensor), "{audit:?}");
    assert!(denied("subscribe", &format!("{root}/sensors/#"), "User:dash"), "{audit:?}");
    assert!(audit
        .iter()
        .any(|l| l["event"] == "authentication" && l["mechanism"] == "mtls" && l["principal"] == sensor));
    assert!(audit
        .iter()
        .any(|l| l["event"] == "authentication" && l["mechanism"] == "password" && l["principal"] == "User:dash"));

    // The server certificate renewed on disk (here by another CA) serves the next handshake,
    // without a restart.
    let renewed = Pki::new("mqtt-renewed");
    renewed.issue("server", server_sans(), false);
    for file in ["server.key", "server.crt"] {
        let staged = pki.path(&format!("{file}.new"));
        std::fs::copy(renewed.path(file), &staged).unwrap();
        std::fs::rename(&staged, pki.path(file)).unwrap();
    }
    assert!(sidecar.logged(&["TLS files, credentials and policy reloaded"]), "{:?}", sidecar.logs());
    let as_admin = |ca: &str| {
        let args = ["-h", "localhost", "-p", &port, "--cafile", ca, "-V", "mqttv5", "-u", "admin", "-P", "nimda"];
        let topic = format!("{root}/renewed");
        publish(&args.iter().chain(&["-t", topic.as_str(), "-m", "x"]).map(|a| a.to_string()).collect::<Vec<_>>())
    };
    let (trusted, stderr) = as_admin(&renewed.path("ca.pem").display().to_string());
    assert!(trusted, "the renewed certificate is not served: {stderr}");
    let (old_ca_trusts_it, _) = as_admin(&ca);
    assert!(!old_ca_trusts_it, "the old certificate is still served");
    // Renewing the two files may be seen half-done once (a key that is not the certificate's).
    let unexpected = common::unexpected_warnings(sidecar.logs(), &["last good ones stay"]);
    assert!(unexpected.is_empty(), "{unexpected:?}");
}

/// A Mosquitto of this test's own (scripts/mosquitto.sh on another port, starting empty), to
/// restart without disturbing other tests; stopped when dropped.
struct OwnMosquitto {
    port: u16,
}

impl OwnMosquitto {
    fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Started with these scripts/mosquitto.sh settings (users, say).
    fn start_with(port: u16, env: &[(&str, &str)]) -> Self {
        let broker = OwnMosquitto { port };
        broker.script("start", &[&[("WEIR_MOSQUITTO_CLEAN", "1")], env].concat());
        broker
    }

    fn script(&self, command: &str, env: &[(&str, &str)]) {
        let status = Command::new(repo_root().join("scripts/mosquitto.sh"))
            .arg(command)
            .env("WEIR_MOSQUITTO_PORT", self.port.to_string())
            .envs(env.iter().copied())
            .status()
            .expect("run scripts/mosquitto.sh");
        assert!(status.success(), "scripts/mosquitto.sh {command} on port {} failed", self.port);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/mosquitto.sh"))
            .arg("stop")
            .env("WEIR_MOSQUITTO_PORT", self.port.to_string())
            .status();
    }
}

/// Runs tests/python/mqtt_client.py (paho-mqtt) and returns its output lines.
fn paho(args: &[&str]) -> Vec<String> {
    let out = common::python_script("mqtt_client.py", args);
    assert!(out.status.success(), "mqtt_client.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn persistent_sessions_survive_a_broker_restart_with_nothing_acknowledged_lost() {
    let broker = OwnMosquitto::start(11893);
    let root = unique("mqtt-persist");
    let sidecar = MqttSidecar::start_with(&POLICY.replace("T/", &format!("{root}/")), &broker.addr(), "");
    let port = sidecar.addr.port().to_string();
    for (version, qos, cli_version) in [("3.1.1", "1", "mqttv311"), ("5", "2", "mqttv5")] {
        // The dashboard (paho-mqtt) subscribes with a persistent session, and leaves.
        let client_id = unique("dash");
        let topic = format!("{root}/sensors/7/temp");
        let said = paho(&["subscribe", &port, "dash", "hsad", &client_id, version, &topic, qos]);
        assert_eq!(said, [format!("granted={qos}")], "MQTT {version}");

        // While it is away, the sensor publishes 40 messages at that QoS through the sidecar;
        // the broker queues them in the session.
        let messages: Vec<String> = (0..40).map(|i| format!("{version}-reading-{i}")).collect();
        let mut args = sidecar.client("sensor", cli_version);
        args.extend(["-t", &topic, "-q", qos, "-l"].map(str::to_owned));
        let mut publisher = Command::new("mosquitto_pub").args(&args).stdin(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        publisher.stdin.take().unwrap().write_all((messages.join("\n") + "\n").as_bytes()).unwrap();
        assert!(publisher.wait().unwrap().success(), "MQTT {version}: the sensor's publishes");

        // The broker restarts (its persistence keeps the session and what it holds); the
        // dashboard comes back to its session through the same sidecar and gets every
        // message, once.
        broker.script("restart", &[]);
        let said = paho(&["drain", &port, "dash", "hsad", &client_id, version, "40", "20"]);
        let received: Vec<String> =
            said.iter().filter_map(|l| l.strip_prefix(&format!("message {topic} "))).map(str::to_owned).collect();
        assert_eq!(said.last().map(String::as_str), Some("received=40"), "MQTT {version}: {said:?}");
        assert_eq!(received, messages, "MQTT {version}: every message, in order, once");
    }
    sidecar.assert_quiet();
}

#[test]
fn hostile_first_packets_close_only_their_connection_with_a_reason() {
    use std::io::{Read, Write};
    let root = unique("mqtt-hostile");
    let sidecar = MqttSidecar::start(&POLICY.replace("T/", &format!("{root}/")));
    // Each sends these bytes first; the sidecar must close at once (or, silent, after the
    // CONNECT timeout) and log why.
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "a PUBLISH before CONNECT",
            vec![0x30, 0x05, 0x00, 0x01, b'a', b'x', b'y'],
            "the first packet was PUBLISH, not CONNECT",
        ),
        ("a remaining length of five bytes", vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], "malformed remaining length"),
        ("a CONNECT declaring 1 MiB", vec![0x10, 0x80, 0x80, 0x40], "over the limit of 65536"),
        ("nothing", vec![], "no CONNECT within"),
    ];
    for (what, bytes, logged) in cases {
        let mut stream = TcpStream::connect(sidecar.addr).unwrap();
        stream.write_all(&bytes).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0)) || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what}: not closed"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "{what}: closed only after {:?}", started.elapsed());
        assert!(sidecar.logged(&["MQTT connection closed", logged]), "{what}: {:?}", sidecar.logs());
    }
    // Others are served all along.
    let mut args = sidecar.client("sensor", "mqttv311");
    args.extend(["-t", &format!("{root}/sensors/1/temp"), "-m", "fine", "-q", "1"].map(str::to_owned));
    let (published, stderr) = publish(&args);
    assert!(published, "{stderr}");
    sidecar.assert_quiet();
}

#[test]
fn the_sidecar_logs_in_to_the_broker_with_its_own_credentials() {
    // A broker that knows one user, the sidecar's, and refuses anonymous clients.
    let broker = OwnMosquitto::start_with(11894, &[("WEIR_MOSQUITTO_PASSWORDS", "weir-sidecar:broker-secret")]);
    let root = unique("mqtt-creds");
    let extra = "broker_credentials: {username: weir-sidecar, password: broker-secret}\n";
    let sidecar = MqttSidecar::start_with(&POLICY.replace("T/", &format!("{root}/")), &broker.addr(), extra);
    let topic = format!("{root}/sensors/3/temp");
    let mut args = sidecar.client("dash", "mqttv5");
    args.extend(["-t", &topic, "-q", "1", "-C", "1", "-W", "10"].map(str::to_owned));
    let dash = subscriber(&args);
    let mut args = sidecar.client("sensor", "mqttv5");
    args.extend(["-t", &topic, "-m", "21.5", "-q", "1"].map(str::to_owned));
    let (lines, stderr) = publish_until_received(dash, &args);
    assert_eq!(lines, [format!("{topic} 21.5")], "{stderr}");
    // The clients' own credentials mean nothing to the broker.
    let port = broker.port.to_string();
    let direct = ["-h", "127.0.0.1", "-p", &port, "-u", "sensor", "-P", "rosnes", "-t", &topic, "-m", "x"];
    let out = Command::new("mosquitto_pub").args(direct).output().unwrap();
    assert!(!out.status.success(), "the broker took the client's own credentials");
    sidecar.assert_quiet();
}

#[test]
fn the_sidecar_reaches_the_broker_over_mutual_tls_and_refuses_a_broker_it_cannot_trust() {
    // A broker whose only way in for the sidecar is TLS with a client certificate.
    let pki = Pki::new("mqtt-upstream");
    pki.issue("broker", server_sans(), false);
    pki.issue("sidecar", vec![rcgen::SanType::DnsName("sidecar.weir.test".try_into().unwrap())], false);
    let tls_port = 11896;
    let listener = format!(
        "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true",
        pki.path("broker.crt").display(),
        pki.path("broker.key").display(),
        pki.path("ca.pem").display()
    );
    let _broker = OwnMosquitto::start_with(11895, &[("WEIR_MOSQUITTO_EXTRA_CONF", listener.as_str())]);
    let root = unique("mqtt-upstream-tls");
    let upstream_tls = |ca: &str| {
        format!(
            "upstream_tls: {{ca: {ca}, cert: {}, key: {}}}\n",
            pki.path("sidecar.crt").display(),
            pki.path("sidecar.key").display()
        )
    };
    let ca = pki.path("ca.pem").display().to_string();
    let policy = POLICY.replace("T/", &format!("{root}/"));
    let sidecar = MqttSidecar::start_with(&policy, &format!("localhost:{tls_port}"), &upstream_tls(&ca));
    let topic = format!("{root}/sensors/4/temp");
    let mut args = sidecar.client("dash", "mqttv311");
    args.extend(["-t", &topic, "-q", "1", "-C", "1", "-W", "10"].map(str::to_owned));
    let dash = subscriber(&args);
    let mut args = sidecar.client("sensor", "mqttv311");
    args.extend(["-t", &topic, "-m", "over-tls", "-q", "1"].map(str::to_owned));
    let (lines, stderr) = publish_until_received(dash, &args);
    assert_eq!(lines, [format!("{topic} over-tls")], "{stderr}");
    sidecar.assert_quiet();

    // Trusting another CA, the sidecar refuses the broker: the client's connection ends, with
    // the reason in the sidecar's log.
    let stranger = Pki::new("mqtt-upstream-stranger");
    let ca = stranger.path("ca.pem").display().to_string();
    let distrustful = MqttSidecar::start_with(&policy, &format!("localhost:{tls_port}"), &upstream_tls(&ca));
    let (published, _) = publish(
        &distrustful
            .client("sensor", "mqttv311")
            .into_iter()
            .chain(["-t", &topic, "-m", "x"].map(str::to_owned))
            .collect::<Vec<_>>(),
    );
    assert!(!published, "a broker the sidecar cannot trust was used");
    assert!(distrustful.logged(&["localhost:11896", "TLS handshake failed"]), "{:?}", distrustful.logs());
}

#[test]
fn large_payloads_and_mqtt5_properties_pass_through_unchanged() {
    let root = unique("mqtt-large");
    let sidecar = MqttSidecar::start(&POLICY.replace("T/", &format!("{root}/")));
    let topic = format!("{root}/sensors/9/temp");
    // 2 MiB of a pattern that would show any byte moved, with a user property and a
    // content type (MQTT 5 properties the sidecar does not read).
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = std::env::temp_dir().join(format!("{root}.bin"));
    std::fs::write(&file, &payload).unwrap();
    let mut args = sidecar.client("dash", "mqttv5");
    args.extend(["-t", &topic, "-q", "1", "-C", "1", "-W", "20", "-N", "-F", "%l %P|%p"].map(str::to_owned));
    let dash = Command::new("mosquitto_sub").args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut args = sidecar.client("sensor", "mqttv5");
    args.extend(["-t", &topic, "-q", "1", "-f"].map(str::to_owned));
    args.push(file.display().to_string());
    args.extend(
        [
            "-D",
            "publish",
            "user-property",
            "origin",
            "line-7",
            "-D",
            "publish",
            "content-type",
            "application/octet-stream",
        ]
        .map(str::to_owned),
    );
    let (published, stderr) = publish(&args);
    assert!(published, "{stderr}");
    let out = dash.wait_with_output().unwrap();
    let head = format!("{} origin:line-7|", payload.len());
    assert!(
        out.stdout.starts_with(head.as_bytes()),
        "{}",
        String::from_utf8_lossy(&out.stdout[..80.min(out.stdout.len())])
    );
    assert!(out.stdout[head.len()..] == payload[..], "the payload arrived changed");
    let _ = std::fs::remove_file(&file);
    sidecar.assert_quiet();
}
