"""Models: accuracy vs speed of every bundled model, to choose one by what it costs.

For each model folder (``model.onnx`` + ``model.json``): accuracy, errors, ECE and log loss
on the validation photos (``catdog.training.evaluate``, the serving engine itself); model
time per photo at batch 1 on one thread and on all cores, at batch 16 on one thread, and
end to end from JPEG bytes on one thread (all interleaved round by round, because these
small machines are noisy: times measured side by side are what to compare); int8 or fp32,
input size, file size and cold start (new process to first answer).

Times are means per photo over the calls cycling through the photos ``bench/speed.py``
sends (40 val photos of about 500x375), through ``Classifier.probabilities``: a cascade
is timed as it serves, its fast model on every photo and its accurate model on the ones
it hands over, so its mean carries its slow path in proportion (the "slow path" column
is its share on val).

    python bench/models.py                        # every folder under models/, all val photos
    python bench/models.py --limit 100 --seconds 1 --rounds 2
    python bench/models.py --models models/catdog-lite0 models/catdog-lite2 --no-write

Writes the "models" section of docs/benchmarks.md and docs/bench/models.json.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import pick_photos
from _report import ROOT, machine, table, time_calls, update_section, write_json
from engine import DEFAULT_IMAGE, LOAD_ONNX, cold_start, percentile

DEFAULT_VAL = ROOT.parent / "shared" / "data" / "cats-vs-dogs" / "val"
DEFAULT_OTHERS = ROOT.parent / "shared" / "data" / "not-pets"
MODELS = ROOT / "models"
#: The default model ships inside the package (src/catdog/models/), beside the others' folder.
PACKAGED_MODELS = ROOT / "src" / "catdog" / "models"
BATCH = 16
#: What each case runs: key -> (threads: "1" or "all", batch size, column header).
CASES = {
    "batch1_1t": ("1", 1, "batch 1, 1 thread"),
    "batch1_all": ("all", 1, "batch 1, {all} threads"),
    f"batch{BATCH}_1t": ("1", BATCH, f"batch {BATCH}, 1 thread"),
    "end_to_end_1t": ("1", 1, "end to end, 1 thread"),
}
#: The case the one-sentence summary compares (one server worker answering one photo).
HEADLINE = "batch1_1t"


def rel(path: Path) -> str:
    """``path`` relative to the repository (``../`` for its siblings, like the shared data)."""
    path = Path(path).resolve()
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return f"../{path.relative_to(ROOT.parent)}" if path.is_relative_to(ROOT.parent) else str(path)


def bundled_models() -> list[Path]:
    folders = [p for root in (PACKAGED_MODELS, MODELS) if root.is_dir() for p in root.iterdir()]
    return sorted((p for p in folders if (p / "model.onnx").is_file()), key=lambda p: p.name)


def is_int8(clf) -> bool:
    """QuantizeLinear nodes in the graph (or the recipe says it was quantised)."""
    if "quantized" in clf.recipe.training:
        return True
    try:
        import onnx
    except ImportError:  # not a serving dependency: op types are plain strings in the protobuf
        return b"QuantizeLinear" in clf.path.read_bytes()
    graph = onnx.load(str(clf.path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") for node in graph.node)


def validation(clf, val: Path, limit: int) -> dict:
    """The project's own evaluation, on every photo of ``val`` or its first ``limit`` per class."""
    from catdog.training.data import find_samples
    from catdog.training.evaluate import evaluate

    progress = sys.stderr.isatty()
    if not limit:
        report = evaluate(clf, val, progress=progress).report
    else:
        # evaluate() reads a folder: give it one of links to the first ``limit`` photos per class.
        samples = find_samples([val], clf.recipe.labels)
        with tempfile.TemporaryDirectory(prefix="catdog-val-") as tmp:
            for index, label in enumerate(clf.recipe.labels):
                (Path(tmp) / label).mkdir()
                chosen = [s for s in samples if s.label == index][:limit]
                for i, sample in enumerate(chosen):
                    (Path(tmp) / label / f"{i:06d}-{sample.path.name}").symlink_to(sample.path.resolve())
            report = evaluate(clf, tmp, progress=progress).report
    keys = ("n", "accuracy", "errors", "ece", "log_loss", "roc_auc", "unreadable")
    return {key: report[key] for key in keys} | {"slow_share": report.get("cascade", {}).get("slow_share")}


