"""The Streamlit parts of the page, so that :mod:`catdog.ui.app` reads like the page itself.

Each ``show_*`` function draws one part of the page. Words are in :mod:`catdog.ui.words`,
HTML/CSS/JavaScript in :mod:`catdog.ui.markup`, downloads in :mod:`catdog.ui.export`, and
every request to the API goes through :mod:`catdog.client`. Labels always come from the
served model (``/v1/model``), remembered for the session so the page keeps its words while
the API is away.

Session state: ``examples`` (example photos picked), ``shots`` (camera photos),
``results`` (answers by :attr:`~catdog.ui.photos.Picture.key`), ``looked`` (heatmaps, same
keys, fetched only when a person opens one), ``feedback`` (corrections sent, same keys),
``outage`` (the API was away during the last Classify), ``model`` (the last model card seen),
``uploader``/``camera`` (bumped to empty those boxes), ``classified`` (bumped by each
Classify, to bring the answers into view) and ``lang``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mimetypes
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import streamlit as st

from catdog.client import (
    APIError,
    Client,
    ExplainResult,
    ModelInfo,
    ServerStatus,
    UnexpectedResponse,
)
from catdog.prediction import Prediction
from catdog.ui import export, markup
from catdog.ui.outcomes import Result, outcome, tally
from catdog.ui.photos import PhotoError, Picture, prepare, thumbnail_uri
from catdog.ui.words import LANGUAGES, Words, language_of

log = logging.getLogger("catdog.ui")

EXAMPLES_DIR = Path(__file__).parent / "examples"
#: Seconds between two looks at the API's status (the status line is live, not from page load).
STATUS_EVERY = 5.0
#: What the page remembers (made anew for each session), and what "Clear all" empties.
SESSION_DEFAULTS: dict[str, Callable[[], Any]] = {
    "examples": list, "shots": dict, "results": dict, "looked": dict, "feedback": dict,
    "outage": lambda: None, "model": lambda: None, "uploader": int, "camera": int, "classified": int,
}  # fmt: skip
CLEARED = ("examples", "shots", "results", "looked", "feedback", "outage")


def start_session() -> None:
    for name, default in SESSION_DEFAULTS.items():
        if name not in st.session_state:
            st.session_state[name] = default()


# -- the model and the words ------------------------------------------------------------------


def model_info(client: Client) -> ModelInfo | None:
    """The served model's card, or the last one seen while the API is away (None if never)."""
    try:
        st.session_state.model = client.model()
    except APIError as exc:
        log.warning("could not read the model card: %s", exc.message)
    return st.session_state.model


def words_for(info: ModelInfo | None) -> Words:
    """The page's words: the language picked, else the browser's; the model's labels."""
    if "lang" not in st.session_state:
        st.session_state.lang = language_of(st.context.locale)
    labels = info.labels if info else ()
    other = info.raw.get("other_label") if info else None
    return Words(st.session_state.lang, labels, other if other in labels else None)


def show_language_switch(words: Words) -> None:
    """English or French, beside the title (the browser's language is the default)."""
    st.segmented_control(
        words("language"), list(LANGUAGES), format_func=LANGUAGES.__getitem__, key="lang",
        required=True, label_visibility="collapsed",
    )  # fmt: skip


def show_style(words: Words, upload_label: str) -> None:
    st.html(markup.STYLE + markup.uploader_style(words("upload_button")))
    script = markup.patch_script(words.lang, upload_label, words("upload_button"), words("about"))
    st.html(script, unsafe_allow_javascript=True)


# -- status -----------------------------------------------------------------------------------


def status_line(status: ServerStatus, words: Words) -> tuple[str, str]:
    """(kind, text) of the status line: "ready", "starting" or "offline", in plain words."""
    if status.ready:
        return "ready", words("status.ready")
    if status.reachable:
        return "starting", words("status.starting")
    return "offline", words("status.offline")


@st.fragment(run_every=STATUS_EVERY)
def show_status(client: Client, words: Words) -> None:
    """The live status line; it looks again every few seconds, without reloading the page.

    When the API is back after an outage, the whole page runs again by itself: the outage
    message goes away and the photos still waiting are classified (see :func:`recover`).
    """
    status = client.status()
    kind, text = status_line(status, words)
    if kind == "ready":
        outage = st.session_state.outage
        if (outage is not None and outage.offline) or not words.labels:
            recover()
            st.rerun(scope="app")
        st.caption(f"✅ {text}")
    elif kind == "starting":
        st.warning(text, icon="⏳")
    else:
        log.warning("the API at %s is not answering: %s", status.url, status.message)
        st.warning(text, icon="🔌")


