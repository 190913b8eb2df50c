"""The original design's model, rebuilt: a small Keras CNN on 64x64 RGB photos, sigmoid P(dog).

Three conv blocks (32/64/128 filters, 3x3, max-pooling), a 128-unit dense layer with
dropout and one sigmoid unit, trained with adam + binary cross-entropy as the original
design did. It is trained on the same photos as catdog's model (both ``train`` folders of
``../shared/data``), with the same 10% held out (``catdog.training.data.stratified_split``)
for early stopping, and saved as ``artifacts/cat_dog.h5`` (about 2.7 MB) beside
``artifacts/cat_dog.history.json``.

    python bench/baselines/original_cnn.py                # at most ~8 minutes on 2 cores
    python bench/baselines/original_cnn.py --max-seconds 300 --epochs 20

Training stops at the first of: ``--epochs``, 3 epochs without a better held-out loss
(the best weights are kept), or the epoch that passes ``--max-seconds`` (default 420 s).
The committed artifact: 8 epochs (time budget), held-out accuracy 0.794, 481 s on a
shared 2-core machine.

Keras needs a backend: ``KERAS_BACKEND`` if set, else JAX (``pip install 'catdog[keras]'``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACT = HERE / "artifacts" / "cat_dog.h5"
DEFAULT_DATA = [ROOT.parent / "shared" / "data" / "cats-vs-dogs" / "train",
                ROOT.parent / "shared" / "data" / "pet-breeds" / "train"]
SIDE = 64


def load_photo(data: bytes) -> np.ndarray:
    """The original design's preprocessing: decode, RGB, whole photo resized to 64x64, [0, 1].

    Shared by training and ``original_app.py`` so the served model sees what it was trained on.
    """
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((SIDE, SIDE))
    return np.asarray(image, dtype=np.float32) / 255.0


def build_model():
    """The original architecture (Keras Sequential, 64x64x3 in, one sigmoid out)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((SIDE, SIDE, 3)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(128, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(1, activation="sigmoid"),
    ], name="cat_dog")


def load_arrays(samples) -> tuple[np.ndarray, np.ndarray]:
    """Decode every photo once with :func:`load_photo`; unreadable files are skipped."""
    xs, ys = [], []
    for sample in samples:
        try:
            xs.append(load_photo(sample.path.read_bytes()))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        ys.append(sample.label)
    return np.stack(xs), np.asarray(ys, dtype=np.float32)


def time_budget(seconds: float):
    """A Keras callback that stops training after the epoch that passes ``seconds`` (bounds CPU time)."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.deadline = time.monotonic() + seconds

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() > self.deadline:
                self.model.stop_training = True

    return TimeBudget()


def train(data: list[Path], out: Path, *, epochs: int, max_seconds: float, seed: int = 0) -> dict:
    """Train, early-stop on the held-out split, save ``out``; return the training summary."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from catdog.training.data import find_samples, stratified_split

    started = time.time()
    keras.utils.set_random_seed(seed)
    train_samples, holdout_samples = stratified_split(find_samples(data), 0.1, seed)
    x_train, y_train = load_arrays(train_samples)
    x_hold, y_hold = load_arrays(holdout_samples)
    print(f"{len(x_train)} photos to train, {len(x_hold)} held out "
          f"(decoded in {time.time() - started:.0f} s)", flush=True)
    # Horizontal flips double the photos cheaply; the original design had no augmentation
    # pipeline, and this keeps the baseline fair without changing its architecture.
    x_train = np.concatenate([x_train, x_train[:, :, ::-1]])
    y_train = np.concatenate([y_train, y_train])

    model = build_model()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    history = model.fit(x_train, y_train, validation_data=(x_hold, y_hold), epochs=epochs,
                        batch_size=32, shuffle=True, verbose=2, callbacks=[stop, time_budget(max_seconds)])
    loss, accuracy = model.evaluate(x_hold, y_hold, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, include_optimizer=False)  # the optimizer state would triple the file
    summary = {
        "backend": keras.backend.backend(), "keras": keras.__version__,
        "data": [os.path.relpath(d, ROOT) for d in data], "n_train": len(x_train) // 2, "n_holdout": len(x_hold),
        "epochs_run": len(history.history["loss"]), "holdout_accuracy": float(accuracy),
        "holdout_log_loss": float(loss), "seconds": round(time.time() - started, 1),
        "params": int(model.count_params()), "history": history.history,
    }
    out.with_suffix(".history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA,
                        help="ImageFolder roots (cat/, dog/); default: both shared train folders")
    parser.add_argument("--out", type=Path, default=ARTIFACT)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--max-seconds", type=float, default=420, help="stop after the epoch that passes this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = train(args.data, args.out, epochs=args.epochs, max_seconds=args.max_seconds, seed=args.seed)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): held-out accuracy "
          f"{summary['holdout_accuracy']:.3f} after {summary['epochs_run']} epochs, {summary['seconds']} s")


if __name__ == "__main__":
    main()
