"""Soak: minutes of steady load on the production server; memory must stay flat after warm-up.

Starts ``gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"`` on
loopback (workers = CPUs) and runs ``--clients`` closed-loop clients with the stress mix
(real photos alternating with the hostile corpus, every answer checked: see
``bench/stress.py``) for ``--minutes``. Every ``--interval`` seconds it samples the resident
memory (VmRSS, from /proc) of the master and of each worker.

Growth is measured after the warm-up (``--warmup`` seconds: first requests, allocator
pools, lazy imports): the mean of the last three samples against the first sample after
warm-up, for the total and for each process. It must stay under 10%, with no worker
replaced during the run (a restarted worker would hide a leak), no connection error,
no 5xx and no wrong answer.

    python bench/soak.py                     # 4 clients, 10 minutes
    python bench/soak.py --minutes 2 --no-write
    python bench/soak.py --requests 10000    # issue 28: 10,000 mixed requests, <= 50 MB per worker

The mix adds the other endpoints to the stress mix: each real photo also goes through
``/v1/explain?overlay=png``, a ``/v1/predict/batch`` of four photos and a ``/v2`` infer of
two, so explain, batch and v2 (where issue 28 saw 35-115 MB of creep per worker) run as
often as predict. Each process's growth after warm-up must also stay under
:data:`MAX_GROWTH_MB`.

Plots the curve to docs/bench/soak_rss.png, writes the "Soak" section of
docs/reliability.md and docs/bench/soak.json. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import multipart_body, wait_until_serving
from _report import FIXTURE_PHOTO, RESULTS, ROOT, machine, table, update_section, write_json
from http_serving import HOST, Server, rss_mb, worker_pids
from stress import RELIABILITY_DOC, Case, StressResult, mix, run_stress

from catdog.testing.hostile import OK

MAX_GROWTH = 0.10
#: Issue 28's floor: no worker grows more than this after warm-up.
MAX_GROWTH_MB = 50.0


def endpoint_cases() -> list[Case]:
    """Every real photo through explain with an overlay, plus batches of 4 and v2 infers of 2."""
    import base64
    import json

    from catdog.testing.hostile import (
        BATCH_PATH,
        EXPLAIN_OVERLAY_PATH,
        V2_INFER_PATH,
        Part,
        multipart,
    )

    photos = sorted((ROOT / "tests" / "data" / "images").glob("*/*.jpg"))
    blobs = [path.read_bytes() for path in photos]
    cases = []
    for i, path in enumerate(photos):
        body, content_type = multipart_body("image", path.name, blobs[i])
        cases.append(Case(f"explain {path.name}", body, content_type, OK, path=EXPLAIN_OVERLAY_PATH))
        four = [blobs[(i + k) % len(blobs)] for k in range(4)]
        body, content_type = multipart(*(Part(b"images", blob, b"p.jpg") for blob in four))
        cases.append(Case(f"batch of 4 from {path.name}", body, content_type, OK, path=BATCH_PATH))
        two = [base64.b64encode(blobs[(i + k) % len(blobs)]).decode() for k in range(2)]
        infer = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": two}]}
        cases.append(Case(f"v2 infer of 2 from {path.name}", json.dumps(infer).encode(), "application/json", OK,
                          path=V2_INFER_PATH))
    return cases


def soak_mix() -> list[Case]:
    """The stress mix with an explain, a batch or a v2 infer after every pair."""
    extra = itertools.cycle(endpoint_cases())
    out: list[Case] = []
    for i, case in enumerate(mix()):
        out.append(case)
        if i % 2:
            out.append(next(extra))
    return out
PLOT = RESULTS / "soak_rss.png"


@dataclass
class Samples:
    """RSS over time: ``at`` seconds since the load started, one MB series per process."""

    at: list[float] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seconds: float, by_process: dict[str, float]) -> None:
        self.at.append(seconds)
        for name, value in by_process.items():
            self.rss.setdefault(name, []).append(value)

    def total(self) -> list[float]:
        return [sum(values) for values in zip(*self.rss.values())]

    def growth(self, series: list[float], warmup: float) -> tuple[float, float, float]:
        """(after warm-up, at the end, relative growth), each the *lowest* sample of its fifth of the
        run after warm-up: the memory a process comes back to between requests. A single sample
        lands on a 40 MP decode in flight as often as not (+150-250 MB for a second), which says
        nothing about what stays."""
        after = [value for at, value in zip(self.at, series) if at >= warmup] or series
        fifth = max(1, len(after) // 5)
        start, end = min(after[:fifth]), min(after[-fifth:])
        return start, end, end / start - 1


def sample_until(done: threading.Event, master: int, workers: list[int], interval: float,
                 started: float) -> Samples:
    names = {master: "master", **{pid: f"worker {i + 1}" for i, pid in enumerate(workers)}}
    samples = Samples()
    while True:
        samples.add(time.perf_counter() - started, {name: rss_mb(pid) for pid, name in names.items()})
        if done.wait(interval):
            samples.add(time.perf_counter() - started, {name: rss_mb(pid) for pid, name in names.items()})
            return samples


def plot(samples: Samples, warmup: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [at / 60 for at in samples.at]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, series in samples.rss.items():
        ax.plot(minutes, series, marker=".", label=name)
    ax.plot(minutes, samples.total(), marker=".", color="black", label="total")
    ax.axvline(warmup / 60, color="gray", linestyle="--", label="end of warm-up")
    ax.set_xlabel("minutes under load")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title("catdog API under steady load: RSS of the gunicorn master and workers")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(samples: Samples, load: StressResult, info: dict, rendered: dict | None = None) -> tuple[str, bool]:
    rows, passed = [], info["workers_unchanged"] and load.clean
    for name, series in [*samples.rss.items(), ("total", samples.total())]:
        start, end, growth = samples.growth(series, info["warmup"])
        if name != "total":
            passed &= growth < MAX_GROWTH or end - start <= MAX_GROWTH_MB
        rows.append([name, f"{series[0]:.1f}", f"{start:.1f}", f"{end:.1f}", f"{max(series):.1f}", f"{growth:+.1%}",
                     f"{end - start:+.1f}"])
    headers = ["process", "RSS at start MB", f"after warm-up ({info['warmup']:g} s, low)", "at the end (low)", "max",
               "growth after warm-up", "growth MB"]
    r = rendered or load.to_dict()
    verdict = "passed" if passed else "FAILED"
    replaced = "none" if info["workers_unchanged"] else "YES"
    return f"""## Soak

