"""Stress: many concurrent clients mixing real photos and hostile uploads against the production server.

Starts ``gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"`` on
loopback (workers = CPUs) and runs ``--clients`` closed-loop clients for ``--seconds``.
Each client walks its own rotation of a mix where every other request is a real photo
(the three cats and three dogs of tests/data: the answer must carry the right label) and
the others are the hostile corpus of ``catdog.testing.hostile`` (the answer must be the one the
corpus expects). Counted: connection errors, 5xx, wrong answers (a photo without its
label, a hostile upload answered 200 or 5xx), 4xx with another code than the corpus says,
latency percentiles and requests/s.

    python bench/stress.py                                  # 64 clients, 60 s, writes the docs
    python bench/stress.py --clients 16 --seconds 8 --no-write
    python bench/stress.py --bombs                          # peak memory under decoded-size bombs

Writes the "Stress" section of docs/benchmarks.md and of docs/reliability.md, and
docs/bench/stress.json. Exits 1 if any connection error, 5xx or wrong answer was seen.

``--bombs`` measures memory instead (issue 17): the resident memory (VmRSS) of the master and
every worker, summed and sampled every 50 ms, while ``--bomb-clients`` clients send only the
decoded-size bombs of the corpus (40 MP PNGs of 16-bit, palette and RGBA pixels, a 40 MP WebP,
and a batch of 32 palette PNGs). The peak is what the instance's memory limit must hold
(Cloud Run gives the service 1 GiB). ``PYTHONPATH=/path/to/other/src`` serves another checkout
of catdog, for a before/after comparison. Writes the "bomb-memory" section of docs/reliability.md.

The loop is its own (not ``_load.run_load``) because every answer is checked against what
that very request should get; bodies are still built once and sent with ``http.client``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import multipart_body, wait_until_serving
from _report import FIXTURE_PHOTO, ROOT, machine, table, update_section, write_json
from http_serving import HOST, Server, worker_pids
from http_serving import rss_mb as process_rss_mb

sys.path.insert(0, str(ROOT))
from catdog.testing.hostile import BATCH_PATH, OK, Case, Part, corpus, multipart, palette_bomb

PHOTOS = ROOT / "tests" / "data" / "images"
RELIABILITY_DOC = ROOT / "docs" / "reliability.md"


def photo_cases() -> list[Case]:
    """The real photos as valid cases: each must come back with its folder's label."""
    cases = []
    for path in sorted(PHOTOS.glob("*/*.jpg")):
        body, content_type = multipart_body("image", path.name, path.read_bytes())
        cases.append(Case(f"photo {path.name}", body, content_type, OK, label=path.parent.name))
    return cases


def mix(seed: int = 0) -> list[Case]:
    """Photos and hostile cases alternating, so half the traffic is real work."""
    hostile = corpus(FIXTURE_PHOTO.read_bytes(), seed=seed)
    return [case for pair in zip(itertools.cycle(photo_cases()), hostile) for case in pair]


@dataclass
class StressResult:
    clients: int
    seconds: float
    requests: int = 0
    valid: int = 0
    connection_errors: int = 0
    server_errors: int = 0
    wrong_answers: int = 0
    other_code: int = 0
    #: 503 overloaded: answered at once by the queue bound (issue 24), not a failure.
    shed: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # the first few unexpected answers, to print

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    @property
    def clean(self) -> bool:
        return not (self.connection_errors or self.server_errors or self.wrong_answers)

    def to_dict(self) -> dict:
        return {
            "clients": self.clients, "seconds": round(self.seconds, 2), "requests": self.requests,
            "valid": self.valid, "invalid": self.requests - self.valid, "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 1), "p99_ms": round(self.percentile(99), 1),
            "connection_errors": self.connection_errors, "server_errors_5xx": self.server_errors,
            "wrong_answers": self.wrong_answers, "other_4xx_code": self.other_code, "shed_503": self.shed,
            "statuses": dict(sorted(self.statuses.items())), "examples": self.examples,
        }


