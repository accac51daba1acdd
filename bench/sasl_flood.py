#!/usr/bin/env python3
"""bench/sasl_flood.py - password guessing against the sidecar's SASL/PLAIN (issue 8, item 5).

    bench/sasl_flood.py [--weir BIN] [--attackers 40] [--seconds 20] [--sasl-yaml YAML]

Starts `weir proxy` (default: target/release/weir) with SASL at the sidecar in front of the
test cluster (`scripts/kafka.sh start --brokers 3` must be running), then:

- ATTACKERS threads connect from 127.0.0.2 and loop: SaslHandshake PLAIN, SaslAuthenticate
  with a wrong password for --attack-user (default `bob`), close, again;
- one honest client connects from 127.0.0.1 and logs in as alice with the right password,
  a new connection each time, every --pause s, and times each login (connect to answer).

Prints the honest logins' median and max, how the attackers' attempts were answered
(checked and refused, or refused unchecked by a spent budget), and the sidecar's CPU
(utime+stime from /proc over the measured window) in cores. Baseline (--seconds without
attackers) first. Python 3.11 stdlib only; the credentials file is made here (SCRAM entries,
RFC 5802, --iterations PBKDF2 rounds).

--sasl-yaml adds keys to the `sasl:` section, e.g.
  "failure_budget: {per_source: 0, per_user: 0}"   # budgets off
  "password_cache: {entries: 0}"                   # every honest login pays PBKDF2
(give it several times for several keys).
"""
import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import urllib.request

from scram import scram_entry  # bench/scram.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(api_key, version, correlation_id, body):
    client_id = b"sasl-flood"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    (length,) = struct.unpack(">i", exactly(4))
    return exactly(length)


def plain_login(sidecar, source, user, password):
    """One PLAIN login on a new connection; (error code, error message)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(30)
    try:
        sock.bind((source, 0))
        sock.connect(sidecar)
        mechanism = b"PLAIN"
        sock.sendall(frame(17, 1, 1, struct.pack(">h", len(mechanism)) + mechanism))  # SaslHandshake v1
        read_frame(sock)
        token = b"\0" + user.encode() + b"\0" + password.encode()
        sock.sendall(frame(36, 1, 2, struct.pack(">i", len(token)) + token))  # SaslAuthenticate v1
        answer = read_frame(sock)
        (error,) = struct.unpack(">h", answer[4:6])
        (length,) = struct.unpack(">h", answer[6:8])
        message = answer[8:8 + length].decode(errors="replace") if length >= 0 else ""
        return error, message
    finally:
        sock.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def honest_logins(sidecar, seconds, pause):
    latencies, failures = [], 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        error, message = plain_login(sidecar, "127.0.0.1", "alice", "wonderland")
        if error == 0:
            latencies.append((time.monotonic() - started) * 1000)
        else:
            failures += 1
            print(f"  honest login refused: {message}", file=sys.stderr)
        time.sleep(pause)
    return latencies, failures


def report(label, latencies, failures, cores):
    if latencies:
        print(f"{label}: honest logins {len(latencies)} (refused {failures}), "
              f"median {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms; "
              f"sidecar CPU {cores:.2f} cores")
    else:
        print(f"{label}: no honest login succeeded (refused {failures}); sidecar CPU {cores:.2f} cores")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "weir"))
    parser.add_argument("--attackers", type=int, default=40)
    parser.add_argument("--attack-user", default="bob")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pause", type=float, default=0.1, help="between honest logins")
    parser.add_argument("--iterations", type=int, default=4096)
    parser.add_argument("--port", type=int, default=29400)
    parser.add_argument("--sasl-yaml", action="append", default=[])
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="weir-sasl-flood-")
    users = os.path.join(work, "users.yaml")
    with open(users, "w") as f:
        f.write("users:\n" + scram_entry("alice", "wonderland", b"alice-salt-1234", args.iterations)
                + scram_entry("bob", "builder", b"bob-salt-5678", args.iterations))
    sasl = "".join(f"  {line}\n" for line in args.sasl_yaml)
    bootstrap = ", ".join(f'"127.0.0.1:{9093 + 10 * i}"' for i in range(3))
    config = os.path.join(work, "weir.yaml")
    with open(config, "w") as f:
        f.write(f"listen: 127.0.0.1:{args.port}\nbootstrap: [{bootstrap}]\nadmin: 127.0.0.1:{args.port + 19}\n"
                f"broker_ports: {{base: {args.port + 1}, count: 10}}\n"
                f'upstream:\n  resolve: {{"*.weir.invalid": 127.0.0.1}}\n'
                f"log: {{level: warn}}\nsasl:\n  credentials: {users}\n{sasl}")
    proxy = subprocess.Popen([args.weir, "proxy", "--config", config])
    sidecar = ("127.0.0.1", args.port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port + 19}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proxy.poll() is not None:
                sys.exit("the sidecar did not get ready")
            time.sleep(0.1)
        print(f"weir: {args.weir}; sasl extra: {args.sasl_yaml or 'none'}; {os.cpu_count()} CPUs; "
              f"PBKDF2 {args.iterations} rounds (SHA-512)")

        cpu, at = cpu_seconds(proxy.pid), time.monotonic()
        latencies, failures = honest_logins(sidecar, min(args.seconds, 10), args.pause)
        report("no attack   ", latencies, failures, (cpu_seconds(proxy.pid) - cpu) / (time.monotonic() - at))

        stop = threading.Event()
        outcomes = {"checked": 0, "refused unchecked": 0, "other": 0}
        lock = threading.Lock()

        def attack(n):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    _, message = plain_login(sidecar, "127.0.0.2", args.attack_user, f"guess-{n}-{i}")
                except OSError:
                    message = ""
                kind = ("refused unchecked" if "too many failed" in message
                        else "checked" if "invalid user name or password" in message else "other")
                with lock:
                    outcomes[kind] += 1

        attackers = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(args.attackers)]
        for t in attackers:
            t.start()
        time.sleep(2)  # let the attack reach its steady state
        cpu, at = cpu_seconds(proxy.pid), time.monotonic()
        with lock:
            before = dict(outcomes)
        latencies, failures = honest_logins(sidecar, args.seconds, args.pause)
        elapsed = time.monotonic() - at
        cores = (cpu_seconds(proxy.pid) - cpu) / elapsed
        with lock:
            during = {k: outcomes[k] - before[k] for k in outcomes}
        stop.set()
        report(f"{args.attackers} attackers", latencies, failures, cores)
        print("  attempts/s: " + ", ".join(f"{k} {v / elapsed:.0f}" for k, v in during.items()))
    finally:
        proxy.terminate()
        proxy.wait()


if __name__ == "__main__":
    main()
