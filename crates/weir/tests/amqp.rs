//! The AMQP sidecar (`weir proxy --protocol amqp`) in front of a real RabbitMQ
//! (scripts/rabbitmq.sh), driven by two client libraries: pika (tests/python/amqp_client.py)
//! and RabbitMQ's Go client amqp091-go (tests/go/amqpclient). Logins are checked against the
//! credentials file; declares, binds, publishes, consumes and gets against the policy, with
//! RabbitMQ's configure/write/read model; a refusal closes only its channel.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::broker_sidecar::BrokerSidecar;
use common::brokers::{self, rabbitmq, RABBITMQ_LOGIN};
use common::pki::{server_sans, Pki};
use common::{audit_lines_when, python_script, repo_root, sasl_users_file, unique};
use weir_core::sasl::ScramMechanism;

/// What the sidecar logs in to RabbitMQ as (scripts/rabbitmq.sh's user).
fn broker_login() -> String {
    format!("broker_credentials: {RABBITMQ_LOGIN}\n")
}

/// A sidecar in front of the RabbitMQ on `broker_port` with users `app`, `reader` and
/// `admin` (password: the name reversed), `policy`, an audit log, and `extra` YAML.
fn sidecar(policy: &str, broker_port: u16, extra: &str) -> BrokerSidecar {
    let dir = std::env::temp_dir().join(unique("weir-amqp"));
    std::fs::create_dir_all(&dir).unwrap();
    let users = sasl_users_file(
        &dir,
        &[
            ("app", "ppa", ScramMechanism::Sha256),
            ("reader", "redaer", ScramMechanism::Sha256),
            ("admin", "nimda", ScramMechanism::Sha512),
        ],
    );
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let config = format!(
        "upstream: 127.0.0.1:{broker_port}\ncredentials: {}\nauthorization: {{policy: {}}}\n\
         audit: {{path: {}}}\nlimits: {{handshake_timeout_ms: 1500}}\n\
         log: {{format: json, level: \"info,weir_amqp_proxy=debug\"}}\n{extra}",
        users.display(),
        dir.join("policy.yaml").display(),
        dir.join("audit.jsonl").display(),
    );
    BrokerSidecar::start("amqp", dir, &config)
}

/// Runs pika through `port` as `user` with `steps`; the lines it printed.
fn pika(port: u16, user: &str, steps: &[String]) -> Vec<String> {
    brokers::pika(port, user, steps, &[])
}

/// The Go client, built once per test binary.
fn go_client() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = std::env::temp_dir().join(unique("amqpclient"));
        let status = Command::new(go())
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(repo_root().join("tests/go/amqpclient"))
            .status()
            .expect("go build");
        assert!(status.success(), "go build of tests/go/amqpclient failed");
        out
    })
}

fn go() -> PathBuf {
    let local = PathBuf::from("/usr/local/go/bin/go");
    if local.exists() {
        local
    } else {
        PathBuf::from("go")
    }
}

/// Runs the Go client with `args`; the lines it printed.
fn amqp091(args: &[&str]) -> Vec<String> {
    let out = Command::new(go_client()).args(args).output().expect("amqpclient");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "amqpclient {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(str::to_owned).collect()
}

fn url(sidecar: &BrokerSidecar, user: &str) -> String {
    let password: String = user.chars().rev().collect();
    format!("amqp://{user}:{password}@127.0.0.1:{}/", sidecar.addr.port())
}

/// `app` may do everything with `P.*` but read `P.secret`; `reader` may read `P.*` queues
/// and bind them to `P.*` exchanges; the default exchange is `app`'s to publish to.
const POLICY: &str = r#"
rules:
  - {effect: allow, principals: ["User:app"], resources: ["exchange:P.*", "queue:P.*", "exchange:amq.default"], operations: [all]}
  - {effect: allow, principals: ["User:reader"], resources: ["queue:P.*"], operations: [read, write]}
  - {effect: allow, principals: ["User:reader"], resources: ["exchange:P.*"], operations: [read]}
  - {effect: allow, principals: ["User:reader"], resources: ["queue:amq.gen-*"], operations: [configure, read, write]}
  - {effect: deny, principals: ["*"], resources: ["queue:P.secret"], operations: [read]}