def judge(case: Case, status: int, body: bytes) -> str:
    """``ok``, ``5xx``, ``wrong`` (a photo without its label, hostile input answered 200) or ``other_code``."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "5xx" if status >= 500 else "wrong"
    if status == 503 and isinstance(payload.get("error"), dict) and payload["error"].get("code") == "overloaded":
        return "shed"
    if status >= 500:
        return "5xx"
    error = payload.get("error") if status >= 400 else None
    code = (error.get("code") if isinstance(error, dict) else payload.get("code")) if status >= 400 else None
    if (status, code) in case.expected:
        return "ok" if not case.label or payload.get("label") == case.label else "wrong"
    if status == 200 or (200, None) in case.expected:
        return "wrong"
    return "other_code"


def send(port: int, case: Case, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(case.method, case.path, body=case.body, headers=case.request_headers())
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def run_stress(port: int, cases: list[Case], *, clients: int, seconds: float, timeout: float = 30.0,
               requests: int | None = None) -> StressResult:
    """``clients`` threads, each starting at its own place in ``cases``, for ``seconds`` (or
    until ``requests`` have been answered, if that comes first)."""
    result = StressResult(clients, seconds)
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + seconds

    def client(offset: int) -> None:
        for case in itertools.islice(itertools.cycle(cases), offset, None):
            t0 = time.perf_counter()
            if t0 >= deadline or (requests is not None and result.requests >= requests):
                return
            try:
                status, body = send(port, case, timeout)
                verdict = judge(case, status, body)
            except (OSError, http.client.HTTPException) as exc:
                status, verdict = 0, f"connection: {exc!r}"
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                result.requests += 1
                result.valid += case.valid
                result.statuses[status] += 1
                result.latencies_ms.append(elapsed)
                result.shed += verdict == "shed"
                if verdict not in ("ok", "shed"):
                    result.connection_errors += verdict.startswith("connection")
                    result.server_errors += verdict == "5xx"
                    result.wrong_answers += verdict == "wrong"
                    result.other_code += verdict == "other_code"
                    if len(result.examples) < 10:
                        result.examples.append(f"{case.name}: {status} {verdict}")

    # Clients start spread evenly over the mix, so even a short run covers all of it.
    threads = [threading.Thread(target=client, args=(i * len(cases) // clients,), daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 10)
    result.seconds = time.perf_counter() - started
    return result


def bomb_cases() -> list[Case]:
    """The decoded-size bombs of the corpus, and a batch of 32 palette bombs (issue 17, 1 and 2)."""
    bombs = [case for case in corpus(FIXTURE_PHOTO.read_bytes())
             if "bomb (6324x6324" in case.name]
    body, content_type = multipart(*(Part(b"images", palette_bomb(), b"%d.png" % i) for i in range(32)))
    return [*bombs, Case("batch of 32 palette bombs", body, content_type, OK, path=BATCH_PATH)]


def rss_mb(master: int) -> float:
    """Resident memory of the master and its children (the workers), in MB."""
    return sum(process_rss_mb(pid) for pid in [master, *worker_pids(master)])


def measure_bombs(server, clients: int, seconds: float) -> dict:
    """Peak and idle RSS of master + workers while ``clients`` clients send only bombs."""
    cases = bomb_cases()
    idle = max(rss_mb(server.process.pid) for _ in range(5) if not time.sleep(0.1))
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(server.process.pid))
            time.sleep(0.05)

    answers: Counter = Counter()
    per_case: dict[str, Counter] = {case.name: Counter() for case in cases}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    workers_before = set(worker_pids(server.process.pid))

    def client(offset: int) -> None:
        for case in itertools.islice(itertools.cycle(cases), offset, None):
            if time.perf_counter() >= deadline:
                return
            try:
                status, body = send(server.port, case, 60)
                payload = json.loads(body) if body.startswith(b"{") else {}
                error = payload.get("error") if status >= 400 else None
                code = (error.get("code") if isinstance(error, dict) else payload.get("code")) if status >= 400 else None
                if case.path == BATCH_PATH and status == 200:
                    codes = Counter(r.get("error", {}).get("code", "label") for r in payload["results"])
                    code = ", ".join(f"{k} x{v}" for k, v in sorted(codes.items()))
                answer = f"{status} {code or ''}".strip()
            except (OSError, http.client.HTTPException) as exc:
                answer = f"connection error ({type(exc).__name__})"
            with lock:
                answers[answer.split(" ", 1)[0]] += 1
                per_case[case.name][answer] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    stop.set()
    sampler.join(5)
    replaced = len(workers_before - set(worker_pids(server.process.pid)))
    return {"idle_mb": round(idle, 1), "peak_mb": round(max(samples), 1), "clients": clients, "seconds": seconds,
            "statuses": dict(answers), "answers": {k: dict(v) for k, v in per_case.items()},
            "workers_replaced": replaced}


def bomb_report(result: dict, info: dict) -> str:
    rows = [[name, "; ".join(f"{answer} ({n})" for answer, n in answers.items())]
            for name, answers in result["answers"].items()]
    return f"""`{info['command']}` ({info['workers']} workers, {result['clients']} clients sending only the bombs
for {result['seconds']:g} s; served code: {info['served']}). Machine: {info['machine']}.

| master + workers RSS | MB |
|---|---|
| idle, before the bombs | {result['idle_mb']} |
| peak, during the bombs | {result['peak_mb']} |

{table(["request", "answers (count)"], rows)}

