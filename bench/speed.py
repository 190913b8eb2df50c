"""Issues 12 and 24: catdog against serving frameworks, the machine's limit, the hand-written PyTorch
server and the original design, driven by wrk.

Side by side in one run, each server under gunicorn with the same number of sync workers
and one compute thread per worker, on loopback:

- **catdog**: the production command (``gunicorn --config python:catdog.api.gunicorn_conf
  "catdog.api:create_app()"``), serving the current default model;
- **catdog-2.0.0**: the same command serving catdog's previous release, the bundled model as
  shipped before (``git show df143ed:src/catdog/models/catdog-lite2/...``: the int8 Lite2 alone,
  cat/dog/other; written to a temporary folder and passed as ``CATDOG_MODEL``);
- **pytorch**: the hand-written Flask + PyTorch-eager server (``bench/baselines/torch_app.py``)
  on the float weights of the same architecture;
- **original-jax** (and **original-tensorflow** with ``--tf-python``): the original design,
  a Keras 64x64 CNN behind flask-restful's shape (``bench/baselines/original_app.py``);
- **litserve** and **bentoml** (issue 24's peers): catdog's own ``Classifier`` served by LitServe
  (``bench/baselines/litserve_app.py``, uvicorn front, ``workers_per_device``) and BentoML
  (``bench/baselines/bentoml_service.py``, ``@bentoml.service(workers=...)``, a ``Path`` input),
  same model, same workers, one ONNX thread each. Their packages live in a bench-only
  environment (``pip install -e '.[peers]'`` in a separate venv), given with ``--peers-python``;
  skipped when neither that nor this interpreter has them;
- **catdog-granian** (``--granian``): catdog's app under granian's WSGI server instead of
  gunicorn (if installed): the server choice measured, not assumed;
- **limit**: no HTTP at all, the same photos through ``Classifier.predict`` in one process per
  worker, for as long as a level runs: what the cores can classify. Its "req/s" is photos/s.

The PyTorch and original-design rows need torch / keras; they are skipped when missing.

wrk (C, keep-alive, ``bench/_wrk.py``) POSTs multipart ``image`` bodies cycling through 40
different real JPEGs of about 500x375 (the validation photos of that size, else the fixture
photos), at 1 and 16 connections, levels interleaved across servers in rounds so the
machine's drift hits all alike; then once per server at 256 connections (overload: every
request must be answered, none dropped; non-2xx answers and socket errors are reported).
req/s is 2xx answers per second over the rounds; p50 is the median of the rounds' p50s.
Ratios side by side are what to read: the absolute numbers move with the machine's load.

    python bench/speed.py                          # about 5 minutes on 2 cores
    python bench/speed.py --seconds 3 --rounds 1   # a quick look, about 3 minutes
    python bench/speed.py --only catdog --variant threads2=CATDOG_THREADS=2 --no-write
    python bench/speed.py --from-json docs/bench/speed.json   # re-render only

wrk comes from Debian (``apt-get install -y wrk``; the script installs it when run as root).
Writes the "speed" section of docs/benchmarks.md and docs/bench/speed.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"
# Appended, not prepended (and the script's own folder dropped from the front), as compare.py
# does: a module in bench/ must never shadow the standard library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(BASELINES)]
import http.client

from _load import multipart_body, post, wait_until_serving
from _photos import DEFAULT_VAL, pick_photos
from _report import RESULTS, ROOT, float_model_of, machine, table, update_section
from _wrk import WrkResult, ensure_wrk, run_wrk, write_manifest
from http_serving import children_cpu_seconds, cpu_seconds, minor_faults, process_tree

HOST = "127.0.0.1"
ORIGINAL_H5 = BASELINES / "artifacts" / "cat_dog.h5"
#: The commit whose bundled model is "catdog's previous release" (2.0.0, int8 Lite2, cat/dog/other).
PREVIOUS_RELEASE = "df143ed"
#: Where the bundled model lived, newest first (1.0.0's commits had it in models/).
BUNDLED_PATHS = ("src/catdog/models/catdog-lite2", "models/catdog-lite2")
LEVELS = (1, 16)
OVERLOAD = 256
#: Issue 12's goals: catdog's req/s at 16 over each baseline's, and each baseline's p50 at 1 over catdog's.
TARGETS = {"rps_vs_pytorch": 5.0, "rps_vs_original": 10.0, "p50_vs_pytorch": 4.0}
# One compute thread per worker for every system, as catdog's gunicorn config does.
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TORCH_THREADS": "1",
    "CATDOG_THREADS": "1",
}


@dataclass(frozen=True)
class System:
    """One server in the run: its kind (which command starts it), title and extra environment."""

    key: str
    kind: str  # "catdog", "pytorch" or "original"
    title: str
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable

    def command(self, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
        if self.kind == "catdog":  # the production command, configured only by environment
            return ([self.python, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
                     "catdog.api:create_app()"],
                    {"PORT": str(port), "CATDOG_HOST": HOST, "CATDOG_WORKERS": str(workers)} | self.env)
        if self.kind == "granian":
            return ([self.python, "-m", "granian", "--interface", "wsgi", "--factory", "--host", HOST,
                     "--port", str(port), "--workers", str(workers), "--blocking-threads", "4",
                     "--no-access-log", "catdog.api:create_app"], {"CATDOG_WORKERS": str(workers)} | self.env)
        # Peers run in their own environment: catdog from this checkout's src/, their files from baselines/.
        peer_env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(BASELINES)]), "CATDOG_WORKERS": str(workers),
                    "BENTOML_DO_NOT_TRACK": "True"} | self.env
        if self.kind == "litserve":
            return ([self.python, str(BASELINES / "litserve_app.py"), "--port", str(port), "--workers", str(workers)],
                    peer_env)
        if self.kind == "bentoml":
            return ([self.python, "-m", "bentoml", "serve", "bentoml_service:CatdogService", "--host", HOST,
                     "--port", str(port)], peer_env)
        app = {"original": "original_app:create_app()", "pytorch": "torch_app:create_app()"}[self.kind]
        return ([self.python, "-m", "gunicorn", "--chdir", str(BASELINES), "--workers", str(workers),
                 "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--timeout", "120", app], self.env)


# -- the systems -----------------------------------------------------------------------------------

def previous_release(folder: Path, ref: str = PREVIOUS_RELEASE) -> Path | None:
    """The bundled model as of ``ref`` (model.onnx and model.json) written to ``folder``, or None."""
    folder.mkdir(parents=True, exist_ok=True)
    failed = ""
    for bundled in BUNDLED_PATHS:
        shown = [subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{bundled}/{name}"],
                                capture_output=True, check=False) for name in ("model.onnx", "model.json")]
        if all(done.returncode == 0 for done in shown):
            for name, done in zip(("model.onnx", "model.json"), shown):
                (folder / name).write_bytes(done.stdout)
            return folder
        failed = next(done for done in shown if done.returncode).stderr.decode(errors="replace").strip()[:200]
    print(f"skipping catdog's previous release: git show {ref} failed ({failed})", flush=True)
    return None


def keras_python(backend: str, tf_python: Path | None) -> str | None:
    """The interpreter serving the original design on ``backend`` (TensorFlow: its own venv)."""
    import importlib.util

    if backend == "tensorflow" and tf_python:
        return str(tf_python)
    return sys.executable if importlib.util.find_spec(backend) is not None else None


def peer_python(module: str, peers_python: Path | None) -> str | None:
    """The interpreter that has ``module`` (LitServe, BentoML): ``--peers-python``, else this one."""
    import importlib.util

    if peers_python and peers_python.exists():
        done = subprocess.run([str(peers_python), "-c", f"import {module}"], capture_output=True, check=False)
        if done.returncode == 0:
            return str(peers_python)
    return sys.executable if importlib.util.find_spec(module) is not None else None


LIMIT_SCRIPT = """
import sys, time
from pathlib import Path
from catdog.model.engine import Classifier
clf = Classifier.load(sys.argv[1] or None, threads=1)
photos = [Path(p).read_bytes() for p in sys.argv[3:]]
for data in photos:
    clf.predict(data)
