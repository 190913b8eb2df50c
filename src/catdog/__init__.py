"""catdog: tell cats from dogs in photos, fast, on a plain CPU.

The public API reads like the sentence a user would say::

    from catdog import Classifier
    clf = Classifier.load()            # the bundled model, or $CATDOG_MODEL
    clf.predict("photo.jpg").label     # one of clf.recipe.labels

or, through a running server (no model, no ONNX Runtime in this process)::

    from catdog.client import Client
    Client("http://localhost:8000").classify("photo.jpg").label
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catdog.model.errors import ImageError, ModelError
from catdog.prediction import Prediction

if TYPE_CHECKING:
    from catdog.model.engine import Classifier

__all__ = ["Classifier", "ImageError", "ModelError", "Prediction", "__version__"]
__version__ = "1.0.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import catdog.client` does not load numpy and ONNX Runtime.
    if name == "Classifier":
        from catdog.model.engine import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