"#;

fn steps(p: &str, steps: &[&str]) -> Vec<String> {
    steps.iter().map(|s| s.replace("P.", &format!("{p}."))).collect()
}

#[test]
fn methods_are_judged_with_rabbitmqs_permissions_and_a_refusal_closes_only_its_channel() {
    let p = unique("amqp");
    let sidecar = sidecar(&POLICY.replace("P.", &format!("{p}.")), rabbitmq(), &broker_login());
    let port = sidecar.addr.port();
    let lines = pika(
        port,
        "app",
        &steps(
            &p,
            &[
                "exchange:P.orders:topic",
                "queue:P.eu",
                "queue:P.secret",
                "bind:P.eu:P.orders:eu.#",
                "bind:P.secret:P.orders:#",
                "publish:P.orders:eu.created:5",
                // Not its exchange: the channel is closed, the connection goes on.
                "exchange:other.orders:topic",
                "publish:other.orders:eu.created:1",
                "consume:P.secret:1",
                "publish::P.eu:2",
                "get:P.eu",
            ],
        ),
    );
    let refused = |what: &str, resource: &str| {
        format!("refused 403 ACCESS_REFUSED - {what} access to {resource} refused for User:app by the mesh's policy")
    };
    let expected = [
        "exchange:P.orders:topic ok".to_owned(),
        "queue:P.eu ok P.eu".to_owned(),
        "queue:P.secret ok P.secret".to_owned(),
        "bind:P.eu:P.orders:eu.# ok".to_owned(),
        "bind:P.secret:P.orders:# ok".to_owned(),
        "publish:P.orders:eu.created:5 ok confirmed=5".to_owned(),
        format!("exchange:other.orders:topic {}", refused("configure", "exchange 'other.orders'")),
        format!("publish:other.orders:eu.created:1 {}", refused("write", "exchange 'other.orders'")),
        format!("consume:P.secret:1 {}", refused("read", "queue 'P.secret'")),
        "publish::P.eu:2 ok confirmed=2".to_owned(),
        "get:P.eu ok eu.created-0".to_owned(),
    ];
    assert_eq!(lines, steps(&p, &expected.iter().map(String::as_str).collect::<Vec<_>>()));

    // The reader may consume P.eu, not publish; an empty queue name is the channel's last
    // declared queue, judged as that queue.
    let lines = pika(
        port,
        "amqplain:reader",
        &steps(&p, &["publish:P.orders:eu.x:1", "consume:P.eu:6", "queue:P.secret", "get:", "queue:", "get:"]),
    );
    let who = "User:reader";
    let refused = |what: &str, resource: &str| {
        format!("refused 403 ACCESS_REFUSED - {what} access to {resource} refused for {who} by the mesh's policy")
    };
    let expected = steps(
        &p,
        &[
            &format!("publish:P.orders:eu.x:1 {}", refused("write", "exchange 'P.orders'")),
            "consume:P.eu:6 ok received=6 eu.created-1,eu.created-2,eu.created-3,eu.created-4,P.eu-0,P.eu-1",
            // Declaring (not passively) needs configure, which the reader lacks.
            &format!("queue:P.secret {}", refused("configure", "queue 'P.secret'")),
            // No queue declared on this channel: the empty name is no queue it may read.
            &format!("get: {}", refused("read", "queue ''")),
        ],
    );
    assert_eq!(lines[..4], expected[..], "{lines:?}");
    // Its own server-named queue; then `get:` means that queue.
    assert!(lines[4].starts_with("queue: ok amq.gen-"), "{lines:?}");
    assert_eq!(lines[5], "get: ok empty");

    let publish =
        [("direction", "publish"), ("exchange", &format!("{p}.orders")[..]), ("queue", ""), ("principal", "User:app")];
    assert_eq!(sidecar.metric("weir_amqp_messages_total", &publish), 5.0);
    assert_eq!(sidecar.metric("weir_amqp_body_bytes_total", &publish), 5.0 * "eu.created-0".len() as f64);
    let deliver = [
        ("direction", "deliver"),
        ("exchange", &format!("{p}.orders")[..]),
        ("queue", &format!("{p}.eu")[..]),
        ("principal", "User:reader"),
    ];
    assert_eq!(sidecar.metric("weir_amqp_messages_total", &deliver), 4.0);
    for (method, who, count) in [
        ("exchange.declare", "User:app", 1.0),
        ("basic.publish", "User:app", 1.0),
        ("basic.consume", "User:app", 1.0),
        ("basic.publish", "User:reader", 1.0),
        ("queue.declare", "User:reader", 1.0),
        ("basic.get", "User:reader", 1.0),
    ] {
        assert_eq!(
            sidecar.metric("weir_amqp_denied_total", &[("method", method), ("principal", who)]),
            count,
            "{method} {who}"
        );
    }
    let audit = audit_lines_when(&sidecar.dir.join("audit.jsonl"), |lines| lines.len() >= 8);
    let denial = audit
        .iter()
        .find(|line| line["event"] == "authorization" && line["api"] == "basic.consume")
        .unwrap_or_else(|| panic!("no audit line for the refused consume: {audit:?}"));
    assert_eq!(denial["principal"], "User:app");
    assert_eq!(denial["resource"], format!("{p}.secret"));
    assert_eq!((denial["resource_type"].as_str(), denial["operation"].as_str()), (Some("queue"), Some("read")));
    assert!(audit
        .iter()
        .any(|l| l["event"] == "authentication" && l["principal"] == "User:reader" && l["mechanism"] == "AMQPLAIN"));
    sidecar.assert_quiet();
}

