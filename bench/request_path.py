"""Where one ``POST /predict`` spends its time: the per-stage budget of a request, end to end.

Each stage of catdog's request path is timed with ``time.perf_counter`` in this process, on
one thread (as a gunicorn worker runs it), calling the same functions the server calls, in
order, each stage fed the previous one's output, over the same 40 real JPEGs of about
500x375 that ``bench/speed.py`` sends:

multipart parsing (catdog's Werkzeug request class) -> decode (Pillow: header, pixels,
EXIF orientation, RGB) -> resize + centre crop -> normalise -> model (ONNX Runtime, one
thread) -> calibrate + decide -> response body + JSON -> access log line (JSON, to
/dev/null) -> metrics (Prometheus in multi-process mode, as under gunicorn).

Then the whole request twice more, so nothing hides between the stages: through the real
app in this process (Flask's test client: the stages plus Flask, flask-restful and the
request hooks) and through the production gunicorn server (one worker, wrk with one
connection: everything, including HTTP and gunicorn). The remainders are the rows
"Flask + extensions" and "HTTP + gunicorn".

Also measured, for issue 12's questions: resizing 500x375 photos with Pillow's
``reducing_gap`` (vs one resample), ms per photo at batch 1..8 (does micro-batching pay on
this CPU?) and the model at 1 vs 2 ONNX Runtime threads (the most a second thread could
save at one client).

    python bench/request_path.py                 # about 1.5 minutes
    python bench/request_path.py --rounds 2 --seconds 2 --no-write

Writes the "request-path" section of docs/benchmarks.md and docs/bench/request_path.json.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
# Prometheus picks its value class when it is first imported: multi-process files, as under gunicorn.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="catdog-bench-metrics-"))

import numpy as np
from _load import multipart_body
from _photos import DEFAULT_VAL, pick_photos
from _report import ROOT, machine, table, update_section, write_json
from _wrk import ensure_wrk, run_wrk, write_manifest

HOST = "127.0.0.1"
STAGES = (
    ("multipart", "multipart parsing (Werkzeug, catdog's in-memory request class)"),
    ("open", "decode: open + header checks (Pillow)"),
    ("pixels", "decode: JPEG pixels (libjpeg)"),
    ("orient", "decode: EXIF orientation + RGB"),
    ("resize", "resize + centre crop (one resample of the crop box)"),
    ("normalise", "normalise (image to array, the model's dtype and layout)"),
    ("model", "model (ONNX Runtime, 1 thread; a cascade as served) + calibration"),
    ("decide", "decide"),
    ("json", "response body + JSON"),
    ("log", "access log line (JSON)"),
    ("metrics", "metrics (Prometheus, multi-process)"),
)


def stage_times(photos: list[bytes], seconds: float, classifier, app) -> dict[str, list[float]]:
    """Milliseconds per stage and photo, the stages run in order on each photo, for ``seconds``."""
    from PIL import ImageOps
    from werkzeug.test import EnvironBuilder

    from catdog.api.observability import LogFields, access_log, request_id_for
    from catdog.api.resources import prediction_body
    from catdog.model.decode import _open, to_rgb
    from catdog.model.preprocess import normalize, resize_and_crop

    service = app.extensions["catdog"]
    metrics, spec = service.metrics, classifier.recipe.input
    bodies = [multipart_body("image", f"photo{i}.jpg", data) for i, data in enumerate(photos)]
    times: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter
    # The app's request class reads its settings (the body's read timeout) from the app, as it
    # does when serving: one app context for the whole run, outside the timed stages.
    context = app.app_context()
    context.push()
    deadline = clock() + seconds
    while clock() < deadline or not times:
        for body, content_type in bodies:
            environ = EnvironBuilder(method="POST", path="/predict", input_stream=io.BytesIO(body),
                                     content_type=content_type, content_length=len(body)).get_environ()
            t0 = clock()
            request = app.request_class(environ)
            upload = request.files["image"]
            data, mimetype = upload.read(), upload.mimetype
            t1 = clock()
            # decode_image's own steps, in its order (its checks are in "open").
            image = _open(data)
            if image.width * image.height > classifier.max_pixels:
                raise RuntimeError("a benchmark photo is over the pixel limit")
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (spec.resize, spec.resize))
            t2 = clock()
            image.load()
            t3 = clock()
            image = to_rgb(ImageOps.exif_transpose(image) or image)
            t4 = clock()
            cropped = resize_and_crop(image, spec)
            t5 = clock()
            batch = normalize(np.asarray(cropped), spec)[None]
            t6 = clock()
            # As served: a cascade runs its fast model and hands the photo on only when unsure.
            probs = classifier.probabilities(batch)
            t7 = clock()
            prediction = classifier.decide(probs[0])
            t8 = clock()
            json.dumps(prediction_body(prediction, service.model_ref, (t8 - t0) * 1000))  # as flask-restful
            t9 = clock()
            fields = LogFields({"method": "POST", "path": "/predict", "status": 200, "ms": 12.34,
                                "request_id": request_id_for(None), "size": len(data), "type": mimetype,
                                "label": prediction.label})
            access_log.info(fields, extra={"fields": fields})
            t10 = clock()
            metrics.requests.labels("/predict", "POST", "200").inc()
            metrics.latency.labels("/predict", "POST", "200").observe(t10 - t0)
            metrics.predictions.labels(prediction.label).inc()
            t11 = clock()
            marks = (t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11)
            for (key, _), start, end in zip(STAGES, marks, marks[1:]):
                times[key].append((end - start) * 1000)
    context.pop()
    return times


def in_process_times(photos: list[bytes], seconds: float, app) -> tuple[list[float], list[float]]:
    """Milliseconds per ``POST /predict`` through the real app (Flask test client), and of each
    request the part outside the view (total minus the ``elapsed_ms`` the view reports itself):
    measured per request, so the model's noise does not land in it."""
    client = app.test_client()
    bodies = [multipart_body("image", f"photo{i}.jpg", data) for i, data in enumerate(photos)]
    totals: list[float] = []
    outside: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not totals:
        for body, content_type in bodies:
            t0 = time.perf_counter()
            response = client.post("/predict", data=body, headers={"Content-Type": content_type})
            total = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"the app answered {response.status_code}: {response.get_data(as_text=True)}")
            totals.append(total)
            outside.append(total - response.get_json()["elapsed_ms"])
    return totals, outside


