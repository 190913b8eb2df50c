"""The data plane: the one sequence between every photo endpoint and the engine.

Like MLServer's ``DataPlane``, which serves both its REST and gRPC front ends, the endpoints
(``/predict``, ``/v1/predict``, ``/v1/predict/batch``, ``/v1/explain``, v2 ``infer``, and
``/v1/feedback`` for steps 1, 2 and its photo's decoding) only
parse their request into photo bytes and shape the answer; everything in between happens
here, in this order, for every photo endpoint alike:

1. **annotate** the access log line with what was sent (sizes, types);
2. **charge** the client's rate limit, one photo per photo, all or nothing, before any is
   decoded (:func:`catdog.api.security.charge_photos`; a request over the limit was already
   refused by the security hook, which checks without spending);
3. **budget** a batch's decoding memory and time (:class:`catdog.model.decode.BatchBudget`);
4. **predict** (or explain) with the engine;
5. **count** each answer's label in the metrics and annotate the log line with the outcome.

The answer then carries :meth:`DataPlane.model` and :meth:`DataPlane.elapsed_ms` (server time
since the request arrived, from :func:`catdog.api.observability.init_observability`).
No endpoint calls the engine, the rate limit or the metrics itself, so none can forget one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import g

from catdog.api.observability import annotate
from catdog.api.security import charge_photos
from catdog.model.decode import BatchBudget, decode_image, load_image
from catdog.model.errors import CatdogError
from catdog.model.explain import png_base64
from catdog.prediction import Prediction

if TYPE_CHECKING:
    from catdog.api.endpoint import JSON, Service


class DataPlane:
    """Classifies and explains photos for the endpoints of one app (one per gunicorn worker)."""

    def __init__(self, service: Service):
        self.service = service

    # -- what every answer carries ---------------------------------------------------------

    @property
    def model(self) -> JSON:
        """``{"name", "version"}`` of the model that answered."""
        return self.service.model_ref

    @staticmethod
    def elapsed_ms() -> float:
        """Milliseconds since this request arrived, rounded as every answer shows it."""
        started = g.get("started") or time.perf_counter()
        return round((time.perf_counter() - started) * 1000, 2)

    # -- the sequence ----------------------------------------------------------------------

    def classify(self, photos: Sequence[bytes], **sent: Any) -> list[Prediction | CatdogError]:
        """A batch: one result per photo, in order, a bad photo's error in its slot; the batch's
        decoding budget applies. ``sent`` annotates the log line."""
        self._admit(len(photos), sent)
        settings = self.service.settings
        budget = BatchBudget(settings.batch_decode_bytes, settings.batch_seconds)
        results: list[Prediction | CatdogError] = []
        results.extend(self.service.engine.predict_batch(photos, return_errors=True, budget=budget))
        predictions = [r for r in results if isinstance(r, Prediction)]
        self._count(predictions)
        annotate(errors=len(results) - len(predictions))
        return results

    def classify_one(self, photo: bytes, **sent: Any) -> Prediction:
        """One photo's prediction; a bad photo raises its error (the request's status)."""
        self._admit(1, sent)
        prediction = self.service.engine.predict(photo)
        self._count([prediction])
        annotate(label=prediction.label)
        return prediction

    def explain(self, photo: bytes, *, overlay_side: int | None = None, **sent: Any) -> JSON:
        """The prediction, where the model looked and, with ``overlay_side``, the photo (its
        longer side at most that) with the heatmap blended on top, as base64 PNG."""
        self._admit(1, {**sent, "explain": True})
        engine = self.service.engine
        explanation = engine.explain(photo)
        self._count([explanation.prediction])
        annotate(label=explanation.prediction.label)
        body = explanation.to_dict()
        if overlay_side:
            image = load_image(photo, max_pixels=engine.max_pixels, min_side=overlay_side,
                               max_decode_bytes=engine.max_decode_bytes)
            image.thumbnail((overlay_side, overlay_side))
            body["overlay"] = {"media_type": "image/png", "width": image.width, "height": image.height,
                               "data": png_base64(explanation.overlay(image))}
        return body

    def admit_feedback(self, photo: bytes | None, **sent: Any) -> None:
        """A correction (``POST /v1/feedback``): charged one photo like a prediction (it is a
        database write), and a shared photo decoded under the prediction's budgets, raising the
        same errors, before anything is stored. Nothing is classified."""
        self._admit(1, sent)
        if photo is not None:
            engine = self.service.engine
            decode_image(photo, max_pixels=engine.max_pixels, min_side=engine.recipe.input.size,
                         max_decode_bytes=engine.max_decode_bytes)

    @staticmethod
    def _admit(photos: int, sent: dict[str, Any]) -> None:
        """Steps 1 and 2: what was sent goes on the log line; the photos are charged (or 429)."""
        annotate(**sent)
        charge_photos(photos)

    def _count(self, predictions: Sequence[Prediction]) -> None:
        for prediction in predictions:
            self.service.metrics.predictions.labels(prediction.label).inc()