def recover() -> None:
    """The API answers again: forget the outage and classify what is still waiting. (An answer
    that was not the catdog API's stays said until the next Classify: retrying it by itself
    every few seconds would only ask the wrong server again.)"""
    if st.session_state.outage is not None:
        st.session_state.outage = None
        st.session_state.classify_new = True


@st.fragment(run_every=STATUS_EVERY)
def show_about(client: Client, words: Words) -> None:
    """Sidebar: whether the classifier answers, which model it is, how accurate, what it knows."""
    st.header(words("about"))
    kind, text = status_line(client.status(), words)
    info = model_info(client) if kind == "ready" else None
    if info is None:
        st.warning(text if kind != "ready" else words("status.offline"), icon="🔌")
        return
    st.caption(f"✅ {text}")
    st.markdown(f"**{info.name}** · {words('version', version=info.version)}")
    if info.accuracy is None:
        st.caption(words("accuracy_unknown"))
    else:
        st.metric(words("accuracy"), words.percent(info.accuracy))
    st.caption(words.knows())


# -- photos -----------------------------------------------------------------------------------


def example_files() -> list[Path]:
    """The bundled example photos, by name."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


@st.cache_data(max_entries=256, show_spinner=False)
def prepared(name: str, data: bytes, content_type: str, limit_bytes: int, max_pixels: int) -> Picture:
    """:func:`catdog.ui.photos.prepare`, remembered: Streamlit reruns the page on every click."""
    return prepare(name, data, content_type, limit_bytes=limit_bytes, max_pixels=max_pixels)


def pictures_from(uploads: Iterable, *, limit_bytes: int, max_pixels: int) -> list[Picture]:
    """Uploaded files (Streamlit ``UploadedFile``) first, then camera photos, then examples."""
    files = [(f.name, f.getvalue(), f.type or "application/octet-stream") for f in uploads or []]
    files += [(name, data, "image/jpeg") for name, data in st.session_state.shots.items()]
    for name in st.session_state.examples:
        path = EXAMPLES_DIR / name
        files.append((path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or ""))
    return [prepared(*file, limit_bytes, max_pixels) for file in files]


@st.cache_data(max_entries=512, show_spinner=False)
def preview(data: bytes, side: int, max_pixels: int, crop: bool = False) -> str | None:
    """A ``data:`` URI of the photo at twice ``side`` (sharp on phones), or None if unreadable."""
    try:
        return thumbnail_uri(data, 2 * side, max_pixels=max_pixels, crop=crop)
    except PhotoError:
        return None


def pick_example(name: str) -> None:
    """Button callback: add an example photo and classify it without another click."""
    if name not in st.session_state.examples:
        st.session_state.examples.append(name)
    st.session_state.classify_new = True


def show_examples(words: Words, max_pixels: int) -> None:
    """One compact row of example photos, each with its button; a click classifies it."""
    files = example_files()
    st.caption(words("examples"))
    for column, path in zip(st.columns(len(files), gap="small"), files):
        uri = preview(path.read_bytes(), markup.EXAMPLE_SIDE, max_pixels, crop=True)
        column.markdown(
            markup.image_html(uri, markup.EXAMPLE_SIDE, words("example_alt", name=path.stem)),
            unsafe_allow_html=True,
        )
        column.button(
            path.stem, key=f"example-{path.name}", help=words("example_help", name=path.stem),
            on_click=pick_example, args=(path.name,), width="stretch",
        )  # fmt: skip


def show_camera(words: Words) -> None:
    """A photo taken with the phone's (or computer's) camera joins the photos and is classified
    at once. The camera opens only when asked (no permission prompt on page load)."""
    if not st.toggle(words("camera_toggle"), key="camera-on", help=None):
        return
    shot = st.camera_input(words("camera_label"), key=f"camera-{st.session_state.camera}")
    if shot is None:
        return
    data = shot.getvalue()
    name = f"camera-{hashlib.blake2b(data, digest_size=4).hexdigest()}.jpg"
    if name not in st.session_state.shots:
        st.session_state.shots[name] = data
        st.session_state.classify_new = True
        st.rerun()  # from the top: the photo joins the others and is classified


def record_refusals(pictures: Sequence[Picture], results: dict[str, Result]) -> None:
    """A photo the page cannot send (too large to shrink) fails at once, with its reason:
    listed and counted as soon as it is uploaded, not after a Classify that cannot help."""
    for picture in pictures:
        if picture.problem:
            results[picture.key] = APIError(picture.problem[0], code="not_sent", details={"message": picture.problem})


def clear_all() -> None:
    for name in CLEARED:
        st.session_state[name] = SESSION_DEFAULTS[name]()
    st.session_state.uploader += 1  # a new key: Streamlit shows an empty upload box
    st.session_state.camera += 1


def show_clear_all(words: Words, count: int) -> None:
    """ "Clear all", confirmed: it removes every photo and answer, so it asks first."""
    with st.popover(words("clear_all"), icon="✖️", disabled=not count):
        st.markdown(words("clear_question", n=count))
        st.button(words("clear_yes"), key="clear-yes", on_click=clear_all, type="primary")


# -- classifying ------------------------------------------------------------------------------


def classify(client: Client, pictures: Sequence[Picture], results: dict[str, Result], words: Words) -> None:
    """Send ``pictures`` to the API (batch calls of the server's size) and store each outcome in
    ``results`` as it comes, with a progress count. Photos the page refused are not sent.

    If the API is away, the outage is remembered (the message stays until the API is back,
    then goes by itself and the photos are sent again: :func:`show_status`).
    """
    todo = [p for p in pictures if not p.problem]
    if not todo:
        return
    info = st.session_state.model
    # Batch calls of the server's size, but at least four steps for a large set, so the
    # progress count moves (a batch of 8 or more keeps the per-call cost small).
    size = min(max(1, info.limits.max_batch) if info else 16, max(8, math.ceil(len(todo) / 4)))
    progress = st.progress(0.0, text=words("progress", done=0, total=len(todo))) if len(todo) > 1 else None
    try:
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            outcomes = client.classify_many([p.upload for p in chunk])
            results.update({p.key: result for p, result in zip(chunk, outcomes)})
            if progress is not None:
                done = start + len(chunk)
                progress.progress(done / len(todo), text=words("progress", done=done, total=len(todo)))
    except APIError as exc:
        log.warning("request to the API at %s failed: %s", client.url, exc.message)
        if exc.offline or isinstance(exc, UnexpectedResponse):
            st.session_state.outage = exc
        else:  # the API's own words (rate limit...): once
            st.error(words.error(exc), icon="🚫")
    else:
        st.session_state.outage = None
    finally:
        if progress is not None:
            progress.empty()


def show_outage(words: Words, url: str) -> None:
    """The API was away at the last Classify: said until the status line sees it back."""
    exc = st.session_state.outage
    if exc is None:
        return
    st.error(words("status.offline") if exc.offline else words("status.unexpected"), icon="🔌")
    with st.expander(words("details")):
        what = f"HTTP {exc.status}" if exc.status else words("no_answer")
        st.caption(words("address", url=url, what=what))


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """What every row needs: the API, the words, the model card and the pixel limit."""

    client: Client
    words: Words
    info: ModelInfo | None
    max_pixels: int


def show_results(page: Page, pictures: Sequence[Picture]) -> None:
    """Heading and live summary; counts that filter the rows, downloads and Clear all beside
    them; one row per photo; then a line on what the model gets wrong."""
    words, results = page.words, st.session_state.results
    counts = tally(pictures, results, words.labels)
    st.html(markup.summary_html(counts, words))
    # Row keys: place and photo, so the same photo given twice gets two rows and a row keeps
    # its state (heatmap open, correction) when a count filters the others away.
    shown = [(f"{i}-{p.key}", p) for i, p in enumerate(pictures)]
    with st.container(key="tools"):
        keys = list(counts)
        if len(keys) > 1:
            pick = st.pills(
                words("filter"), keys, key="filter", help=words("filter_help"),
                format_func=lambda key: f"{markup.icon(key)} {words.count(key, counts[key])}",
            )  # fmt: skip
            if pick in counts:
                shown = [(key, p) for key, p in shown if outcome(results.get(p.key)) == pick]
        records = export.result_records(pictures, results, words)
        nothing_yet = all(r["outcome"] == "pending" for r in records)
        csv_column, json_column = st.columns(2)
        csv_column.download_button(
            words("download_csv"), export.records_csv(records, words), file_name="catdog-results.csv",
            mime="text/csv", key="download-csv", icon="⬇️", on_click="ignore", width="stretch",
            disabled=nothing_yet,
        )  # fmt: skip
        json_column.download_button(
            words("download_json"), export.records_json(records), file_name="catdog-results.json",
            mime="application/json", key="download-json", icon="⬇️", on_click="ignore", width="stretch",
            disabled=nothing_yet,
        )  # fmt: skip
    with st.container(key="clear", horizontal_alignment="right"):
        show_clear_all(words, len(pictures))
    for key, picture in shown:
        show_row(page, key, picture)
    if any(key in counts for key in ("unsure", *page.words.labels)) and page.info:
        show_mistakes(page.info, words)


def show_mistakes(info: ModelInfo, words: Words) -> None:
    """What the model gets wrong: the "Known failures" of its model card, when it ships one."""
    card = model_card_failures(info.name)
    with st.expander(words("mistakes")):
        st.markdown(card or words("mistakes_missing", name=info.name))


@st.cache_data(show_spinner=False)
def model_card_failures(name: str) -> str | None:
    """The "Known failures" section of the bundled model card of ``name`` (None if none)."""
    try:
        text = (resources.files("catdog.models") / name / "MODEL_CARD.md").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError, ValueError):
        return None
    _, found, rest = text.partition("\n## Known failures")
    if not found:
        return None
    return rest.split("\n## ", 1)[0].strip()


@st.fragment
def show_row(page: Page, key: str, picture: Picture) -> None:
    """One result row; its heatmap toggle and its "Wrong answer?" control rerun only this row."""
    words = page.words
    result = st.session_state.results.get(picture.key)
    with st.container(key=f"row-{key}"):
        thumbnail = preview(picture.data, markup.ROW_SIDE, page.max_pixels)
        st.html(markup.row_html(picture, result, words, thumbnail))
        if not isinstance(result, Prediction):
            return
        with st.container(key=f"controls-{key}"):
            looked_column, feedback_column = st.columns(2)
        explainable = not page.info or page.info.raw.get("explain", True)
        if explainable:
            opened = looked_column.toggle(words("looked"), key=f"looked-{key}")
        else:
            opened = False
        with feedback_column:
            show_feedback(page, key, picture, result)
        if opened:
            show_looked(page, picture)


def show_looked(page: Page, picture: Picture) -> None:
    """Where the model looked, fetched the first time a person opens it (never before)."""
    words, looked = page.words, st.session_state.looked
    if picture.key not in looked:
        try:
            looked[picture.key] = page.client.explain(picture.upload, overlay=True)
        except APIError as exc:
            log.info("no heatmap for %s: %s", picture.name, exc.message)
            st.caption(words("looked_unavailable") if exc.code == "explain_unavailable"
                       else words("looked_failed", message=words.error(exc)))  # fmt: skip
            return
    answer: ExplainResult = looked[picture.key]
    uri = preview(answer.overlay_png, markup.CARD_SIDE, page.max_pixels) if answer.overlay_png else None
    st.html(markup.looked_html(uri, picture.name, answer.label, answer.box, words))


def show_feedback(page: Page, key: str, picture: Picture, result: Prediction) -> None:
    """ "Wrong answer?": the person picks what it really is (one of the model's labels), may
    share the photo, and gets a thank-you; sending again changes the correction."""
    words = page.words
    sent = st.session_state.feedback.get(picture.key)
    with st.popover(words("feedback"), icon="✍️", help=words("feedback_help", name=picture.name), width="stretch",
                    key=f"feedback-open-{key}"):
        with st.form(key=f"feedback-{key}", border=False):
            labels = list(words.labels) or list(result.probabilities)
            choice = st.radio(
                words("feedback_question"), labels, format_func=words.verdict,
                index=labels.index(sent["correct"]) if sent and sent["correct"] in labels else None,
                key=f"feedback-choice-{key}",
            )  # fmt: skip
            share = st.checkbox(words("feedback_share"), value=False, help=words("feedback_share_help"),
                                key=f"feedback-share-{key}")  # fmt: skip
            send = st.form_submit_button(words("feedback_send"), type="primary")
        if send and choice:
            send_feedback(page, picture, result, choice, share)
            sent = st.session_state.feedback.get(picture.key)
        if sent:
            thanks = "feedback_changed" if sent.get("changes", 0) > 1 else "feedback_thanks"
            st.success(words(thanks, what=words.verdict(sent["correct"])), icon="🙏")


def send_feedback(page: Page, picture: Picture, result: Prediction, correct: str, share: bool) -> None:
    """One correction to the API: the photo itself only if the person ticked "share", else its
    SHA-256. The same photo sent again updates its entry (the API's rule), never adds one."""
    words, info = page.words, page.info
    try:
        answer = page.client.feedback(
            answer=result.label, correct=correct,
            image=picture.data if share else None,
            sha256=None if share else hashlib.sha256(picture.data).hexdigest(),
            probabilities=dict(result.probabilities),
            model=info.name if info else None, version=info.version if info else None,
        )  # fmt: skip
    except APIError as exc:
        st.error(words("feedback_failed", message=words.error(exc)), icon="🚫")
        return
    before = st.session_state.feedback.get(picture.key) or {}
    st.session_state.feedback[picture.key] = {
        "correct": correct, "id": answer.get("id"),
        "changes": before.get("changes", 0) + 1,
    }  # fmt: skip


def scroll_to_results(nonce: int) -> None:
    st.html(markup.scroll_script(nonce), unsafe_allow_javascript=True)