def healthz_times(seconds: float, app) -> list[float]:
    """Milliseconds per ``GET /healthz`` through the same app: every hook and Flask, no work."""
    client = app.test_client()
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < 10:
        t0 = time.perf_counter()
        client.get("/healthz")
        out.append((time.perf_counter() - t0) * 1000)
    return out


@contextmanager
def http_server(photo_paths: list[Path], model: Path | None):
    """The production gunicorn command with one worker; yields ``seconds -> WrkResult`` (1 connection)."""
    from catdog import servers

    ensure_wrk()
    port = servers.free_port(HOST)
    env = {"PORT": str(port), "CATDOG_HOST": HOST, "CATDOG_WORKERS": "1", "CATDOG_THREADS": "1",
           **({"CATDOG_MODEL": str(model)} if model else {})}
    with tempfile.TemporaryDirectory(prefix="catdog-path-") as scratch:
        manifest = write_manifest(photo_paths, Path(scratch))
        command = [sys.executable, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
                   "catdog.api:create_app()"]
        with servers.running(command, f"http://{HOST}:{port}/readyz", log=Path(scratch) / "server.log",
                             env=env, cwd=ROOT, name="catdog API"):
            url = f"http://{HOST}:{port}/predict"
            run_wrk(url, manifest, connections=1, seconds=1)  # warm-up
            yield lambda seconds: run_wrk(url, manifest, connections=1, seconds=seconds)


