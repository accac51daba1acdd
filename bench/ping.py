#!/usr/bin/env python3
"""bench/ping.py - what does a hop add to one request's round trip, with nothing else going on?

    bench/ping.py TOPIC NAME=HOST:PORT [NAME=HOST:PORT ...] [--blocks N] [--per-block M]

Sends ListOffsets v5 for partition 0 of TOPIC (a request every hop forwards untouched) over
one connection per target, one request in flight, and times each round trip. Targets take
turns in blocks of M requests (default 20 blocks of 500, shuffled each block), so a change in
the machine's speed reaches all of them alike. Prints p50 / p90 / p99 / p99.9 per target.
Point it at the broker itself, a relay and the sidecar's listener for that broker (the
partition's leader), all in front of the same cluster; end-to-end latency under load
(bench/run.sh --latency-only) measures the machine's scheduling as much as the hop, this
measures the hop.
"""
import argparse
import random
import socket
import struct
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic")
    parser.add_argument("targets", nargs="+", metavar="NAME=HOST:PORT")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per-block", type=int, default=500)
    args = parser.parse_args()
    topic = args.topic.encode()
    targets = []
    for target in args.targets:
        name, sep, address = target.partition("=")
        if not sep or ":" not in address:
            parser.error(f"{target!r}: expected NAME=HOST:PORT")
        targets.append((name, address))
    blocks, per_block = args.blocks, args.per_block

    def request(correlation_id):
        # replica_id, isolation_level, [topic, [partition, current_leader_epoch, timestamp]]
        body = struct.pack(">ibi", -1, 0, 1) + struct.pack(">h", len(topic)) + topic
        body += struct.pack(">iiiq", 1, 0, -1, -1)
        header = struct.pack(">hhih", 2, 5, correlation_id, 4) + b"ping"
        return struct.pack(">i", len(header) + len(body)) + header + body

    def read_exact(sock, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    next_id = [0]

    def round_trip(sock):
        next_id[0] += 1
        frame = request(next_id[0])
        start = time.perf_counter_ns()
        sock.sendall(frame)
        size = struct.unpack(">i", read_exact(sock, 4))[0]
        answer = read_exact(sock, size)
        took = (time.perf_counter_ns() - start) / 1000.0
        if struct.unpack(">i", answer[:4])[0] != next_id[0]:
            sys.exit("an answer to another request")
        # correlation id, throttle, topics count, topic name, partitions count, partition index
        at = 4 + 4 + 4 + 2 + len(topic) + 4 + 4
        error = struct.unpack(">h", answer[at:at + 2])[0]
        if error != 0:
            sys.exit(f"ListOffsets answered error {error}")
        return took

    connections = {}
    for name, address in targets:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections[name] = sock
    for sock in connections.values():
        for _ in range(200):  # warm-up, not counted
            round_trip(sock)
    samples = {name: [] for name in connections}
    for _ in range(blocks):
        order = list(connections.items())
        random.shuffle(order)
        for name, sock in order:
            samples[name].extend(round_trip(sock) for _ in range(per_block))

    def percentile(xs, p):
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    print(f"{'target':10} {'n':>7} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'p99.9 us':>9}")
    for name, xs in samples.items():
        xs.sort()
        print(f"{name:10} {len(xs):7d}" + "".join(f" {percentile(xs, p):9.1f}" for p in (50, 90, 99, 99.9)))


if __name__ == "__main__":
    main()
