"""HTTP serving speed: the production gunicorn server on loopback, 1, 4 and 16 clients.

Starts ``gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"``
on a free port (N sync workers, one ONNX thread each), then runs closed-loop clients
(``bench/_load.py``: threads, one ``http.client`` connection per request) against
``POST /v1/predict`` with a real ~500x400 JPEG. Reports p50/p95/p99 latency and
requests/s per level, plus the CPU the client itself burned per request: on a 2-core
machine the load generator competes with the server, so its cost is part of the story.

    python bench/http_serving.py                       # workers = CPUs, 10 s per level
    python bench/http_serving.py --seconds 3 --levels 1,16 --no-write

Writes the "HTTP serving" section of docs/benchmarks.md and docs/bench/http.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import LoadResult, multipart_body, post, run_load, wait_until_serving
from _report import FIXTURE_PHOTO, ROOT, machine, table, update_section, write_json

from catdog import servers
from catdog.model.engine import bundled_model_dir

HOST = "127.0.0.1"
PATH = "/v1/predict"
DEFAULT_IMAGE = FIXTURE_PHOTO
SERVER_CMD = [sys.executable, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
              "catdog.api:create_app()"]
#: Targets from issue 3, on a 2-core machine.
TARGET_P50_MS_AT_1 = 25.0
TARGET_RPS_AT_16 = 60.0


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (empty if the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(f[11]) + int(f[12])) / tick for f in map(_stat, pids) if len(f) > 12)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (wrk, once it is waited for)."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def minor_faults(pids: list[int]) -> int:
    """Minor page faults of these processes so far (pages the kernel had to map in; 0 elsewhere)."""
    return sum(int(f[7]) for f in map(_stat, pids) if len(f) > 7)


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def process_tree(root: int) -> list[int]:
    """``root`` and every live process below it: a server with its workers and whatever helper
    processes its framework spawns (BentoML starts its own session, so a session is not enough)."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                continue
    return tree


def worker_pids(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


class Server:
    """The production gunicorn command in its own process group, stopped with SIGTERM."""

    def __init__(self, workers: int, model: str | None):
        self.port = servers.free_port(HOST)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CATDOG_", "PROMETHEUS_"))}
        env.update(PORT=str(self.port), CATDOG_HOST=HOST, CATDOG_WORKERS=str(workers), CATDOG_THREADS="1")
        if model:
            env["CATDOG_MODEL"] = model
        self.process = servers.start(SERVER_CMD, env=env, inherit_env=False, cwd=ROOT, log=Path(os.devnull))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        servers.stop(self.process, timeout=30)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting on I/O) since boot."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Level:
    """One concurrency level, accumulated over the rounds it ran in."""

    clients: int
    result: LoadResult | None = None
    wall: float = 0.0
    made: int = 0  # requests made, counting the uncounted warm-up ones (CPU is spent on them too)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    other_cpu: float = 0.0

    def run(self, server: Server, body, seconds: float, warmup: float) -> LoadResult:
        workers = worker_pids(server.process.pid)
        busy, client, srv, started = busy_cpu_seconds(), time.process_time(), cpu_seconds(workers), time.perf_counter()
        result = run_load(HOST, server.port, PATH, [body], clients=self.clients, seconds=seconds, warmup=warmup)
        self.wall += time.perf_counter() - started
        client, srv = time.process_time() - client, cpu_seconds(workers) - srv
        self.client_cpu += client
        self.server_cpu += srv
        self.other_cpu += max(0.0, busy_cpu_seconds() - busy - client - srv)
        self.made += round(result.ok * (seconds + warmup) / seconds)
        self.result = result if self.result is None else self.result.merge(result)
        return result

    def to_dict(self) -> dict:
        made = max(1, self.made)
        return {
            **self.result.to_dict(),
            "client_cpu_ms_per_request": 1000 * self.client_cpu / made,
            "server_cpu_ms_per_request": 1000 * self.server_cpu / made,
            # Cores busy with everything else on the machine (training, other jobs): the noise.
            "other_cores_busy": self.other_cpu / self.wall if self.wall else 0.0,
        }


