"""Building blocks of the web page, so that :mod:`catdog.ui.app` reads like the page itself.

Each ``show_*`` function draws one part of the page; the rest are plain helpers
(pictures, thumbnails, formatting) that tests can call without a browser.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image, ImageOps

from catdog.client import APIError, Client
from catdog.model.decode import decode_image
from catdog.model.errors import ImageError
from catdog.prediction import Prediction

EXAMPLES_DIR = Path(__file__).parent / "examples"
#: Side of the square each photo is shown in (fitted and padded, never stretched).
THUMBNAIL = 200
#: Below this confidence the page adds a gentle "not sure" note.
UNSURE_BELOW = 0.7

LABEL_ICONS = {"cat": "🐱", "dog": "🐶"}
LABEL_COLOURS = {"cat": "#f59e0b", "dog": "#3b82f6"}
PAD_COLOUR = (240, 242, 246)  # Streamlit's light grey, so the padding reads as a frame

Result = Prediction | APIError


@dataclass(frozen=True)
class Picture:
    """One photo on the page (uploaded or an example); ``key`` names its result in the session."""

    name: str
    data: bytes
    content_type: str

    @property
    def key(self) -> str:
        return f"{self.name}:{hashlib.blake2b(self.data, digest_size=8).hexdigest()}"

    @property
    def upload(self) -> tuple[str, bytes]:
        return self.name, self.data


# -- pictures ---------------------------------------------------------------------------------


def example_files() -> list[Path]:
    """The bundled example photos, by name."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


