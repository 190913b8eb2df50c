"""The original design's server, rebuilt as its report describes, with the threshold fixed to 0.5.

A minimal Flask app: load the Keras model, compile it (adam, binary cross-entropy), take
``request.files.get("image")``, resize to 64x64 RGB, add the batch axis, ``model.predict``,
answer ``{"label", "confidence"}``. No input validation, no batching, no metrics: it is the
baseline catdog is measured against, not a product. Serve it with gunicorn:

    KERAS_BACKEND=jax gunicorn --chdir bench/baselines -w 2 -b 127.0.0.1:8001 "original_app:create_app()"

``ORIGINAL_MODEL`` overrides the model path (default ``artifacts/cat_dog.h5``).
"""

from __future__ import annotations

import os

import numpy as np
from flask import Flask, jsonify, request
from original_cnn import ARTIFACT, load_photo

THRESHOLD = 0.5  # the original compared with 1, so it never said "dog"


def create_app() -> Flask:
    """Load and compile the model once per worker, then serve ``POST /predict``."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    model = keras.models.load_model(os.environ.get("ORIGINAL_MODEL", str(ARTIFACT)))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return jsonify({"error": "send the photo in the multipart field 'image'"}), 400
        batch = np.expand_dims(load_photo(upload.read()), axis=0)
        p_dog = float(model.predict(batch, verbose=0)[0][0])
        label = "dog" if p_dog >= THRESHOLD else "cat"
        return jsonify({"label": label, "confidence": p_dog if label == "dog" else 1.0 - p_dog})

    return app
