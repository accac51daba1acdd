//! A sidecar in front of one broker (`weir proxy --protocol mqtt|amqp`), or a gateway
//! (`weir gateway mqtt`), its log captured.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{capture_logs, http_get, metric_value, port_block, unexpected_warnings, weir_binary};

pub struct BrokerSidecar {
    child: Child,
    /// The `weir` arguments it runs with (a restart runs them again).
    command: Vec<String>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Where its config (and whatever the test put beside it) lives.
    pub dir: PathBuf,
}

impl BrokerSidecar {
    /// Starts `weir proxy --protocol PROTOCOL` with `config` (YAML, without `listen` and
    /// `admin`, which are chosen here) written into `dir`, JSON logs, and waits until it listens.
    pub fn start(protocol: &str, dir: PathBuf, config: &str) -> Self {
        Self::spawn(&["proxy", "--protocol", protocol], protocol, dir, config)
    }

    /// Starts `weir gateway KIND` as [`BrokerSidecar::start`] starts a sidecar.
    pub fn gateway(kind: &str, dir: PathBuf, config: &str) -> Self {
        Self::spawn(&["gateway", kind], &format!("{kind}-gateway"), dir, config)
    }

    fn spawn(command: &[&str], protocol: &str, dir: PathBuf, config: &str) -> Self {
        let base = port_block();
        let addr: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", base + 19).parse().unwrap();
        let file = dir.join(format!("{protocol}.yaml"));
        std::fs::write(&file, format!("listen: {addr}\nadmin: {admin}\n{config}")).unwrap();
        let mut command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        command.extend(["--log-format", "json", "--config"].map(str::to_owned));
        command.push(file.display().to_string());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let child = Self::run(&command, &logs);
        let sidecar = BrokerSidecar { child, command, addr, admin, logs, dir };
        sidecar.wait_listening();
        sidecar
    }

    fn run(command: &[String], logs: &Arc<Mutex<Vec<String>>>) -> Child {
        let mut child = Command::new(weir_binary())
            .args(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        capture_logs(&mut child, logs);
        child
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "{:?} did not listen: {:?}", self.command, self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (no goodbye to its clients, nothing saved on the way out) and starts
    /// it again on the same ports and config; waits until it listens.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::run(&self.command, &self.logs);
        self.wait_listening();
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Whether a log line containing every one of `words` appears within a few seconds.
    pub fn logged(&self, words: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| words.iter().all(|w| l.contains(w))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// One sample of the sidecar's `/metrics`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, body) = http_get(self.admin, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        metric_value(&body, name, labels)
    }

    /// No warning or error in its log (and nothing that is not a JSON log line).
    pub fn assert_quiet(&self) {
        let unexpected = unexpected_warnings(self.logs(), &[]);
        assert!(unexpected.is_empty(), "unexpected warnings: {unexpected:?}");
    }
}

impl Drop for BrokerSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
