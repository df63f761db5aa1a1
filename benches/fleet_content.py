#!/usr/bin/env python3
"""A fleet benchmark (not a test): a file published on one node of N, and every other node pulling its own
verified copy. A 3-member etcd cluster and N `bcs serve` nodes on loopback (127.0.0.1-N, one group port, one
peer port, `--fleet-peer`); a SIZE-byte file (default 1 GiB) published through node 1. Prints, per N: how
long the publishing call took (node 1 hashes and copies the file), the time from its answer until every
node serves the file (each node's HEAD answers 200: it holds the checked bytes), and the bytes node 1's
peer path sent (its `peer-access.log`), in copies of the file. Aim: under 2 copies with 5 nodes.

    cargo build --release --features fleet && python3 benches/fleet_content.py [SIZE] [path/to/bcs] [N...]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

from fleet_changes import api, free_port, start_etcd, status, wait



def run(nodes, size, bcs):
    work = tempfile.mkdtemp(prefix="bcs-content-bench-")
    procs = []
    try:
        endpoints = start_etcd(work, procs)
        peer_port = free_port()
        states = []
        for k in range(1, nodes + 1):
            state = f"{work}/node{k}"
            os.makedirs(state, mode=0o700)
            procs.append(subprocess.Popen(
                [bcs, "serve", "--state", state, "--bind", f"127.0.0.{k}", "--etcd", endpoints,
                 "--fleet", "bench", "--node", f"node{k}", "--fleet-peer", f"127.0.0.{k}:{peer_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=dict(os.environ, BCS_LOG="warn")))
            states.append(state)
        for s in states:
            wait("bcs serve", lambda: os.path.exists(f"{s}/bcs.sock"))
        file = f"{work}/payload.bin"
        with open(file, "wb") as f:
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 8 << 20))
                f.write(chunk)
                left -= len(chunk)
        port = free_port()
        prefix = f"http://+:{port}/bench/"
        sock = f"{states[0]}/bcs.sock"
        api(sock, "POST", "/v1/groups", {"prefix": prefix})
        group = urllib.parse.quote(prefix, safe="")
        t0 = time.monotonic()
        api(sock, "POST", f"/v1/groups/{group}/urls", {"suffix": "big.bin", "file": file})
        t1 = time.monotonic()
        for k in range(1, nodes + 1):
            wait("every node serving it", lambda: status(f"127.0.0.{k}", port, "/bench/big.bin", "HEAD") == 200, 600)
        t2 = time.monotonic()
        sent = 0
        with open(f"{states[0]}/peer-access.log") as log:
            for line in log:
                entry = json.loads(line)
                if entry["method"] == "GET":
                    sent += entry["bytes"]
        print(f"{nodes} nodes, {size / (1 << 30):.2f} GiB: publishing {t1 - t0:.1f} s; until all serve it "
              f"{t2 - t1:.1f} s; the origin sent {sent / size:.2f} copies ({sent} bytes)")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
    bcs = sys.argv[2] if len(sys.argv) > 2 else "target/release/bcs"
    counts = [int(n) for n in sys.argv[3:]] or [3, 5]
    for n in counts:
        run(n, size, bcs)


if __name__ == "__main__":
    main()
