//! The MQTT sidecar (`weir proxy --protocol mqtt`) in front of a real Mosquitto
//! (scripts/mosquitto.sh), driven by Mosquitto's own clients (mosquitto_pub, mosquitto_sub),
//! MQTT 3.1.1 and 5: who connects is checked against the credentials file, what they publish
//! and subscribe against the policy, with MQTT's wildcard rules.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{capture_logs, port_block, repo_root, sasl_users_file, unexpected_warnings, unique, weir_binary};
use weir_core::sasl::ScramMechanism;

/// The tests' Mosquitto, started if needed: its address.
fn mosquitto() -> String {
    let script = repo_root().join("scripts/mosquitto.sh");
    let status = Command::new(&script).arg("start").status().expect("run scripts/mosquitto.sh");
    assert!(status.success(), "scripts/mosquitto.sh start failed");
    let out = Command::new(&script).arg("url").output().expect("scripts/mosquitto.sh url");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct MqttSidecar {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: PathBuf,
}

impl MqttSidecar {
    /// A sidecar with users `sensor`, `dash` and `admin` (password: the name reversed) and
    /// `policy` (the rules' YAML).
    fn start(policy: &str) -> Self {
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
        let addr: SocketAddr = format!("127.0.0.1:{}", port_block()).parse().unwrap();
        let config = dir.join("mqtt.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nupstream: {}\ncredentials: {}\nauthorization: {{policy: {}}}\n\
                 log: {{format: json, level: \"info,weir_mqtt_proxy=debug\"}}\n",
                mosquitto(),
                users.display(),
                dir.join("policy.yaml").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(weir_binary())
            .args(["proxy", "--protocol", "mqtt", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let logs = Arc::new(Mutex::new(Vec::new()));
        capture_logs(&mut child, &logs);
        let sidecar = MqttSidecar { child, addr, logs, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the MQTT sidecar did not listen: {:?}", sidecar.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        sidecar
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Whether a log line containing every one of `words` appears within a few seconds.
    fn logged(&self, words: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| words.iter().all(|w| l.contains(w))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn assert_quiet(&self) {
        let unexpected = unexpected_warnings(self.logs(), &[]);
        assert!(unexpected.is_empty(), "unexpected warnings: {unexpected:?}");
    }

    /// mosquitto_pub/mosquitto_sub arguments reaching this sidecar as `user`.
    fn client(&self, user: &str, version: &str) -> Vec<String> {
        let password: String = user.chars().rev().collect();
        ["-h", "127.0.0.1", "-p", &self.addr.port().to_string(), "-u", user, "-P", &password, "-V", version]
            .map(str::to_owned)
            .to_vec()
    }
}

impl Drop for MqttSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs mosquitto_pub with `args`; (exit status success, stderr).
fn publish(args: &[String]) -> (bool, String) {
    let out = Command::new("mosquitto_pub").args(args).output().expect("mosquitto_pub");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A mosquitto_sub started with `args`, printing `topic payload` lines, given time to subscribe.
fn subscriber(args: &[String]) -> Child {
    let child = Command::new("mosquitto_sub")
        .args(args)
        .args(["-F", "%t %p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));
    child
}

/// What a subscriber printed once stopped: (stdout lines, stderr).
fn stopped(mut child: Child) -> (Vec<String>, String) {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
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
