"""PyTorch eager serving catdog's fine-tuned EfficientNet-Lite, in the original app's Flask shape.

The obvious alternative to ONNX Runtime: the timm model in PyTorch, one Flask route,
gunicorn. Decoding, preprocessing and calibration are catdog's own (``Classifier`` with a
``TorchBackend``), so the comparison isolates the runtime and the web layer. The weights
come from ``model.pt`` beside the model when training wrote one, else they are rebuilt
from the ONNX file (``catdog.training.export.torch_from_onnx``: same function, BatchNorm
as identity plus the folded bias). Serve it with gunicorn:

    CATDOG_MODEL=models/catdog-lite2-fp32 gunicorn --chdir bench/baselines -w 2 -b 127.0.0.1:8002 \\
        "torch_app:create_app()"

``TORCH_THREADS`` sets intra-op threads per worker (default 1, as catdog's workers).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, jsonify, request

from catdog.model.engine import Classifier, resolve_model_path
from catdog.model.recipe import RECIPE_FILENAME, Recipe


def load_torch_classifier(model: str | Path | None = None, threads: int = 1) -> Classifier:
    """catdog's pipeline around the PyTorch eager model (``model.pt`` if present, else from ONNX)."""
    import torch

    from catdog.config import Settings
    from catdog.training.backbone import catdog_model
    from catdog.training.export import TorchBackend, torch_from_onnx

    path = resolve_model_path(model or Settings.from_env().model)  # $CATDOG_MODEL, read by Settings
    weights = path.with_name("model.pt")
    if weights.is_file():
        network = catdog_model(pretrained=False)
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        network = torch_from_onnx(path)
    recipe_path = path.with_name(RECIPE_FILENAME)
    recipe = Recipe.read(recipe_path) if recipe_path.is_file() else Recipe(name=path.stem)
    classifier = Classifier(TorchBackend(network.eval(), threads=threads), recipe, path=path)
    classifier.warmup()
    return classifier


def create_app() -> Flask:
    """Load the model once per worker, then serve ``POST /predict`` like the original app."""
    classifier = load_torch_classifier(threads=int(os.environ.get("TORCH_THREADS", "1")))
    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return jsonify({"error": "send the photo in the multipart field 'image'"}), 400
        prediction = classifier.predict(upload.read())
        return jsonify({"label": prediction.label, "confidence": prediction.confidence})

    return app
