"""The catdog web page. Run it with ``catdog up`` (API + page) or
``streamlit run src/catdog/ui/app.py`` next to a running ``catdog serve``.

It reads top to bottom like the page: title, sidebar, inputs, Classify, results.
Photos go to the REST API at ``CATDOG_API_URL``; this page never loads the model.
Session state: ``examples`` (example photos the user picked) and ``results``
(API answers keyed by :attr:`~catdog.ui.widgets.Picture.key`).
"""

from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from catdog.client import Client
from catdog.config import Settings
from catdog.ui import widgets


def pick_example(name: str) -> None:
    """Button callback: add an example photo and classify it without another click."""
    if name not in st.session_state.examples:
        st.session_state.examples.append(name)
    st.session_state.classify_new = True


def clear_examples() -> None:
    st.session_state.examples = []


st.set_page_config(page_title="catdog: cat or dog?", page_icon="🐾", layout="centered")
try:
    settings = Settings()
except ValidationError as exc:
    st.error(f"The catdog settings (CATDOG_* environment variables) are not valid:\n\n{exc}")
    st.stop()
client = Client(settings.api_url, api_key=settings.api_key, timeout=settings.api_timeout)
st.session_state.setdefault("examples", [])
results = st.session_state.setdefault("results", {})

st.title("🐱 catdog 🐶", anchor=False)
st.markdown(
    "Is it a cat or a dog? Drop one or more photos below and press **Classify**: "
    "a neural network behind the catdog API looks at each one and says which animal it sees, "
    "and how sure it is."
)

with st.sidebar:
    widgets.show_api_status(client)

uploads = st.file_uploader(
    "Photos of cats or dogs (JPG or PNG)", type=["jpg", "jpeg", "png"], accept_multiple_files=True
)
with st.expander("No photo at hand? Try an example", expanded=not uploads):
    widgets.show_examples(on_pick=pick_example)
    if st.session_state.examples:
        st.button(
            "Remove the examples",
            key="clear-examples",
            type="tertiary",
            icon="✖️",
            on_click=clear_examples,
        )
pictures = widgets.pictures_from(uploads, st.session_state.examples)

classify_all = st.button(
    "Classify", key="classify", type="primary", icon="🔍", disabled=not pictures
)
if classify_all:
    widgets.classify(client, pictures, results)
elif st.session_state.pop("classify_new", False):
    widgets.classify(client, [p for p in pictures if p.key not in results], results)

widgets.show_summary(pictures, results)
widgets.show_grid(pictures, results)