print("ready", flush=True)
sys.stdin.readline()
deadline, n = time.perf_counter() + float(sys.argv[2]), 0
while time.perf_counter() < deadline:
    clf.predict(photos[n % len(photos)])
    n += 1
print(n, flush=True)
"""


def run_limit(model: Path, photos: list[Path], workers: int, seconds: float) -> WrkResult:
    """The limit: ``workers`` processes calling ``Classifier.predict`` on the photos, no HTTP, for
    ``seconds``, started together; photos/s as a WrkResult (requests = photos classified)."""
    env = os.environ | ONE_THREAD_ENV
    procs = [subprocess.Popen([sys.executable, "-c", LIMIT_SCRIPT, str(model), str(seconds), *map(str, photos)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(workers)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    counts = [int(proc.communicate(timeout=seconds + 120)[0].strip() or 0) for proc in procs]
    return WrkResult(connections=16, requests=sum(counts), seconds=seconds, non_2xx=0, connect_errors=0,
                     read_errors=0, write_errors=0, timeouts=0, p50_ms=math.nan, p90_ms=math.nan,
                     p99_ms=math.nan, mean_ms=math.nan, max_ms=math.nan)


def systems(args: argparse.Namespace, scratch: Path) -> list[System]:
    """catdog, its variants and previous release, PyTorch eager, the original design (as available)."""
    found = [System("catdog", "catdog", "catdog (ONNX Runtime, production gunicorn command)",
                    {"CATDOG_MODEL": str(args.model)})]
    for name, env in args.variant:
        found.append(System(f"catdog-{name}", "catdog", f"catdog with {' '.join(f'{k}={v}' for k, v in env.items())}",
                            {"CATDOG_MODEL": str(args.model)} | env))
    previous = previous_release(scratch / "previous-release", args.previous) if args.previous else None
    if previous is not None:
        recipe = json.loads((previous / "model.json").read_text())
        found.append(System(f"catdog-{recipe.get('version', 'previous')}", "catdog",
                            f"catdog's previous release: its model ({recipe.get('name')} {recipe.get('version')}, "
                            f"{'int8' if 'quantized' in recipe.get('training', {}) else 'float'}, {recipe['input']['size']} px, labels {'/'.join(recipe['labels'])}) "
                            "under today's code",
                            {"CATDOG_MODEL": str(previous)}))
    import importlib.util

    if args.granian and importlib.util.find_spec("granian") is not None:
        found.append(System("catdog-granian", "granian", "catdog's app under granian (WSGI, 4 blocking threads per worker)",
                            {"CATDOG_MODEL": str(args.model)}))
    for peer, title in (("litserve", "LitServe (ls.LitAPI calling Classifier.predict, uvicorn front)"),
                        ("bentoml", "BentoML (@bentoml.service, Path input)")):
        python = peer_python(peer, args.peers_python)
        if python is None:
            print(f"skipping {peer}: not installed here nor in --peers-python", flush=True)
            continue
        found.append(System(peer, peer, title, {"CATDOG_MODEL": str(args.model)}, python))
    if importlib.util.find_spec("torch") is not None:
        found.append(System("pytorch", "pytorch", "hand-written Flask + PyTorch eager (bench/baselines/torch_app.py)",
                            {"CATDOG_MODEL": str(args.torch_model)}))
    else:
        print("skipping the PyTorch server: torch is not installed (the [train] extra)", flush=True)
    for backend in args.keras_backends:
        python = keras_python(backend, args.tf_python)
        if python is None:
            print(f"skipping the original design on {backend}: not installed (see --tf-python)", flush=True)
            continue
        found.append(System(f"original-{backend}", "original",
                            f"original design (Keras CNN 64x64 on {backend}, Flask)",
                            {"KERAS_BACKEND": backend, "ORIGINAL_MODEL": str(args.original)}, python))
    if args.only:
        found = [s for s in found if s.key in args.only or any(s.key.startswith(o + "-") for o in args.only)]
    return found


@dataclass
class Server:
    system: System
    port: int
    process: subprocess.Popen
    cold_start_s: float = math.nan
    #: catdog's app: process start to the first 200 from /readyz, and the first answer's milliseconds after.
    ready_s: float = math.nan
    first_answer_ms: float = math.nan

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/predict"


@contextmanager
def serve(system: System, workers: int, probe: tuple[bytes, str]):
    """Start one server, wait for its first 200 from ``POST /predict``, stop its whole group on exit."""
    from catdog import servers

    port = servers.free_port(HOST)
    cmd, env = system.command(port, workers)
    log = Path(tempfile.mkstemp(prefix=f"http-{system.key}-", suffix=".log")[1])
    started = time.perf_counter()
    process = servers.start(cmd, log=log, env=ONE_THREAD_ENV | env, cwd=ROOT)
    ready_s = first_ms = math.nan
    try:
        try:
            if system.kind in ("catdog", "granian"):  # issue 24's cold start: ready, then the first answer
                # Polled every 20 ms: the floor is 2 s and a start takes about half a second.
                servers.wait_until_answering(f"http://{HOST}:{port}/readyz", process, name=system.key,
                                             log=log, timeout=240, poll=0.02)
                ready_s = time.perf_counter() - started
                asked = time.perf_counter()
                post(HOST, port, "/predict", probe)
                first_ms = 1000 * (time.perf_counter() - asked)
            wait_until_serving(HOST, port, "/predict", probe, timeout=240, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{system.key} failed to start: {exc}\n{log.read_text()[-3000:]}") from None
        yield Server(system, port, process, time.perf_counter() - started, ready_s, first_ms)
    finally:
        servers.stop(process, timeout=20)
        log.unlink(missing_ok=True)


def drain(server: Server, timeout: float = 300.0) -> float:
    """Seconds until a GET queued behind whatever wrk left in the listen backlog is answered.

    After wrk stops, gunicorn still answers every request already sent on a connection it has
    not accepted yet; the next level must not pay for them.
    """
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
    try:
        conn.request("GET", "/predict")
        conn.getresponse().read()
    finally:
        conn.close()
    return time.perf_counter() - started


# -- the run -----------------------------------------------------------------------------------------

def level_summary(runs: list[WrkResult]) -> dict:
    """Several rounds of one level as one: summed answers over summed time, the median round's p50."""
    seconds = sum(r.seconds for r in runs)
    return {
        "connections": runs[0].connections, "rounds": len(runs), "seconds": seconds,
        "requests": sum(r.requests for r in runs), "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(r.socket_errors for r in runs),
        "rps": sum(r.requests - r.non_2xx for r in runs) / seconds if seconds else math.nan,
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": max(r.p99_ms for r in runs),
        "per_round": [r.to_dict() for r in runs],
    }


