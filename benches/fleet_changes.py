#!/usr/bin/env python3
"""A fleet benchmark (not a test): a 3-member etcd cluster and 3 `bcs serve` nodes on loopback
(127.0.0.1-3, one group port), then N URL adds through node A's management socket, one after the other.
Prints changes per second, the p50/p99 latency of one add (the API call, etcd transaction included), and
the p50/p99 time from an add's answer until all three nodes serve the URL.

    cargo build --release --features fleet && python3 benches/fleet_changes.py [N] [path/to/bcs]
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, path, body):
    conn = UnixConnection(sock)
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    if answer.status >= 300:
        raise RuntimeError(f"{method} {path}: {answer.status} {data!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(ip, port, path, method="GET"):
    """The status of a request (0 when nothing answers)."""
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=2)
        conn.request(method, path)
        code = conn.getresponse().status
        conn.close()
        return code
    except OSError:
        return 0


def wait(what, check, limit=20.0):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: timed out")
        time.sleep(0.01)


def start_etcd(work, procs):
    """A 3-member etcd cluster on loopback ports, its data under `work`, its processes added to `procs`;
    returns its client URLs once it takes a write."""
    client = [free_port() for _ in range(3)]
    peer = [free_port() for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer[i]}" for i in range(3))
    for i in range(3):
        c, p = f"http://127.0.0.1:{client[i]}", f"http://127.0.0.1:{peer[i]}"
        procs.append(subprocess.Popen(
            ["etcd", "--name", f"m{i}", "--data-dir", f"{work}/m{i}",
             "--listen-client-urls", c, "--advertise-client-urls", c,
             "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
             "--initial-cluster", cluster, "--initial-cluster-state", "new"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    endpoints = ",".join(f"http://127.0.0.1:{p}" for p in client)
    env = dict(os.environ, ETCDCTL_API="3")
    wait("etcd", lambda: subprocess.run(
        ["etcdctl", "--endpoints", endpoints, "put", "/bench", "x"], env=env,
        capture_output=True).returncode == 0, 60)
    return endpoints


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    bcs = sys.argv[2] if len(sys.argv) > 2 else "target/release/bcs"
    work = tempfile.mkdtemp(prefix="bcs-fleet-bench-")
    procs = []
    try:
        endpoints = start_etcd(work, procs)
        sockets = []
        for k in range(1, 4):
            state = f"{work}/node{k}"
            os.makedirs(state, mode=0o700)
            procs.append(subprocess.Popen(
                [bcs, "serve", "--state", state, "--bind", f"127.0.0.{k}", "--etcd", endpoints,
                 "--fleet", "bench", "--node", f"node{k}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=dict(os.environ, BCS_LOG="warn")))
            sockets.append(f"{state}/bcs.sock")
        for s in sockets:
            wait("bcs serve", lambda: os.path.exists(s))
        file = f"{work}/payload.bin"
        with open(file, "wb") as f:
            f.write(os.urandom(4096))
        port = free_port()
        prefix = f"http://+:{port}/bench/"
        api(sockets[0], "POST", "/v1/groups", {"prefix": prefix})
        group = urllib.parse.quote(prefix, safe="")
        latencies, spreads = [], []
        started = time.monotonic()
        for i in range(n):
            t0 = time.monotonic()
            api(sockets[0], "POST", f"/v1/groups/{group}/urls", {"suffix": f"u{i}.bin", "file": file})
            t1 = time.monotonic()
            latencies.append(t1 - t0)
            if i % 10 == 0:  # the spread, measured on every tenth add (the polling costs time)
                for k in range(1, 4):
                    wait("spread", lambda: status(f"127.0.0.{k}", port, f"/bench/u{i}.bin") == 200)
                spreads.append(time.monotonic() - t1)
        total = time.monotonic() - started - sum(spreads)
        ms = lambda v: f"{v * 1000:.1f} ms"
        print(f"{n} URL adds through one node: {n / total:.0f} changes/s; "
              f"latency p50 {ms(percentile(latencies, 50))}, p99 {ms(percentile(latencies, 99))}; "
              f"until all three nodes serve it: p50 {ms(percentile(spreads, 50))}, "
              f"p99 {ms(percentile(spreads, 99))} ({len(spreads)} samples)")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
