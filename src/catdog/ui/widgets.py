"""Building blocks of the web page, so that :mod:`catdog.ui.app` reads like the page itself.

Each ``show_*`` function draws one part of the page; everything else is a plain
function (outcomes, counts, HTML, downloads) that tests call without a browser.
Labels always come from the served model (``/v1/model`` -> ``labels``); the
tables below only say how to *show* a label, and any label without an entry
still gets a plain rendering.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import mimetypes
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from catdog.ui.photos import PhotoError, Picture, prepare, thumbnail_uri

log = logging.getLogger("catdog.ui")

EXAMPLES_DIR = Path(__file__).parent / "examples"
#: Below this confidence a verdict is "not sure" (its own outcome, counted apart from labels).
UNSURE_BELOW = 0.7
#: Seconds between two looks at the API's status (the status line is live, not from page load).
STATUS_EVERY = 5.0
#: Sides, in CSS pixels, of the example buttons' photos, the result rows' and the large card's.
EXAMPLE_SIDE = 72
ROW_SIDE = 64
CARD_SIDE = 320

#: How to show a label the model may answer; a label without an entry shows as its name.
LABEL_ICONS = {"cat": "🐱", "dog": "🐶", "other": "🚫"}
#: The label a model answers for "none of the others" (named by the model's labels, not here).
CATCH_ALL = "other"
#: The outcomes that are not labels, in the order the summary lists them.
OUTCOME_ICONS = {"unsure": "🤔", "failed": "⚠️", "pending": "⏳"}
OUTCOME_NAMES = {"unsure": "not sure", "failed": "failed", "pending": "not classified yet"}

OFFLINE_TEXT = (
    "The classifier is not answering right now; it may be restarting. Please try again in a moment."
)

UNEXPECTED_TEXT = (
    "The classifier sent an answer this page does not understand. Please try again later."
)

Result = Prediction | APIError
#: Where the model looked, by picture key: the API's answer with its overlay PNG.
Looked = Mapping[str, ExplainResult]


# -- labels and outcomes ----------------------------------------------------------------------


def article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def verdict(label: str, labels: Sequence[str]) -> str:
    """What a label means, in words: "Cat", or for the catch-all "Neither a cat nor a dog"."""
    if label == CATCH_ALL:
        others = [article(x) for x in labels if x != CATCH_ALL]
        return "Neither " + " nor ".join(others) if len(others) > 1 else "Something else"
    return label.capitalize()


def icon(outcome: str) -> str:
    return LABEL_ICONS.get(outcome) or OUTCOME_ICONS.get(outcome) or "🐾"


def outcome(result: Result | None) -> str:
    """The one outcome a photo counts under: its label, "unsure", "failed" or "pending"."""
    if result is None:
        return "pending"
    if isinstance(result, APIError):
        return "failed"
    return "unsure" if result.confidence < UNSURE_BELOW else result.label


def tally(
    pictures: Sequence[Picture], results: Mapping[str, Result], labels: Sequence[str]
) -> dict[str, int]:
    """One count per outcome (every label, then unsure, failed, pending), adding up to the photos."""
    counts = dict.fromkeys([*labels, *OUTCOME_ICONS], 0)
    for picture in pictures:
        key = outcome(results.get(picture.key))
        counts[key] = counts.get(key, 0) + 1  # a label the model card did not list still counts
    return counts


def count_text(key: str, n: int, labels: Sequence[str]) -> str:
    """ "3 cats", "1 neither a cat nor a dog", "2 not sure"."""
    if key in OUTCOME_NAMES:
        return f"{n} {OUTCOME_NAMES[key]}"
    if key == CATCH_ALL:
        return f"{n} {verdict(key, labels).lower()}"
    return f"{n} {key}{'' if n == 1 else 's'}"


def knows_text(labels: Sequence[str]) -> str:
    """The "what this knows" note: which answers the model can give."""
    if not labels:
        return "The classifier says which animal it sees in each photo."
    if CATCH_ALL in labels:
        animals = [x for x in labels if x != CATCH_ALL]
        return (
            f"It knows {' and '.join(x + 's' for x in animals)}; for anything else it answers "
            f"“{verdict(CATCH_ALL, labels).lower()}”."
        )
    return (
        f"It knows only {' and '.join(x + 's' for x in labels)}: a photo of anything else "
        "still gets one of those answers, usually with low confidence."
    )


def percent(p: float) -> str:
    """97.3% (never a misleading 100.0% or 0.0%)."""
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def verdict_sentence(result: Result | None, labels: Sequence[str]) -> str:
    """The result in one sentence, for alt text and downloads."""
    if result is None:
        return "not classified yet"
    if isinstance(result, APIError):
        return "could not be classified"
    said = verdict(result.label, labels)
    said = said[0].lower() + said[1:] if result.label == CATCH_ALL else article(result.label)
    hedge = "not sure, maybe " if result.confidence < UNSURE_BELOW else ""
    return f"{hedge}{said}, {percent(result.confidence)} sure"


def looked_text(label: str, labels: Sequence[str]) -> str:
    """What the heatmap shows, in words; for the catch-all, that it is why the model said so."""
    if label == CATCH_ALL:
        why = f"what made the model answer “{verdict(label, labels).lower()}”"
    else:
        why = f"what the model looked at to say {article(label)}"
    return (
        f"The brighter the colour, the more that part of the photo counted: {why}. "
        "Uncoloured edges were outside the square the model looks at."
    )


# -- pictures ---------------------------------------------------------------------------------


def example_files() -> list[Path]:
    """The bundled example photos, by name."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


