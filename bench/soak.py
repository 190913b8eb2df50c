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

Plots the curve to docs/bench/soak_rss.png, writes the "Soak" section of
docs/reliability.md and docs/bench/soak.json. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import multipart_body, wait_until_serving
from _report import FIXTURE_PHOTO, RESULTS, machine, table, update_section, write_json
from http_serving import HOST, Server, worker_pids
from stress import RELIABILITY_DOC, StressResult, mix, run_stress

MAX_GROWTH = 0.10
PLOT = RESULTS / "soak_rss.png"


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


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
        """(after warm-up, at the end, relative growth): the end is the mean of the last 3 samples."""
        start = next(value for at, value in zip(self.at, series) if at >= warmup)
        end = sum(series[-3:]) / len(series[-3:])
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


def report(samples: Samples, load: StressResult, info: dict) -> tuple[str, bool]:
    rows, passed = [], info["workers_unchanged"] and load.clean
    for name, series in [*samples.rss.items(), ("total", samples.total())]:
        start, end, growth = samples.growth(series, info["warmup"])
        passed &= growth < MAX_GROWTH
        rows.append([name, f"{series[0]:.1f}", f"{start:.1f}", f"{end:.1f}", f"{max(series):.1f}", f"{growth:+.1%}"])
    headers = ["process", "RSS at start MB", f"after warm-up ({info['warmup']:g} s)", "at the end", "max",
               "growth after warm-up"]
    r = load.to_dict()
    verdict = "passed" if passed else "FAILED"
    replaced = "none" if info["workers_unchanged"] else "YES"
    return f"""## Soak

`{info['command']}` runs the production command with {info['workers']} sync workers on loopback and
{r['clients']} closed-loop clients for {info['minutes']:g} minutes, with the stress mix (real photos alternating
with the hostile corpus, every answer checked); the resident memory (VmRSS) of the master and of each worker is
sampled every {info['interval']:g} s. Growth compares the mean of the last three samples with the first
sample after {info['warmup']:g} s of warm-up; the limit is {MAX_GROWTH:.0%}.

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
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)

    seconds = args.minutes * 60
    cases = mix()
    photo = FIXTURE_PHOTO.read_bytes()
    with Server(args.workers, None) as server:
        wait_until_serving(HOST, server.port, "/v1/predict", multipart_body("image", "cat.jpg", photo),
                           timeout=120, alive=lambda: server.process.poll() is None)
        workers = sorted(worker_pids(server.process.pid))
        print(f"server on port {server.port}, workers {workers}; {args.clients} clients for {args.minutes:g} min",
              flush=True)
        done, outcome = threading.Event(), {}

        def load() -> None:
            outcome["result"] = run_stress(server.port, cases, clients=args.clients, seconds=seconds)
            done.set()

        started = time.perf_counter()
        threading.Thread(target=load, daemon=True).start()
        samples = sample_until(done, server.process.pid, workers, args.interval, started)
        workers_unchanged = sorted(worker_pids(server.process.pid)) == workers

    info = {
        "command": "python bench/soak.py" + ("" if args.minutes == 10 else f" --minutes {args.minutes:g}"),
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
