"""The catdog web page. Run it with ``catdog up`` (API + page) or
``streamlit run src/catdog/ui/app.py`` next to a running ``catdog serve``.

It reads top to bottom like the page: title and language, what it knows and whether it is
ready, photos (uploads, camera, examples), Classify, results. Photos go to the REST API at
``CATDOG_API_URL`` through :mod:`catdog.client`; this page never loads the model. The
parts are in :mod:`catdog.ui.widgets` (session state is described there).
"""

from __future__ import annotations

import math

import streamlit as st
from pydantic import ValidationError

from catdog.client import Client
from catdog.config import Settings
from catdog.ui import widgets
from catdog.ui.photos import ACCEPTED_TYPES

widgets.start_session()
try:
    settings = Settings()
except ValidationError as exc:
    st.error(widgets.words_for(None)("settings_invalid", error=exc))
    st.stop()
# No retries: the page answers at once (its live status line shows the API coming back).
client = Client(settings.api_url, api_key=settings.api_key, timeout=settings.api_timeout, retries=0)
info = widgets.model_info(client)
words = widgets.words_for(info)
upload_mb = info.limits.max_upload_mb if info else settings.max_upload_mb
max_pixels = info.limits.max_pixels if info and info.limits.max_pixels else settings.max_pixels
page = widgets.Page(client, words, info, max_pixels)

st.set_page_config(page_title=words("page_title"), page_icon="🐾", layout="centered")
widgets.show_style(words, words("upload_label"))
with st.container(key="head", horizontal=True, vertical_alignment="center"):
    st.title("🐱 catdog 🐶", anchor=False, width="stretch")
    widgets.show_language_switch(words)
st.markdown(words("intro", knows=words.knows()))
widgets.show_status(client, words)
with st.sidebar:
    widgets.show_about(client, words)

uploads = st.file_uploader(
    words("upload_label"), type=ACCEPTED_TYPES, accept_multiple_files=True,
    key=f"uploads-{st.session_state.uploader}", max_upload_size=math.ceil(settings.ui_max_upload_mb),
)  # fmt: skip
st.caption(words("formats", mb=f"{settings.ui_max_upload_mb:g}", api_mb=f"{upload_mb:g}"))
with st.container(key="examples"):
    widgets.show_examples(words, max_pixels)
pictures = widgets.pictures_from(uploads, limit_bytes=int(upload_mb * 1_000_000), max_pixels=max_pixels)
widgets.record_refusals(pictures, st.session_state.results)

classify_all = st.button(
    words("classify"), key="classify", type="primary", icon="🔍", disabled=not pictures, width="stretch"
)
widgets.show_camera(words)  # a photo taken is classified at once, without Classify
# Messages go into this slot, so the results keep their place on the page between runs.
with st.container():
    classified_now = classify_all or st.session_state.pop("classify_new", False)
    if classified_now:
        results = st.session_state.results
        todo = pictures if classify_all else [p for p in pictures if p.key not in results]
        widgets.classify(client, todo, results, words)
        st.session_state.classified += 1
    widgets.show_outage(words, client.url)

if pictures:
    widgets.show_results(page, pictures)
if classified_now:
    widgets.scroll_to_results(st.session_state.classified)