@st.cache_data(max_entries=256, show_spinner=False)
def prepared(
    name: str, data: bytes, content_type: str, limit_bytes: int, max_pixels: int
) -> Picture:
    """:func:`catdog.ui.photos.prepare`, remembered: Streamlit reruns the page on every click."""
    return prepare(name, data, content_type, limit_bytes=limit_bytes, max_pixels=max_pixels)


def pictures_from(
    uploads: Iterable, example_names: Iterable[str], *, limit_bytes: int, max_pixels: int
) -> list[Picture]:
    """Uploaded files (Streamlit ``UploadedFile``) first, then the chosen examples."""
    files = [(f.name, f.getvalue(), f.type or "application/octet-stream") for f in uploads or []]
    for name in example_names:
        path = EXAMPLES_DIR / name
        files.append((path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or ""))
    return [prepared(*file, limit_bytes, max_pixels) for file in files]


@st.cache_data(max_entries=256, show_spinner=False)
def preview(data: bytes, side: int, max_pixels: int, crop: bool = False) -> str | None:
    """A ``data:`` URI of the photo at twice ``side`` (sharp on phones), or None if unreadable."""
    try:
        return thumbnail_uri(data, 2 * side, max_pixels=max_pixels, crop=crop)
    except PhotoError:
        return None


# -- HTML -------------------------------------------------------------------------------------


def image_html(uri: str | None, side: int, alt: str) -> str:
    if uri is None:
        return (
            f'<span class="catdog-noimg" style="width:{side}px;height:{side}px" role="img" '
            f'aria-label="{html.escape(alt)} (no preview)">🖼️</span>'
        )
    return (
        f'<img src="{uri}" alt="{html.escape(alt)}" width="{side}" height="{side}" '
        'style="object-fit:contain">'
    )


def probabilities_html(result: Prediction, labels: Sequence[str]) -> str:
    """One bar per label with its number next to it (the number, not the colour, is the fact)."""
    order = [x for x in labels if x in result.probabilities] or list(result.probabilities)
    order += [x for x in result.probabilities if x not in order]
    rows = []
    for label in order:
        p = result.probabilities.get(label, 0.0)
        rows.append(
            f'<li><span class="catdog-plabel">{icon(label)} {html.escape(label)}</span>'
            f'<span class="catdog-bar" aria-hidden="true"><span style="width:{p * 100:.1f}%">'
            f"</span></span><span>{percent(p)}</span></li>"
        )
    return f'<ul class="catdog-probs" aria-label="Probability of each answer">{"".join(rows)}</ul>'