def resize_options(images, spec, seconds: float) -> list[dict]:
    """One resample of the crop box (what catdog does) vs Pillow's reducing_gap, on these photos."""
    from catdog.model.preprocess import _RESAMPLE, center_crop_box, resize_and_crop

    reference = [np.asarray(resize_and_crop(im, spec), dtype=np.int16) for im in images]
    options = {"one resample of the crop box (catdog)": None, "reducing_gap=2.0": 2.0, "reducing_gap=1.5": 1.5}
    out = []
    for name, gap in options.items():
        def run(im, gap=gap):
            return im.resize((spec.size, spec.size), _RESAMPLE[spec.interpolation],
                             box=center_crop_box(im.width, im.height, spec), reducing_gap=gap)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or not times:
            for im in images:
                t0 = time.perf_counter()
                run(im)
                times.append((time.perf_counter() - t0) * 1000)
        diff = max(int(np.abs(np.asarray(run(im), dtype=np.int16) - ref).max()) for im, ref in zip(images, reference))
        out.append({"option": name, "ms": statistics.median(times), "max_abs_diff": diff})
    return out


def normalise_options(images, spec, seconds: float) -> list[dict]:
    """catdog's normalise vs the pixelwise HWC multiply-add it replaced (issue 12): time, and equality."""
    from catdog.model.preprocess import normalize, resize_and_crop

    pixels = [np.asarray(resize_and_crop(im, spec)) for im in images]
    std = np.asarray(spec.std, dtype=np.float32)
    gain = (1.0 / (spec.scale * std)).astype(np.float32)
    offset = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)

    def pixelwise(p: np.ndarray) -> np.ndarray:
        out = p.astype(np.float32) * gain + offset  # the inner loop runs over 3 channels at a time
        return np.ascontiguousarray(out.transpose(2, 0, 1)) if spec.layout == "NCHW" else out

    options = {"on channel planes, in place (catdog)": lambda p: normalize(p, spec),
               "pixelwise HWC multiply-add, then transpose (before)": pixelwise}
    times: dict[str, list[float]] = defaultdict(list)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not times:
        for name, fn in options.items():
            for p in pixels:
                t0 = time.perf_counter()
                fn(p)
                times[name].append((time.perf_counter() - t0) * 1000)
    identical = all(np.array_equal(normalize(p, spec), pixelwise(p)) for p in pixels)
    return [{"option": name, "ms": statistics.median(v), "bit_identical": identical} for name, v in times.items()]