def measure(args: argparse.Namespace) -> dict:
    ensure_wrk()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="catdog-http-")))
        photos = pick_photos(args.val, args.photos)
        manifest = write_manifest(photos, scratch)
        probe = multipart_body("image", photos[0].name, photos[0].read_bytes())
        contenders = systems(args, scratch)
        if any(s.kind == "original" for s in contenders) and not args.original.is_file():
            raise SystemExit(f"{args.original} is missing: run python bench/compare.py once (it trains it)")
        results: dict[str, dict] = {s.key: {"kind": s.kind, "title": s.title} for s in contenders}
        running: list[Server] = []
        for system in contenders:  # one at a time, so each cold start has the machine to itself
            print(f"start: {system.key} ...", flush=True)
            server = stack.enter_context(serve(system, args.workers, probe))
            for photo in photos[: 4 * args.workers]:  # every worker past its first requests
                post(HOST, server.port, "/predict", multipart_body("image", photo.name, photo.read_bytes()))
            results[system.key]["cold_start_s"] = server.cold_start_s
            if not math.isnan(server.ready_s):
                results[system.key].update(ready_s=server.ready_s, first_answer_ms=server.first_answer_ms)
            running.append(server)
        runs: dict[tuple[str, int], list[WrkResult]] = {}
        cpu_ms: dict[str, list[float]] = {}
        page_faults: dict[str, list[float]] = {}
        client_ms: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            for connections in LEVELS:
                for server in running:
                    print(f"wrk: round {round_ + 1}/{args.rounds}, {connections:>3} connections, "
                          f"{server.system.key} ...", flush=True)
                    if args.warmup:
                        run_wrk(server.url, manifest, connections=connections, seconds=args.warmup)
                        drain(server)
                    pids = process_tree(server.process.pid)
                    before, faults, client = cpu_seconds(pids), minor_faults(pids), children_cpu_seconds()
                    result = run_wrk(server.url, manifest, connections=connections, seconds=args.seconds)
                    if connections == 16:  # what each answer cost the server: CPU of all its processes
                        pids = process_tree(server.process.pid)
                        answers = max(result.requests, 1)
                        cpu_ms.setdefault(server.system.key, []).append(1000 * (cpu_seconds(pids) - before) / answers)
                        page_faults.setdefault(server.system.key, []).append((minor_faults(pids) - faults) / answers)
                        # wrk runs on the same two cores: what it spends is CPU no server can have
                        client_ms.setdefault(server.system.key, []).append(
                            1000 * (children_cpu_seconds() - client) / answers)
                    drain(server)
                    runs.setdefault((server.system.key, connections), []).append(result)
                if connections == 16 and not args.no_limit:
                    print(f"limit: round {round_ + 1}/{args.rounds}, {args.workers} processes, no HTTP ...", flush=True)
                    runs.setdefault(("limit", 16), []).append(run_limit(args.model, photos, args.workers, args.seconds))
        if args.overload_seconds:
            for server in running:
                print(f"wrk: overload, {OVERLOAD} connections, {server.system.key} ...", flush=True)
                result = run_wrk(server.url, manifest, connections=OVERLOAD, seconds=args.overload_seconds)
                results[server.system.key]["drain_after_overload_s"] = drain(server)
                runs[(server.system.key, OVERLOAD)] = [result]
                results[server.system.key]["alive_after_overload"] = server.process.poll() is None
    if not args.no_limit:
        results["limit"] = {"kind": "limit", "title": (f"the limit: {args.workers} processes calling Classifier.predict "
                                                        "on the same photos, no HTTP (photos/s)")}
    for (key, connections), level_runs in runs.items():
        results[key].setdefault("http", {})[str(connections)] = level_summary(level_runs)
    for key, costs in cpu_ms.items():
        results[key]["cpu_ms_per_answer"] = statistics.median(costs)
        results[key]["page_faults_per_answer"] = statistics.median(page_faults[key])
        results[key]["client_cpu_ms_per_answer"] = statistics.median(client_ms[key])
    if not args.no_limit:  # its processes never wait: all their CPU goes to photos
        results["limit"]["cpu_ms_per_answer"] = 1000 * args.workers / level(results["limit"], 16, "rps")
    return {"photos": [rel(p) for p in photos], "results": results, "models": models_line(args)}


