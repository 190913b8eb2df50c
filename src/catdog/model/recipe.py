"""The model artifact's own recipe: how to feed it and how to read its output.

Like timm's ``pretrained_cfg`` or a Hugging Face ``preprocessor_config.json``, a
``model.json`` sits beside ``model.onnx`` so serving never guesses how the model
was trained. Training writes it, the engine reads it, and the model card quotes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

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


class Recipe(BaseModel):
    """Everything the engine needs to know about a model, read from ``model.json``."""

    name: str = "custom"
    version: str = "0"
    architecture: str = "unknown"
    labels: tuple[str, str] = ("cat", "dog")
    input: InputSpec = InputSpec()
    output: Literal["logits", "probabilities", "sigmoid"] = Field(
        "logits",
        description="logits: (N, 2) raw scores; probabilities: (N, 2) summing to 1; "
        "sigmoid: (N, 1) P(second label)",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="say the second label when its probability >= this")
    temperature: float = Field(1.0, gt=0, description="logits are divided by this (calibration)")
    metrics: dict = Field(default_factory=dict, description="evaluation results, for the model card and /v1/model")
    training: dict = Field(default_factory=dict, description="how it was trained (data, epochs, seed)")

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
