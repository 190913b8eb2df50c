"""The page's HTML, CSS and JavaScript, as plain strings: no Streamlit, no network.

Every function takes the words (:class:`catdog.ui.words.Words`) to say things in, and
escapes whatever came from a person or the API.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from catdog.client import APIError
from catdog.prediction import Prediction
from catdog.ui.outcomes import Result, is_sure
from catdog.ui.photos import Picture
from catdog.ui.words import Words

#: Sides, in CSS pixels, of the example buttons' photos, the result rows' and the heatmap.
EXAMPLE_SIDE = 72
ROW_SIDE = 64
CARD_SIDE = 320

#: How to show a label the model may answer; a label without an entry shows 🐾.
LABEL_ICONS = {"cat": "🐱", "dog": "🐶", "other": "🚫"}
OUTCOME_ICONS = {"unsure": "🤔", "failed": "⚠️", "pending": "⏳"}
#: The heatmap's colours (matplotlib's "inferno", as the API's overlay draws them), low to high.
INFERNO = ("#000004", "#280b54", "#65156e", "#9f2a63", "#d44842", "#f57d15", "#fac127", "#fcffa4")


def icon(outcome: str) -> str:
    return LABEL_ICONS.get(outcome) or OUTCOME_ICONS.get(outcome) or "🐾"


def image_html(uri: str | None, side: int, alt: str) -> str:
    if uri is None:
        return (
            f'<span class="catdog-noimg" style="width:{side}px;height:{side}px" role="img" '
            f'aria-label="{html.escape(alt)}">🖼️</span>'
        )
    return (
        f'<img src="{uri}" alt="{html.escape(alt)}" width="{side}" height="{side}" '
        'style="object-fit:contain">'
    )


def bars_html(result: Prediction, words: Words) -> str:
    """One compact bar per label, most probable first, each with its number (the number, not
    the colour, is the fact)."""
    rows = []
    for label, p in words.ranked(result):
        rows.append(
            f'<li><span class="catdog-plabel"><span aria-hidden="true">{icon(label)}</span> '
            f"{html.escape(words.name(label) if label != words.other else words('neither_short'))}</span>"
            f'<span class="catdog-bar" aria-hidden="true"><span style="width:{p * 100:.1f}%">'
            f'</span></span><span class="catdog-pnum">{words.percent(p)}</span></li>'
        )
    return f'<ul class="catdog-probs" aria-label="{html.escape(words("bars"))}">{"".join(rows)}</ul>'


def verdict_html(result: Result | None, words: Words) -> str:
    """The row's answer in words that say what its numbers say; an icon is never the only sign."""
    if result is None:
        pending = html.escape(words("pending")).replace("**", "<b>", 1).replace("**", "</b>", 1)
        return f'<span aria-hidden="true">⏳</span> {pending}'
    if isinstance(result, APIError):
        return (
            f'<span aria-hidden="true">⚠️</span> <b>{html.escape(words("failed"))}:</b> '
            f"{html.escape(words.error(result))}"
        )
    if is_sure(result):
        return (
            f'<span aria-hidden="true">{icon(result.label)}</span> '
            f"<b>{html.escape(words.verdict(result.label))}</b> · "
            f"{html.escape(words('sure', p=words.percent(result.confidence)))}"
        )
    probably, maybe = words.hedge(result)
    said = html.escape(probably) + (f", {html.escape(maybe)}" if maybe else "")
    return f'<span aria-hidden="true">🤔</span> <b>{html.escape(words("not_sure"))}</b> — {said}'


def row_html(picture: Picture, result: Result | None, words: Words, thumbnail: str | None) -> str:
    """One compact result row: thumbnail, name, answer, its bars, and any note."""
    sure = isinstance(result, Prediction) and is_sure(result)
    alt = f"{picture.name}: {words.sentence(result, sure)}"
    parts = [
        '<div class="catdog-row">',
        image_html(thumbnail, ROW_SIDE, alt),
        '<div class="catdog-text">',
        f'<div class="catdog-name">{html.escape(picture.name)}</div>',
        f'<div class="catdog-verdict">{verdict_html(result, words)}</div>',
    ]
    if isinstance(result, Prediction):
        parts.append(bars_html(result, words))
        if not sure:
            parts.append(f'<p class="catdog-note">{html.escape(words("unsure_note"))}</p>')
    if picture.note:
        parts.append(f'<div class="catdog-note">{html.escape(words.say(picture.note))}</div>')
    parts.append("</div></div>")
    return "".join(parts)


