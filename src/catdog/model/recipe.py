"""The model artifact's own recipe: how to feed it and how to read its output.

Like timm's ``pretrained_cfg`` or a Hugging Face ``preprocessor_config.json``, a
``model.json`` sits beside ``model.onnx`` so serving never guesses how the model
was trained. Training writes it, the engine reads it, and the model card quotes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from catdog.model.errors import ModelError

RECIPE_FILENAME = "model.json"


class InputSpec(BaseModel):
    """Preprocessing, in the order it is applied: resize the short side, centre-crop, normalise.

    ``crop=False`` squashes the whole photo to ``size`` x ``size`` instead (no crop, aspect
    ratio not kept), the way many small Keras models were trained; ``resize`` then only sets
    how small a JPEG may be draft-decoded (keep it equal to ``size``).
    """

    size: int = Field(224, ge=8, le=2048, description="side of the square crop fed to the model")
    resize: int = Field(256, ge=8, le=4096, description="short side after resizing, before the crop")
    interpolation: Literal["bicubic", "bilinear", "nearest", "lanczos"] = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    scale: float = Field(255.0, gt=0, description="pixel values are divided by this before mean/std")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    crop: bool = Field(True, description="centre-crop after the short-side resize; "
                       "false: resize the whole image to size x size")
    dtype: Literal["float32", "uint8"] = Field(
        "float32", description="float32: the model takes normalised pixels; uint8: the model takes the raw "
        "0-255 pixels and normalises them itself (mean, std and scale are then inside the graph)")


class ExplainSpec(BaseModel):
    """How a model shows where it looked (``catdog.training.export.add_feature_output`` writes it).

    ``output`` names the model's second output: its class activation maps, (N, K, h, w) in
    label order, the head's weights applied to the last feature map before the global pool.
    """

    output: str = Field(description="name of the (N, K, h, w) class-activation-map output")
    method: Literal["cam"] = "cam"


class CascadeSpec(BaseModel):
    """A faster model that answers first (``catdog cascade`` writes it; docs/models.md, "Cascade").

    The recipe holding it is the accurate model's; its own model file is the accurate model.
    The fast model answers a photo when its largest calibrated probability is >= ``handoff``
    and hands the others to the accurate model. It must have the same labels and the same
    ``input`` as the accurate model (one ``prepare``, one tensor per photo for both);
    ``catdog.training.export.resize_input`` gives it the accurate model's input size.
    """

    fast: str = Field(description="the fast model: a model directory or file, relative to this model.json's folder")
    handoff: float = Field(ge=0.5, lt=1, description="the fast model answers when its largest probability is >= this")
    metrics: dict = Field(default_factory=dict, description="how the hand-off was chosen: held-out share of "
                          "photos on the slow path, the cascade's metrics against the accurate model's")


class Recipe(BaseModel):
    """Everything the engine needs to know about a model, read from ``model.json``.

    ``labels`` name the model's outputs in order, any number of them (at least two). The
    decision rule:

    - two labels, no ``other_label``: the second label when its probability >= ``threshold``
      (the original cat/dog contract);
    - an ``other_label`` (the open-world "neither" answer): that label only when its
      probability >= ``other_threshold``, else the most probable of the remaining labels.
      A photo of a real pet must not be lost to "other" when it can be helped, so the
      threshold is chosen on held-out photos (see the model card), not fixed at argmax;
    - otherwise: the most probable label.

    Every answer also says whether it is ``sure`` (:func:`catdog.model.rules.sure_rows`):
    its probability reaches ``sure_level`` and no other label is more probable.
    """

    name: str = "custom"
    version: str = "0"
    architecture: str = "unknown"
    labels: tuple[str, ...] = Field(("cat", "dog"), min_length=2, description="output names, in output order")
    input: InputSpec = InputSpec()
    output: Literal["logits", "probabilities", "sigmoid"] = Field(
        "logits",
        description="logits: (N, K) raw scores; probabilities: (N, K) summing to 1; "
        "sigmoid: (N, 1) P(second label), two labels only",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="two labels: say the second when its probability >= this")
    other_label: str | None = Field(None, description='the label that means "none of the others" (open world)')
    other_threshold: float = Field(0.5, gt=0, le=1, description="say other_label when its probability >= this")
    sure_level: float = Field(0.7, gt=0, le=1, description="an answer is sure when its probability is >= this "
                              "and no other label is more probable")
    temperature: float = Field(1.0, gt=0, description="logits are divided by this (calibration)")
    explain: ExplainSpec | None = Field(None, description="the model's class-activation-map output, if it has one")
    cascade: CascadeSpec | None = Field(None, description="a faster model that answers the photos it is sure of")
    metrics: dict = Field(default_factory=dict, description="evaluation results, for the model card and /v1/model")
    training: dict = Field(default_factory=dict, description="how it was trained (data, epochs, seed)")

    @model_validator(mode="after")
    def _check_labels(self) -> Recipe:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {list(self.labels)}")
        if self.other_label is not None and self.other_label not in self.labels:
            raise ValueError(f"other_label {self.other_label!r} is not one of the labels {list(self.labels)}")
        if self.output == "sigmoid" and len(self.labels) != 2:
            raise ValueError("a sigmoid output can only serve two labels")
        return self

    @property
    def known_labels(self) -> tuple[str, ...]:
        """The labels that name something (every label but ``other_label``)."""
        return tuple(label for label in self.labels if label != self.other_label)

    @classmethod
    def read(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ModelError(f"No model recipe at {path}; a model directory needs {RECIPE_FILENAME}.") from None
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelError(f"The model recipe {path} is not valid: {exc}") from None

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
