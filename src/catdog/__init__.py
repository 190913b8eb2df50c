"""catdog: tell cats from dogs in photos, fast, on a plain CPU.

The public API reads like the sentence a user would say::

    from catdog import Classifier
    clf = Classifier.load()            # the bundled model (or a path; from_settings: $CATDOG_*)
    clf.predict("photo.jpg").label     # one of clf.labels

or, through a running server (no model, no ONNX Runtime in this process)::

    from catdog.client import Client
    Client("http://localhost:8000").classify("photo.jpg").label
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catdog.model.engine import Classifier
    from catdog.model.errors import ImageError, ModelError
    from catdog.prediction import Prediction

__all__ = ["Classifier", "ImageError", "ModelError", "Prediction", "__version__"]
__version__ = "1.0.0"

#: Loaded on first use (PEP 562): the web UI, ``catdog.servers`` and ``catdog.client`` import
#: ``catdog.*`` modules without paying for (or needing) ONNX Runtime and NumPy.
_LAZY = {
    "Classifier": "catdog.model.engine",
    "Prediction": "catdog.prediction",
    "ImageError": "catdog.model.errors",
    "ModelError": "catdog.model.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'catdog' has no attribute {name!r}")