def summary_html(counts: Mapping[str, int], words: Words) -> str:
    """The results' heading and a live summary of the non-zero counts (screen readers announce
    each new set of answers). With several counts, the page shows them as the buttons that
    filter the rows, so here they are for screen readers only; a single count is shown here."""
    total = sum(counts.values())
    items = ", ".join(html.escape(words.count(key, n)) for key, n in counts.items())
    hidden = ' class="catdog-sr"' if len(counts) > 1 else ""
    return (
        '<div id="catdog-results" tabindex="-1" aria-labelledby="catdog-results-title">'
        f'<h2 id="catdog-results-title" class="catdog-h2">{html.escape(words("results"))}</h2>'
        f'<p class="catdog-total" role="status" aria-live="polite"><b>{html.escape(words.photos(total))}</b>'
        f"<span{hidden}> {items}</span></p></div>"
    )


def looked_html(overlay: str | None, name: str, label: str, box: Sequence[float] | None, words: Words) -> str:
    """The photo with the heatmap on top (shown once, large), the model's square outlined,
    a colour scale, and what it means."""
    alt = words("looked_alt", name=name)
    square = ""
    if box:
        left, top, right, bottom = (max(0.0, min(1.0, float(v))) * 100 for v in box)
        square = (
            f'<span class="catdog-square" aria-hidden="true" style="left:{left:.2f}%;top:{top:.2f}%;'
            f'width:{right - left:.2f}%;height:{bottom - top:.2f}%"></span>'
        )
    gradient = ", ".join(INFERNO)
    return (
        '<div class="catdog-looked">'
        f'<div class="catdog-overlay">{image_html(overlay, CARD_SIDE, alt)}{square}</div>'
        f'<div class="catdog-scale" role="img" aria-label="{html.escape(words("scale"))}: '
        f'{html.escape(words("scale_low"))} → {html.escape(words("scale_high"))}">'
        f'<span>{html.escape(words("scale_low"))}</span>'
        f'<span class="catdog-gradient" style="background:linear-gradient(to right, {gradient})"></span>'
        f'<span>{html.escape(words("scale_high"))}</span></div>'
        f'<p class="catdog-note">{html.escape(words.looked(label))} '
        f"{html.escape(words('looked_square')) if box else ''}</p></div>"
    )


STYLE = f"""<style>
*:focus-visible {{ outline: 3px solid #1d4ed8 !important; outline-offset: 2px !important; }}
/* Rows that stay rows on a phone (Streamlit stacks columns below 640 px). */
.st-key-head {{ flex-wrap: nowrap !important; }}
.st-key-head h1 {{ white-space: nowrap; }}
@media (max-width: 640px) {{ .st-key-head h1 {{ font-size: 1.9rem; padding: 0.5rem 0; }} }}
.st-key-examples [data-testid="stHorizontalBlock"], .st-key-tools [data-testid="stHorizontalBlock"],
[class*="st-key-controls-"] [data-testid="stHorizontalBlock"] {{ flex-wrap: nowrap !important; gap: 0.5rem; }}
.st-key-examples [data-testid="stColumn"], .st-key-tools [data-testid="stColumn"],
[class*="st-key-controls-"] [data-testid="stColumn"] {{ min-width: 0 !important; flex: 1 1 0 !important;
  width: auto !important; }}
.st-key-examples [data-testid="stColumn"] {{ align-items: center; }}
.st-key-examples img {{ border-radius: 0.5rem; display: block; margin: 0 auto; }}
.st-key-examples button {{ padding: 0.1rem 0.4rem; min-height: 2rem; }}
#catdog-results h2.catdog-h2 {{ font-size: 1.3rem; margin: 0.25rem 0; padding: 0; }}
/* Streamlit fades captions to 60% (3.9:1 on white); small text needs at least 4.5:1. */
[data-testid="stCaptionContainer"] {{ opacity: 1 !important; color: #5f5e5c !important; }}
.catdog-total {{ margin: 0; }}
.catdog-row {{ display: flex; gap: 0.75rem; align-items: flex-start; padding: 0.4rem 0 0 0;
  border-top: 1px solid #d1d5db; }}
.catdog-row img, .catdog-noimg {{ border-radius: 0.4rem; background: #f0f2f6; flex: none; }}
.catdog-noimg {{ display: inline-flex; align-items: center; justify-content: center; }}
.catdog-text {{ min-width: 0; flex: 1; }}
.catdog-name {{ font-size: 0.85rem; color: #374151; overflow-wrap: anywhere; }}
.catdog-note {{ font-size: 0.85rem; color: #374151; margin: 0.2rem 0; }}
.catdog-probs {{ list-style: none; padding: 0; margin: 0.2rem 0 0 0; max-width: {CARD_SIDE}px;
  font-size: 0.8rem; }}
.catdog-probs li {{ display: flex; gap: 0.4rem; align-items: center; margin: 0 !important;
  line-height: 1.3; }}
.catdog-plabel {{ flex: 0 0 auto; width: 8rem; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }}
.catdog-pnum {{ flex: 0 0 3.6rem; text-align: right; }}
.catdog-bar {{ flex: 1; height: 0.5rem; background: #e5e7eb; border-radius: 0.25rem;
  overflow: hidden; min-width: 2rem; }}
.catdog-bar span {{ display: block; height: 100%; background: #2563eb; }}
@media (max-width: 640px) {{ .catdog-plabel {{ width: 6.5rem; }} }}
[class*="st-key-row-"] {{ gap: 0.25rem !important; }}
[class*="st-key-controls-"] button, [class*="st-key-controls-"] label {{ min-height: 2.75rem; }}
.catdog-overlay {{ position: relative; display: inline-block; max-width: 100%; line-height: 0; }}
.catdog-overlay img {{ max-width: 100%; height: auto; border-radius: 0.4rem; }}
.catdog-square {{ position: absolute; outline: 2px dashed #ffffff; box-shadow: 0 0 0 2px #111827; }}
.catdog-scale {{ display: flex; align-items: center; gap: 0.5rem; font-size: 0.8rem;
  max-width: {CARD_SIDE}px; margin: 0.3rem 0; color: #374151; }}
.catdog-gradient {{ flex: 1; height: 0.6rem; border-radius: 0.3rem; }}
/* Streamlit's selected pill / segment: red on pink is 3.9:1; a darker red reads at 7:1. */
[data-testid="stButtonGroup"] button[aria-checked="true"],
[data-testid="stButtonGroup"] button[aria-checked="true"] * {{ color: #8b1a26 !important; }}
.catdog-sr {{ position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }}
</style>"""