def verdict_html(result: Result | None, labels: Sequence[str]) -> str:
    """The row's answer in words; an icon is never the only sign of what happened."""
    if result is None:
        return '<span aria-hidden="true">⏳</span> Not classified yet: press <b>Classify</b>.'
    if isinstance(result, APIError):
        return f'<span aria-hidden="true">⚠️</span> <b>Failed:</b> {html.escape(result.message)}'
    said = (
        f'<span aria-hidden="true">{icon(result.label)}</span> '
        f"<b>{html.escape(verdict(result.label, labels))}</b>"
    )
    if result.confidence < UNSURE_BELOW:
        return (
            f'<span aria-hidden="true">🤔</span> <b>Not sure</b>: maybe {said.lower()} '
            f"({percent(result.confidence)})"
        )
    return f"{said} · {percent(result.confidence)} sure"


def looked_html(
    picture: Picture, looked: ExplainResult, labels: Sequence[str], max_pixels: int
) -> str:
    """The "Show where it looked" toggle: the photo with the heatmap on top, and what it means."""
    alt = f"{picture.name} with a heatmap of where the model looked"
    uri = preview(looked.overlay_png, CARD_SIDE, max_pixels) if looked.overlay_png else None
    return (
        f'<details class="catdog-looked"><summary>Show where it looked'
        f'<span class="catdog-sr"> in {html.escape(picture.name)}</span></summary>'
        f"{image_html(uri, CARD_SIDE, alt)}"
        f'<p class="catdog-note">{html.escape(looked_text(looked.label, labels))}</p></details>'
    )


def row_html(
    picture: Picture,
    result: Result | None,
    labels: Sequence[str],
    max_pixels: int,
    looked: ExplainResult | None = None,
) -> str:
    """One compact result row: thumbnail, name, answer; the large card opens on demand."""
    alt = f"{picture.name}: {verdict_sentence(result, labels)}"
    parts = [
        '<li class="catdog-row">',
        image_html(preview(picture.data, ROW_SIDE, max_pixels), ROW_SIDE, alt),
        '<div class="catdog-text">',
        f'<div class="catdog-name">{html.escape(picture.name)}</div>',
        f'<div class="catdog-verdict">{verdict_html(result, labels)}</div>',
    ]
    if picture.note:
        parts.append(f'<div class="catdog-note">{html.escape(picture.note)}</div>')
    if isinstance(result, Prediction) and looked is not None:
        parts.append(looked_html(picture, looked, labels, max_pixels))
    if isinstance(result, Prediction):
        unsure = ""
        if result.confidence < UNSURE_BELOW:
            unsure = (
                '<p class="catdog-note">Not sure about this one: a blurry photo, several '
                "animals, or something the model was not taught can confuse it.</p>"
            )
        parts += [
            f"<details><summary>Details of {html.escape(picture.name)}</summary>",
            image_html(preview(picture.data, CARD_SIDE, max_pixels), CARD_SIDE, alt),
            probabilities_html(result, labels),
            unsure,
            "</details>",
        ]
    parts.append("</div></li>")
    return "".join(parts)


def summary_html(counts: Mapping[str, int], labels: Sequence[str]) -> str:
    total = sum(counts.values())
    items = "".join(
        f'<li><span aria-hidden="true">{icon(key)}</span> {html.escape(count_text(key, n, labels))}'
        "</li>"
        for key, n in counts.items()
    )
    return (
        f'<p class="catdog-total"><b>{total} photo{"" if total == 1 else "s"}:</b></p>'
        f'<ul class="catdog-summary">{items}</ul>'
    )


def results_html(
    pictures: Sequence[Picture],
    results: Mapping[str, Result],
    labels: Sequence[str],
    max_pixels: int,
    looked: Looked | None = None,
) -> str:
    """The whole results block: a heading to move focus to, a live summary, the rows.

    The summary is a live region, so screen readers announce each new set of answers.
    One HTML block (no blank lines, which would end it inside Markdown).
    """
    counts = tally(pictures, results, labels)
    looked = looked or {}
    rows = "".join(
        row_html(p, results.get(p.key), labels, max_pixels, looked.get(p.key)) for p in pictures
    )
    return (
        '<section id="catdog-results" tabindex="-1" aria-labelledby="catdog-results-title">'
        '<h2 id="catdog-results-title" class="catdog-h2">Results</h2>'
        f'<div role="status" aria-live="polite">{summary_html(counts, labels)}</div>'
        f'<ol class="catdog-rows">{rows}</ol></section>'
    )


# -- downloads --------------------------------------------------------------------------------


