"""catdog's own Classifier served by BentoML (issue 24's peer), as a BentoML user would write it.

    bentoml serve bentoml_service:CatdogService --port 8000      # from bench/baselines/

``POST /predict`` with the multipart field ``image`` (a ``Path`` input: BentoML stores the
upload and hands over its path). Two workers by default (``CATDOG_WORKERS``), one ONNX Runtime
thread each. Runs in the bench-only environment (``pip install -e .[peers]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml


@bentoml.service(workers=int(os.environ.get("CATDOG_WORKERS", "2")), traffic={"timeout": 60})
class CatdogService:
    def __init__(self) -> None:
        from catdog.model.engine import Classifier

        self.classifier = Classifier.load(os.environ.get("CATDOG_MODEL") or None, threads=1)

    @bentoml.api
    def predict(self, image: Path) -> dict:
        return self.classifier.predict(image.read_bytes()).to_dict()