def batching(classifier, tensors: list[np.ndarray], seconds: float) -> list[dict]:
    """Model ms per photo at batch 1, 2, 4, 8 on one thread (sizes interleaved in rounds, so the
    machine's drift hits all alike): what micro-batching could save at most."""
    batches = {size: np.stack(tensors[:size]) for size in (1, 2, 4, 8)}
    times: dict[int, list[float]] = defaultdict(list)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[8]) < 3:
        for size, batch in batches.items():
            for _ in range(max(1, 8 // size)):
                t0 = time.perf_counter()
                classifier.backend.run(batch)
                times[size].append((time.perf_counter() - t0) * 1000 / size)
    return [{"batch": size, "ms_per_photo": statistics.median(v), "calls": len(v)} for size, v in times.items()]


def model_threads(model_path: Path, tensors: list[np.ndarray], seconds: float) -> list[dict]:
    """The model alone at batch 1: 1 ONNX Runtime thread (catdog's worker) vs 2 threads, with the
    pool's threads spinning while idle (ORT's default for > 1 thread) and without; interleaved."""
    import onnxruntime as ort

    def session(threads: int, spin: bool):
        options = ort.SessionOptions()  # as catdog.model.backends.OnnxBackend, but for spinning
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    configs = {(1, False): session(1, False), (2, True): session(2, True), (2, False): session(2, False)}
    times: dict[tuple[int, bool], list[float]] = defaultdict(list)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[(1, False)]) < 10:
        for key, sess in configs.items():
            # A spinning pool keeps its threads busy for a while after a run; let them park so
            # they do not slow the next configuration's block.
            time.sleep(0.05)
            name = sess.get_inputs()[0].name
            for tensor in tensors[:10]:
                t0 = time.perf_counter()
                sess.run(None, {name: tensor[None]})
                times[key].append((time.perf_counter() - t0) * 1000)
    return [{"threads": threads, "spinning": spin, "ms": statistics.median(v), "p90_ms": float(np.percentile(v, 90))}
            for (threads, spin), v in times.items()]


def measure(args: argparse.Namespace) -> dict:
    from catdog.api import create_app
    from catdog.config import Settings
    from catdog.model.decode import decode_image
    from catdog.model.engine import Classifier

    paths = pick_photos(args.val, args.photos)
    photos = [p.read_bytes() for p in paths]
    classifier = Classifier.load(args.model, threads=1)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    handler = logging.StreamHandler(devnull)
    from catdog.api.observability import JsonFormatter

    handler.setFormatter(JsonFormatter())
    catdog_logger = logging.getLogger("catdog")
    catdog_logger.addHandler(handler)  # what gunicorn's workers have: one JSON handler
    catdog_logger.setLevel(logging.INFO)
    catdog_logger.propagate = False
    app = create_app(Settings(), classifier=classifier)
    stages: dict[str, list[float]] = defaultdict(list)
    whole: list[float] = []
    outside_view: list[float] = []
    http_rounds = []
    # Rounds of: the stages, the whole request in process, the whole request over HTTP; so a
    # change in the machine's load hits the three alike and their differences stay meaningful.
    with http_server(paths, args.model) if args.http_seconds else nullcontext() as over_http:
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}: stages, in process, over HTTP ...", flush=True)
            for key, values in stage_times(photos, 0, classifier, app).items():
                stages[key] += values
            totals, outside = in_process_times(photos, 0, app)
            whole += totals
            outside_view += outside
            if over_http:
                http_rounds.append(over_http(args.http_seconds))
    health = healthz_times(1.0, app)
    images = [decode_image(d, min_side=classifier.recipe.input.resize) for d in photos]
    tensors = [classifier.prepare(d) for d in photos]
    print("resize options, batching, threads ...", flush=True)
    result = {
        "photos": [str(p.relative_to(ROOT.parent)) if p.is_relative_to(ROOT.parent) else str(p) for p in paths],
        "sizes": sorted({f"{im.width}x{im.height}" for im in images}),
        "model": classifier.info(),
        "stages_ms": {key: {"median": statistics.median(v), "mean": statistics.fmean(v), "n": len(v)}
                      for key, v in stages.items()},
        "in_process_ms": {"median": statistics.median(whole), "mean": statistics.fmean(whole), "n": len(whole)},
        "outside_view_ms": {"median": statistics.median(outside_view), "n": len(outside_view)},
        "healthz_in_process_ms": {"median": statistics.median(health), "n": len(health)},
        "resize": resize_options(images, classifier.recipe.input, args.seconds / 2),
        # A uint8 model skips this float work; its float32 twin shows what the change saved.
        "normalise": normalise_options(images, classifier.recipe.input.model_copy(update={"dtype": "float32"}),
                                       args.seconds / 4),
        "batching": batching(classifier, tensors, args.seconds / 2),
        "threads": model_threads(classifier.path, tensors, args.seconds / 2),
    }
    if http_rounds:
        result["http"] = {"p50_ms": statistics.median(r.p50_ms for r in http_rounds),
                          "rounds": [r.to_dict() for r in http_rounds]}
    return result