def uploader_style(button: str) -> str:
    """Streamlit's upload box in the page's language: its button reads ``button``, and its own
    English line of limits gives way to the page's caption, which says the same in words."""
    return f"""<style>
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p {{ font-size: 0; }}
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p::after {{
  content: {json.dumps(button)}; font-size: 0.875rem; }}
[data-testid="stFileUploaderDropzoneInstructions"] {{ display: none; }}
</style>"""


def scroll_script(nonce: int) -> str:
    """After Classify: bring the first answer into view and move focus to the results.

    ``nonce`` changes with each Classify, so the script is a new element and runs again.
    """
    return f"""<script data-nonce="{nonce}">
(() => {{
  let tries = 0;
  const go = () => {{
    const el = document.getElementById("catdog-results");
    if (!el) {{ if (tries++ < 100) setTimeout(go, 50); return; }}
    // The least scrolling that shows the first answer; focus goes to the results (for
    // screen readers and the keyboard) without a second jump.
    (document.querySelector(".catdog-row") || el).scrollIntoView({{block: "nearest"}});
    el.focus({{preventScroll: true}});
  }};
  go();
}})();
</script>"""


def patch_script(lang: str, upload_label: str, upload_button: str, about: str) -> str:
    """What Streamlit's own markup lacks, added in the browser and kept on every redraw: the
    page's language (``lang``), the upload box's file input named by its visible label and its
    button by the words it shows (:func:`uploader_style`), and the sidebar, a scrolling region,
    reachable and named for keyboard users."""
    return f"""<script>
(() => {{
  window.catdogPatchValues = {{lang: {json.dumps(lang)}, upload: {json.dumps(upload_label)},
                              button: {json.dumps(upload_button)}, about: {json.dumps(about)}}};
  const set = (selector, attributes) => document.querySelectorAll(selector).forEach(e => {{
    for (const [k, v] of Object.entries(attributes)) if (e.getAttribute(k) !== v) e.setAttribute(k, v);
  }});
  const apply = () => {{
    const v = window.catdogPatchValues;
    if (document.documentElement.lang !== v.lang) document.documentElement.lang = v.lang;
    set('[data-testid="stFileUploader"] input[type=file]', {{"aria-label": v.upload}});
    set('[data-testid="stFileUploaderDropzone"] button', {{"aria-label": v.button}});
    set('[data-testid="stSidebarContent"]', {{"tabindex": "0", "role": "region", "aria-label": v.about}});
  }};
  apply();
  if (!window.catdogPatch) {{
    window.catdogPatch = new MutationObserver(apply);
    window.catdogPatch.observe(document.body, {{subtree: true, childList: true}});
  }}
}})();
</script>"""
