"""catdog: tell cats from dogs in photos, fast, on a plain CPU.

The public API reads like the sentence a user would say::

    from catdog import Classifier
    clf = Classifier.load()            # the bundled model, or $CATDOG_MODEL
    clf.predict("photo.jpg").label     # "cat" or "dog"
"""

from catdog.model.engine import Classifier, Prediction
from catdog.model.errors import ImageError, ModelError

__all__ = ["Classifier", "ImageError", "ModelError", "Prediction", "__version__"]
__version__ = "1.0.0"