def markdown(raw: dict) -> str:
    r = raw["results"]
    stages, total = r["stages_ms"], r["in_process_ms"]["median"]
    stage_sum = sum(v["median"] for v in stages.values())
    http_p50 = r.get("http", {}).get("p50_ms")
    end = http_p50 or total

    def row(name: str, ms: float) -> list[str]:
        return [name, f"{ms:.2f}", f"{100 * ms / end:.0f}%"]

    rows = [row(title, stages[key]["median"]) for key, title in STAGES]
    rows.append(["**sum of the stages**", f"**{stage_sum:.2f}**", f"{100 * stage_sum / end:.0f}%"])
    hooks = sum(stages[key]["median"] for key in ("json", "log", "metrics"))
    rows.append(row("Flask, flask-restful, CORS, security headers, request id, test client (the part of "
                    "each in-process request outside the view, minus the JSON, log and metrics rows)",
                    r["outside_view_ms"]["median"] - hooks))
    rows.append(["**whole request in process** (Flask test client)", f"**{total:.2f}**", f"{100 * total / end:.0f}%"])
    if http_p50:
        rows.append(row("HTTP + gunicorn (wrk p50 minus the in-process request)", http_p50 - total))
        rows.append(["**whole request over HTTP** (gunicorn, 1 worker, wrk 1 connection, p50)",
                     f"**{http_p50:.2f}**", "100%"])
    rows.append(row("for scale: `GET /healthz` through the same app (Flask, every hook, no work)",
                    r["healthz_in_process_ms"]["median"]))
    resize = table(["resize of 500x375 photos", "ms (median)", "max abs diff vs catdog (0-255)"],
                   [[o["option"], f"{o['ms']:.2f}", str(o["max_abs_diff"])] for o in r["resize"]])
    normalise = table(["normalise a 288 px crop (float32 model input)", "ms (median)", "same values bit for bit"],
                      [[o["option"], f"{o['ms']:.2f}", "yes" if o["bit_identical"] else "NO"]
                       for o in r.get("normalise", [])])
    batching = table(["batch", "model ms per photo (1 thread)"],
                     [[str(b["batch"]), f"{b['ms_per_photo']:.2f}"] for b in r["batching"]])
    threads = table(["ORT threads", "idle threads spin", "model ms (batch 1, median)", "p90"],
                    [[str(t["threads"]), "yes" if t["spinning"] else "no", f"{t['ms']:.2f}", f"{t['p90_ms']:.2f}"]
                     for t in r["threads"]])
    m = r["model"]
    return "\n".join([
        "## Request path: where one request's time goes",
        "",
        (f"Measured {raw['date']} on {raw['machine']}; load average before the run "
        f"{', '.join(f'{x:.1f}' for x in raw['load_average_before'])}. Command: `{raw['command']}`."),
        (f"Model `{m['name']}` {m['version']} ({m['architecture']}, {m['input_size']} px, labels "
        f"{'/'.join(m['labels'])}); {len(r['photos'])} real JPEGs of {', '.join(r['sizes'][:4])}"
        f"{' ...' if len(r['sizes']) > 4 else ''}."),
        "",
        ("Each stage is timed in one process on one thread, calling the server's own functions in "
        "order (median ms per request over every photo and pass); the whole request is then timed "
        "through the real app in process and through the production gunicorn server (1 worker, "
        "wrk, 1 connection), in rounds that alternate the three so the machine's drift hits them alike; "
         "the differences are the Flask and HTTP rows."),
        "",
        table(["stage", "ms per request", "share"], rows),
        "",
        ("Pillow's `reducing_gap` on these photos (the crop box is about 333 px for a 288 px input, a "
        "factor of 1.16: `reduce()` only takes integer factors of 2 or more, and JPEG `draft` only "
        "scales by 1/2, 1/4, 1/8, so neither applies below 648 px on the short side):"),
        "",
        resize,
        "",
        *([("Normalisation before and after issue 12, for a float32-input model with this model's size and "
           "layout (a uint8 model normalises in its graph and skips this):"),
           "", normalise, ""] if r.get("normalise") else []),
        "Micro-batching: what batching concurrent requests could save at most, per photo, in the model:",
        "",
        batching,
        "",
        "A second ONNX Runtime thread, the most it could save at one client:",
        "",
        threads,
        "",
        "Raw numbers: [`bench/request_path.json`](bench/request_path.json).",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model (default: the bundled one)")
    parser.add_argument("--val", type=Path, default=DEFAULT_VAL, help="photo folders (one per class)")
    parser.add_argument("--photos", type=int, default=40, help="different photos")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of stages, in-process and HTTP timings")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per resize, batching, threads timing")
    parser.add_argument("--http-seconds", type=int, default=2,
                        help="seconds of wrk per round (0 = no HTTP timing)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/request_path.py", *(sys.argv[1:] if argv is None else argv)])
    raw = {"machine": machine(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": command,
           "load_average_before": os.getloadavg()}
    raw["results"] = measure(args)
    text = markdown(raw)
    print(text)
    if not args.no_write:
        write_json("request_path", raw)
        update_section("request-path", text)
        print("written: docs/benchmarks.md (request-path section), docs/bench/request_path.json")


if __name__ == "__main__":
    main()