Workers replaced during the run: {result['workers_replaced']}. Measured {info['date']}."""


def report(result: StressResult, info: dict) -> str:
    r = result.to_dict()
    rows = [[r["clients"], r["seconds"], r["requests"], r["valid"], r["invalid"], r["rps"], r["p50_ms"],
             r["p99_ms"], r["connection_errors"], r["server_errors_5xx"], r["wrong_answers"], r["other_4xx_code"]]]
    headers = ["clients", "seconds", "requests", "valid uploads", "invalid uploads", "req/s", "p50 ms", "p99 ms",
               "connection errors", "5xx", "wrong answers", "other 4xx code"]
    statuses = ", ".join(f"{status}: {count}" for status, count in r["statuses"].items())
    verdict = "clean: no connection error, no 5xx, no wrong answer" if result.clean else "NOT clean"
    return f"""## Stress

`{info['command']}` runs the production command
(`gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"`, {info['workers']} workers,
one ONNX Runtime thread each) on loopback, and {r['clients']} closed-loop clients for {info['target_seconds']:g} s.
Every other request is one of the six real photos of `tests/data/images` (its label must come back) and the
others walk the {info['hostile_cases']} cases of the hostile corpus (`catdog.testing.hostile`: the answer must be the
status and code the corpus expects).

Machine: {info['machine']}. {info['note']}

{table(headers, rows)}

- Result: **{verdict}**.
- Statuses: {statuses}.
- "wrong answers": a photo answered without its label, or a hostile upload answered 200 or 5xx.
  "other 4xx code": refused, but with another code than the corpus expects (not a robustness failure).
- "valid uploads" are the photos and the corpus's valid-but-odd images (CMYK, 16-bit, animated GIF, 1x1...);
  latency covers every request, valid or not; req/s counts completed requests of both kinds.
- Measured {info['date']}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="gunicorn workers (default: CPUs)")
    parser.add_argument("--model", default=None, help="model to serve (default: bundled)")
    parser.add_argument("--note", default="", help="context for the doc, e.g. what else was running")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--bombs", action="store_true", help="measure peak memory under decoded-size bombs instead")
    parser.add_argument("--bomb-clients", type=int, default=4, help="concurrent clients for --bombs")
    parser.add_argument("--bomb-seconds", type=float, default=30.0, help="duration of --bombs")
    parser.add_argument("--section", default="bomb-memory", help="docs/reliability.md section --bombs writes")
    args = parser.parse_args(argv)

    if args.bombs:
        return run_bombs(args)
    cases = mix()
    with Server(args.workers, args.model) as server:
        warm = photo_cases()[0]
        wait_until_serving(HOST, server.port, "/v1/predict", (warm.body, warm.content_type), timeout=120,
                           alive=lambda: server.process.poll() is None)
        print(f"server on port {server.port}, {args.workers} workers; {args.clients} clients for {args.seconds:g} s",
              flush=True)
        load_before = os.getloadavg()[0]
        result = run_stress(server.port, cases, clients=args.clients, seconds=args.seconds)
        alive = server.process.poll() is None

    command = "python bench/stress.py" + ("" if (args.clients, args.seconds) == (64, 60.0)
                                          else f" --clients {args.clients} --seconds {args.seconds:g}")
    load = os.getloadavg()
    info = {
        "command": command, "workers": args.workers, "target_seconds": args.seconds,
        "hostile_cases": sum(not case.valid for case in cases), "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": args.note or f"Load average (1 min) before/after the run: {load_before:.2f}/{load[0]:.2f}.",
    }
    markdown = report(result, info)
    print("\n" + markdown)
    if result.examples:
        print("first unexpected answers:\n  " + "\n  ".join(result.examples))
    if not args.no_write:
        update_section("stress", markdown)
        update_section("stress", markdown, doc=RELIABILITY_DOC)
        print(f"wrote docs/benchmarks.md, docs/reliability.md and "
              f"{write_json('stress', {'info': info, 'result': result.to_dict()})}")
    return 0 if result.clean and alive else 1


def run_bombs(args) -> int:
    import catdog

    served = str(Path(catdog.__file__).resolve().parents[2])
    with Server(args.workers, args.model) as server:
        warm = photo_cases()[0]
        wait_until_serving(HOST, server.port, "/v1/predict", (warm.body, warm.content_type), timeout=120,
                           alive=lambda: server.process.poll() is None)
        time.sleep(3)  # every worker loaded and idle
        result = measure_bombs(server, args.bomb_clients, args.bomb_seconds)
    info = {"command": "python bench/stress.py --bombs", "workers": args.workers, "machine": machine(),
            "served": "this checkout" if served == str(ROOT) else served,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    markdown = bomb_report(result, info)
    print("\n" + markdown)
    if not args.no_write:
        update_section(args.section, markdown, doc=RELIABILITY_DOC)
        write_json(args.section, {"info": info, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
