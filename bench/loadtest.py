"""Load test for a running `distill serve` (Python 3 standard library only: threads + http.client).

For each concurrency level, that many clients (one keep-alive connection each) send POST /predict until
--requests requests are done or --duration seconds have passed, whichever comes first. Prints a markdown
table: throughput (requests and examples per second), latency percentiles, errors, and the mean forward
batch the server formed (from its /stats). It starts nothing: point it at a server with --url
(bench/serve.sh starts one, runs this, and stops it).

Usage: python3 bench/loadtest.py --url http://127.0.0.1:8080 [--concurrency 1,4,16,64] [--requests 500]
       [--duration 20] [--texts-per-request 1] [--texts-file F] [--json OUT]
"""

import argparse
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse

WORDS = ("the movie was good and the plot quite fun , but the actors were dull and the story "
         "of this film is very boring though warm and funny in parts").split()


def default_texts(n=64):
    """Deterministic sentences of 4 to 60 words, so that requests differ in length."""
    out = []
    for k in range(n):
        length = 4 + (k * 37) % 57
        out.append(" ".join(WORDS[(k * 7 + i * 3) % len(WORDS)] for i in range(length)))
    return out


def read_texts(path):
    """One input per line; a tab separates the two sentences of a pair (as `distill predict --file`)."""
    with open(path, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    if not lines:
        sys.exit(f"{path}: no inputs")
    return lines


def body_for(texts, start, k):
    chosen = [texts[(start + j) % len(texts)] for j in range(k)]
    singles = [t.split("\t", 1)[0] for t in chosen]
    pairs = [t.split("\t", 1)[1] if "\t" in t else None for t in chosen]
    req = {"texts": singles}
    if any(p is not None for p in pairs):
        req["text_pairs"] = pairs
    return json.dumps(req).encode()


class Target:
    def __init__(self, url, timeout):
        u = urllib.parse.urlparse(url)
        if u.scheme != "http" or not u.hostname:
            sys.exit(f"--url {url}: expected http://HOST:PORT")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.base = (u.path or "").rstrip("/")

    def connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def get_json(self, path):
        c = self.connect()
        try:
            c.request("GET", self.base + path)
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status}: {data[:200]!r}")
            return json.loads(data)
        finally:
            c.close()


def percentile(sorted_ms, q):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_ms:
        return None
    rank = math.ceil(q / 100 * len(sorted_ms))
    return sorted_ms[max(0, min(len(sorted_ms), rank) - 1)]


def run_level(target, concurrency, n_requests, duration, texts, k):
    lock = threading.Lock()
    state = {"next": 0}
    latencies, errors, messages = [], [0], []
    deadline = time.monotonic() + duration

    def claim():
        with lock:
            if state["next"] >= n_requests or time.monotonic() >= deadline:
                return None
            state["next"] += 1
            return state["next"] - 1

    def client():
        conn = target.connect()
        headers = {"Content-Type": "application/json"}
        while (i := claim()) is not None:
            body = body_for(texts, i * k, k)
            t0 = time.perf_counter()
            try:
                conn.request("POST", target.base + "/predict", body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                ms = (time.perf_counter() - t0) * 1000
                ok = r.status == 200 and len(json.loads(data).get("predictions", [])) == k
                with lock:
                    if ok:
                        latencies.append(ms)
                    else:
                        errors[0] += 1
                        messages.append(f"HTTP {r.status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException, ValueError) as e:
                with lock:
                    errors[0] += 1
                    messages.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = target.connect()
        conn.close()

    before = target.get_json("/stats")
    start = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    after = target.get_json("/stats")
    lat = sorted(latencies)
    ok = len(lat)
    batches = after["batches"] - before["batches"]
    examples = after["examples"] - before["examples"]
    return {
        "concurrency": concurrency,
        "requests": ok + errors[0],
        "ok": ok,
        "errors": errors[0],
        "seconds": elapsed,
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "examples_per_s": ok * k / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "mean_batch": examples / batches if batches else None,
        "first_errors": messages[:3],
    }


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=500, help="most requests per level")
    ap.add_argument("--duration", type=float, default=20.0, help="most seconds per level")
    ap.add_argument("--texts-per-request", type=int, default=1)
    ap.add_argument("--texts-file", help="inputs, one per line (tab: pair); default: built-in sentences")
    ap.add_argument("--warmup", type=int, default=10, help="requests sent before measuring")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    a = ap.parse_args()
    try:
        levels = [int(c) for c in a.concurrency.split(",") if c.strip()]
    except ValueError:
        sys.exit(f"--concurrency {a.concurrency!r}: expected numbers like 1,4,16")
    if not levels or min(levels) < 1 or a.requests < 1 or a.duration <= 0 or a.texts_per_request < 1:
        sys.exit("--concurrency, --requests, --duration and --texts-per-request must be positive")
    target = Target(a.url, a.timeout)
    try:
        health = target.get_json("/health")
    except (OSError, http.client.HTTPException, RuntimeError, ValueError) as e:
        sys.exit(f"{a.url}/health: {e}")
    texts = read_texts(a.texts_file) if a.texts_file else default_texts()
    k = a.texts_per_request
    if a.warmup:
        run_level(target, 1, a.warmup, a.duration, texts, k)
    results = [run_level(target, c, a.requests, a.duration, texts, k) for c in levels]

    print(f"server {a.url}: max_batch {health.get('max_batch')}, max_wait_ms {health.get('max_wait_ms')}, "
          f"max_len {health.get('max_len')}; {k} text(s) per request, "
          f"at most {a.requests} requests or {a.duration:g} s per level\n")
    print("| concurrency | requests | req/s | examples/s | p50 ms | p99 ms | errors | mean batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['concurrency']} | {r['requests']} | {r['requests_per_s']:.1f} | "
              f"{r['examples_per_s']:.1f} | {fmt(r['p50_ms'], '.1f')} | {fmt(r['p99_ms'], '.1f')} | "
              f"{r['errors']} | {fmt(r['mean_batch'], '.1f')} |")
    for r in results:
        for m in r["first_errors"]:
            print(f"concurrency {r['concurrency']}: {m}", file=sys.stderr)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"url": a.url, "health": health, "texts_per_request": k,
                       "max_requests": a.requests, "max_seconds": a.duration, "levels": results}, f, indent=2)
            f.write("\n")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
