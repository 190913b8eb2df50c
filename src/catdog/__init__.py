"""catdog: tell cats from dogs in photos, fast, on a plain CPU.

The public API reads like the sentence a user would say::

    from catdog import Classifier
    clf = Classifier.load()            # the bundled model, or $CATDOG_MODEL
    clf.predict("photo.jpg").label     # "cat" or "dog"
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catdog.model.engine import Classifier, Prediction
    from catdog.model.errors import ImageError, ModelError

__all__ = ["Classifier", "ImageError", "ModelError", "Prediction", "__version__"]
__version__ = "1.0.0"

#: Loaded on first use (PEP 562): the web UI and ``catdog.servers`` import ``catdog.*`` modules
#: without paying for (or needing) ONNX Runtime and NumPy.
_LAZY = {
    "Classifier": "catdog.model.engine",
    "Prediction": "catdog.model.engine",
    "ImageError": "catdog.model.errors",
    "ModelError": "catdog.model.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'catdog' has no attribute {name!r}")
