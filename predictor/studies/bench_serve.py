"""Latency and throughput of ``xlt-predict serve`` against the CLI's cold start, in one run.

Why both: a command-line answer costs a fresh process (imports, loading the predictor);
the service pays that once. This starts a real server on a free port, asks it single
predictions from ``--clients`` concurrent clients (keep-alive connections, one request
at a time each) for ``--seconds``, and reports p50/p95/p99 latency and requests per
second; before and after, it times ``--cold-runs`` runs of ``xlt-predict query`` (wall
time and peak memory of each process), so both figures share the machine's load.

    python -m predictor.studies.bench_serve [--predictor DIR] [--clients 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TARGETS = ("sw", "ur", "quy", "de", "hi", "cy", "yo", "aym", "th", "eu", "ta", "zu")


def cold_start(predictor: str, runs: int) -> list[dict[str, float]]:
    """Wall seconds and peak RSS (MiB) of each ``xlt-predict query`` process."""
    cmd = [sys.executable, "-m", "predictor.cli", "query", "--predictor", predictor,
           "--model", "me5-small", "--train-config", "en:2490,de:2490", "--target", "sw"]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
        out.append({"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024,
                    "cpu_s": usage.ru_utime + usage.ru_stime})
    return out


def start_server(predictor: str) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([sys.executable, "-m", "predictor.cli", "serve", "--predictor",
                             predictor, "--port", "0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on http://([\d.]+):(\d+) \(API docs", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the log
            return proc, m.group(1), int(m.group(2))
    raise SystemExit("the server did not start")


def client(host: str, port: int, seed: int, stop_at: float, out: list[float],
           errors: list[str]) -> None:
    """One client: a keep-alive connection, one single-prediction request at a time."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    i = seed
    while time.perf_counter() < stop_at:
        body = json.dumps({"id": i, "model": "me5-small", "target": TARGETS[i % len(TARGETS)],
                           "train_config": {"en": 2490, "de": 1000 + i % 1000}})
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        out.append(time.perf_counter() - t0)
        if resp.status != 200:
            errors.append(data.decode()[:200])
        i += 16
    conn.close()


def bench_server(host: str, port: int, clients: int, seconds: float) -> dict[str, Any]:
    warm: list[float] = []
    client(host, port, 0, time.perf_counter() + 2, warm, [])            # warm-up
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(host, port, c, t0 + seconds, lat[c], errors))
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", "/health")
    health = json.loads(conn.getresponse().read())
    all_ms = sorted(x * 1000 for xs in lat for x in xs)
    q = statistics.quantiles(all_ms, n=100)
    return {"clients": clients, "requests": len(all_ms), "errors": len(errors),
            "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "max_ms": all_ms[-1],
            "throughput_rps": len(all_ms) / elapsed, "seconds": elapsed,
            "server": {k: health.get(k) for k in ("answered", "batches", "predictor_busy_s")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.bench_serve",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictor", default=None, metavar="DIR",
                    help="predictor directory (default: the default models directory's)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cold-runs", type=int, default=5, help="query runs before and after")
    args = ap.parse_args(argv)
    if args.predictor is None:
        from predictor.serving import default_predictor_dir
        args.predictor = str(default_predictor_dir())
    load_before = os.getloadavg()
    cold = cold_start(args.predictor, args.cold_runs)
    proc, host, port = start_server(args.predictor)
    try:
        served = bench_server(host, port, args.clients, args.seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cold += cold_start(args.predictor, args.cold_runs)
    walls = sorted(c["wall_s"] for c in cold)
    print(f"cores: {os.cpu_count()}; 1-min load average before {load_before[0]:.2f}, after "
          f"{os.getloadavg()[0]:.2f} (other jobs on the machine inflate every figure)")
    print(f"xlt-predict query (cold start, {len(cold)} runs): wall median "
          f"{statistics.median(walls):.2f} s (min {walls[0]:.2f}, max {walls[-1]:.2f}); cpu "
          f"median {statistics.median(c['cpu_s'] for c in cold):.2f} s; peak "
          f"{max(c['peak_mib'] for c in cold):.0f} MiB")
    print(f"serve, {served['clients']} concurrent clients, single predictions, "
          f"{served['seconds']:.0f} s: {served['requests']} requests ({served['errors']} "
          f"errors); latency p50 {served['p50_ms']:.1f} ms, p95 {served['p95_ms']:.1f} ms, "
          f"p99 {served['p99_ms']:.1f} ms, max {served['max_ms']:.0f} ms; throughput "
          f"{served['throughput_rps']:.0f} requests/s; the server answered them in "
          f"{served['server']['batches']} predictor calls, busy "
          f"{served['server']['predictor_busy_s']:.1f} s (warm-up included)")
    print(json.dumps({"cold_start": cold, "serve": served,
                      "predictor": str(Path(args.predictor))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
