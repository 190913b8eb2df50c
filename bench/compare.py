"""catdog against the original design and PyTorch eager: same machine, same photos, one run.

The contenders, each a model behind gunicorn with the same number of sync workers and one
compute thread per worker:

- **original-jax** / **original-tensorflow**: the original design rebuilt (Keras CNN, 64x64,
  ``bench/baselines/original_app.py``) on each installed Keras backend of ``--keras-backends``;
- **pytorch**: catdog's fine-tuned EfficientNet-Lite in PyTorch eager, same Flask shape
  (``bench/baselines/torch_app.py``);
- **catdog**: ONNX Runtime behind catdog's API, started by its production gunicorn command.

Measured: accuracy, log loss and ECE on the validation photos; engine time per image at
batch 1 and 16 (one thread, in a fresh process per system); HTTP p50/p95 and requests/s
at 1 and 16 closed-loop clients (levels interleaved across systems in rounds, so drift in
the machine's load hits all alike); RSS per worker; cold start (process start to the
first 200 from ``POST /predict``); installed size. Ratios against the original are what
to read: these machines are noisy.

    python bench/compare.py                                  # about 5-7 minutes
    python bench/compare.py --model runs/lite2-v1 --seconds 4 --rounds 2
    python bench/compare.py --from-json docs/bench/compare.json   # re-render only

The original design on TensorFlow (what it was written for) needs TensorFlow in a
virtualenv of its own, because Keras imports TensorFlow whenever it is installed, even
on the JAX backend, which would skew the JAX baseline:

    python3.11 -m venv ../venv-tf
    ../venv-tf/bin/pip install tensorflow-cpu keras flask gunicorn pillow psutil
    python bench/compare.py --tf-python ../venv-tf/bin/python

Writes the "compare" section of docs/benchmarks.md, docs/bench/compare.json and two plots
in docs/bench/. Trains ``bench/baselines/artifacts/cat_dog.h5`` first if it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"
# Appended, not prepended (and the script's own folder dropped from the front): a module
# in bench/ must never shadow the standard library (bench/http.py would shadow ``http``).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(BASELINES)]
from _compare_report import markdown, plot, ratio_table, summary_table, targets_line
from _load import Body, LoadResult, multipart_body, post, run_load, wait_until_serving
from _report import RESULTS, ROOT, float_model_of, machine, time_calls, update_section

DEFAULT_VAL = ROOT.parent / "shared" / "data" / "cats-vs-dogs" / "val"
DEFAULT_MODEL = ROOT / "src" / "catdog" / "models" / "catdog-lite2"
ORIGINAL_H5 = BASELINES / "artifacts" / "cat_dog.h5"
HOST = "127.0.0.1"
LEVELS = (1, 16)
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
#: The distribution that brings each Keras backend (for the installed-size column).
KERAS_BACKEND_PACKAGES = {"jax": "jax[cpu]", "tensorflow": "tensorflow-cpu", "torch": "torch"}


@dataclass(frozen=True)
class System:
    """One contender: its engine kind, its server, the packages it needs installed."""

    key: str
    kind: str  # "original" (Keras), "pytorch" or "catdog"
    title: str
    packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    python: str = sys.executable  # another virtualenv's interpreter, e.g. one with TensorFlow

    def server(self, args: argparse.Namespace, port: int) -> tuple[list[str], dict]:
        """The gunicorn command line and extra environment for this system."""
        env = dict(self.env) | {"ORIGINAL_MODEL": str(args.original), "CATDOG_MODEL": str(model_for(self.kind, args))}
        if self.kind == "catdog":  # the production command, configured only by environment
            return ([self.python, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
                     "catdog.api:create_app()"],
                    env | {"PORT": str(port), "CATDOG_HOST": HOST, "CATDOG_WORKERS": str(args.workers)})
        app = {"original": "original_app:create_app()", "pytorch": "torch_app:create_app()"}[self.kind]
        return ([self.python, "-m", "gunicorn", "--chdir", str(BASELINES), "--workers", str(args.workers),
                 "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--timeout", "120", app], env)


def keras_python(backend: str, args: argparse.Namespace) -> str | None:
    """The interpreter that serves the original design on ``backend``, or None to skip it.

    TensorFlow lives in its own virtualenv (``--tf-python``) because Keras imports it
    whenever it is installed, even on another backend, which would inflate the JAX
    baseline's memory and start-up.
    """
    import importlib.util

    if backend == "tensorflow" and args.tf_python:
        return str(args.tf_python)
    return sys.executable if importlib.util.find_spec(backend) is not None else None


def systems(args: argparse.Namespace) -> list[System]:
    """The original design on each available Keras backend, then PyTorch eager, then catdog."""
    originals = []
    for backend in args.keras_backends:
        python = keras_python(backend, args)
        if python is None:
            print(f"skipping the original design on {backend}: not installed (see --tf-python)", flush=True)
            continue
        originals.append(System(
            f"original-{backend}", "original", f"original design (Keras CNN 64x64 on {backend}, Flask)",
            ("flask", "gunicorn", "pillow", "numpy", "keras", KERAS_BACKEND_PACKAGES[backend]),
            env=(("KERAS_BACKEND", backend),), python=python))
    return [
        *originals,
        System("pytorch", "pytorch", "PyTorch eager (same EfficientNet-Lite weights, Flask)",
               ("catdog", "torch", "timm", "onnx")),
        System("catdog", "catdog", "catdog (ONNX Runtime, catdog API)", ("catdog",)),
    ]


# -- engine: accuracy and per-image time, in a fresh single-threaded process per system ------

def engine_batch_fn(kind: str, args: argparse.Namespace):
    """``list[bytes] -> P(dog) per photo`` for one kind of system, as its server computes it."""
    if kind == "original":
        import keras
        from original_cnn import load_photo

        model = keras.models.load_model(args.original, compile=False)
        return lambda photos: model.predict(np.stack([load_photo(p) for p in photos]), verbose=0)[:, 0]
    if kind == "pytorch":
        from torch_app import load_torch_classifier

        classifier = load_torch_classifier(args.model, threads=1)
    else:
        from catdog.model.engine import Classifier

        classifier = Classifier.load(args.model, threads=1)

    def p_dog(photos):
        results = classifier.predict_batch(photos, return_errors=True)
        return [r.probabilities["dog"] if hasattr(r, "probabilities") else 0.5 for r in results]

    return p_dog


def val_photos(val: Path, limit: int = 0) -> list[tuple[Path, int]]:
    """(photo, 0 for cat / 1 for dog), sorted; ``limit`` keeps that many, half of each class."""
    cats, dogs = sorted((val / "cat").glob("*.jpg")), sorted((val / "dog").glob("*.jpg"))
    if limit:
        cats, dogs = cats[: limit // 2], dogs[: limit - limit // 2]
    return [(p, 0) for p in cats] + [(p, 1) for p in dogs]


def engine_child(kind: str, args: argparse.Namespace) -> dict:
    """In a fresh process: load, score every validation photo, time batch 1 and 16, size the stack.

    It imports nothing from catdog for the original design, so it also runs in another
    virtualenv (the TensorFlow one).
    """
    started = time.perf_counter()
    predict = engine_batch_fn(kind, args)
    load_seconds = time.perf_counter() - started
    photos = val_photos(args.val, args.limit)
    probs: list[float] = []
    t0 = time.perf_counter()
    for i in range(0, len(photos), 16):
        probs.extend(float(p) for p in predict([path.read_bytes() for path, _ in photos[i:i + 16]]))
    scoring_seconds = time.perf_counter() - t0
    sample = [path.read_bytes() for path, _ in photos[:: max(1, len(photos) // 16)][:16]]
    cycle = iter(range(10**9))
    one = time_calls(lambda: predict([sample[next(cycle) % len(sample)]]), args.engine_seconds, 10)
    sixteen = time_calls(lambda: predict(sample), args.engine_seconds, 3)
    packages_mb, distributions = installed_mb(tuple(args.packages.split(",")))
    return {
        "labels": [label for _, label in photos], "p_dog": probs,
        "load_seconds": load_seconds, "scoring_seconds": scoring_seconds,
        "ms_per_image_b1": float(np.median(one)), "ms_per_image_b1_p95": float(np.percentile(one, 95)),
        "ms_per_image_b16": float(np.median(sixteen)) / len(sample), "calls_b1": len(one),
        "calls_b16": len(sixteen), "packages_mb": packages_mb, "distributions": distributions,
    }


def run_engine(system: System, args: argparse.Namespace) -> tuple[dict, dict]:
    """Run :func:`engine_child` for ``system`` in its interpreter; return (engine, install) results."""
    from catdog.training.metrics import classification_report

    cmd = [system.python, str(Path(__file__).resolve()), "--engine-child", system.kind,
           "--packages", ",".join(system.packages), "--model", str(model_for(system.kind, args)),
           "--original", str(args.original), "--val", str(args.val), "--limit", str(args.limit),
           "--engine-seconds", str(args.engine_seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False,
                          env=os.environ | ONE_THREAD_ENV | dict(system.env))
    if done.returncode != 0:
        raise RuntimeError(f"engine run for {system.key} failed:\n{done.stderr[-3000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    report = classification_report(np.array(child.pop("labels")), np.array(child.pop("p_dog")))
    engine = {k: report[k] for k in ("n", "accuracy", "errors", "log_loss", "ece", "roc_auc")}
    install = {"packages_mb": child.pop("packages_mb"), "distributions": child.pop("distributions"),
               "model_mb": model_mb(system, args), "python": system.python}
    return engine | child, install


# -- servers ---------------------------------------------------------------------------------

@dataclass
class Server:
    system: System
    process: subprocess.Popen
    port: int
    log: Path
    cold_start: float = float("nan")

    def worker_memory(self) -> dict:
        """RSS and USS (memory no other process shares) of each gunicorn worker, in MB."""
        import psutil

        master = psutil.Process(self.process.pid)
        workers = master.children(recursive=True)
        rss = [w.memory_info().rss / 2**20 for w in workers]
        uss = [w.memory_full_info().uss / 2**20 for w in workers]
        return {"workers": len(workers), "rss_mb_per_worker": float(np.mean(rss)) if rss else float("nan"),
                "uss_mb_per_worker": float(np.mean(uss)) if uss else float("nan"),
                "rss_mb_master": master.memory_info().rss / 2**20}


@contextmanager
def serve(system: System, args: argparse.Namespace, probe: Body):
    """Start one system's gunicorn, measure its cold start, stop it (its whole group) on exit."""
    from catdog import servers  # here, not at the top: engine_child runs without catdog
    port = servers.free_port(HOST)
    cmd, extra_env = system.server(args, port)
    log = Path(tempfile.mkstemp(prefix=f"compare-{system.key}-", suffix=".log")[1])
    started = time.perf_counter()
    process = servers.start(cmd, log=log, env=ONE_THREAD_ENV | extra_env, cwd=ROOT)
    server = Server(system, process, port, log)
    try:
        try:
            wait_until_serving(HOST, port, "/predict", probe, timeout=240,
                               alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{system.key} server failed: {exc}\n{log.read_text()[-3000:]}") from None
        server.cold_start = time.perf_counter() - started
        yield server
    finally:
        servers.stop(process, timeout=20)  # the whole group: gunicorn and its workers
        log.unlink(missing_ok=True)


def answers(server: Server, photos: dict[str, bytes]) -> dict[str, str]:
    """The label the server gives a known cat and a known dog (a sanity check in the report)."""
    out = {}
    for truth, data in photos.items():
        status, body = post(HOST, server.port, "/predict", multipart_body("image", f"{truth}.jpg", data))
        out[truth] = json.loads(body).get("label") if status == 200 else f"HTTP {status}"
    return out


# -- installed size ----------------------------------------------------------------------------

def installed_mb(requirements: tuple[str, ...]) -> tuple[float, int]:
    """Megabytes on disk of the distributions ``requirements`` pull in (as installed here)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, float] = {}
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = sum(f.size or 0 for f in dist.files or []) / 1e6
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                stack.append(child)
    return sum(seen.values()), len(seen)


def model_mb(system: System, args: argparse.Namespace) -> float:
    """Megabytes of the model files the system's server loads."""
    from catdog.model.engine import resolve_model_path

    if system.kind == "original":
        return args.original.stat().st_size / 1e6
    path = resolve_model_path(model_for(system.kind, args))
    weights = path.with_name("model.pt")
    main = weights if system.kind == "pytorch" and weights.is_file() else path
    files = [main, path.with_name("model.json")]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


# -- the run -------------------------------------------------------------------------------------

def http_bodies(val: Path, count: int = 32) -> tuple[list[Body], dict[str, bytes]]:
    """``count`` validation photos (half cats, half dogs) as ready-to-send multipart bodies."""
    photos = val_photos(val)
    cats, dogs = [p for p, y in photos if y == 0], [p for p, y in photos if y == 1]
    half = count // 2
    picks = [p for folder in (cats, dogs) for p in folder[:: max(1, len(folder) // half)][:half]]
    bodies = [multipart_body("image", p.name, p.read_bytes()) for p in picks]
    return bodies, {"cat": cats[0].read_bytes(), "dog": dogs[0].read_bytes()}


def ensure_original(args: argparse.Namespace) -> None:
    if args.original.is_file():
        return
    print(f"{args.original} is missing: training it (bounded, a few minutes) ...", flush=True)
    subprocess.run([sys.executable, str(BASELINES / "original_cnn.py"), "--out", str(args.original)],
                   check=True, env=os.environ | {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")})


def measure(args: argparse.Namespace) -> dict:
    ensure_original(args)
    bodies, known = http_bodies(args.val)
    contenders = systems(args)
    results: dict[str, dict] = {s.key: {"kind": s.kind, "title": s.title} for s in contenders}
    for system in contenders:
        print(f"engine: {system.key} ...", flush=True)
        results[system.key]["engine"], results[system.key]["install"] = run_engine(system, args)

    loads: dict[tuple[str, int], LoadResult] = {}
    with ExitStack() as stack:
        servers = []
        for system in contenders:  # one at a time, so each cold start has the machine to itself
            print(f"server: {system.key} starting ...", flush=True)
            server = stack.enter_context(serve(system, args, bodies[0]))
            for body in bodies[:8]:  # every worker past its first request
                post(HOST, server.port, "/predict", body)
            results[system.key]["cold_start_s"] = server.cold_start
            results[system.key]["answers"] = answers(server, known)
            servers.append(server)
        for round_ in range(args.rounds):
            for clients in LEVELS:
                for server in servers:
                    print(f"load: round {round_ + 1}/{args.rounds}, {clients:>2} clients, "
                          f"{server.system.key} ...", flush=True)
                    level = run_load(HOST, server.port, "/predict", bodies, clients=clients,
                                     seconds=args.seconds, warmup=args.warmup)
                    key = (server.system.key, clients)
                    loads[key] = loads[key].merge(level) if key in loads else level
        for server in servers:
            results[server.system.key]["memory"] = server.worker_memory()
    for (key, clients), level in loads.items():
        results[key].setdefault("http", {})[str(clients)] = level.to_dict()
    return results


def models_description(args: argparse.Namespace) -> str:
    """Which model files were compared, for the report."""
    from catdog.model.engine import resolve_model_path
    from catdog.model.recipe import RECIPE_FILENAME, Recipe

    path = resolve_model_path(args.model)
    recipe_path = path.with_name(RECIPE_FILENAME)
    recipe = Recipe.read(recipe_path) if recipe_path.is_file() else Recipe(name=path.stem)
    history = args.original.with_suffix(".history.json")
    original = json.loads(history.read_text()) if history.is_file() else {}
    params = f"{original['params']:,}" if "params" in original else "?"
    return (f"catdog `{recipe.name}` {recipe.version} ({recipe.architecture}, `{rel(path)}`; PyTorch eager "
            f"runs `{rel(args.torch_model)}`"
            + (", the same weights" if args.torch_model == args.model else ", the float weights it was quantised from")
            + f"); original CNN `{rel(args.original)}` ({params} parameters, trained "
            f"with Keras {original.get('keras', '?')} on {original.get('backend', '?')} on the same photos, "
            f"{original.get('epochs_run', '?')} epochs, held-out accuracy "
            f"{original.get('holdout_accuracy', float('nan')):.3f})")


def rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def model_for(kind: str, args: argparse.Namespace) -> Path:
    """The model a system serves: PyTorch needs float weights, which an int8 ONNX file lacks."""
    return args.torch_model if kind == "pytorch" else args.model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="catdog model directory or file")
    parser.add_argument("--torch-model", type=Path, default=None,
                        help="float model PyTorch eager serves (default: MODEL-fp32 beside --model if it "
                             "exists, else --model): the weights the shipped model was quantised from")
    parser.add_argument("--original", type=Path, default=ORIGINAL_H5, help="the original design's .h5")
    parser.add_argument("--val", type=Path, default=DEFAULT_VAL, help="validation photos (cat/, dog/)")
    parser.add_argument("--limit", type=int, default=0, help="score only this many val photos (0 = all)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for every server")
    parser.add_argument("--keras-backends", type=lambda v: v.split(","), default=["jax", "tensorflow"],
                        help="Keras backends to serve the original design on (installed ones only)")
    parser.add_argument("--tf-python", type=Path, default=None,
                        help="python of a virtualenv with tensorflow-cpu, keras, flask, gunicorn, pillow, "
                        "psutil (serves the original design on TensorFlow)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per level, system and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over systems and levels")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    parser.add_argument("--engine-seconds", type=float, default=3.0, help="seconds per engine timing")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--from-json", type=Path, help="re-render the report of a saved compare.json")
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    parser.add_argument("--packages", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_model is None:
        args.torch_model = float_model_of(args.model)
    args.model, args.torch_model, args.original, args.val = (
        p.resolve() for p in (args.model, args.torch_model, args.original, args.val))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.engine_child:
        print(json.dumps(engine_child(args.engine_child, args), default=float))
        return
    started = time.perf_counter()
    if args.from_json:  # re-render an earlier run's report, measuring nothing
        raw_path = args.from_json
        raw = json.loads(raw_path.read_text())
    else:
        command = "python " + " ".join(shlex.quote(a) for a in [rel(Path(__file__)), *sys.argv[1:]])
        raw = {"machine": machine(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
               "command": command, "load_average_before": os.getloadavg(),
               "settings": {k: str(v) for k, v in vars(args).items() if k != "from_json"}}
        raw["results"] = measure(args)
        raw["models"] = models_description(args)  # after measure(): it may have trained the CNN
        raw_path = (Path(tempfile.mkstemp(prefix="compare-", suffix=".json")[1]) if args.no_write
                    else RESULTS / "compare.json")
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=2, default=float) + "\n")  # first: never lose a run
    results = raw["results"]
    print("\n".join(["", summary_table(results), "", ratio_table(results), "", targets_line(results)]))
    print(f"total {time.perf_counter() - started:.0f} s; raw results: {rel(raw_path)}")
    if args.no_write:
        return
    update_section("compare", markdown(raw))
    plots = plot(results, RESULTS)
    print("written: docs/benchmarks.md (compare section), " + ", ".join(rel(p) for p in plots))


if __name__ == "__main__":
    main()