def result_records(
    pictures: Sequence[Picture], results: Mapping[str, Result], labels: Sequence[str]
) -> list[dict[str, Any]]:
    """One record per photo, in page order: what a CSV or JSON download holds."""
    records = []
    for picture in pictures:
        result = results.get(picture.key)
        record: dict[str, Any] = {"file": picture.name, "outcome": outcome(result)}
        if isinstance(result, Prediction):
            record |= {
                "label": result.label,
                "confidence": round(result.confidence, 6),
                "probabilities": {k: round(v, 6) for k, v in result.probabilities.items()},
            }
        elif isinstance(result, APIError):
            record |= {"error": result.message, "error_code": result.code}
        if picture.note:
            record["note"] = picture.note
        records.append(record)
    return records


def records_csv(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """The records as CSV: one ``p_<label>`` column per label the model knows."""
    seen = [k for r in records for k in r.get("probabilities", {}) if k not in labels]
    probability_labels = list(labels) + list(dict.fromkeys(seen))
    columns = ["file", "outcome", "label", "confidence"]
    columns += [f"p_{x}" for x in probability_labels] + ["error", "error_code", "note"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        flat = dict(record)
        flat |= {f"p_{k}": v for k, v in record.get("probabilities", {}).items()}
        writer.writerow(flat)
    return out.getvalue()


# -- page parts -------------------------------------------------------------------------------


def show_style() -> None:
    """The page's CSS: compact example and result rows (also on phones), visible focus rings."""
    st.html(
        f"""<style>
*:focus-visible {{ outline: 3px solid #1d4ed8 !important; outline-offset: 2px !important; }}
/* Rows that stay rows on a phone (Streamlit stacks columns below 640 px). */
.st-key-examples [data-testid="stHorizontalBlock"], .st-key-actions [data-testid="stHorizontalBlock"],
.st-key-downloads [data-testid="stHorizontalBlock"] {{ flex-wrap: nowrap !important; gap: 0.5rem; }}
.st-key-examples [data-testid="stColumn"], .st-key-actions [data-testid="stColumn"],
.st-key-downloads [data-testid="stColumn"] {{ min-width: 0 !important; flex: 1 1 0 !important;
  width: auto !important; }}
.st-key-examples [data-testid="stColumn"] {{ align-items: center; }}
.st-key-examples img {{ border-radius: 0.5rem; display: block; margin: 0 auto; }}
.st-key-examples button {{ padding: 0.1rem 0.4rem; min-height: 2rem; }}
#catdog-results h2.catdog-h2 {{ font-size: 1.3rem; margin: 0.25rem 0; padding: 0; }}
/* Streamlit fades captions to 60% (3.9:1 on white); small text needs at least 4.5:1. */
[data-testid="stCaptionContainer"] {{ opacity: 1 !important; color: #5f5e5c !important; }}
.catdog-total {{ margin: 0; }}
.catdog-summary {{ display: flex; flex-wrap: wrap; gap: 0.25rem 1rem; list-style: none;
  padding: 0; margin: 0 0 0.5rem 0; }}
.catdog-summary li {{ margin: 0; }}
ol.catdog-rows {{ list-style: none; padding: 0; margin: 0 !important; }}
.catdog-row {{ display: flex; gap: 0.75rem; align-items: flex-start; padding: 0.4rem 0;
  border-top: 1px solid #d1d5db; margin: 0 !important; }}
.catdog-row img, .catdog-noimg {{ border-radius: 0.4rem; background: #f0f2f6; flex: none; }}
.catdog-noimg {{ display: inline-flex; align-items: center; justify-content: center; }}
.catdog-text {{ min-width: 0; flex: 1; }}
.catdog-name {{ font-size: 0.85rem; color: #374151; overflow-wrap: anywhere; }}
.catdog-note {{ font-size: 0.85rem; color: #374151; margin: 0.2rem 0; }}
.catdog-row details img {{ max-width: 100%; height: auto; margin-top: 0.4rem; }}
.catdog-row summary {{ cursor: pointer; font-size: 0.9rem; color: #1e40af; }}
.catdog-probs {{ list-style: none; padding: 0; margin: 0.4rem 0; max-width: {CARD_SIDE}px; }}
.catdog-probs li {{ display: flex; gap: 0.5rem; align-items: center; margin: 0.1rem 0; }}
.catdog-plabel {{ width: 5.5rem; }}
.catdog-bar {{ flex: 1; height: 0.6rem; background: #e5e7eb; border-radius: 0.3rem;
  overflow: hidden; }}
.catdog-bar span {{ display: block; height: 100%; background: #2563eb; }}
.catdog-looked img {{ max-width: 100%; height: auto; margin-top: 0.4rem; }}
.catdog-sr {{ position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }}
</style>"""
    )


def model_info(client: Client) -> ModelInfo | None:
    """The served model's card, or None while the API is away (the page still works)."""
    try:
        return client.model()
    except APIError as exc:
        log.warning("could not read the model card: %s", exc.message)
        return None


def status_line(status: ServerStatus) -> tuple[str, str]:
    """(kind, text) of the status line: "ready", "starting" or "offline", in plain words."""
    if status.ready:
        return "ready", "Classifier ready."
    if status.reachable:
        return "starting", "The classifier is starting up; try again in a moment."
    return "offline", OFFLINE_TEXT


@st.fragment(run_every=STATUS_EVERY)
def show_status(client: Client) -> None:
    """The live status line; it looks again every few seconds, without reloading the page."""
    status = client.status()
    kind, text = status_line(status)
    if kind == "ready":
        st.caption(f"✅ {text}")
    elif kind == "starting":
        st.warning(text, icon="⏳")
    else:
        log.warning("the API at %s is not answering: %s", status.url, status.message)
        st.warning(text, icon="🔌")


@st.fragment(run_every=STATUS_EVERY)
def show_about(client: Client) -> None:
    """Sidebar: whether the classifier answers, which model it is, how accurate, what it knows.

    Live like the status line: it follows the API going away and coming back.
    """
    st.header("About the classifier")
    kind, text = status_line(client.status())
    info = model_info(client) if kind == "ready" else None
    if info is None:
        st.warning(text if kind != "ready" else OFFLINE_TEXT, icon="🔌")
        return
    st.caption(f"✅ {text}")
    st.markdown(f"**{info.name}** · version {info.version}")
    if info.accuracy is None:
        st.caption("Accuracy: not measured yet.")
    else:
        st.metric("Accuracy on validation photos", f"{info.accuracy:.1%}")
    st.caption(knows_text(info.labels))


def show_examples(on_pick: Callable[[str], None], max_pixels: int) -> None:
    """One compact row of example photos, each with its button; ``on_pick(name)`` on a click."""
    files = example_files()
    st.caption("No photo at hand? Try an example:")
    for column, path in zip(st.columns(len(files), gap="small"), files):
        uri = preview(path.read_bytes(), EXAMPLE_SIDE, max_pixels, crop=True)
        column.markdown(
            image_html(uri, EXAMPLE_SIDE, f"Example photo: {path.stem}"), unsafe_allow_html=True
        )
        column.button(
            path.stem,
            key=f"example-{path.name}",
            help=f"Classify the example photo “{path.stem}”",
            on_click=on_pick,
            args=(path.name,),
            width="stretch",
        )


def record_refusals(pictures: Sequence[Picture], results: dict[str, Result]) -> None:
    """A photo the page cannot send (HEIC, too large to shrink) fails at once, with its reason:
    listed and counted as soon as it is uploaded, not after a Classify that cannot help."""
    for picture in pictures:
        if picture.problem:
            results[picture.key] = APIError(picture.problem, code="not_sent")


def explain(
    client: Client,
    pictures: Sequence[Picture],
    results: Mapping[str, Result],
    looked: dict[str, ExplainResult],
) -> None:
    """Ask where the model looked, for each photo that got an answer (one call each, with the
    overlay). A model that cannot show it, or any failure, leaves the row without the toggle:
    the answer itself stands."""
    for picture in pictures:
        if not isinstance(results.get(picture.key), Prediction):
            continue
        try:
            looked[picture.key] = client.explain(picture.upload, overlay=True)
        except APIError as exc:
            log.info("no heatmap for %s: %s", picture.name, exc.message)
            if exc.code == "explain_unavailable" or exc.offline:
                return  # the same for every other photo: do not ask again


def classify(client: Client, pictures: Sequence[Picture], results: dict[str, Result]) -> None:
    """Send ``pictures`` to the API and store each outcome in ``results``.

    Photos the page refused (see :func:`record_refusals`) are not sent. If the API is away,
    the page says so in plain words (details in an expander and the log).
    """
    todo = [p for p in pictures if not p.problem]
    if not todo:
        return
    with st.spinner(f"Looking at {len(todo)} photo{'s' if len(todo) > 1 else ''}..."):
        try:
            outcomes = client.classify_many([p.upload for p in todo])
        except APIError as exc:
            show_api_error(exc, client.url)
            return
    results.update({p.key: result for p, result in zip(todo, outcomes)})


def show_api_error(exc: APIError, url: str) -> None:
    """An error about the API, not a photo. The developer's version goes to the log."""
    log.warning("request to the API at %s failed: %s", url, exc.message)
    if not isinstance(exc, UnexpectedResponse) and not exc.offline:  # the API's own words (rate limit...)
        st.error(exc.message, icon="🚫")
        return
    st.error(OFFLINE_TEXT if exc.offline else UNEXPECTED_TEXT, icon="🔌")
    with st.expander("Technical details"):
        what = f"HTTP {exc.status}" if exc.status else "no answer"
        st.caption(f"Classifier service address: {url} ({what}).")


def show_results(
    pictures: Sequence[Picture],
    results: Mapping[str, Result],
    labels: Sequence[str],
    max_pixels: int,
    looked: Looked | None = None,
) -> None:
    """Summary, compact rows and downloads for the photos on the page."""
    st.markdown(results_html(pictures, results, labels, max_pixels, looked), unsafe_allow_html=True)
    records = result_records(pictures, results, labels)
    if not any(r["outcome"] != "pending" for r in records):
        return
    with st.container(key="downloads"):
        csv_column, json_column = st.columns(2)
    csv_column.download_button(
        "Download CSV",
        records_csv(records, labels),
        file_name="catdog-results.csv",
        mime="text/csv",
        key="download-csv",
        icon="⬇️",
        on_click="ignore",
    )
    json_column.download_button(
        "Download JSON",
        json.dumps(records, indent=2, ensure_ascii=False),
        file_name="catdog-results.json",
        mime="application/json",
        key="download-json",
        icon="⬇️",
        on_click="ignore",
    )


def scroll_to_results(nonce: int) -> None:
    """After Classify: bring the first answer into view and move focus to the results.

    ``nonce`` changes with each Classify, so the script is a new element and runs again.
    """
    st.html(
        f"""<script data-nonce="{nonce}">
(() => {{
  let tries = 0;
  const go = () => {{
    const el = document.getElementById("catdog-results");
    if (!el) {{ if (tries++ < 100) setTimeout(go, 50); return; }}
    // The least scrolling that shows the first answer; focus goes to the results (for
    // screen readers and the keyboard) without a second jump.
    (el.querySelector(".catdog-row") || el).scrollIntoView({{block: "nearest"}});
    el.focus({{preventScroll: true}});
  }};
  go();
}})();
</script>""",
        unsafe_allow_javascript=True,
    )


def patch_accessibility(upload_label: str) -> None:
    """What Streamlit's own markup lacks, added in the browser and kept on every redraw.

    The upload box's file input gets the name of its visible label (Streamlit names it
    only "file upload"), and the sidebar, a scrolling region, becomes reachable and
    named for keyboard users.
    """
    st.html(
        f"""<script>
(() => {{
  const name = {json.dumps(upload_label)};
  const set = (selector, attributes) => document.querySelectorAll(selector).forEach(e => {{
    for (const [k, v] of Object.entries(attributes)) if (e.getAttribute(k) !== v) e.setAttribute(k, v);
  }});
  const apply = () => {{
    set('[data-testid="stFileUploader"] input[type=file]', {{"aria-label": name}});
    set('[data-testid="stSidebarContent"]',
        {{"tabindex": "0", "role": "region", "aria-label": "About the classifier"}});
  }};
  apply();
  if (!window.catdogPatch) {{
    window.catdogPatch = new MutationObserver(apply);
    window.catdogPatch.observe(document.body, {{subtree: true, childList: true}});
  }}
}})();
</script>""",
        unsafe_allow_javascript=True,
    )
