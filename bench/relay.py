#!/usr/bin/env python3
"""bench/relay.py - a zero-work TCP relay: the cheapest proxy hop there can be.

    bench/relay.py --mode copy|splice LISTEN=UPSTREAM [LISTEN=UPSTREAM ...]

Each LISTEN (host:port) accepts connections and pipes their bytes, both ways and
unread, to UPSTREAM (host:port). It knows nothing of Kafka: no framing, no
rewriting, no metrics. bench/run.sh --direct-relay puts it in front of the
brokers' RELAY listeners (scripts/kafka.sh advertises them at the relay's ports),
so a "direct" run pays exactly one extra loopback hop and the sidecar's ratio
against it shows what Weir costs beyond the hop itself.

Modes: `copy` moves the bytes through user space (recv_into + send, 256 KiB at a
time) like any user-space proxy; `splice` moves them socket -> pipe -> socket with
splice(2) and never copies them into user space, the floor for a relay on Linux.
One thread per direction per connection; the GIL is released in every system call.
"""
import argparse
import os
import socket
import sys
import threading

CHUNK = 256 * 1024


def pump_copy(src, dst):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = src.recv_into(buf)
        if n == 0:
            return
        dst.sendall(view[:n])


def pump_splice(src, dst):
    r, w = os.pipe()
    try:
        # F_SETPIPE_SZ: a pipe as large as the chunk, so one splice moves up to CHUNK bytes.
        import fcntl

        fcntl.fcntl(w, 1031, CHUNK)
    except OSError:
        pass
    try:
        while True:
            n = os.splice(src.fileno(), w, CHUNK, flags=os.SPLICE_F_MOVE)
            if n == 0:
                return
            while n > 0:
                n -= os.splice(r, dst.fileno(), n, flags=os.SPLICE_F_MOVE)
    finally:
        os.close(r)
        os.close(w)


def pipe(pump, src, dst):
    try:
        pump(src, dst)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(listen, upstream, pump):
    lsock = socket.create_server(listen, reuse_port=False)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    while True:
        client, _ = lsock.accept()
        try:
            broker = socket.create_connection(upstream)
        except OSError as e:
            print(f"relay: cannot reach {upstream[0]}:{upstream[1]}: {e}", file=sys.stderr)
            client.close()
            continue
        for s in (client, broker):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pipe, args=(pump, client, broker), daemon=True).start()
        threading.Thread(target=pipe, args=(pump, broker, client), daemon=True).start()


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("copy", "splice"), default="splice")
    ap.add_argument("routes", nargs="+", metavar="LISTEN=UPSTREAM")
    args = ap.parse_args()
    pump = pump_splice if args.mode == "splice" else pump_copy
    threads = []
    for route in args.routes:
        listen, _, upstream = route.partition("=")
        t = threading.Thread(target=serve, args=(addr(listen), addr(upstream), pump), daemon=True)
        t.start()
        threads.append(t)
    print(f"relay ({args.mode}) ready: {' '.join(args.routes)}", file=sys.stderr, flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