def report(levels: list[dict], info: dict) -> str:
    rows = [
        [lv["clients"], f"{lv['rps']:.1f}", f"{lv['p50_ms']:.1f}", f"{lv['p95_ms']:.1f}", f"{lv['p99_ms']:.1f}",
         lv["ok"], lv["errors"], f"{lv['client_cpu_ms_per_request']:.2f}",
         f"{lv['server_cpu_ms_per_request']:.1f}", f"{lv['other_cores_busy']:.2f}"]
        for lv in levels
    ]
    headers = ["clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "ok", "errors",
               "client CPU ms/req", "server CPU ms/req", "other jobs (cores)"]
    by_clients = {lv["clients"]: lv for lv in levels}
    checks = []
    if 1 in by_clients:
        p50 = by_clients[1]["p50_ms"]
        checks.append(f"p50 at 1 client: {p50:.1f} ms (target <= {TARGET_P50_MS_AT_1:.0f} ms: "
                      f"{'met' if p50 <= TARGET_P50_MS_AT_1 else 'NOT met'})")
    if 16 in by_clients:
        rps = by_clients[16]["rps"]
        checks.append(f"throughput at 16 clients: {rps:.1f} req/s (target >= {TARGET_RPS_AT_16:.0f}: "
                      f"{'met' if rps >= TARGET_RPS_AT_16 else 'NOT met'})")
    if levels:
        cpu_ms = min(lv["server_cpu_ms_per_request"] for lv in levels)
        checks.append(f"ceiling from server CPU alone: {info['cores']} cores / {cpu_ms:.1f} ms = "
                      f"{info['cores'] * 1000 / cpu_ms:.0f} req/s")
    return f"""## HTTP serving

`python bench/http_serving.py` runs the production command
(`gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"`) on loopback
with {info['workers']} workers (`CATDOG_WORKER_CLASS`, default gthread) and one ONNX Runtime thread per worker, and closed-loop
clients (threads, `http.client`, a new connection per request)
POSTing `{info['image']}` ({info['image_bytes'] // 1024} KB JPEG, {info['image_size']}) as
multipart to `{PATH}`. {info['seconds']:g} s per level, measured in {info['rounds']} interleaved rounds,
each after {info['warmup']:g} s of uncounted warm-up.

Machine: {info['machine']}. {info['note']}

{table(headers, rows)}

{chr(10).join(f'- {c}' for c in checks)}
- "client CPU" is what the load generator itself used per request: on a 2-core machine it
  competes with the workers for the same cores, so the server alone would do a little better.
- "server CPU" is the workers' CPU per request (decode + model + HTTP): {info['cores']} cores
  divided by it is the throughput ceiling when nothing else runs.
- "other jobs" is how many cores the rest of the machine kept busy meanwhile (a shared box).
- Model: `{info['model']}`. Measured {info['date']}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="gunicorn workers (default: CPUs)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level, in all")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds the seconds are split into")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds before each level")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="JPEG to send")
    parser.add_argument("--model", default=None, help="model to serve (default: bundled)")
    parser.add_argument("--note", default="", help="context for the doc, e.g. what else was running")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)

    from PIL import Image

    data = args.image.read_bytes()
    body = multipart_body("image", "photo.jpg", data)
    clients_per_level = [int(n) for n in args.levels.split(",")]
    with Server(args.workers, args.model) as server, Image.open(args.image) as image:
        image_size = f"{image.width}x{image.height}"
        wait_until_serving(HOST, server.port, PATH, body, timeout=120,
                           alive=lambda: server.process.poll() is None)
        _, answer = post(HOST, server.port, PATH, body)
        print(f"server on port {server.port}, {args.workers} workers; sample answer: {answer.decode()}")
        # Levels are interleaved round by round, so a neighbour's burst of work spreads over
        # all of them instead of ruining one.
        levels = [Level(n) for n in clients_per_level]
        for round_number in range(1, args.rounds + 1):
            for level in levels:
                r = level.run(server, body, args.seconds / args.rounds, args.warmup)
                print(f"round {round_number}: {level.clients:>3} clients: {r.rps:6.1f} req/s  "
                      f"p50 {r.p50:6.1f} ms  p95 {r.p95:6.1f}  errors {r.errors}", flush=True)
        results = [level.to_dict() for level in levels]

    load = os.getloadavg()
    info = {
        "workers": args.workers, "seconds": args.seconds, "rounds": args.rounds, "warmup": args.warmup,
        "image": str(args.image.relative_to(ROOT)) if args.image.is_relative_to(ROOT) else args.image.name,
        "image_bytes": len(data), "image_size": image_size, "machine": machine(),
        "model": args.model or f"bundled {bundled_model_dir().name}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_after": list(load), "cores": len(os.sched_getaffinity(0)),
        "note": args.note or f"Load average (1/5/15 min) right after the run: {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}.",
    }
    markdown = report(results, info)
    print("\n" + markdown)
    if not args.no_write:
        print(f"wrote {update_section('http', markdown)} and {write_json('http', {'info': info, 'levels': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
