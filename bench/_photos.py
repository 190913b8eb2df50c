"""The photos the speed benchmarks send: real JPEGs of about 500x375, as issue 12 measures with."""

from __future__ import annotations

import math
from pathlib import Path

from _report import ROOT

DEFAULT_VAL = ROOT.parent / "shared" / "data" / "cats-vs-dogs" / "val"
FIXTURES = ROOT / "tests" / "data" / "images"


def about_500x375(path: Path) -> bool:
    """A photo of about 500x375 pixels, in either orientation."""
    from PIL import Image

    with Image.open(path) as image:
        long, short = max(image.size), min(image.size)
    return 450 <= long <= 520 and 330 <= short <= 400


def pick_photos(val: Path = DEFAULT_VAL, count: int = 40) -> list[Path]:
    """``count`` different JPEGs of about 500x375 spread over the class folders of ``val``
    (sorted, so every run sends the same ones); the fixture photos if ``val`` is missing."""
    folders = sorted(p for p in val.iterdir() if p.is_dir()) if val.is_dir() else []
    if not folders:
        print(f"{val} not found: using the fixture photos in {FIXTURES.relative_to(ROOT)}", flush=True)
        return sorted(FIXTURES.glob("*/*.jpg"))[:count]
    per_folder = math.ceil(count / len(folders))
    picks: list[Path] = []
    for folder in folders:
        picks += [p for p in sorted(folder.glob("*.jpg")) if about_500x375(p)][:per_folder]
    return picks[:count]