def load_example(name: str) -> Picture:
    path = EXAMPLES_DIR / name
    return Picture(path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/jpeg")


def pictures_from(uploads: Iterable, example_names: Iterable[str]) -> list[Picture]:
    """Uploaded files (Streamlit ``UploadedFile``) first, then the chosen examples."""
    pictures = [
        Picture(f.name, f.getvalue(), f.type or "application/octet-stream") for f in uploads or []
    ]
    return pictures + [load_example(name) for name in example_names]


def thumbnail(data: bytes, side: int = THUMBNAIL, *, crop: bool = False) -> Image.Image:
    """The photo in a ``side`` x ``side`` square, upright; raises ImageError.

    By default the whole photo is fitted and padded (never stretched, never cut);
    ``crop=True`` fills the square by cutting the edges (for the example buttons).
    Decoding goes through catdog's bounded decoder (pixel limit, EXIF rotation, draft
    mode), so a hostile upload cannot hurt the page any more than the API.
    """
    image = decode_image(data, min_side=side)
    if crop:
        return ImageOps.fit(image, (side, side), method=Image.Resampling.LANCZOS)
    return ImageOps.pad(image, (side, side), method=Image.Resampling.LANCZOS, color=PAD_COLOUR)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_thumbnail(data: bytes, side: int = THUMBNAIL, *, crop: bool = False) -> Image.Image:
    """:func:`thumbnail`, remembered: Streamlit reruns the page on every click."""
    return thumbnail(data, side, crop=crop)


# -- formatting -------------------------------------------------------------------------------


def percent(p: float) -> str:
    """97.3% (never a misleading 100.0% or 0.0%)."""
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def label_text(label: str) -> str:
    return f"{LABEL_ICONS.get(label, '🐾')} {label.capitalize()}"


def probability_bar(probabilities: Mapping[str, float]) -> str:
    """HTML for one bar split into P(cat) and P(dog), with both numbers under it."""
    segments, legend = [], []
    for label, p in probabilities.items():
        colour = LABEL_COLOURS.get(label, "#9ca3af")
        title = html.escape(f"P({label}) = {percent(p)}")
        segments.append(
            f'<div title="{title}" style="width:{p * 100:.2f}%;background:{colour}"></div>'
        )
        legend.append(
            f"<span>{LABEL_ICONS.get(label, '')} P({html.escape(label)}) {percent(p)}</span>"
        )
    return (
        '<div style="display:flex;height:10px;border-radius:5px;overflow:hidden;background:#e5e7eb;'
        f'margin:0.25rem 0">{"".join(segments)}</div>'
        '<div style="display:flex;justify-content:space-between;font-size:0.85rem;color:#6b7280">'
        f"{''.join(legend)}</div>"
    )


# -- page parts -------------------------------------------------------------------------------


def show_api_status(client: Client) -> None:
    """Sidebar: is the API up, and which model does it serve?"""
    st.header("API")
    status = client.status()
    if status.ready:
        st.success(f"Ready at {status.url}", icon="✅")
    elif status.reachable:
        st.warning(f"Not ready: {status.message}", icon="⏳")
    else:
        st.error(status.message, icon="🔌")
        return
    st.header("Model")
    try:
        info = client.model()
    except APIError as exc:
        if exc.status in (404, 503):
            st.caption("The API does not describe its model yet.")
        else:
            st.error(exc.message)
        return
    st.markdown(f"**{info.name}** · version {info.version}")
    if info.accuracy is None:
        st.caption("Accuracy: not measured yet.")
    else:
        st.metric("Accuracy on validation photos", f"{info.accuracy:.1%}")
    st.caption(f"Knows {len(info.labels)} classes only: {', '.join(info.labels)}.")


def show_examples(on_pick) -> None:
    """One button per bundled example; ``on_pick(name)`` runs when one is clicked."""
    files = example_files()
    for column, path in zip(st.columns(len(files)), files):
        column.image(cached_thumbnail(path.read_bytes(), crop=True), width="stretch")
        column.button(
            f"Try {path.stem}",
            key=f"example-{path.name}",
            on_click=on_pick,
            args=(path.name,),
            width="stretch",
        )


def classify(client: Client, pictures: Sequence[Picture], results: dict[str, Result]) -> None:
    """Send ``pictures`` to the API and store each outcome in ``results``; errors go on the page."""
    if not pictures:
        return
    with st.spinner(
        f"Asking the API about {len(pictures)} photo{'s' if len(pictures) > 1 else ''}..."
    ):
        try:
            outcomes = client.classify_many([p.upload for p in pictures])
        except APIError as exc:
            st.error(exc.message, icon="🚫")
            return
    results.update({p.key: outcome for p, outcome in zip(pictures, outcomes)})


def show_summary(pictures: Sequence[Picture], results: Mapping[str, Result]) -> None:
    """n cats, n dogs (and how many are unsure or failed) over the pictures classified so far."""
    outcomes = [results[p.key] for p in pictures if p.key in results]
    if len(pictures) < 2 or not outcomes:
        return
    labels = Counter(o.label for o in outcomes if isinstance(o, Prediction))
    unsure = sum(
        1 for o in outcomes if isinstance(o, Prediction) and o.confidence < UNSURE_BELOW
    )
    failed = sum(1 for o in outcomes if isinstance(o, APIError))
    cells = [("🐱 Cats", labels.get("cat", 0)), ("🐶 Dogs", labels.get("dog", 0))]
    cells += [("🤔 Not sure", unsure)] if unsure else []
    cells += [("⚠️ Failed", failed)] if failed else []
    for column, (name, count) in zip(st.columns(len(cells)), cells):
        column.metric(name, count, border=True)


def show_grid(pictures: Sequence[Picture], results: Mapping[str, Result]) -> None:
    """One card per picture: the photo on the left, what the API said on the right."""
    for picture in pictures:
        with st.container(border=True):
            show_card(picture, results.get(picture.key))


def show_card(picture: Picture, result: Result | None) -> None:
    left, right = st.columns([1, 2], gap="medium", vertical_alignment="center")
    with left:
        try:
            st.image(cached_thumbnail(picture.data), caption=picture.name, width=THUMBNAIL)
        except ImageError as exc:
            st.caption(f"No preview for {picture.name}: {exc.message}")
    with right:
        if result is None:
            st.caption("Not classified yet: press **Classify**.")
        elif isinstance(result, APIError):
            st.error(result.message, icon="⚠️")
        else:
            show_prediction(result)


def show_prediction(result: Prediction) -> None:
    st.subheader(label_text(result.label), anchor=False)
    st.markdown(f"**{percent(result.confidence)}** confident")
    st.markdown(probability_bar(result.probabilities), unsafe_allow_html=True)
    if result.confidence < UNSURE_BELOW:
        st.caption(
            "🤔 Not sure about this one. The model only knows cats and dogs, so a blurry "
            "photo, both animals, or something else entirely can confuse it."
        )
