"""Shared by the benchmarks: write a named section of docs/benchmarks.md and a JSON next to it."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The fixture photo the benchmarks send when not given one (a real 500x375 JPEG of a cat).
FIXTURE_PHOTO = ROOT / "tests" / "data" / "images" / "cat" / "cat.4001.jpg"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "bench"
HEADER = "# Benchmarks\n\nEvery number here was produced by a script in `bench/` on the machine described in each section.\n"


def float_model_of(model: Path | None = None) -> Path:
    """The float model an int8 one was quantised from (PyTorch eager needs float weights).

    By convention it is the folder ``NAME-fp32``, beside the model or in the repository's
    ``models/`` (the default model ships in the package, its float model does not:
    ``src/catdog/models/catdog-lite2`` -> ``models/catdog-lite2-fp32``); a model without
    one is its own float model.
    """
    if model is None:
        from catdog.model.engine import bundled_model_dir  # not importable in other runtimes' venvs

        model = bundled_model_dir()
    model = Path(model)
    folder = model if model.is_dir() else model.parent
    for candidate in (folder.with_name(folder.name + "-fp32"), ROOT / "models" / (folder.name + "-fp32")):
        if candidate.is_dir():
            return candidate
    return model


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.machine()}"


def update_section(name: str, markdown: str, doc: Path = DOC) -> Path:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (append if absent)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc


def write_json(name: str, data) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def time_calls(fn, seconds: float, min_calls: int = 5) -> list[float]:
    """Milliseconds per call of ``fn``, called for about ``seconds`` (at least ``min_calls`` times)."""
    durations, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < min_calls:
        t0 = time.perf_counter()
        fn()
        durations.append((time.perf_counter() - t0) * 1000)
    return durations
