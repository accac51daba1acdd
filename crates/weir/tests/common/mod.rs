//! The integration-test harness: a real Kafka cluster (started through `scripts/kafka.sh`),
//! the real `weir` binary in front of it, and real clients (librdkafka in-process, the Java
//! client as a subprocess).
//!
//! The cluster's MESH listeners advertise `broker-N.main.weir.invalid`, a name only the sidecar
//! can resolve (through `upstream.resolve`). A client that ever skipped the sidecar would fail
//! to connect, so every passing scenario also proves that no address leaked.

#![allow(dead_code)]

pub mod broker_sidecar;
pub mod brokers;
pub mod control;
pub mod idp;
pub mod pki;
pub mod raw;
pub mod rd;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BROKERS: usize = 3;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// The `weir` binary the scenarios run: this build's, or the one `WEIR_TEST_BIN` names (to
/// measure another build with the same scenario, e.g. an older one for before/after figures).
pub fn weir_binary() -> PathBuf {
    std::env::var_os("WEIR_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir")))
}

/// Starts (idempotently) the 3-broker `main` cluster once per test binary.
pub fn kafka() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let status = Command::new(repo_root().join("scripts/kafka.sh"))
            .args(["start", "--brokers", &BROKERS.to_string()])
            .status()
            .expect("run scripts/kafka.sh");
        assert!(status.success(), "scripts/kafka.sh start failed");
    });
}

