#!/usr/bin/env python3
"""What unauthenticated clients can make a sidecar hold (docs/security.md, issue 8 items 4 and 6).

Starts `weir proxy` (the binary given, e.g. target/release/weir) with SASL at the sidecar in
front of the local cluster (scripts/kafka.sh start), then:

  big frames   4 connections each announce a 99 MB frame and stream zeros into it, as fast
               as the sidecar reads; reports the sidecar's peak RSS, the bytes it accepted
               before closing each connection, and how long that took.
  idle sockets 500 connections that never authenticate; reports the sidecar's descriptors
               and its connections to brokers while they are open, and how long until the
               sidecar closed them.

Usage: bench/preauth.py WEIR_BINARY [--listen-port 19600] [--idle 500] [--wait-close 30]
Prints one line per figure; not a test (no pass/fail), figures for the docs.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from scram import scram_entry  # bench/scram.py, beside this script

BROKER_PORTS = range(9092, 9122)  # every listener of the 3-broker test cluster


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def broker_connections(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and port in BROKER_PORTS and fields[9] in inodes:
                count += 1
    return count


def wait_ready(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("sidecar did not start")


def big_frame(port, results):
    """Announces a 99 MB frame and streams zeros until the sidecar closes the connection."""
    sock = socket.create_connection(("127.0.0.1", port))
    chunk = b"\0" * (1 << 20)
    sent, start = 0, time.time()
    try:
        sock.sendall((99_000_000).to_bytes(4, "big"))
        while sent < 99_000_000:
            piece = chunk[: min(len(chunk), 99_000_000 - sent)]
            sock.sendall(piece)
            sent += len(piece)
        sock.settimeout(30)
        sock.recv(1)
    except OSError:
        pass
    results.append((sent, time.time() - start))
    sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--listen-port", type=int, default=19600)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--wait-close", type=float, default=30, help="how long to wait for idle sockets to be closed")
    args = parser.parse_args()
    port = args.listen_port

    work = tempfile.mkdtemp(prefix="weir-preauth-")
    with open(f"{work}/users.yaml", "w") as f:
        f.write("users:\n" + scram_entry("alice", "wonderland", b"bench-salt-0001"))
    with open(f"{work}/sidecar.yaml", "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nbootstrap: ['127.0.0.1:9093']\nbroker_ports: {{base: {port + 1}, count: 10}}\n"
                f"upstream: {{resolve: {{'*.weir.invalid': 127.0.0.1}}}}\nsasl: {{credentials: {work}/users.yaml}}\n"
                f"log: {{level: warn}}\n")
    proc = subprocess.Popen([args.binary, "proxy", "--config", f"{work}/sidecar.yaml"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        time.sleep(1)
        pid = proc.pid
        print(f"idle sidecar: rss={rss_kib(pid) / 1024:.1f} MiB descriptors={descriptors(pid)} "
              f"broker_connections={broker_connections(pid)}")

        results, peak = [], [rss_kib(pid)]
        threads = [threading.Thread(target=big_frame, args=(port, results)) for _ in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak.append(rss_kib(pid))
            time.sleep(0.05)
        for sent, took in results:
            print(f"big frame: client got {sent / 1e6:.1f} MB of 99 MB out before the connection ended, after {took:.2f} s")
        print(f"big frames: peak rss={max(peak) / 1024:.1f} MiB")

        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
        time.sleep(1)
        print(f"{args.idle} idle unauthenticated sockets: descriptors={descriptors(pid)} "
              f"broker_connections={broker_connections(pid)} rss={rss_kib(pid) / 1024:.1f} MiB")
        start = time.time()
        closed = 0
        for s in idle:
            s.settimeout(max(0.01, args.wait_close - (time.time() - start)))
            try:
                if s.recv(1) == b"":
                    closed += 1
            except socket.timeout:
                break
            except OSError:
                closed += 1
        print(f"idle sockets closed by the sidecar: {closed} of {args.idle} after {time.time() - start:.1f} s")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
