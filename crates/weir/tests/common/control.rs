//! A running `weir control` with its own data directory, and `weir ctl` against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{http_get, port_block, weir_binary};

pub struct ControlPlane {
    child: Option<Child>,
    pub api: SocketAddr,
    /// Where sidecars stream from.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    extra_args: Vec<String>,
}

impl ControlPlane {
    /// Starts a control plane on a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Another replica of `first`: its own data directory and ports, the same CA and tokens
    /// (copied, as an operator would distribute them) and the same extra flags.
    pub fn replica_of(first: &ControlPlane) -> Self {
        let block = port_block();
        let api: SocketAddr = format!("127.0.0.1:{}", block + 18).parse().unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", block + 17).parse().unwrap();
        let data_dir = std::env::temp_dir().join(format!("weir-control-{}-{}", std::process::id(), api.port()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(data_dir.join("ca")).unwrap();
        for file in ["ctl-token", "join-token", "ca/ca.pem", "ca/ca.key", "ca/bundle.pem"] {
            std::fs::copy(first.data_dir.join(file), data_dir.join(file)).unwrap();
        }
        let extra_args = first.extra_args.clone();
        let mut plane = ControlPlane { child: None, api, listen, data_dir, logs: Arc::default(), extra_args };
        plane.restart();
        plane
    }

    /// With extra `weir control` flags.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let block = port_block();
        let api: SocketAddr = format!("127.0.0.1:{}", block + 18).parse().unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", block + 17).parse().unwrap();
        let data_dir = std::env::temp_dir().join(format!("weir-control-{}-{}", std::process::id(), api.port()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let mut plane = ControlPlane { child: None, api, listen, data_dir, logs: Arc::default(), extra_args };
        plane.restart();
        plane
    }

    /// Starts the process again on the same directory and address (after [`Self::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = self.spawn();
        super::capture_logs(&mut child, &self.logs);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.api, "/healthz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("control plane not up within 20 s; logs:\n{}", self.logs().join("\n"));
    }

    /// Another `weir control` on the same directory (to see it refused), run to its end.
    pub fn second_instance(&self) -> Output {
        let port = self.api.port() + 1;
        Command::new(weir_binary())
            .args(["control", "--log-format", "json", "--api", &format!("127.0.0.1:{port}")])
            .args(["--listen", &format!("127.0.0.1:{}", port + 1), "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("run weir control")
    }

    fn spawn(&self) -> Child {
        Command::new(weir_binary())
            .args([
                "control",
                "--log-format",
                "json",
                "--log-level",
                "info,weir_control=debug",
                "--api",
                &self.api.to_string(),
            ])
            .args(["--listen", &self.listen.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir control")
    }

    /// SIGKILL: no chance to tidy up, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("ctl-token")
    }

    pub fn join_token_file(&self) -> PathBuf {
        self.data_dir.join("join-token")
    }

    /// `weir ctl ARGS` against this control plane.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        self.ctl_with_stdin(args, None)
    }

    pub fn ctl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Ctl {
        let mut command = Command::new(weir_binary());
        command
            .arg("ctl")
            .args(args)
            .env("WEIR_CONTROL", self.api.to_string())
            .env("WEIR_CTL_TOKEN_FILE", self.token_file())
            .env_remove("WEIR_CTL_TOKEN")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn weir ctl");
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        Ctl {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Applies `text` (resources, YAML) as the file `name`; `weir ctl`'s output.
    pub fn apply(&self, name: &str, text: &str) -> String {
        self.ctl(&["apply", "-f", path_str(&self.file(name, text))]).ok()
    }

    /// `weir ctl status` until `workload`'s sidecar reports `expected` in its CONFIG column.
    pub fn wait_status(&self, workload: &str, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.ctl(&["status"]).ok();
            if status.lines().any(|l| l.contains(&format!(" {workload} ")) && l.contains(expected)) {
                return status;
            }
            assert!(Instant::now() < deadline, "status never showed {expected:?} for {workload}:\n{status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The topology as `weir ctl topology -o json` prints it.
    pub fn topology(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["topology", "-o", "json"]).ok()).unwrap()
    }

    /// Polls the topology until `ready` holds of it (flows are reported every 2 s).
    pub fn topology_when(&self, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let graph = self.topology();
            if ready(&graph) {
                return graph;
            }
            assert!(Instant::now() < deadline, "the topology never showed the flows expected:\n{graph:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes `text` to a file in a fresh directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.data_dir.with_extension("files").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_dir_all(self.data_dir.with_extension("files"));
    }
}

/// `weir ctl apply -f FILE` against `plane` on a thread of its own, for writers at once.
pub fn apply_in_thread(plane: &ControlPlane, file: PathBuf) -> std::thread::JoinHandle<Output> {
    let (api, token) = (plane.api.to_string(), plane.token_file());
    std::thread::spawn(move || {
        Command::new(weir_binary())
            .args(["ctl", "--server", &api, "--token-file", token.to_str().unwrap(), "apply", "-f"])
            .arg(file)
            .output()
            .unwrap()
    })
}

/// What one `weir ctl` run printed.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "weir ctl failed: {}{}", self.stdout, self.stderr);
        self.stdout
    }

    /// Asserts failure and returns stderr.
    pub fn refused(self) -> String {
        assert_ne!(self.code, 0, "weir ctl should have failed: {}", self.stdout);
        self.stderr
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The edge `from` → `to` of a topology graph, if there is one.
pub fn edge<'a>(graph: &'a serde_json::Value, from: &str, to: &str) -> Option<&'a serde_json::Value> {
    graph["edges"].as_array().unwrap().iter().find(|e| e["from"] == from && e["to"] == to)
}

/// A `weir proxy --control` process: its configuration comes from `plane`.
pub struct ManagedSidecar {
    child: Option<Child>,
    pub workload: String,
    pub state_dir: PathBuf,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    control: String,
    join_token_file: PathBuf,
    control_ca: PathBuf,
}

impl ManagedSidecar {
    /// Starts a sidecar for `workload` (whose Workload names `admin` as its admin address);
    /// does not wait for it to be ready.
    pub fn spawn(plane: &ControlPlane, workload: &str, admin: SocketAddr) -> Self {
        Self::spawn_with_token(plane, workload, admin, &plane.join_token_file())
    }

    /// With another join token file (a wrong one, say).
    pub fn spawn_with_token(plane: &ControlPlane, workload: &str, admin: SocketAddr, token_file: &Path) -> Self {
        let state_dir = plane.data_dir.with_extension(format!("sidecar-{workload}"));
        let mut sidecar = ManagedSidecar {
            child: None,
            workload: workload.to_owned(),
            state_dir,
            admin,
            logs: Arc::default(),
            control: plane.listen.to_string(),
            join_token_file: token_file.to_owned(),
            control_ca: plane.data_dir.join("ca").join("bundle.pem"),
        };
        sidecar.restart();
        sidecar
    }

    /// Streams from these replicas (in this order) from its next start.
    pub fn set_replicas(&mut self, replicas: &[&ControlPlane]) {
        self.control = replicas.iter().map(|p| p.listen.to_string()).collect::<Vec<_>>().join(",");
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(weir_binary())
            .args(["proxy", "--log-format", "json", "--log-level", "info,weir_kafka_proxy=debug"])
            .args(["--control", &self.control, "--workload", &self.workload, "--join-token-file"])
            .arg(&self.join_token_file)
            .arg("--control-ca")
            .arg(&self.control_ca)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir proxy --control");
        super::capture_logs(&mut child, &self.logs);
        self.child = Some(child);
    }

    /// Waits until the sidecar serves (its admin `/readyz`).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.admin, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("managed sidecar not ready within 40 s; logs:\n{}", self.logs().join("\n"));
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line containing `text`.
    pub fn wait_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.logs().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {within:?}:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test on any warning the sidecar logged that `allowed` does not explain.
    pub fn assert_quiet_except(&self, allowed: &[&str]) {
        let unexpected = super::unexpected_warnings(self.logs(), allowed);
        assert!(unexpected.is_empty(), "sidecar logged unexpected warnings:\n{}", unexpected.join("\n"));
    }

    /// The workload identity the sidecar keeps (JSON: spiffe_id, chain_pem, not_after, ...).
    pub fn kept_identity(&self) -> Option<serde_json::Value> {
        let text = std::fs::read(self.state_dir.join(format!("{}.identity.json", self.workload))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, body) = http_get(self.admin, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        super::metric_value(&body, name, labels)
    }
}

impl Drop for ManagedSidecar {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
