"""Engine speed: ONNX Runtime (what catdog serves) vs PyTorch eager on the same weights.

Measured side by side in one run, interleaved round by round, because these small
machines are noisy: ratios are what to read. Also cold start (new process to first
answer) and peak RSS for each runtime.

    python bench/engine.py                 # defaults: bundled model, 1 and all threads
    python bench/engine.py --seconds 3 --no-torch

Writes the "Engine" section of docs/benchmarks.md and docs/bench/engine.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (
    FIXTURE_PHOTO,
    ROOT,
    float_model_of,
    machine,
    table,
    time_calls,
    update_section,
    write_json,
)

DEFAULT_IMAGE = FIXTURE_PHOTO

COLD_START = """
import sys, time
t0 = time.perf_counter()
{load}
answer = predict(open(sys.argv[1], "rb").read())
elapsed = time.perf_counter() - t0
# VmHWM (peak RSS) restarts at exec, unlike ru_maxrss, which keeps the forking parent's peak.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
print(elapsed, int(hwm) / 1024, answer)
"""
LOAD_ONNX = """
from catdog.model.engine import Classifier
clf = Classifier.load(sys.argv[2], threads=1)
predict = lambda data: clf.predict(data).label
"""
LOAD_TORCH = """
from catdog.model.engine import Classifier
from catdog.training.export import TorchBackend, torch_from_onnx
recipe = Classifier.load(sys.argv[2], threads=1, warmup=False).recipe
clf = Classifier(TorchBackend(torch_from_onnx(sys.argv[2]), threads=1), recipe)
predict = lambda data: clf.predict(data).label
"""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def cold_start(load: str, model: Path, image: Path, repeats: int) -> tuple[float, float, str]:
    """Median seconds from a new interpreter to the first answer, and the peak RSS in MB."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", COLD_START.format(load=load), str(image), str(model)],
                              capture_output=True, text=True, timeout=300, check=True)
        seconds, rss, answer = done.stdout.split()[-3:]
        runs.append((float(seconds), float(rss), answer))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model (default: the bundled int8 one)")
    parser.add_argument("--float-model", type=Path, default=None,
                        help="the float model it was quantised from (ONNX Runtime fp32 and PyTorch eager run it; "
                             "default: the MODEL-fp32 folder beside the model)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a real photo (default: a 498x415 JPEG)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch (if torch is not installed)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/")
    args = parser.parse_args()

    from catdog.model.backends import default_threads
    from catdog.model.engine import Classifier

    all_threads = default_threads()
    data = args.image.read_bytes()
    thread_counts = sorted({1, all_threads})
    # runtime name -> {threads: Classifier}; the first is what catdog ships.
    runtimes: dict[str, dict[int, Classifier]] = {
        "onnxruntime": {t: Classifier.load(args.model, threads=t) for t in thread_counts}}
    model_path = runtimes["onnxruntime"][1].path
    float_path = Classifier.load(args.float_model or float_model_of(args.model), threads=1, warmup=False).path
    if float_path != model_path:
        runtimes["onnxruntime fp32"] = {t: Classifier.load(float_path, threads=t) for t in thread_counts}
    if not args.no_torch:
        from catdog.training.export import TorchBackend, torch_from_onnx

        weights = torch_from_onnx(float_path)
        recipe = runtimes["onnxruntime"][1].recipe
        runtimes["pytorch eager"] = {t: Classifier(TorchBackend(weights, threads=t), recipe) for t in thread_counts}
    shipped = runtimes["onnxruntime"]
    x1 = shipped[1].prepare(data)[None]
    x16 = np.repeat(x1, 16, axis=0)

    # (runtime, threads, what) -> durations in ms per call
    cases: dict[tuple[str, int, str], list[float]] = {}

    def add(key, fn):
        cases.setdefault(key, []).extend(time_calls(fn, args.seconds))

    print(f"machine: {machine()}\nmodel: {model_path}\nimage: {args.image} ({len(data):,} bytes)")
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds} ...", flush=True)
        for t in thread_counts:
            add(("decode+preprocess", t, "pipeline"), partial(shipped[t].prepare, data))
            for runtime, by_threads in runtimes.items():
                clf = by_threads[t]
                add((runtime, t, "batch 1"), partial(clf.backend.run, x1))
                add((runtime, t, "batch 16"), partial(clf.backend.run, x16))
                add((runtime, t, "end to end"), partial(clf.predict, data))

    rows, results = [], []
    for (runtime, threads, what), durations in cases.items():
        per_image = 16 if what == "batch 16" else 1
        p50 = percentile(durations, 50) / per_image
        result = {"runtime": runtime, "threads": threads, "case": what, "calls": len(durations),
                  "ms_per_image_p50": p50, "ms_per_call_p50": percentile(durations, 50),
                  "ms_per_call_p95": percentile(durations, 95)}
        results.append(result)
        rows.append([runtime, threads, what, len(durations), f"{p50:.2f}", f"{result['ms_per_call_p95']:.2f}"])

    def ms(runtime: str, threads: int, what: str) -> float:
        return next(r["ms_per_image_p50"] for r in results
                    if r["runtime"] == runtime and r["threads"] == threads and r["case"] == what)

    others = [name for name in runtimes if name != "onnxruntime"]
    ratios = [[t, what, *(f"{ms(name, t, what) / ms('onnxruntime', t, what):.2f}x" for name in others)]
              for t in thread_counts for what in ("batch 1", "batch 16", "end to end")]

    print("cold start ...", flush=True)
    cold = [["onnxruntime", *cold_start(LOAD_ONNX, model_path, args.image, args.cold_repeats)]]
    if "pytorch eager" in runtimes:
        cold.append(["pytorch eager", *cold_start(LOAD_TORCH, float_path, args.image, args.cold_repeats)])
    cold_rows = [[name, f"{s:.2f}", f"{rss:.0f}", answer] for name, s, rss, answer in cold]

    speed = table(["runtime", "threads", "case", "calls", "ms/image p50", "ms/call p95"], rows)
    ratio = table(["threads", "case", *(f"{name} / shipped onnxruntime (time per image)" for name in others)],
                  ratios) if others else ""
    cold_table = table(["runtime", "cold start s (median)", "peak RSS MB", "answer"], cold_rows)
    print("\n" + speed + "\n\n" + ratio + "\n\n" + cold_table)
    if args.no_write:
        return
    md = f"""## Engine: ONNX Runtime vs PyTorch eager

Machine: {machine()}. Model: `{model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path}`,
image: `{args.image.name}` ({len(data):,} bytes). Command: `python bench/engine.py` ({args.rounds} interleaved
rounds of {args.seconds:g} s per case). "pipeline" is decode + preprocess alone (JPEG draft mode, one
resample of the crop box); "end to end" is `Classifier.predict(bytes)`. "onnxruntime" is the shipped int8 model;
"onnxruntime fp32" and "pytorch eager" run the float weights it was quantised from
(PyTorch rebuilds them from the fp32 ONNX file with `catdog.training.export.torch_from_onnx`).

{speed}

{ratio}

Cold start is a new Python process importing catdog, loading the model and answering one photo
(single-threaded, as one server worker):

{cold_table}
"""
    update_section("engine", md)
    write_json("engine", {"machine": machine(), "speed": results, "cold_start": cold})
    print("\nwritten: docs/benchmarks.md (engine section), docs/bench/engine.json")


if __name__ == "__main__":
    main()