def held_out_others(recipe, others: Path) -> list[Path]:
    """The non-pet photos the open-world model held out (never trained on), from its recipe's split."""
    from catdog.training.openworld import recorded_split

    training = recipe.training
    if "parent_training" not in training or not others.is_dir():
        return []
    # The split depends on every folder the model was trained on: find each beside `others`.
    data = [_locate(Path(recorded), others.parent) for recorded in training.get("data", [])]
    if None in data:
        return []
    _, held = recorded_split(recipe, data, [others])
    return [s.path for s in held if s.label == 2]


def _locate(recorded: Path, root: Path) -> Path | None:
    """``root/<the shortest tail of recorded that exists there>`` (training paths are absolute)."""
    for k in range(1, len(recorded.parts)):
        candidate = root.joinpath(*recorded.parts[-k:])
        if candidate.is_dir():
            return candidate
    return None


def open_world(clf, pets: Path, others: list[Path], limit: int) -> dict:
    """Share of held-out non-pets answered with the model's other label, and of val pets lost to it."""
    from catdog.training.data import find_samples

    other = clf.recipe.other_label if clf.open_world else None
    pet_paths = [s.path for s in find_samples([pets], ("cat", "dog"))]
    if limit:
        pet_paths = pet_paths[:limit] + pet_paths[-limit:]

    def share(paths: list[Path]) -> float:
        answers = [o for _, o in clf.predict_many(paths) if hasattr(o, "label")]
        return sum(a.label == other for a in answers) / max(1, len(answers))

    return {"others": len(others), "others_answered_other": share(others) if others else float("nan"),
            "pets": len(pet_paths), "pets_answered_other": share(pet_paths)}


def cycling(call, items: list):
    """A no-argument function that calls ``call`` on the next item, round and round."""
    items = itertools.cycle(items)
    return lambda: call(next(items))


def model_label(model: dict) -> str:
    return f"**{model['name']}** (default)" if model["default"] else model["name"]


def results_table(models: list[dict], all_threads: int) -> str:
    speed_headers = [f"ms/photo {title.format(all=all_threads)}" for _, _, title in CASES.values()]
    headers = ["model", "version", "architecture", "input px", "weights", "file MB",
               "val accuracy", "errors", "ECE", "log loss", "non-pets -> other", "val pets -> other",
               "slow path", *speed_headers, "cold start s"]
    rows = []
    for m in models:
        v = m["val"]
        quality = ([f"{v['accuracy']:.2%}", f"{v['errors']} / {v['n']}", f"{v['ece']:.4f}",
                    f"{v['log_loss']:.4f}"] if v else ["n/a"] * 4)
        ow = m.get("open_world")
        opened = ([f"{ow['others_answered_other']:.1%} of {ow['others']}", f"{ow['pets_answered_other']:.2%}"]
                  if ow else ["n/a"] * 2)
        slow = v.get("slow_share") if v else None
        cascade = [f"{slow:.1%}" if slow is not None else ("n/a" if v is None and m["cascade"] else "-")]
        speed = [f"{m['speed'][key]['ms_per_image']:.2f}" for key in CASES]
        cold = f"{m['cold_start_s']:.2f}" if m["cold_start_s"] is not None else "n/a"
        rows.append([model_label(m), m["version"], m["architecture"], m["input_size"], m["weights"],
                     f"{m['file_mb']:.1f}", *quality, *opened, *cascade, *speed, cold])
    return table(headers, rows)