#[test]
fn the_go_client_publishes_with_confirms_and_is_refused_the_same_way() {
    let p = unique("amqp-go");
    let sidecar = sidecar(&POLICY.replace("P.", &format!("{p}.")), rabbitmq(), &broker_login());
    let (exchange, queue) = (format!("{p}.events"), format!("{p}.q"));
    assert_eq!(amqp091(&["setup", &url(&sidecar, "app"), &exchange, &queue, "go.#"]), ["ok"]);
    let published = amqp091(&["publish", &url(&sidecar, "app"), &exchange, "go.x", "20"]);
    assert_eq!(published.last().map(String::as_str), Some("confirmed=20"), "{published:?}");

    let refused = amqp091(&["publish", &url(&sidecar, "reader"), &exchange, "go.x", "1"]);
    let reason = format!("closed 403 ACCESS_REFUSED - write access to exchange '{exchange}' refused for User:reader by the mesh's policy");
    assert_eq!(refused, [reason, "confirmed=0".to_owned()]);
    let secret = amqp091(&["consume", &url(&sidecar, "app"), &format!("{p}.secret"), "1", "2"]);
    assert_eq!(
        secret[0],
        format!(
            "closed 403 ACCESS_REFUSED - read access to queue '{p}.secret' refused for User:app by the mesh's policy"
        )
    );

    let consumed = amqp091(&["consume", &url(&sidecar, "reader"), &queue, "20", "10"]);
    let bodies: Vec<String> = (0..20).map(|i| format!("message go.x-{i}")).collect();
    assert_eq!(consumed[..20], bodies[..], "{consumed:?}");
    assert_eq!(consumed[20], "received=20");
    // A wrong password never reaches RabbitMQ (which does not know these users at all).
    let wrong =
        amqp091(&["publish", &format!("amqp://app:nope@127.0.0.1:{}/", sidecar.addr.port()), &exchange, "go.x", "1"]);
    // (amqp091-go reports a 403 to the login in words of its own.)
    assert!(wrong[0].starts_with("closed 403 "), "{wrong:?}");
    sidecar.assert_quiet();
}