def models_line(args: argparse.Namespace) -> str:
    """Which model each server ran, for the report."""
    from catdog.model.engine import resolve_model_path
    from catdog.model.recipe import RECIPE_FILENAME, Recipe

    path = resolve_model_path(args.model)
    recipe = Recipe.read(path.with_name(RECIPE_FILENAME)) if path.with_name(RECIPE_FILENAME).is_file() else None
    name = f"`{recipe.name}` {recipe.version}, {recipe.input.size} px, labels {'/'.join(recipe.labels)}" if recipe else path.name
    if recipe and recipe.cascade:
        name += (f", a cascade: its fast model (`{recipe.cascade.fast}/`) answers when at least {recipe.cascade.handoff:.4g} "
                 "sure, the rest go to the accurate model")
    return (f"catdog serves {name} (`{rel(path)}`); catdog's previous release is the model of commit "
            f"{args.previous or '(skipped)'}; PyTorch eager runs `{rel(args.torch_model)}`; the original design "
            f"`{rel(args.original)}`.")


# -- the report ----------------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def level(result: dict, connections: int, key: str) -> float:
    return result.get("http", {}).get(str(connections), {}).get(key, math.nan)


def baseline_key(results: dict, kind: str) -> str | None:
    """The server the ratios divide by: for the original design, TensorFlow (the framework it was
    written for, and issue 12's baseline) when it ran, else the first Keras backend that did."""
    keys = [key for key, r in results.items() if r["kind"] == kind]
    return "original-tensorflow" if "original-tensorflow" in keys else (keys[0] if keys else None)


