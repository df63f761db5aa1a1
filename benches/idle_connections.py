#!/usr/bin/env python3
"""Opens N keep-alive connections to a server, sends one GET on each and reads its answer, then holds them
idle and prints how much more resident memory the server's processes hold (VmRSS, summed over the PIDs
given: nginx's master and workers, or one bcs). A benchmark helper, not a test; run by compare_nginx.sh.

    python3 benches/idle_connections.py --port 8080 --path /b/small.bin --pids 1234,1235 --count 10000
"""

import argparse
import resource
import socket
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--pids", required=True, help="comma-separated")
    p.add_argument("--count", type=int, default=10000)
    args = p.parse_args()
    pids = [int(x) for x in args.pids.split(",") if x]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1000), hard))
    before = rss_kib(pids)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    socks = []
    for _ in range(args.count):
        s = socket.create_connection(("127.0.0.1", args.port))
        s.sendall(request)
        socks.append(s)
    deadline = time.monotonic() + 120
    for s in socks:
        s.settimeout(max(1.0, deadline - time.monotonic()))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("a connection closed before answering")
            data += chunk
    time.sleep(2)
    after = rss_kib(pids)
    for s in socks:
        s.close()
    print(f"{after - before} {before} {after}")


if __name__ == "__main__":
    main()