#[test]
fn logins_are_checked_before_anything_reaches_rabbitmq() {
    let p = unique("amqp-login");
    let sidecar = sidecar(&POLICY.replace("P.", &format!("{p}.")), rabbitmq(), &broker_login());
    let port = sidecar.addr.port();
    let refused = "login refused 403 ACCESS_REFUSED - Login was refused using authentication mechanism";
    let right = pika(port, "app", &[]);
    assert!(right.is_empty(), "the right password was refused: {right:?}");
    let out = python_script("amqp_client.py", &[&port.to_string(), "app", "wrong", "queue:x"]);
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(lines.starts_with(&format!("{refused} PLAIN")), "{lines}");
    let out = python_script("amqp_client.py", &[&port.to_string(), "amqplain:nobody", "x", "queue:x"]);
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(lines.starts_with(&format!("{refused} AMQPLAIN")), "{lines}");
    assert!(sidecar.logged(&["login refused", "user app: wrong username or password"]));
    let denied =
        |who| sidecar.metric("weir_amqp_denied_total", &[("method", "connection.start-ok"), ("principal", who)]);
    assert_eq!((denied("User:app"), denied("User:nobody")), (1.0, 1.0));
    let audit = audit_lines_when(&sidecar.dir.join("audit.jsonl"), |lines| lines.iter().any(|l| l["success"] == false));
    let failed = audit.iter().find(|l| l["event"] == "authentication" && l["success"] == false).expect("audit line");
    assert_eq!(failed["reason"], "user app: wrong username or password");

    // Without a credentials file the login is RabbitMQ's to check, passed as it came.
    let direct = BrokerSidecar::start(
        "amqp",
        sidecar.dir.clone(),
        &format!("upstream: 127.0.0.1:{}\nlog: {{format: json}}\n", rabbitmq()),
    );
    let out = python_script(
        "amqp_client.py",
        &[&direct.addr.port().to_string(), "weir", "weir-secret", &format!("queue:{p}.q")],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("queue:{p}.q ok {p}.q"));
    let out = python_script("amqp_client.py", &[&direct.addr.port().to_string(), "weir", "wrong", "queue:x"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("login refused"), "{out:?}");
    sidecar.assert_quiet();
}

#[test]
fn a_client_certificate_names_the_principal_over_tls() {
    let p = unique("amqp-tls");
    let pki = Pki::new("amqp");
    pki.issue("server", server_sans(), false);
    let orders = "spiffe://weir.test/ns/shop/sa/orders";
    pki.issue("orders", vec![rcgen::SanType::URI(orders.try_into().unwrap())], false);
    let policy = format!(
        "{}  - {{effect: allow, principals: [\"{orders}\"], resources: [\"exchange:{p}.orders\"], operations: [configure, write]}}\n",
        POLICY.replace("P.", &format!("{p}."))
    );
    let tls = format!(
        "tls: {{cert: {}, key: {}, client_ca: {}, require_client_cert: false}}\n{}",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display(),
        broker_login()
    );
    let sidecar = sidecar(&policy, rabbitmq(), &tls);
    let port = sidecar.addr.port();
    let ca = [("AMQP_TLS_CA", pki.path("ca.pem"))];
    let with_cert =
        [ca[0].clone(), ("AMQP_TLS_CERT", pki.path("orders.crt")), ("AMQP_TLS_KEY", pki.path("orders.key"))];

    // The certificate names the client, whatever its login says (here: a user no file knows).
    let lines = brokers::pika(
        port,
        "anyone",
        &steps(&p, &["exchange:P.orders:topic", "publish:P.orders:k:1", "queue:P.q"]),
        &with_cert,
    );
    let refused = format!(
        "refused 403 ACCESS_REFUSED - configure access to queue '{p}.q' refused for {orders} by the mesh's policy"
    );
    assert_eq!(
        lines,
        steps(
            &p,
            &["exchange:P.orders:topic ok", "publish:P.orders:k:1 ok confirmed=1", &format!("queue:P.q {refused}")]
        )
    );
    // Without a certificate the login is checked, over TLS just the same.
    assert_eq!(brokers::pika(port, "app", &steps(&p, &["queue:P.q"]), &ca), steps(&p, &["queue:P.q ok P.q"]));
    let out = Command::new(common::venv_python())
        .arg(repo_root().join("tests/python/amqp_client.py"))
        .args([&port.to_string(), "app", "wrong"])
        .envs(ca.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("login refused 403"), "{out:?}");
    // Plain AMQP to a TLS listener gets no AMQP at all.
    let mut plain = TcpStream::connect(sidecar.addr).unwrap();
    plain.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let answer = read_to_close(&mut plain, Duration::from_secs(12)).expect("still open");
    assert!(!answer.starts_with(b"AMQP") && !answer.windows(4).any(|w| w == b"\x00\x0a\x00\x0a"), "{answer:?}");
    let audit =
        audit_lines_when(&sidecar.dir.join("audit.jsonl"), |lines| lines.iter().any(|l| l["mechanism"] == "mtls"));
    assert!(
        audit.iter().any(|l| l["event"] == "authentication" && l["mechanism"] == "mtls" && l["principal"] == orders),
        "{audit:?}"
    );
    sidecar.assert_quiet();
}

#[test]
fn a_changed_policy_applies_to_connections_already_open() {
    let p = unique("amqp-reload");
    let policy = POLICY.replace("P.", &format!("{p}."));
    let sidecar = sidecar(&policy, rabbitmq(), &broker_login());
    let port = sidecar.addr.port();
    let open = std::thread::spawn(move || {
        // Quiet for 6 s with heartbeats every 2 s (amqp_client.py): they pass through both ways.
        pika(port, "app", &steps(&p, &["queue:P.r", "publish::P.r:1", "sleep:6", "publish::P.r:1", "get:P.r"]))
    });
    std::thread::sleep(Duration::from_millis(1500));
    // `app` loses the default exchange.
    std::fs::write(sidecar.dir.join("policy.yaml"), policy.replace(", \"exchange:amq.default\"", "")).unwrap();
    assert!(sidecar.logged(&["credentials and policy reloaded"]), "{:?}", sidecar.logs());
    let lines = open.join().unwrap();
    let p = lines[0].trim_start_matches("queue:").split('.').next().unwrap().to_owned();
    let refused =
        "refused 403 ACCESS_REFUSED - write access to exchange 'amq.default' refused for User:app by the mesh's policy";
    assert_eq!(
        lines,
        steps(
            &p,
            &[
                "queue:P.r ok P.r",
                "publish::P.r:1 ok confirmed=1",
                "sleep:6 ok",
                &format!("publish::P.r:1 {refused}"),
                "get:P.r ok P.r-0"
            ]
        )
    );
    // A policy that does not load leaves the last good one in force.
    std::fs::write(sidecar.dir.join("policy.yaml"), "rules: [{effect: maybe}]").unwrap();
    assert!(sidecar.logged(&["do not load", "last good ones stay"]), "{:?}", sidecar.logs());
    assert_eq!(pika(port, "app", &steps(&p, &["publish::P.r:1"])), steps(&p, &[&format!("publish::P.r:1 {refused}")]));
    let unexpected = common::unexpected_warnings(sidecar.logs(), &["last good ones stay"]);
    assert!(unexpected.is_empty(), "{unexpected:?}");
}

/// Reads what the server sends until it closes (or `within` passes: then None).
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(got),
        Err(_) => None,
    }
}