def baseline_of(results: dict, kind: str) -> dict | None:
    key = baseline_key(results, kind)
    return results[key] if key else None


def peers_table(results: dict) -> str:
    """Issue 24's table: every server's req/s at 16 and p50 at 1, and its share of the limit."""
    limit = level(results.get("limit", {}), 16, "rps")
    rows = []
    for key, r in results.items():
        rps16 = level(r, 16, "rps")
        rows.append([f"{key}: {r['title']}", fmt(rps16), fmt(level(r, 1, "p50_ms")),
                     f"{rps16 / limit:.0%}" if not (math.isnan(limit) or math.isnan(rps16)) else "n/a",
                     fmt(r.get("cpu_ms_per_answer"), 2), fmt(r.get("client_cpu_ms_per_answer"), 2),
                     fmt(r.get("page_faults_per_answer"), 0), fmt(r.get("cold_start_s"), 2)])
    return table(["server (same Classifier and model, same workers, 1 ONNX thread each)", "req/s at 16",
                  "p50 at 1 (ms)", "share of the limit", "CPU ms per answer at 16 (all its processes)",
                  "wrk's CPU ms per answer at 16", "page faults per answer at 16", "start to first answer (s)"], rows)


def peers_line(results: dict) -> str:
    catdog = results.get("catdog")
    if not catdog:
        return ""
    peers = [results[k] for k in ("litserve", "bentoml") if k in results]
    parts = []
    if peers:
        best = max(peers, key=lambda r: level(r, 16, "rps"))
        rps = level(catdog, 16, "rps") / level(best, 16, "rps") - 1
        p50_peer = min(level(r, 1, "p50_ms") for r in peers)
        parts += [f"req/s at 16 vs the better peer {rps:+.1%} (floor >= +5%: {'met' if rps >= 0.05 else 'not met'})",
                  (f"p50 at 1 {level(catdog, 1, 'p50_ms'):.1f} ms vs the peers' best {p50_peer:.1f} ms "
                   f"({'met' if level(catdog, 1, 'p50_ms') <= p50_peer else 'not met'})")]
    limit = level(results.get("limit", {}), 16, "rps")
    if not math.isnan(limit):
        share = level(catdog, 16, "rps") / limit
        parts.append(f"{share:.0%} of the limit (floor >= 88%: {'met' if share >= 0.88 else 'not met'})")
    if "ready_s" in catdog:
        parts.append(f"cold start: ready (/readyz 200) {catdog['ready_s']:.2f} s after the process started "
                     f"(floor < 2 s: {'met' if catdog['ready_s'] < 2 else 'not met'}), first answer "
                     f"{catdog['first_answer_ms']:.0f} ms (floor < 150 ms: "
                     f"{'met' if catdog['first_answer_ms'] < 150 else 'not met'})")
    over = catdog.get("http", {}).get(str(OVERLOAD))
    if over:
        ok = over["socket_errors"] == 0 and over["p99_ms"] <= 1500
        parts.append(f"at {OVERLOAD} connections p99 {over['p99_ms']:,.0f} ms with {over['socket_errors']} socket "
                     f"errors (floor <= 1,500 ms and none: {'met' if ok else 'not met'})")
    return "Issue 24 floors for catdog: " + "; ".join(parts) + "."