/// Starts (idempotently) the schema registry once per test binary (scripts/registry.sh:
/// Apicurio, in memory); the URL of its Confluent-compatible API.
pub fn registry_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = repo_root().join("scripts/registry.sh");
        let status = Command::new(&script).arg("start").status().expect("run scripts/registry.sh");
        assert!(status.success(), "scripts/registry.sh start failed");
        let url = Command::new(&script).arg("url").output().expect("scripts/registry.sh url");
        String::from_utf8(url.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// Starts (idempotently) Jaeger once per test binary (scripts/jaeger.sh: all in one, in
/// memory); (its OTLP/HTTP base URL, its query API's base URL).
pub fn jaeger() -> (String, String) {
    static URLS: OnceLock<(String, String)> = OnceLock::new();
    URLS.get_or_init(|| {
        let script = repo_root().join("scripts/jaeger.sh");
        let status = Command::new(&script).arg("start").status().expect("run scripts/jaeger.sh");
        assert!(status.success(), "scripts/jaeger.sh start failed");
        let url = |command: &str| {
            let out = Command::new(&script).arg(command).output().expect("scripts/jaeger.sh");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        (url("url"), url("query-url"))
    })
    .clone()
}

/// The tests' venv's python (scripts/python-env.sh makes it).
pub fn venv_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/python-env.sh")).output().expect("run scripts/python-env.sh");
        assert!(out.status.success(), "scripts/python-env.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// Runs tests/python/schema_client.py (Confluent's Python client and serializers) in the
/// tests' venv (scripts/python-env.sh), from `dir` (where generated Protobuf modules are).
pub fn python_client(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(venv_python())
        .arg(repo_root().join("tests/python/schema_client.py"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run schema_client.py")
}

/// Runs tests/python/`script` in the tests' venv.
pub fn python_script(script: &str, args: &[&str]) -> std::process::Output {
    Command::new(venv_python()).arg(repo_root().join("tests/python").join(script)).args(args).output().expect(script)
}

/// Bootstrap servers of the MESH listeners (addresses only the sidecar can follow).
pub fn mesh_bootstrap() -> String {
    (0..BROKERS).map(|i| format!("127.0.0.1:{}", 9093 + 10 * i)).collect::<Vec<_>>().join(",")
}

/// Bootstrap servers of the PLAINTEXT listeners, for direct (unproxied) access.
pub fn direct_bootstrap() -> String {
    (0..BROKERS).map(|i| format!("127.0.0.1:{}", 9092 + 10 * i)).collect::<Vec<_>>().join(",")
}

/// Where scripts/kafka.sh keeps the test cluster: its PKI, its brokers' data.
fn cluster_state() -> PathBuf {
    let root = std::env::var_os("WEIR_KAFKA_STATE").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        cache.join("weir/kafka")
    });
    root.join("main")
}

/// The test cluster's PKI (made by scripts/kafka.sh): `ca.pem`, `client.crt`, `client.key`.
pub fn cluster_tls_dir() -> PathBuf {
    cluster_state().join("tls")
}

/// The bytes of every log segment of `topic` on every broker: what the brokers store, read
/// from their disks.
pub fn topic_log_bytes(topic: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for node in std::fs::read_dir(cluster_state()).expect("the cluster's state").flatten() {
        let Ok(partitions) = std::fs::read_dir(node.path().join("data")) else { continue };
        for partition in partitions.flatten() {
            let name = partition.file_name().to_string_lossy().into_owned();
            if name.rsplit_once('-').is_none_or(|(t, p)| t != topic || p.parse::<u32>().is_err()) {
                continue;
            }
            for segment in std::fs::read_dir(partition.path()).unwrap().flatten() {
                if segment.path().extension().is_some_and(|e| e == "log") {
                    bytes.extend(std::fs::read(segment.path()).unwrap());
                }
            }
        }
    }
    bytes
}

/// A unique name for a test's topics and groups.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Ports for one sidecar: listen port, then broker ports base..base+10, then admin.
pub fn port_block() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    // Different test binaries run one after another, so blocks may repeat across binaries.
    // Below the ephemeral range (32768+), so no outgoing connection can hold our ports.
    20000 + (std::process::id() % 40) as u16 * 300 + (slot % 15) * 20
}

/// A running `weir proxy` whose log lines (JSON) are captured for assertions.
pub struct Sidecar {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub broker_port_base: u16,
    logs: Arc<Mutex<Vec<String>>>,
    log_readers: Vec<std::thread::JoinHandle<()>>,
    pub config_path: PathBuf,
}

pub struct SidecarOptions {
    pub bootstrap: String,
    /// Top-level YAML appended to the config.
    pub extra_yaml: String,
    /// YAML lines (indented two spaces) appended inside `upstream:`.
    pub upstream_yaml: String,
    /// The open-descriptor limit (soft, hard) the sidecar starts with.
    pub descriptor_limit: Option<(u64, u64)>,
    /// Environment variables the sidecar starts with (beyond the test's own).
    pub env: Vec<(String, String)>,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        Self {
            bootstrap: mesh_bootstrap(),
            extra_yaml: String::new(),
            upstream_yaml: String::new(),
            descriptor_limit: None,
            env: Vec::new(),
        }
    }
}

impl Sidecar {
    pub fn start() -> Self {
        Self::start_with(SidecarOptions::default())
    }

    pub fn start_with(options: SidecarOptions) -> Self {
        kafka();
        let base = port_block();
        let addr: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", base + 19).parse().unwrap();
        let config_path = std::env::temp_dir().join(format!("weir-test-{base}-{}.yaml", std::process::id()));
        let bootstrap: Vec<String> = options.bootstrap.split(',').map(|s| format!("\"{s}\"")).collect();
        let yaml = format!(
            "listen: {addr}\nbootstrap: [{}]\nadmin: {admin}\nbroker_ports: {{base: {}, count: 10}}\n\
             upstream:\n  resolve: {{\"*.weir.invalid\": 127.0.0.1}}\n{}shutdown_grace_ms: 5000\n\
             log: {{format: json, level: \"info,weir_kafka_proxy=debug\"}}\n{}",
            bootstrap.join(", "),
            base + 1,
            options.upstream_yaml,
            options.extra_yaml
        );
        std::fs::write(&config_path, yaml).unwrap();
        let mut command = match options.descriptor_limit {
            // prlimit execs the command, so the child's pid stays the sidecar's.
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}")).arg(weir_binary());
                c
            }
            None => Command::new(weir_binary()),
        };
        let mut child = command
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .args(["proxy", "--config"])
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let log_readers = capture_logs(&mut child, &logs);
        let sidecar = Sidecar { child, addr, admin, broker_port_base: base + 1, logs, log_readers, config_path };
        sidecar.wait_ready();
        sidecar
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.admin, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sidecar not ready within 30 s; logs:\n{}", self.logs().join("\n"));
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.admin, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }

    /// The value of one sample in `/metrics`, e.g. `metric("weir_kafka_requests_total", &[("api", "Metadata")])`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Log lines at WARN or above that no pattern in `allowed` explains.
    pub fn unexpected_warnings(&self, allowed: &[&str]) -> Vec<String> {
        unexpected_warnings(self.logs(), allowed)
    }

    /// Fails the test if the sidecar logged any warning or error (shotover's habit: quiet logs
    /// are part of correct).
    pub fn assert_quiet(&self) {
        self.assert_quiet_except(&[]);
    }

    pub fn assert_quiet_except(&self, allowed: &[&str]) {
        let unexpected = self.unexpected_warnings(allowed);
        assert!(unexpected.is_empty(), "sidecar logged unexpected warnings:\n{}", unexpected.join("\n"));
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its last lines are read once the pipes reach end of file.
                for reader in self.log_readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "sidecar did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connections the sidecar holds open to the test cluster's brokers (any listener of
    /// theirs), read from /proc: what the brokers see of it.
    pub fn broker_connections(&self) -> usize {
        let pid = self.pid();
        let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter_map(|target| {
                        let t = target.to_string_lossy().into_owned();
                        Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let broker_port = |hex_address: &str| {
            let port = hex_address.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            port.is_some_and(|p| (9092..9092 + 10 * BROKERS as u16).contains(&p))
        };
        ["tcp", "tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
            .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // remote address, state (01: established), inode
                fields.len() > 9 && fields[3] == "01" && broker_port(fields[2]) && inodes.contains(fields[9])
            })
            .count()
    }

    /// The open-descriptor limits (soft, hard) the sidecar runs with.
    pub fn descriptor_limit(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
        let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        (numbers[0], numbers[1])
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// Collects a child's stdout and stderr lines into `logs`, on threads that end with the pipes.
pub fn capture_logs(child: &mut Child, logs: &Arc<Mutex<Vec<String>>>) -> Vec<std::thread::JoinHandle<()>> {
    let streams = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    streams
        .into_iter()
        .flatten()
        .map(|stream| {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            })
        })
        .collect()
}

/// Log lines (JSON) at WARN or above that no pattern in `allowed` explains; anything not JSON
/// (a panic message, say) counts too.
pub fn unexpected_warnings(lines: Vec<String>, allowed: &[&str]) -> Vec<String> {
    lines
        .into_iter()
        .filter(|line| {
            let level = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_owned));
            match level.as_deref() {
                Some("WARN") | Some("ERROR") => true,
                Some(_) => false,
                // Anything not JSON (a panic message, say) is suspicious too.
                None => true,
            }
        })
        .filter(|line| !allowed.iter().any(|pattern| line.contains(pattern)))
        .collect()
}