def summary(models: list[dict]) -> str:
    """One sentence from the numbers: each model's speed and accuracy against the default."""
    reference = next((m for m in models if m["default"]), models[0])
    others = [m for m in models if m is not reference]
    what = "the default" if reference["default"] else "the first model measured (the default was not)"
    if not others:
        return f"Only {what}, {reference['name']}, was measured."
    ref_ms = reference["speed"][HEADLINE]["ms_per_image"]
    parts = []
    for m in others:
        ms = m["speed"][HEADLINE]["ms_per_image"]
        ratio = ms / ref_ms
        pace = f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"
        part = f"{m['name']} is {pace} ({ms:.2f} vs {ref_ms:.2f} ms)"
        if m["val"] and reference["val"]:
            points = (m["val"]["accuracy"] - reference["val"]["accuracy"]) * 100
            accuracy = f"{m['val']['accuracy']:.2%} vs {reference['val']['accuracy']:.2%}"
            if round(points, 1) == 0:
                part += f" and as accurate ({accuracy})"
            else:
                part += f" and {abs(points):.1f} points {'more' if points > 0 else 'less'} accurate ({accuracy})"
        parts.append(part)
    return (f"At batch 1 on one thread, against {what}, {reference['name']}: "
            + "; ".join(parts) + ".")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", default=None, metavar="DIR",
                        help="model folders (default: every folder under models/ with a model.onnx)")
    parser.add_argument("--val", type=Path, default=DEFAULT_VAL,
                        help="validation photos, cat/ and dog/ (default: ../shared/data/cats-vs-dogs/val)")
    parser.add_argument("--others", type=Path, default=DEFAULT_OTHERS,
                        help="non-pet photos; the default model's held-out part of them is scored "
                             "(default: ../shared/data/not-pets)")
    parser.add_argument("--limit", type=int, default=0,
                        help="score only the first N photos per class (0: all)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE,
                        help="the photo of the cold starts, and the one timed when --val has none "
                             "(default: a 498x415 JPEG)")
    parser.add_argument("--photos", type=int, default=40,
                        help="time each model cycling through this many val photos of about 500x375, "
                             "as bench/speed.py sends (default 40)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold starts per model (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/")
    args = parser.parse_args(argv)

    from catdog.model.backends import default_threads
    from catdog.model.engine import Classifier, bundled_model_dir, resolve_model_path
    from catdog.model.errors import ModelError

    dirs = args.models or bundled_models()
    if not dirs:
        parser.error(f"no model folders (none under {rel(MODELS)} has a model.onnx); pass --models")
    all_threads = default_threads()
    thread_counts = {"1": 1, "all": all_threads}
    try:
        # The folder, not the file: a folder may link to the bundled model.onnx with another recipe.
        default_path = resolve_model_path(bundled_model_dir()).parent.resolve()
    except ModelError:  # no bundled model: nothing is marked default
        default_path = None
    given = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/models.py", *given])

    # One Classifier per model and thread count; static facts first.
    loaded: list[dict[str, Classifier]] = []
    models: list[dict] = []
    for d in dirs:
        by_threads = {key: Classifier.load(d, threads=t) for key, t in thread_counts.items()}
        clf = by_threads["1"]
        loaded.append(by_threads)
        models.append({
            "name": clf.recipe.name, "version": clf.recipe.version, "architecture": clf.recipe.architecture,
            # The folder's own path: its model.onnx may be a link to another folder's file.
            "path": f"{rel(clf.path.parent)}/{clf.path.name}", "default": clf.path.parent.resolve() == default_path,
            "input_size": clf.recipe.input.size, "weights": "int8" if is_int8(clf) else "fp32",
            "file_mb": (clf.path.stat().st_size + (clf.cascade.fast.path.stat().st_size if clf.cascade else 0)) / 2**20, "val": None, "cold_start_s": None,
            "cold_start_peak_rss_mb": None, "speed": {}, "cascade": clf.cascade is not None,
        })

    print(f"machine: {machine()}\ncold-start image: {args.image}\n"
          f"models: {', '.join(m['path'] + (' (default)' if m['default'] else '') for m in models)}")

    default_clf = next((by["1"] for m, by in zip(models, loaded) if m["default"]), None)
    others = held_out_others(default_clf.recipe, args.others) if default_clf else []
    if args.val.is_dir():
        for m, by_threads in zip(models, loaded):
            print(f"evaluating {m['name']} on {args.val}"
                  + (f" (first {args.limit} photos per class)" if args.limit else "") + " ...", flush=True)
            try:
                m["val"] = validation(by_threads["all"], args.val, args.limit)
                m["open_world"] = open_world(by_threads["all"], args.val, others, args.limit)
            except FileNotFoundError as exc:  # a folder without cat/ and dog/ photos
                sys.exit(f"cannot score on {args.val}: {exc}")
    else:
        print(f"no validation folder at {args.val}: measuring speed only (accuracy columns n/a). "
              "Pass --val DIR (cat/, dog/ subfolders) to score the models.", flush=True)

    # (model index, case) -> ms per call; models interleaved within every round, each call on
    # the next of the timed photos, so a cascade's slow path is in its times in proportion.
    timed = pick_photos(args.val, args.photos) or [args.image]
    photos = [path.read_bytes() for path in timed]
    print(f"timed on {len(photos)} photos: {', '.join(path.name for path in timed[:4])}"
          + (" ..." if len(timed) > 4 else ""), flush=True)
    durations: dict[tuple[int, str], list[float]] = {}
    calls = []
    for by_threads in loaded:
        x = np.stack([by_threads["1"].prepare(photo) for photo in photos])
        batches = {1: [x[i:i + 1] for i in range(len(x))],
                   BATCH: [np.take(x, range(i, i + BATCH), axis=0, mode="wrap") for i in range(0, len(x), BATCH)]}
        calls.append({key: cycling(by_threads[threads].predict, photos) if key.startswith("end_to_end")
                      else cycling(by_threads[threads].probabilities, batches[batch])
                      for key, (threads, batch, _) in CASES.items()})
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds} ...", flush=True)
        for i, by_case in enumerate(calls):
            for key, fn in by_case.items():
                durations.setdefault((i, key), []).extend(time_calls(fn, args.seconds))
    for (i, key), ms in durations.items():
        threads, batch, _ = CASES[key]
        models[i]["speed"][key] = {
            "threads": thread_counts[threads], "batch": batch, "calls": len(ms),
            "ms_per_image": statistics.fmean(ms) / batch, "ms_per_image_p50": percentile(ms, 50) / batch,
            "ms_per_call_p95": percentile(ms, 95)}

    if args.cold_repeats > 0:
        print("cold start ...", flush=True)
        runs: dict[int, list[tuple[float, float, str]]] = {}
        for _ in range(args.cold_repeats):  # interleaved too: one start of each model per repeat
            for i, by_threads in enumerate(loaded):
                runs.setdefault(i, []).append(cold_start(LOAD_ONNX, by_threads["1"].path, args.image, 1))
        for i, starts in runs.items():
            models[i]["cold_start_s"] = statistics.median(s for s, _, _ in starts)
            models[i]["cold_start_peak_rss_mb"] = statistics.median(r for _, r, _ in starts)

    results = results_table(models, all_threads)
    sentence = summary(models)
    print("\n" + results + "\n\n" + sentence)
    if args.no_write:
        return
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    n_val = next((m["val"]["n"] for m in models if m["val"]), 0)
    val_note = (f"Validation photos: `{rel(args.val)}` ({n_val} photos"
                + (f", the first {args.limit} of each class" if args.limit else "")
                + "); accuracy, ECE (10 bins) and log loss\nfrom `catdog.training.evaluate`. "
                + f"Non-pets: the {len(others)} photos of `{rel(args.others)}` the default model held out "
                "(never trained on); \"val pets -> other\" is the share of val photos lost to other."
                if args.val.is_dir() else f"No validation photos (no folder at `{rel(args.val)}`): speed only.")
    cold_note = (f"the median of {args.cold_repeats} runs of a new Python process importing catdog, "
                 "loading the model (1 thread) and answering one photo" if args.cold_repeats > 0 else "not measured")
    md = f"""## Models: accuracy vs speed

Machine: {machine()}. Measured {date}. Command: `{command}`
({args.rounds} interleaved round(s) of {args.seconds:g} s per case and model).

{val_note} Times are mean ms per photo over calls cycling through {len(photos)} photos
({', '.join(path.name for path in timed[:3])}, ...): the model on a prepared input
(`Classifier.probabilities`: a cascade's fast model on every photo and its accurate model on the
ones it hands over, its "slow path" share on val), except "end to end": `Classifier.predict(bytes)`,
i.e. decode, preprocess, model and calibration. Cold start ({args.image.name}): {cold_note}.

{results}

{sentence}
"""
    update_section("models", md)
    write_json("models", {"machine": machine(), "date": date, "command": command,
                          "settings": {k: str(v) for k, v in vars(args).items()},
                          "all_threads": all_threads, "models": models})
    print("\nwritten: docs/benchmarks.md (models section), docs/bench/models.json")


if __name__ == "__main__":
    main()