`{info['command']}` runs the production command with {info['workers']} workers on loopback and
{r['clients']} closed-loop clients for {info['span']}, with the soak mix (real photos alternating
with the hostile corpus, and explain with an overlay, batches of 4 and v2 infers of 2; every answer checked); the resident memory (VmRSS) of the master and of each worker is
sampled every {info['interval']:g} s. Growth compares the lowest sample of the last fifth of the run with the
lowest of the first fifth after {info['warmup']:g} s of warm-up (what a process comes back to between
requests; single samples catch 40 MP decodes in flight); the limit, per process, is {MAX_GROWTH:.0%} or {MAX_GROWTH_MB:g} MB.

Machine: {info['machine']}. Measured {info['date']}.

{table(headers, rows)}

![RSS during the soak](bench/soak_rss.png)

- Result: **{verdict}** ({len(samples.at)} samples; workers replaced during the run: {replaced}).
- Requests: {r['requests']} ({r['rps']} req/s; {r['valid']} valid, {r['invalid']} invalid), connection errors
  {r['connection_errors']}, 5xx {r['server_errors_5xx']}, wrong answers {r['wrong_answers']};
  p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms.
""", passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before growth is measured")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="gunicorn workers (default: CPUs)")
    parser.add_argument("--requests", type=int, default=None,
                        help="stop after this many requests (the --minutes still bound the run)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--from-json", type=Path, help="re-render the report of a saved soak.json")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        samples = Samples(data["seconds"], data["rss_mb"])
        load = StressResult(data["load"]["clients"], data["load"]["seconds"])
        for key in ("requests", "valid", "connection_errors", "wrong_answers"):
            setattr(load, key, data["load"][key])
        load.server_errors = data["load"]["server_errors_5xx"]
        load.latencies_ms = []
        markdown, passed = report(samples, load, data["info"], rendered=data["load"])
        print("\n" + markdown)
        if not args.no_write:
            plot(samples, data["info"]["warmup"], PLOT)
            update_section("soak", markdown, doc=RELIABILITY_DOC)
        return 0 if passed else 1

    seconds = args.minutes * 60
    cases = soak_mix()
    photo = FIXTURE_PHOTO.read_bytes()
    with Server(args.workers, None) as server:
        wait_until_serving(HOST, server.port, "/v1/predict", multipart_body("image", "cat.jpg", photo),
                           timeout=120, alive=lambda: server.process.poll() is None)
        workers = sorted(worker_pids(server.process.pid))
        print(f"server on port {server.port}, workers {workers}; {args.clients} clients for {args.minutes:g} min",
              flush=True)
        done, outcome = threading.Event(), {}

        def load() -> None:
            outcome["result"] = run_stress(server.port, cases, clients=args.clients, seconds=seconds,
                                           requests=args.requests)
            done.set()

        started = time.perf_counter()
        threading.Thread(target=load, daemon=True).start()
        samples = sample_until(done, server.process.pid, workers, args.interval, started)
        workers_unchanged = sorted(worker_pids(server.process.pid)) == workers

    info = {
        "command": "python bench/soak.py" + ("" if args.minutes == 10 else f" --minutes {args.minutes:g}")
                   + (f" --requests {args.requests}" if args.requests else ""),
        "span": (f"{args.requests:,} requests" if args.requests else f"{args.minutes:g} minutes"),
        "workers": args.workers, "minutes": args.minutes, "interval": args.interval, "warmup": args.warmup,
        "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "workers_unchanged": workers_unchanged,
    }
    markdown, passed = report(samples, outcome["result"], info)
    print("\n" + markdown)
    if not args.no_write:
        plot(samples, args.warmup, PLOT)
        update_section("soak", markdown, doc=RELIABILITY_DOC)
        data = {"info": info, "seconds": samples.at, "rss_mb": samples.rss, "load": outcome["result"].to_dict()}
        print(f"wrote {PLOT}, docs/reliability.md and {write_json('soak', data)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
