"""Heatmaps (issue 15): what /v1/explain costs over /v1/predict, and where the mass lands.

``latency``: the production gunicorn server (1 worker, 1 ONNX thread) on a free loopback
port, driven by wrk at 1 connection (``wrk -t1 -c1 --latency``, a Lua script posting the
same ~500x400 JPEG as multipart) against ``/v1/predict`` and ``/v1/explain`` (no PNG),
alternating ``--rounds`` times so drift on a shared machine hits both alike. Writes the
"Explain" section of docs/benchmarks.md and docs/bench/explain.json.

    python bench/explain.py latency                      # 10 rounds of 5 s per endpoint
    python bench/explain.py latency --seconds 3 --rounds 1 --no-write

``mass``: the floor in the model card. ``--n`` validation photos (half cats, half dogs, a
fixed random draw), each shrunk to 36-54% of a 448 px square not-pet photo (flowers, and
ImageNet classes 398-999: objects and scenes, no animals) and pasted at a random place
inside the model's centre crop. Reports the mean share of heatmap mass inside the pasted
photo's box, beside a centred Gaussian blob and a flat map computed the same way.

    python bench/explain.py mass --n 200                 # writes docs/bench/explain-mass.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import FIXTURE_PHOTO, ROOT, machine, table, update_section, write_json
from http_serving import cpu_seconds, worker_pids

from catdog import servers

HOST = "127.0.0.1"
DEFAULT_IMAGE = FIXTURE_PHOTO
SERVER_CMD = [sys.executable, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
              "catdog.api:create_app()"]
SHARED = ROOT.parent / "shared" / "data"
#: Issue 15: explain without the PNG within this of predict, at 1 client.
TARGET_EXTRA_MS = 2.0

WRK_SCRIPT = """
local f = assert(io.open(os.getenv("CATDOG_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary=catdogbench"
"""


def multipart(data: bytes, name: str) -> bytes:
    return (b"--catdogbench\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + name.encode()
            + b"\"\r\nContent-Type: image/jpeg\r\n\r\n" + data + b"\r\n--catdogbench--\r\n")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict:
    """p50/p90/p99 and mean latency (ms), requests and errors from ``wrk --latency`` output."""
    out = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        out[f"p{pct}_ms"] = _ms(*m.groups()) if m else float("nan")
    m = re.search(r"Latency\s+([\d.]+)(us|ms|s)", output)
    out["mean_ms"] = _ms(*m.groups()) if m else float("nan")
    m = re.search(r"(\d+) requests in", output)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    out["non_2xx"] = int(m.group(1)) if m else 0
    return out


def wrk(url: str, body_path: Path, script: Path, seconds: float) -> dict:
    cmd = ["wrk", "-t1", "-c1", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={"CATDOG_BENCH_BODY": str(body_path), "PATH": "/usr/bin:/bin"})
    return parse_wrk(done.stdout)


def in_process(image: Path, calls: int) -> dict:
    """Median ms of ``predict`` and of ``explain(...).to_dict()`` in this process (1 thread), interleaved."""
    import time

    from catdog.config import Settings
    from catdog.model.engine import Classifier

    clf = Classifier.from_settings(Settings.from_env(), threads=1)
    data = image.read_bytes()
    steps = {"predict": lambda: clf.predict(data), "explain": lambda: clf.explain(data).to_dict()}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(calls + 5):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if i >= 5:
                times[name].append((time.perf_counter() - started) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def latency(args: argparse.Namespace) -> None:
    import os

    image = Path(args.image)
    engine = in_process(image, args.calls)
    body = multipart(image.read_bytes(), image.name)
    port = servers.free_port(HOST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATDOG_", "PROMETHEUS_"))}
    env.update(PORT=str(port), CATDOG_HOST=HOST, CATDOG_WORKERS="1", CATDOG_THREADS="1")
    paths = ("/v1/predict", "/v1/explain")
    runs: dict[str, list[dict]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory() as tmp:
        body_path, script = Path(tmp) / "body", Path(tmp) / "post.lua"
        body_path.write_bytes(body)
        script.write_text(WRK_SCRIPT)
        process = servers.start(SERVER_CMD, env=env, inherit_env=False, cwd=ROOT, log=Path(os.devnull))
        try:
            base = f"http://{HOST}:{port}"
            servers.wait_until_answering(f"{base}/readyz", process=process, timeout=120)
            for path in paths:  # warm-up, not counted
                wrk(base + path, body_path, script, 2)
            workers = worker_pids(process.pid)
            for _ in range(args.rounds):
                for path in paths:
                    cpu = cpu_seconds(workers)
                    result = wrk(base + path, body_path, script, args.seconds)
                    # CPU the worker spent per request: the added work, unlike wall time, barely
                    # moves when other jobs share the cores.
                    result["server_cpu_ms"] = 1000 * (cpu_seconds(workers) - cpu) / max(1, result["requests"])
                    runs[path].append(result)
        finally:
            servers.stop(process, timeout=30)
    summary = {}
    for path, results in runs.items():
        summary[path] = {
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "mean_ms": statistics.median(r["mean_ms"] for r in results),
            "server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in results),
            "requests": sum(r["requests"] for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results),
            "rounds": results,
        }
    # Each round runs both endpoints back to back, so a round's difference shares its load.
    pairs = list(zip(runs["/v1/predict"], runs["/v1/explain"]))
    extra_p50 = statistics.median(e["p50_ms"] - p["p50_ms"] for p, e in pairs)
    extra_cpu = statistics.median(e["server_cpu_ms"] - p["server_cpu_ms"] for p, e in pairs)
    extra_mean = summary["/v1/explain"]["mean_ms"] - summary["/v1/predict"]["mean_ms"]
    command = " ".join(["python bench/explain.py latency", *sys.argv[2:]]).strip()
    rows = [[path, f"{s['p50_ms']:.2f}", f"{s['mean_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['server_cpu_ms']:.2f}",
             s["requests"], s["non_2xx"]] for path, s in summary.items()]
    verdict = "met" if extra_p50 <= TARGET_EXTRA_MS else "NOT met"
    markdown = "\n".join([
        "## Explain: /v1/explain against /v1/predict",
        "",
        (f"`{command}` on {machine()}: gunicorn with 1 worker and 1 ONNX thread on loopback, "
        f"`wrk -t1 -c1 --latency` posting `{image.relative_to(ROOT) if image.is_relative_to(ROOT) else image.name}` "
        f"as multipart, {args.rounds} alternating rounds of {args.seconds:g} s per endpoint (medians of the "
        "rounds). `/v1/explain` without `?overlay=png`: the same model call also returns the class "
        "activation maps, placed over the photo as a 32-cell grid in numpy."),
        "",
        table(["endpoint", "p50 ms", "mean ms", "p99 ms", "server CPU ms/req", "requests", "non-2xx"], rows),
        "",
        (f"Explain costs {extra_p50:+.2f} ms at the median (median over rounds of the two endpoints' "
         f"p50 difference in the same round; {extra_mean:+.2f} ms between the mean latencies) and "
         f"{extra_cpu:+.2f} ms of server CPU per request over predict (target: within "
         f"{TARGET_EXTRA_MS:g} ms: {verdict}). Load average during the run: {os.getloadavg()[0]:.1f} "
         "on 2 cores (other jobs share the machine; the CPU time is the steadier number)."),
        "",
        (f"In process, without HTTP ({args.calls} interleaved calls each, 1 thread, medians): "
        f"`Classifier.predict` {engine['predict']:.2f} ms, `Classifier.explain(photo).to_dict()` "
        f"{engine['explain']:.2f} ms ({engine['explain'] - engine['predict']:+.2f} ms)."),
    ])
    print(markdown)
    if not args.no_write:
        update_section("explain", markdown)
        write_json("explain", {"command": command, "machine": machine(), "image": image.name,
                               "in_process_ms": engine, "extra_p50_ms": extra_p50, "extra_server_cpu_ms": extra_cpu, "extra_mean_ms": extra_mean, "endpoints": summary})


def _backgrounds() -> list[Path]:
    flowers = sorted((SHARED / "not-pets" / "flowers").glob("*.jpg"))
    objects = sorted(p for p in (SHARED / "not-pets" / "imagenet").glob("*.jpg") if int(p.name[:3]) >= 398)
    return flowers + objects


def _blob(size: int = 9, sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian over the crop, sigma a quarter of its side: "looks at the middle"."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    return np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * (sigma * size) ** 2)).astype(np.float32)


def mass(args: argparse.Namespace) -> None:
    from catdog.model.engine import Classifier
    from catdog.model.explain import Explanation, normalise
    from catdog.model.preprocess import center_crop_box

    clf = Classifier.load(args.model)
    rng = random.Random(args.seed)
    val = SHARED / "cats-vs-dogs" / "val"
    photos = []
    for label in ("cat", "dog"):
        files = sorted((val / label).glob("*.jpg"))
        photos += [(p, label) for p in rng.sample(files, args.n // 2)]
    backgrounds = _backgrounds()
    side = args.side
    box = center_crop_box(side, side, clf.recipe.input)
    blob = _blob()
    flat = np.ones((9, 9), np.float32)
    rows = []
    for photo, truth in photos:
        canvas = Image.open(rng.choice(backgrounds)).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        pet = Image.open(photo).convert("RGB")
        pet.thumbnail((rng.randint(int(0.36 * side), int(0.54 * side)),) * 2)
        x = rng.randint(int(np.ceil(box[0])), int(box[2]) - pet.width)
        y = rng.randint(int(np.ceil(box[1])), int(box[3]) - pet.height)
        canvas.paste(pet, (x, y))
        explanation = clf.explain(canvas)
        pasted = (slice(y, y + pet.height), slice(x, x + pet.width))
        shares = {}
        for name, cam in (("cam", explanation.cam), ("blob", blob), ("flat", flat)):
            grid = Explanation(explanation.prediction, explanation.label, normalise(cam), explanation.box,
                               explanation.size).heatmap(side, side)
            shares[name] = float(grid[pasted].sum() / max(grid.sum(), 1e-12))
        rows.append({
            "photo": photo.name, "truth": truth, "label": explanation.label,
            "box_area_share_of_crop": pet.width * pet.height / (box[2] - box[0]) ** 2, **shares,
        })
    correct = [r for r in rows if r["label"] == r["truth"]]
    result = {
        "command": "python bench/explain.py mass " + " ".join(sys.argv[2:]),
        "model": clf.recipe.name, "n": len(rows), "side": side, "seed": args.seed,
        "accuracy_on_composites": len(correct) / len(rows),
        "answers": {label: sum(r["label"] == label for r in rows) for label in clf.recipe.labels},
        "mean_share": {k: statistics.fmean(r[k] for r in rows) for k in ("cam", "blob", "flat")},
        "mean_share_correct_answers": statistics.fmean(r["cam"] for r in correct) if correct else None,
        "mean_share_wrong_answers": (statistics.fmean(r["cam"] for r in rows if r not in correct)
                                     if len(correct) < len(rows) else None),
        "by_label": {label: statistics.fmean(r["cam"] for r in rows if r["truth"] == label) for label in ("cat", "dog")},
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if not args.no_write:
        write_json("explain-mass", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--seconds", type=float, default=5.0)
    lat.add_argument("--rounds", type=int, default=10)
    lat.add_argument("--image", default=str(DEFAULT_IMAGE))
    lat.add_argument("--calls", type=int, default=200, help="in-process calls of each (default 200)")
    lat.add_argument("--no-write", action="store_true")
    lat.set_defaults(func=latency)
    ms = sub.add_parser("mass")
    ms.add_argument("--n", type=int, default=200)
    ms.add_argument("--side", type=int, default=448)
    ms.add_argument("--seed", type=int, default=0)
    ms.add_argument("--model", default=None)
    ms.add_argument("--no-write", action="store_true")
    ms.set_defaults(func=mass)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