def speed_table(results: dict) -> str:
    pytorch, original = baseline_of(results, "pytorch"), baseline_of(results, "original")
    rows = []
    for key, r in results.items():
        rps16, p50 = level(r, 16, "rps"), level(r, 1, "p50_ms")
        row = [f"{key}: {r['title']}", fmt(rps16), fmt(p50), fmt(level(r, 1, "rps"))]
        for base in (pytorch, original):
            row += [fmt(rps16 / level(base, 16, "rps"), 2) + "x" if base else "n/a",
                    fmt(level(base, 1, "p50_ms") / p50, 2) + "x" if base else "n/a"]
        rows.append(row)
    original_key = baseline_key(results, "original") or "original"
    return table(["server", "req/s at 16", "p50 at 1 (ms)", "req/s at 1", "req/s vs pytorch",
                  "p50 vs pytorch (lower by)", f"req/s vs {original_key}", f"p50 vs {original_key} (lower by)"], rows)


def overload_table(results: dict) -> str:
    rows = []
    for key, r in results.items():
        over = r.get("http", {}).get(str(OVERLOAD))
        if not over:
            continue
        rows.append([key, f"{over['requests']:,}", fmt(over["rps"]), fmt(over["p50_ms"], 0), fmt(over["p99_ms"], 0),
                     str(over["non_2xx"]), str(over["socket_errors"]), fmt(r.get("drain_after_overload_s"), 1),
                     "yes" if r.get("alive_after_overload") else "NO"])
    return table(["server", "answers", "req/s", "p50 (ms)", "p99 (ms)", "non-2xx", "socket errors",
                  "backlog drained after (s)", "still serving"], rows)