/// Writes a SASL credentials file (SCRAM entries; PLAIN is checked against them) for these
/// users and passwords into `dir`, and returns its path. No password reaches the file.
pub fn sasl_users_file(dir: &Path, users: &[(&str, &str, weir_core::sasl::ScramMechanism)]) -> PathBuf {
    use weir_core::sasl::{scram_entry, ScramMechanism};
    let mut yaml = String::from("users:\n");
    for (user, password, mechanism) in users {
        let e = scram_entry(user, password, *mechanism, format!("{user}-salt-1234").as_bytes(), 4096);
        let mechanism = match e.mechanism {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        };
        yaml += &format!(
            "  - {{user: {}, mechanism: {mechanism}, salt: \"{}\", iterations: {}, stored_key: \"{}\", server_key: \"{}\"}}\n",
            e.user, e.salt, e.iterations, e.stored_key, e.server_key
        );
        assert!(!yaml.contains(password), "a password reached the credentials file");
    }
    let path = dir.join("users.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A minimal HTTP/1.0 GET (no client library needed for three admin routes).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: weir\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Sums the samples of `name` with these labels in OpenMetrics text; 0 when there is none
/// (a counter family before its first increment is not exported at all). Panics unless the
/// README's metrics table documents `name`, so a misspelt name cannot make a check pass.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    static DOCUMENTED: OnceLock<Vec<String>> = OnceLock::new();
    let documented = DOCUMENTED.get_or_init(|| {
        let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
        readme
            .split('`')
            .filter(|w| w.starts_with("weir_") && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_owned)
            .collect()
    });
    let known = documented.iter().any(|family| {
        name.strip_prefix(family.as_str()).is_some_and(|suffix| ["", "_bucket", "_sum", "_count"].contains(&suffix))
    });
    assert!(known, "`{name}` is not a metric the README documents");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// The JSON lines of an audit log written so far (none if the file does not exist yet).
pub fn audit_lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

/// The audit log's lines once `ready` holds for them (the log is written by a thread of its
/// own), or as they are after five seconds.
pub fn audit_lines_when(file: &Path, ready: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = audit_lines(file);
        if ready(&lines) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `tests/java/WeirClient.java` with the Kafka classpath; returns stdout lines.
pub fn java_client(args: &[&str]) -> Vec<String> {
    let output = java_client_output(args);
    assert!(
        output.status.success(),
        "java client {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

pub fn java_client_output(args: &[&str]) -> std::process::Output {
    java_client_output_with_jvm(&[], args)
}

/// The Java client with extra JVM options (system properties, say).
pub fn java_client_output_with_jvm(jvm: &[&str], args: &[&str]) -> std::process::Output {
    Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1"])
        .args(jvm)
        .args(["-cp", &classpath()])
        .arg(repo_root().join("tests/java/WeirClient.java"))
        .args(args)
        .output()
        .expect("run java")
}

pub fn classpath() -> String {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| {
        let out =
            Command::new(repo_root().join("scripts/kafka.sh")).arg("classpath").output().expect("kafka.sh classpath");
        assert!(out.status.success(), "kafka.sh classpath failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// Runs Debian's chromium headless (`.ci/run` installs it) with `args`; its stdout.
pub fn headless_chromium(args: &[&str]) -> String {
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(args)
        .output()
        .expect("chromium (Debian's package) must be installed for the browser tests");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