#[test]
fn hostile_connections_close_alone_promptly_and_reach_no_broker() {
    let p = unique("amqp-hostile");
    let sidecar = sidecar(&POLICY.replace("P.", &format!("{p}.")), rabbitmq(), &broker_login());
    // A client that behaves, connected throughout.
    let good = Command::new(common::venv_python())
        .arg(repo_root().join("tests/python/amqp_client.py"))
        .args([&sidecar.addr.port().to_string(), "app", "ppa", &format!("queue:{p}.ok"), &format!("consume:{p}.ok:1")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let header = b"AMQP\x00\x00\x09\x01";
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("HTTP instead of AMQP", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "not AMQP 0.9.1"),
        ("silence", Vec::new(), "no protocol header and login within"),
        // A publish where the login belongs.
        (
            "a method before the login",
            [&header[..], b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x00\x28\xce"].concat(),
            "expected connection.start-ok",
        ),
        // A login frame declaring 1 MiB (the limit before login is 64 KiB).
        (
            "an oversized login",
            [&header[..], b"\x01\x00\x00\x00\x10\x00\x00"].concat(),
            "a frame of 1048584 bytes, over the limit of 65536",
        ),
    ];
    for (what, bytes, logged) in cases {
        let started = Instant::now();
        let mut stream = TcpStream::connect(sidecar.addr).unwrap();
        stream.write_all(&bytes).unwrap();
        let answer = read_to_close(&mut stream, Duration::from_secs(5)).unwrap_or_else(|| panic!("{what}: still open"));
        assert!(started.elapsed() < Duration::from_secs(4), "{what}: closed after {:?}", started.elapsed());
        if what == "HTTP instead of AMQP" {
            assert_eq!(answer, header, "AMQP answers a wrong header with its own");
        }
        assert!(sidecar.logged(&["AMQP connection closed", logged]), "{what}: {:?}", sidecar.logs());
    }
    // The well-behaved client was not disturbed: it gets its message.
    let send = pika(sidecar.addr.port(), "app", &steps(&p, &["publish::P.ok:1"]));
    assert_eq!(send, steps(&p, &["publish::P.ok:1 ok confirmed=1"]));
    let out = good.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout);
    assert!(lines.contains(&format!("consume:{p}.ok:1 ok received=1 {p}.ok-0")), "{lines}");
    sidecar.assert_quiet();
}

/// A RabbitMQ node of the test's own, to restart: AMQP port 15693, its own epmd (14370) and
/// state directory (kept across its restarts, removed at the end).
struct OwnRabbit {
    state: PathBuf,
}

impl OwnRabbit {
    const PORT: u16 = 15693;

    fn script(&self, command: &str) {
        let status = Command::new(repo_root().join("scripts/rabbitmq.sh"))
            .arg(command)
            .env("WEIR_RABBITMQ_PORT", Self::PORT.to_string())
            .env("WEIR_RABBITMQ_EPMD_PORT", "14370")
            .env("WEIR_RABBITMQ_STATE", &self.state)
            .status()
            .expect("rabbitmq.sh");
        assert!(status.success(), "scripts/rabbitmq.sh {command} on port {} failed", Self::PORT);
    }

    fn start() -> Self {
        let rabbit = OwnRabbit { state: std::env::temp_dir().join(unique("weir-rabbitmq")) };
        rabbit.script("start");
        rabbit
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        self.script("stop");
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[test]
fn confirmed_messages_survive_a_rabbitmq_restart_through_the_sidecar() {
    let p = unique("amqp-restart");
    let rabbit = OwnRabbit::start();
    let sidecar = sidecar(&POLICY.replace("P.", &format!("{p}.")), OwnRabbit::PORT, &broker_login());
    let (exchange, queue) = (format!("{p}.events"), format!("{p}.durable"));
    assert_eq!(amqp091(&["setup", &url(&sidecar, "app"), &exchange, &queue, "r.#"]), ["ok"]);

    // Publish one message at a time with confirms while RabbitMQ restarts under it.
    let publisher = Command::new(go_client())
        .args(["publish", &url(&sidecar, "app"), &exchange, "r.x", "1000000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    rabbit.script("restart");
    let out = publisher.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let confirmed: Vec<usize> =
        lines.iter().filter_map(|l| l.strip_prefix("confirmed ")).map(|n| n.parse().unwrap()).collect();
    assert!(confirmed.len() > 10, "too few confirmed before the restart: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("closed ")),
        "the publisher was not stopped by the restart: {:?}",
        &lines[lines.len() - 3..]
    );

    // After the restart, through the same sidecar: every confirmed message is there.
    let consumed = amqp091(&["consume", &url(&sidecar, "app"), &queue, &confirmed.len().to_string(), "20"]);
    let received: std::collections::HashSet<&str> =
        consumed.iter().filter_map(|l| l.strip_prefix("message ")).collect();
    let lost: Vec<usize> =
        confirmed.iter().copied().filter(|i| !received.contains(format!("r.x-{i}").as_str())).collect();
    assert!(lost.is_empty(), "confirmed but lost across the restart: {lost:?} ({} confirmed)", confirmed.len());
    // And the sidecar serves publishers again.
    let again = amqp091(&["publish", &url(&sidecar, "app"), &exchange, "r.after", "3"]);
    assert_eq!(again.last().map(String::as_str), Some("confirmed=3"));
    assert!(common::unexpected_warnings(sidecar.logs(), &[]).is_empty(), "{:?}", sidecar.logs());
}
