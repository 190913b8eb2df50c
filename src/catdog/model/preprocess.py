"""RGB image to the model's input tensor, exactly as at training time.

This module is the single definition of serving preprocessing. Training's
evaluation and calibration call :func:`preprocess` too, and a test checks that
training and serving produce the same tensor for the same photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from catdog.model.decode import (
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageSource,
    load_image,
)
from catdog.model.recipe import InputSpec

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def center_crop_box(width: int, height: int, spec: InputSpec) -> tuple[float, float, float, float]:
    """The source-pixel box that "resize short side to ``resize``, centre-crop ``size``" keeps."""
    side = spec.size * min(width, height) / spec.resize
    side = min(side, width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def resize_and_crop(image: Image.Image, spec: InputSpec) -> Image.Image:
    """Resize-then-crop done as one resampling of the crop box: same pixels, half the work.

    With ``spec.crop`` false the box is the whole photo, squashed to ``size`` x ``size``.
    """
    box = center_crop_box(image.width, image.height, spec) if spec.crop else None
    return image.resize((spec.size, spec.size), _RESAMPLE[spec.interpolation], box=box)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HWC uint8 pixels to the model's input in its layout (CHW or HWC): float32 with mean/std
    applied, or the uint8 pixels themselves for a model that normalises in its graph."""
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)) if spec.layout == "NCHW" else pixels
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    # One multiply-add instead of divide-subtract-divide, done in place on channel planes:
    # broadcasting over a last axis of 3 runs numpy's inner loop 3 elements at a time, about
    # 10x slower for the same float32 operations (same values, bit for bit; docs/benchmarks.md).
    gain = (1.0 / (spec.scale * std)).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    out = pixels.transpose(2, 0, 1).astype(np.float32, order="C")
    out *= gain
    out += offset
    return out if spec.layout == "NCHW" else np.ascontiguousarray(out.transpose(1, 2, 0))


def preprocess(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """An upright RGB image to one model input (no batch axis)."""
    return normalize(np.asarray(resize_and_crop(image, spec)), spec)


def prepare(source: ImageSource, spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS,
            max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """Bytes, path or PIL image to one model input: the whole serving path in one call.

    The engine and training's held-out evaluation both call this, so the tensors the
    temperature is fitted on are the tensors the server computes.
    """
    image = load_image(source, max_pixels=max_pixels, min_side=spec.resize, max_decode_bytes=max_decode_bytes)
    return preprocess(image, spec)
