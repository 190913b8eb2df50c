"""Where the model looked: class activation maps laid over the whole photo.

The model's ``class_maps`` output (see ``catdog.training.export.add_feature_output``) is
the map for every label over the model's centre crop, at the last feature map's
resolution (9 x 9 for catdog-lite2). This module places the decided label's map over
the *whole* photo as uploaded (after EXIF orientation), zero outside the crop, so a
client can stretch the grid onto the photo without knowing the crop, and blends it
onto the photo for people (a colormap in numpy: matplotlib is not a serving dependency).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from catdog.prediction import Prediction

#: Cells along the photo's longer side in the API's heatmap grid: fine enough to see what a
#: 9 x 9 map says once stretched over a photo, small enough to stay a few kB of JSON.
GRID_CELLS = 32

#: A few stops of matplotlib's "inferno" (dark purple -> yellow), interpolated linearly.
_INFERNO = np.array([
    (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
    (245, 125, 21), (250, 193, 39), (252, 255, 164),
], dtype=np.float32)

#: Opacity of the heatmap where it is strongest; where it is 0 the photo shows unchanged.
_MAX_ALPHA = 0.6


def _interpolation_matrix(centres: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """(len(centres), n) bilinear weights sampling an n-cell axis spanning [lo, hi); 0 outside it."""
    pos = (centres - lo) / (hi - lo) * n - 0.5  # in map cells, cell centres at integers
    pos = np.clip(pos, 0.0, n - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (pos - i0).astype(np.float32)
    out = np.zeros((len(centres), n), dtype=np.float32)
    rows = np.arange(len(centres))
    np.add.at(out, (rows, i0), 1.0 - frac)
    np.add.at(out, (rows, i1), frac)
    out[(centres < lo) | (centres >= hi)] = 0.0
    return out


def place_map(cam: np.ndarray, box: tuple[float, float, float, float], width: int, height: int,
              rows: int, cols: int) -> np.ndarray:
    """Resample an (h, w) map covering ``box`` (photo pixels) onto a (rows, cols) grid over the
    whole ``width`` x ``height`` photo: bilinear inside the box, exactly 0 outside it.

    Bilinear resampling is separable, so it is two small matrix products.
    """
    left, top, right, bottom = box
    xs = (np.arange(cols, dtype=np.float64) + 0.5) * (width / cols)
    ys = (np.arange(rows, dtype=np.float64) + 0.5) * (height / rows)
    ax = _interpolation_matrix(xs, left, right, cam.shape[1])
    ay = _interpolation_matrix(ys, top, bottom, cam.shape[0])
    return ay @ cam.astype(np.float32) @ ax.T


def grid_shape(width: int, height: int, cells: int = GRID_CELLS) -> tuple[int, int]:
    """(rows, cols) with ``cells`` along the longer side and the photo's aspect ratio."""
    if width >= height:
        return max(1, round(cells * height / width)), cells
    return cells, max(1, round(cells * width / height))


def normalise(cam: np.ndarray) -> np.ndarray:
    """Non-negative, strongest cell 1: only evidence *for* the label is drawn."""
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else cam


def colorize(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] to (H, W, 3) float RGB through the inferno stops."""
    pos = np.clip(values, 0.0, 1.0) * (len(_INFERNO) - 1)
    i0 = np.minimum(pos.astype(np.int64), len(_INFERNO) - 2)
    frac = (pos - i0)[..., None]
    return _INFERNO[i0] * (1.0 - frac) + _INFERNO[i0 + 1] * frac


def blend(photo: Image.Image, values: np.ndarray) -> Image.Image:
    """The photo with ``values`` (same H x W, in [0, 1]) blended on top; 0 leaves a pixel as it was."""
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float32)
    alpha = (_MAX_ALPHA * np.clip(values, 0.0, 1.0))[..., None]
    out = rgb * (1.0 - alpha) + colorize(values) * alpha
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Explanation:
    """A prediction plus where the model looked for its label.

    ``cam`` is the decided label's map over ``box`` (the model's crop, in the pixels of the
    decoded photo of size ``size``), already non-negative with its peak at 1; ``label`` is
    the label it is drawn for (the answer, also when the answer is the "other" label).
    """

    prediction: Prediction
    label: str
    cam: np.ndarray
    box: tuple[float, float, float, float]
    size: tuple[int, int]
    #: The decoded photo the model saw, at the size decoding reduced it to (``size``): what an
    #: overlay is drawn on, so explaining never decodes the upload a second time.
    photo: Image.Image | None = field(default=None, repr=False, compare=False)

    def heatmap(self, rows: int | None = None, cols: int | None = None) -> np.ndarray:
        """The map over the whole photo as a (rows, cols) grid (default: 32 cells on the long side)."""
        width, height = self.size
        if rows is None or cols is None:
            rows, cols = grid_shape(width, height)
        return place_map(self.cam, self.box, width, height, rows, cols)

    def overlay(self, photo: Image.Image) -> Image.Image:
        """``photo`` (the upright photo, at any scale) with the heatmap blended on top, same size."""
        scale_x, scale_y = photo.width / self.size[0], photo.height / self.size[1]
        left, top, right, bottom = self.box
        box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
        values = place_map(self.cam, box, photo.width, photo.height, photo.height, photo.width)
        return blend(photo, values)

    def box_fractions(self) -> list[float]:
        """The model's square as [left, top, right, bottom], fractions of the photo's width and height."""
        width, height = self.size
        left, top, right, bottom = self.box
        return [round(left / width, 4), round(top / height, 4), round(right / width, 4), round(bottom / height, 4)]

    def to_dict(self) -> dict[str, Any]:
        grid = self.heatmap()
        return {
            **self.prediction.to_dict(),
            "heatmap": {
                "label": self.label,
                "rows": int(grid.shape[0]),
                "cols": int(grid.shape[1]),
                "values": np.round(grid, 4).tolist(),
                "box": self.box_fractions(),
            },
        }
