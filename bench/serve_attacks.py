"""Latency of `distill serve` under each client attack, against latency at rest, and its memory under load.

Starts the server itself (with DISTILL_SERVE_FAULT set, so that poisoned requests can make forwards fail), then:
1. at rest: well-behaved clients (bench/loadtest.py's client loop) for --duration seconds: p50 and p99;
2. each attack in turn, with the same clients measured meanwhile: heads trickled byte by byte, bodies
   trickled byte by byte, half-open connections (half a head, then silence), 1,000 idle connections, clients
   that vanish mid-request, and poisoned requests that make their forward fail;
3. a load test at concurrency 64 for --load-seconds (default 120), sampling the server's resident memory.
Prints a markdown table: p50/p99 during each attack, p99 against p99 at rest, errors of the good clients
(must be 0), and the peak RSS (the kernel's high-water mark, VmHWM) at rest and after the load test.

Usage: python3 bench/serve_attacks.py MODEL_DIR [--bin target/release/distill] [--duration 15]
       [--load-seconds 120] [--read-timeout 5]
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from loadtest import Target, default_texts, fmt, run_level  # noqa: E402

POISON = "POISON-PILL"


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def request_bytes(text='{"texts": ["a fine film"]}'):
    head = (f"POST /predict HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            f"content-length: {len(text)}\r\n\r\n")
    return head.encode(), text.encode()


class Attack:
    """Runs `one(stop)` in `n` threads until stopped."""

    def __init__(self, n, one):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=one, args=(self.stop,), daemon=True) for _ in range(n)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        time.sleep(1.0)  # let the attack build up before measuring
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def attacks(host, port):
    head, body = request_bytes()
    poisoned = request_bytes(f'{{"texts": ["a fine film", "{POISON}"]}}')

    def connect():
        return socket.create_connection((host, port), timeout=30)

    def trickle(data, pause):
        def one(stop):
            while not stop.is_set():
                try:
                    with connect() as s:
                        for b in data:
                            if stop.is_set():
                                return
                            s.sendall(bytes([b]))
                            time.sleep(pause)
                except OSError:
                    pass  # closed at the deadline: start again
        return one

    def trickle_body(stop):
        while not stop.is_set():
            try:
                with connect() as s:
                    s.sendall(head)
                    for b in body:
                        if stop.is_set():
                            return
                        s.sendall(bytes([b]))
                        time.sleep(0.5)
                    s.recv(4096)
            except OSError:
                pass

    def half_open(stop):
        while not stop.is_set():
            try:
                with connect() as s:
                    s.sendall(head[: len(head) // 2])
                    s.recv(1)  # returns when the server closes it
            except OSError:
                pass

    def idle(stop):
        conns = []
        for _ in range(50):
            try:
                conns.append(connect())
            except OSError:
                break
        stop.wait()
        for c in conns:
            c.close()

    def vanish(stop):
        while not stop.is_set():
            try:
                with connect() as s:
                    s.sendall(head + body[: len(body) // 2])
                with connect() as s:
                    s.sendall(head + body)
            except OSError:
                pass
            time.sleep(0.01)

    def poison(stop):
        while not stop.is_set():
            try:
                with connect() as s:
                    s.sendall(poisoned[0] + poisoned[1])
                    s.recv(4096)
            except OSError:
                pass

    return [
        ("heads trickled byte by byte (100 clients)", 100, trickle(head, 0.2)),
        ("bodies trickled byte by byte (100 clients)", 100, trickle_body),
        ("half-open connections (100 clients)", 100, half_open),
        ("1,000 idle connections", 20, idle),
        ("clients vanishing mid-request (8 loops)", 8, vanish),
        ("poisoned requests failing their forward (4 loops)", 4, poison),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--bin", default=os.environ.get("DISTILL_BIN", "target/release/distill"))
    ap.add_argument("--duration", type=float, default=15.0, help="seconds measured at rest and per attack")
    ap.add_argument("--clients", type=int, default=4, help="well-behaved clients measured meanwhile")
    ap.add_argument("--load-seconds", type=float, default=120.0)
    ap.add_argument("--read-timeout", type=int, default=5, help="the server's --read-timeout-secs")
    a = ap.parse_args()
    env = dict(os.environ, DISTILL_SERVE_FAULT=POISON)
    server = subprocess.Popen(
        [a.bin, "serve", a.model_dir, "--port", "0", "--read-timeout-secs", str(a.read_timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on http://"):
            sys.exit(f"server: unexpected first line {line!r}")
        url = line.split()[-1]
        host, port = url[len("http://"):].rsplit(":", 1)
        target = Target(url, 60.0)
        texts = default_texts()
        run_level(target, 1, 20, a.duration, texts, 1)  # warm-up
        big = 10**9
        rows = [("at rest", run_level(target, a.clients, big, a.duration, texts, 1))]
        rest_hwm = rss_kib(server.pid, "VmHWM")
        for name, n, one in attacks(host, int(port)):
            with Attack(n, one):
                rows.append((name, run_level(target, a.clients, big, a.duration, texts, 1)))
            if server.poll() is not None:
                sys.exit(f"the server exited during: {name}")
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid, "VmRSS") or 0)
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = run_level(target, 64, big, a.load_seconds, texts, 1)
        done.set()
        sampler.join()
        hwm = rss_kib(server.pid, "VmHWM")
        stats = target.get_json("/stats")
    finally:
        server.terminate()
        server.wait(timeout=30)
    rest_p99 = rows[0][1]["p99_ms"]
    print(f"server {url}: --read-timeout-secs {a.read_timeout}; {a.clients} good clients measured for "
          f"{a.duration:g} s in each row; {os.cpu_count()} cores\n")
    print("| condition | good requests | p50 ms | p99 ms | p99 / at rest | good-client errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        ratio = r["p99_ms"] / rest_p99 if r["p99_ms"] and rest_p99 else None
        print(f"| {name} | {r['ok']} | {fmt(r['p50_ms'], '.1f')} | {fmt(r['p99_ms'], '.1f')} | "
              f"{fmt(ratio, '.2f')} | {r['errors']} |")
    print(f"\nLoad test, concurrency 64, {a.load_seconds:g} s: {load['ok']} requests, "
          f"{load['requests_per_s']:.1f} req/s, p99 {fmt(load['p99_ms'], '.1f')} ms, {load['errors']} errors; "
          f"peak RSS sampled {peak[0] / 1024:.0f} MiB, high-water mark {hwm / 1024:.0f} MiB "
          f"(after the attacks, before the load test: {rest_hwm / 1024:.0f} MiB at rest).")
    print(f"Server counters: {stats}")
    for name, r in rows:
        for m in r["first_errors"]:
            print(f"{name}: {m}", file=sys.stderr)


if __name__ == "__main__":
    main()
