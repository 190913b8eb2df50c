"""The catdog web page. Run it with ``catdog up`` (API + page) or
``streamlit run src/catdog/ui/app.py`` next to a running ``catdog serve``.

It reads top to bottom like the page: title, what it knows and whether it is ready,
photos (uploads and examples), Classify / Clear all, results. Photos go to the REST
API at ``CATDOG_API_URL``; this page never loads the model. Session state:
``examples`` (example photos picked), ``results`` (answers by
:attr:`~catdog.ui.photos.Picture.key`), ``looked`` (where the model looked, same keys), ``uploader`` (bumped to empty the upload box)
and ``classified`` (bumped by each Classify, to bring the answers into view).
"""

from __future__ import annotations

import math

import streamlit as st
from pydantic import ValidationError

from catdog.client import Client
from catdog.config import Settings
from catdog.ui import widgets
from catdog.ui.photos import ACCEPTED_TYPES, FORMATS_TEXT

UPLOAD_LABEL = "Photos to classify"


def pick_example(name: str) -> None:
    """Button callback: add an example photo and classify it without another click."""
    if name not in st.session_state.examples:
        st.session_state.examples.append(name)
    st.session_state.classify_new = True


def clear_all() -> None:
    st.session_state.examples = []
    st.session_state.results = {}
    st.session_state.looked = {}
    st.session_state.uploader += 1  # a new key: Streamlit shows an empty upload box


st.set_page_config(page_title="catdog: cat or dog?", page_icon="🐾", layout="centered")
try:
    settings = Settings()
except ValidationError as exc:
    st.error(f"The catdog settings (CATDOG_* environment variables) are not valid:\n\n{exc}")
    st.stop()
# No retries: the page answers at once (its live status line shows the API coming back).
client = Client(settings.api_url, api_key=settings.api_key, timeout=settings.api_timeout, retries=0)
for name, default in (("examples", []), ("results", {}), ("looked", {}), ("uploader", 0), ("classified", 0)):
    st.session_state.setdefault(name, default)
results = st.session_state.results
info = widgets.model_info(client)
labels = info.labels if info else ()
upload_mb = info.limits.max_upload_mb if info else settings.max_upload_mb
max_pixels = info.limits.max_pixels if info and info.limits.max_pixels else settings.max_pixels

widgets.show_style()
st.title("🐱 catdog 🐶", anchor=False)
st.markdown(
    "Drop photos below (or try an example) and press **Classify**: a neural network says "
    f"what it sees in each one, and how sure it is. {widgets.knows_text(labels)}"
)
widgets.show_status(client)
with st.sidebar:
    widgets.show_about(client)

uploads = st.file_uploader(
    UPLOAD_LABEL,
    type=ACCEPTED_TYPES,
    accept_multiple_files=True,
    key=f"uploads-{st.session_state.uploader}",
    max_upload_size=math.ceil(settings.ui_max_upload_mb),
)
st.caption(
    f"{FORMATS_TEXT}, up to {settings.ui_max_upload_mb:g} MB each; larger than "
    f"{upload_mb:g} MB is shrunk before sending. HEIC and AVIF (iPhone's default) cannot "
    "be read: choose “Most Compatible” in the camera settings or share as JPEG."
)
widgets.patch_accessibility(UPLOAD_LABEL)
with st.container(key="examples"):
    widgets.show_examples(on_pick=pick_example, max_pixels=max_pixels)
pictures = widgets.pictures_from(
    uploads,
    st.session_state.examples,
    limit_bytes=int(upload_mb * 1_000_000),
    max_pixels=max_pixels,
)
widgets.record_refusals(pictures, results)

with st.container(key="actions"):
    classify_column, clear_column = st.columns(2)
classify_all = classify_column.button(
    "Classify", key="classify", type="primary", icon="🔍", disabled=not pictures, width="stretch"
)
clear_column.button(
    "Clear all", key="clear-all", icon="✖️", on_click=clear_all, disabled=not pictures,
    width="stretch",
)  # fmt: skip
# Messages go into this slot, so the results keep their place on the page between runs.
notices = st.container()
classified_now = classify_all or st.session_state.pop("classify_new", False)
if classified_now:
    todo = pictures if classify_all else [p for p in pictures if p.key not in results]
    with notices:
        widgets.classify(client, todo, results)
        with st.spinner("Working out where it looked..."):
            widgets.explain(client, todo, results, st.session_state.looked)
    st.session_state.classified += 1

if pictures:
    widgets.show_results(pictures, results, labels, max_pixels, st.session_state.looked)
if classified_now:
    widgets.scroll_to_results(st.session_state.classified)
