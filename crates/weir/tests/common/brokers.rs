//! The tests' Mosquitto and RabbitMQ (started by the repository's scripts when needed) and the
//! real clients the tests drive them with: mosquitto_pub/mosquitto_sub and pika
//! (tests/python/amqp_client.py).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo_root;

/// The tests' Mosquitto, started if needed: its address.
pub fn mosquitto() -> String {
    let script = repo_root().join("scripts/mosquitto.sh");
    let status = Command::new(&script).arg("start").status().expect("run scripts/mosquitto.sh");
    assert!(status.success(), "scripts/mosquitto.sh start failed");
    let out = Command::new(&script).arg("url").output().expect("scripts/mosquitto.sh url");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The AMQP port of the tests' shared RabbitMQ node, started if needed.
pub fn rabbitmq() -> u16 {
    let status = Command::new(repo_root().join("scripts/rabbitmq.sh")).arg("start").status().expect("rabbitmq.sh");
    assert!(status.success(), "scripts/rabbitmq.sh start failed");
    15673
}

/// What a sidecar logs in to the tests' RabbitMQ as (scripts/rabbitmq.sh's user), as YAML.
pub const RABBITMQ_LOGIN: &str = "{username: weir, password: weir-secret}";

/// mosquitto_pub/mosquitto_sub arguments reaching `port` as `user` (password: the name
/// reversed) in MQTT `version` (mqttv311, mqttv5).
pub fn mqtt_client(port: u16, user: &str, version: &str) -> Vec<String> {
    let password: String = user.chars().rev().collect();
    ["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", &password, "-V", version].map(str::to_owned).to_vec()
}

/// Runs mosquitto_pub with `args`; (exit status success, stderr).
pub fn publish(args: &[String]) -> (bool, String) {
    let out = Command::new("mosquitto_pub").args(args).output().expect("mosquitto_pub");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A mosquitto_sub started with `args`, printing `topic payload` lines, given time to subscribe.
pub fn subscriber(args: &[String]) -> Child {
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
pub fn stopped(mut child: Child) -> (Vec<String>, String) {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Publishes with `args` until `subscriber` (one that exits once it has its messages, `-C`)
/// has them, for at most 10 s: a subscriber may subscribe late on a busy machine. What it
/// printed.
pub fn publish_until_received(mut subscriber: Child, args: &[String]) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscriber.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let (published, stderr) = publish(args);
        assert!(published, "{stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    stopped(subscriber)
}

/// Runs pika through `port` as `user` (password: the name reversed; `amqplain:` before the
/// name logs in with AMQPLAIN) with `steps`, and environment variables `env` (AMQP_TLS_CA,
/// AMQP_TLS_CERT, AMQP_TLS_KEY); the lines it printed.
pub fn pika(port: u16, user: &str, steps: &[String], env: &[(&str, PathBuf)]) -> Vec<String> {
    let password: String = user.trim_start_matches("amqplain:").chars().rev().collect();
    let mut args = vec![port.to_string(), user.to_owned(), password];
    args.extend(steps.iter().cloned());
    let out = Command::new(super::venv_python())
        .arg(repo_root().join("tests/python/amqp_client.py"))
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("amqp_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "amqp_client.py {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(str::to_owned).collect()
}