def goals_line(results: dict) -> str:
    catdog, pytorch, original = results.get("catdog"), baseline_of(results, "pytorch"), baseline_of(results, "original")
    if not catdog:
        return ""
    parts = []
    if pytorch:
        rps = level(catdog, 16, "rps") / level(pytorch, 16, "rps")
        p50 = level(pytorch, 1, "p50_ms") / level(catdog, 1, "p50_ms")
        parts += [(f"req/s at 16 vs PyTorch {rps:.2f}x (goal >= {TARGETS['rps_vs_pytorch']:g}x: "
                  f"{'met' if rps >= TARGETS['rps_vs_pytorch'] else 'not met'})"),
                  (f"p50 at 1 vs PyTorch {p50:.2f}x lower (goal >= {TARGETS['p50_vs_pytorch']:g}x: "
                  f"{'met' if p50 >= TARGETS['p50_vs_pytorch'] else 'not met'})")]
    if original:
        rps = level(catdog, 16, "rps") / level(original, 16, "rps")
        parts.append(f"req/s at 16 vs {baseline_key(results, 'original')} {rps:.2f}x (goal >= {TARGETS['rps_vs_original']:g}x: "
                     f"{'met' if rps >= TARGETS['rps_vs_original'] else 'not met'})")
    over = catdog.get("http", {}).get(str(OVERLOAD))
    if over:
        if over["socket_errors"]:
            parts.append(f"overload at {OVERLOAD}: {over['socket_errors']} SOCKET ERRORS")
        else:
            parts.append(f"overload at {OVERLOAD}: no socket errors, {over['non_2xx']} answered non-2xx "
                         "(catdog: 503 overloaded, its queue bound)")
    return "Issue 12 goals for catdog: " + "; ".join(parts) + "." if parts else ""


#: Section titles of docs/benchmarks.md by ``--section`` (another section for variant runs, so
#: they never overwrite the main table).
TITLES = {"speed": "Speed side by side (wrk): issue 12", "workers": "Workers and ORT threads per worker (wrk)",
          "serving": "Serving side by side (wrk): issue 24"}


def overload_part(results: dict, settings: dict) -> list[str]:
    if not any(str(OVERLOAD) in r.get("http", {}) for r in results.values()):
        return []
    return [(f"Overload ({OVERLOAD} connections on {settings['workers']} workers; wrk's timeout 60 s, so a queued "
            "request is answered late rather than counted lost):"), "", overload_table(results), ""]


def markdown(raw: dict) -> str:
    results, s = raw["results"], raw["settings"]
    section = s.get("section", "speed")
    return "\n".join([
        f"## {TITLES.get(section, section)}",
        "",
        (f"Measured {raw['date']} on {raw['machine']}; load average before the run "
        f"{', '.join(f'{x:.1f}' for x in raw['load_average_before'])} (1 / 5 / 15 min: the machine is shared, "
        f"so read the ratios). Command: `{raw['command']}` ({raw['total_seconds']:.0f} s)."),
        "",
        (f"wrk {s['wrk_version']} (C, keep-alive; `bench/_wrk.py`) POSTs multipart `image` cycling through "
        f"{len(raw['photos'])} different real JPEGs of about 500x375; {s['workers']} worker processes "
        f"and one compute thread per worker for every server"
        + (" (except where a variant's environment says otherwise)" if s.get("variants") else "")
        + f"; levels 1 and 16 connections interleaved across servers in {s['rounds']} rounds of "
        f"{s['seconds']} s (after {s['warmup']} s unmeasured)"
        + (f", then {OVERLOAD} connections once per server for {s['overload_seconds']} s"
           if str(s.get("overload_seconds")) != "0" else "")
        + ". req/s counts 2xx answers; p50 is the median of the rounds' p50s. The ratio columns divide "
        "catdog's req/s by the baseline's and the baseline's p50 by the server's."),
        "",
        raw.get("models", ""),
        "",
        peers_table(results),
        "",
        *([peers_line(results), ""] if peers_line(results) else []),
        speed_table(results),
        "",
        *([goals_line(results), ""] if goals_line(results) else []),
        *overload_part(results, s),
        f"Raw numbers, every round and the photos sent: [`bench/{section}.json`](bench/{section}.json).",
    ])


def rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    words = (done.stdout + done.stderr).split()
    return words[1] if len(words) > 1 else "?"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name=KEY=VALUE[,KEY=VALUE]`` -> (name, env): another catdog server with that environment."""
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
    if not name or not env:
        raise argparse.ArgumentTypeError(f"--variant wants name=KEY=VALUE[,KEY=VALUE], got {text!r}")
    return name, env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="catdog's model (default: the bundled one)")
    parser.add_argument("--torch-model", type=Path, default=None,
                        help="float model the PyTorch server runs (default: MODEL-fp32 beside the model if "
                             "it exists, else the model)")
    parser.add_argument("--previous", default=PREVIOUS_RELEASE,
                        help="git commit whose bundled catdog-lite2 is catdog's previous release ('' = skip)")
    parser.add_argument("--original", type=Path, default=ORIGINAL_H5, help="the original design's .h5")
    parser.add_argument("--keras-backends", type=lambda v: [b for b in v.split(",") if b], default=["jax", "tensorflow"],
                        help="Keras backends to serve the original design on (installed ones only)")
    parser.add_argument("--tf-python", type=Path, default=None,
                        help="python of a virtualenv with tensorflow-cpu, keras, flask, gunicorn, pillow")
    parser.add_argument("--peers-python", type=Path, default=None,
                        help="python of the bench-only venv with LitServe and BentoML (pip install -e '.[peers]')")
    parser.add_argument("--granian", action="store_true", help="also catdog's app under granian (if installed)")
    parser.add_argument("--no-limit", action="store_true", help="skip the limit row (no HTTP, one process per worker)")
    parser.add_argument("--val", type=Path, default=DEFAULT_VAL, help="photo folders (one per class)")
    parser.add_argument("--photos", type=int, default=40, help="different photos wrk cycles through")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for every server")
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per level, server and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over servers and levels")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each level (0 = none)")
    parser.add_argument("--overload-seconds", type=int, default=5,
                        help=f"seconds at {OVERLOAD} connections per server (0 = skip)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="another catdog server: name=KEY=VALUE[,KEY=VALUE] (e.g. threads2=CATDOG_THREADS=2)")
    parser.add_argument("--only", type=lambda v: v.split(","), default=None,
                        help="only these servers (keys, comma-separated; 'catdog' also selects catdog-*)")
    parser.add_argument("--section", default="speed",
                        help="section of docs/benchmarks.md and name of docs/bench/NAME.json to write")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--from-json", type=Path, help="re-render the report of a saved speed.json")
    args = parser.parse_args(argv)
    if args.model is None:
        from catdog.model.engine import bundled_model_dir

        args.model = bundled_model_dir()
    if args.torch_model is None:
        args.torch_model = float_model_of(args.model)
    args.model, args.torch_model, args.original, args.val = (
        p.resolve() for p in (args.model, args.torch_model, args.original, args.val))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.from_json:
        raw_path = args.from_json
        raw = json.loads(raw_path.read_text())
    else:
        command = "python " + " ".join(shlex.quote(a) for a in [rel(Path(__file__)), *(sys.argv[1:] if argv is None else argv)])
        settings = {k: str(v) for k, v in vars(args).items() if k not in ("from_json", "variant")}
        raw = {"machine": machine(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": command,
               "load_average_before": os.getloadavg(),
               "settings": settings | {"wrk_version": wrk_version(), "variants": args.variant}}
        raw |= measure(args)
        raw["total_seconds"] = time.perf_counter() - started
        raw_path = (Path(tempfile.mkstemp(prefix=f"{args.section}-", suffix=".json")[1]) if args.no_write
                    else RESULTS / f"{args.section}.json")
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=2, default=float) + "\n")  # first: never lose a run
    results = raw["results"]
    print("\n".join(["", peers_table(results), "", peers_line(results), "", speed_table(results), "",
                     goals_line(results), "", overload_table(results)]))
    print(f"total {time.perf_counter() - started:.0f} s; raw results: {rel(raw_path)}")
    if not args.no_write:
        section = raw["settings"].get("section", "speed")
        update_section(section, markdown(raw))
        print(f"written: docs/benchmarks.md ({section} section), docs/bench/{section}.json")


if __name__ == "__main__":
    main()
