#!/usr/bin/env python3
"""Times the management API: 1,000 URL adds then 1,000 removes through `bcs serve`'s Unix socket, with one
client and with eight at once (each on its own kept-alive connection). Prints p50, p99 and ops/s per phase.

Every change is a durable SQLite commit (WAL, synchronous=FULL) before it is acknowledged, so these figures
include an fsync each. Run from the repository root after `cargo build --release`:

    python3 benches/management.py [--bcs target/release/bcs] [--count 1000]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(conn, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"content-type": "application/json"}
    start = time.perf_counter()
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status}")
    return elapsed


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def phase(socket_path, prefix, file, count, clients, method):
    group = "/v1/groups/" + urllib.parse.quote(prefix, safe="")
    latencies = []
    lock = threading.Lock()

    def worker(index):
        conn = UnixConnection(socket_path)
        mine = []
        for i in range(index, count, clients):
            suffix = f"u{i}.bin"
            if method == "add":
                mine.append(call(conn, "POST", group + "/urls", {"suffix": suffix, "file": file}))
            else:
                mine.append(call(conn, "DELETE", group + "/urls/" + suffix))
        conn.close()
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "op": method,
        "count": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "ops_per_s": round(len(latencies) / wall),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bcs", default="target/release/bcs")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="bcs-bench-")
    file = os.path.join(state, "payload.bin")
    with open(file, "wb") as f:
        f.write(b"x" * 4096)
    service = subprocess.Popen(
        [args.bcs, "serve", "--state", os.path.join(state, "state"), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "BCS_LOG": "warn"},
    )
    try:
        line = service.stdout.readline()
        if "bcs: serving" not in line:
            raise SystemExit(f"bcs serve did not start: {line!r}")
        socket_path = os.path.join(state, "state", "bcs.sock")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        prefix = f"http://127.0.0.1:{port}/bench/"
        call(UnixConnection(socket_path), "POST", "/v1/groups", {"prefix": prefix})
        results = []
        for clients in (1, 8):
            results.append(phase(socket_path, prefix, file, args.count, clients, "add"))
            results.append(phase(socket_path, prefix, file, args.count, clients, "remove"))
        print(f"{'clients':>7} {'op':>6} {'count':>5} {'p50 ms':>7} {'p99 ms':>7} {'ops/s':>6}")
        for r in results:
            print(f"{r['clients']:>7} {r['op']:>6} {r['count']:>5} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['ops_per_s']:>6}")
    finally:
        service.terminate()
        service.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
