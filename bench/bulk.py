"""Bulk: ``catdog bulk`` (Apache Beam, local runner) vs ``catdog predict`` on the same folder.

Each contender is the real command in a new process, timed from launch to exit (Python
start-up, model load and Beam's pipeline set-up included), rounds interleaved because this
machine is shared. CPU seconds are the process tree's (``os.wait4``), which neighbours do
not inflate: photos per CPU-second is the photos/s one vCPU gives, the number that prices a
Dataflow job (docs/bulk.md).

    python bench/bulk.py                                   # ../shared/data/cats-vs-dogs/val, 3 rounds
    python bench/bulk.py --data DIR --rounds 1 --no-write

Contenders:
  predict          catdog predict --json --no-progress DIR          (one process, ORT on all cores)
  bulk             catdog bulk DIR --out OUT                        (DirectRunner, in memory, all cores)
  bulk 2 procs     ... --threads 1 --direct_num_workers=2 --direct_running_mode=multi_processing
                   (one SDK process per core with one ONNX Runtime thread each: Dataflow's layout)

Writes the "bulk" section of docs/benchmarks.md and docs/bench/bulk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, table, update_section, write_json

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cats-vs-dogs" / "val"


def catdog() -> list[str]:
    """This interpreter's ``catdog`` (the venv running the benchmark), else the one on PATH."""
    beside = Path(sys.executable).with_name("catdog")
    return [str(beside) if beside.is_file() else shutil.which("catdog") or "catdog"]


def contenders(data: Path, out: Path) -> dict[str, list[str]]:
    bulk = [*catdog(), "bulk", str(data), "--out", str(out), "--overwrite"]
    return {
        "predict": [*catdog(), "predict", "--json", "--no-progress", str(data)],
        "bulk": bulk,
        "bulk 2 procs": [*bulk, "--threads", "1", "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    }


def timed(command: list[str], stdout) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the process tree, exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, process.returncode


def labels_of_predict(path: Path) -> dict[str, str]:
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["path"]: r.get("label", "error") for r in rows}


def labels_of_bulk(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for f in sorted(out.glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]
    return {r["path"]: r["label"] for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    photos = sum(1 for p in args.data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not photos:
        print(f"no photos in {args.data}", file=sys.stderr)
        return 2

    results: dict[str, list[tuple[float, float]]] = {}
    same_answers = True
    with tempfile.TemporaryDirectory() as tmp:
        out, predicted = Path(tmp) / "out", Path(tmp) / "predict.jsonl"
        commands = contenders(args.data, out)
        for round_ in range(args.rounds):
            for name, command in commands.items():
                with predicted.open("w") as stdout:
                    wall, cpu, code = timed(command, stdout if name == "predict" else subprocess.DEVNULL)
                if code != 0:
                    print(f"{name} failed with exit code {code}: {shlex.join(command)}", file=sys.stderr)
                    return 1
                results.setdefault(name, []).append((wall, cpu))
                print(f"round {round_ + 1} {name:<13} {wall:6.1f} s wall, {cpu:6.1f} s CPU "
                      f"({photos / wall:5.1f} photos/s)", flush=True)
                if name == "predict":
                    reference = labels_of_predict(predicted)
                else:
                    same_answers &= labels_of_bulk(out) == reference
        load = os.getloadavg()

    summary = {}
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        summary[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "photos_per_s": round(photos / wall, 1),
                         "photos_per_cpu_s": round(photos / cpu, 1), "runs": runs}
    base = summary["predict"]["photos_per_s"]
    rows = [[f"`{name}`", s["wall_s"], s["photos_per_s"], f"{s['photos_per_s'] / base:.2f}x", s["cpu_s"],
             s["photos_per_cpu_s"]] for name, s in summary.items()]
    data_name = args.data.resolve()
    data_rel = f"../{data_name.relative_to(ROOT.parent)}" if data_name.is_relative_to(ROOT.parent) else str(data_name)
    markdown = "\n".join([
        "## Bulk: `catdog bulk` (Apache Beam) vs `catdog predict`",
        "",
        (f"`python bench/bulk.py` runs each command in a new process on `{data_rel}` ({photos:,} photos), "
        f"{args.rounds} interleaved rounds, medians shown; wall time is launch to exit (start-up, model load "
        "and Beam's pipeline set-up included), CPU is the process tree's user + system time. Commands:"),
        "",
        *[f"- `{name}`: `{shlex.join(['catdog', *c[1:]]).replace(str(args.data), 'DIR')}`"
          for name, c in contenders(args.data, Path("OUT")).items()],
        "",
        (f"Machine: {machine()}. Load average (1/5/15 min) right after the run: "
        f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (other jobs share these cores: compare the ratios)."),
        "",
        table(["command", "wall s", "photos/s", "vs predict", "CPU s", "photos per CPU-second"], rows),
        "",
        (f"- Floor (within 2x of `catdog predict`): {'met' if summary['bulk']['photos_per_s'] * 2 >= base else 'NOT met'}"
        f" ({summary['bulk']['photos_per_s'] / base:.2f}x)."),
        f"- Every photo got the same label from `catdog bulk` as from `catdog predict`: {'yes' if same_answers else 'NO'}.",
        ("- Photos per CPU-second is what one Dataflow vCPU delivers with the same model; docs/bulk.md prices a "
        "million photos from it."),
    ])
    print(markdown)
    if not args.no_write:
        update_section("bulk", markdown)
        write_json("bulk", {"photos": photos, "data": data_rel, "rounds": args.rounds, "machine": machine(),
                            "load": load, "same_answers": same_answers, "results": summary})
    return 0 if same_answers else 1


if __name__ == "__main__":
    sys.exit(main())
