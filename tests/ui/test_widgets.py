"""The page's plain helpers: outcomes and counts, words for any label set, HTML, downloads."""

from __future__ import annotations

import csv
import io

import pytest

from catdog.client import APIError, ServerStatus
from catdog.prediction import Prediction
from catdog.ui.photos import Picture
from catdog.ui.widgets import (
    UNSURE_BELOW,
    count_text,
    example_files,
    knows_text,
    outcome,
    percent,
    records_csv,
    result_records,
    results_html,
    status_line,
    tally,
    verdict,
    verdict_sentence,
)

THREE = ("cat", "dog", "other")
MP = 40_000_000


def said(label: str, confidence: float, labels=THREE) -> Prediction:
    rest = (1 - confidence) / (len(labels) - 1)
    probabilities = {x: confidence if x == label else rest for x in labels}
    return Prediction(label, confidence, probabilities)


def picture(name: str) -> Picture:
    return Picture(name, name.encode(), "image/jpeg", len(name))


def test_verdicts_come_from_the_models_labels():
    assert verdict("cat", THREE) == "Cat"
    assert verdict("other", THREE) == "Neither a cat nor a dog"
    assert verdict("other", ("owl", "eagle", "other")) == "Neither an owl nor an eagle"
    assert verdict("bird", ("bird", "fish")) == "Bird"


def test_each_photo_has_exactly_one_outcome():
    assert outcome(None) == "pending"
    assert outcome(APIError("nope", code="x")) == "failed"
    assert outcome(said("dog", 0.9)) == "dog"
    assert outcome(said("dog", UNSURE_BELOW - 0.01)) == "unsure"  # not also a dog
    assert outcome(said("other", 0.95)) == "other"


def test_the_summary_counts_add_up_to_the_number_of_photos():
    pictures = [picture(f"{i}.jpg") for i in range(7)]
    answers = [said("cat", 0.99), said("dog", 0.62), said("other", 0.9), APIError("bad", code="x"),
               said("cat", 0.8), APIError("heic", code="x")]  # fmt: skip
    results = {p.key: a for p, a in zip(pictures, answers)}  # the 7th is not classified yet
    counts = tally(pictures, results, THREE)
    assert counts == {"cat": 2, "dog": 0, "other": 1, "unsure": 1, "failed": 2, "pending": 1}
    assert sum(counts.values()) == len(pictures)


def test_a_label_the_model_card_did_not_list_is_still_counted():
    p = picture("x.jpg")
    assert tally([p], {p.key: said("fox", 0.9, ("fox", "cat"))}, ())["fox"] == 1


def test_count_words():
    assert count_text("cat", 1, THREE) == "1 cat"
    assert count_text("dog", 3, THREE) == "3 dogs"
    assert count_text("other", 2, THREE) == "2 neither a cat nor a dog"
    assert count_text("unsure", 1, THREE) == "1 not sure"
    assert count_text("pending", 4, THREE) == "4 not classified yet"


def test_what_the_classifier_knows_follows_its_labels():
    assert "for anything else it answers “neither a cat nor a dog”" in knows_text(THREE)
    assert knows_text(("cat", "dog")).startswith("It knows only cats and dogs")
    assert "which animal" in knows_text(())


@pytest.mark.parametrize(
    "p, text", [(0.973, "97.3%"), (0.9999, ">99.9%"), (0.00004, "<0.1%"), (0.5, "50.0%")]
)
def test_percent(p, text):
    assert percent(p) == text


def test_alt_text_says_what_the_photo_is_and_the_verdict(cat_bytes):
    assert verdict_sentence(said("cat", 0.973), THREE) == "a cat, 97.3% sure"
    assert verdict_sentence(said("other", 0.9), THREE) == "neither a cat nor a dog, 90.0% sure"
    assert verdict_sentence(said("dog", 0.6), THREE) == "not sure, maybe a dog, 60.0% sure"
    assert verdict_sentence(None, THREE) == "not classified yet"
    photo, broken = Picture("tom.jpg", cat_bytes, "image/jpeg", len(cat_bytes)), picture("x.jpg")
    results = {photo.key: said("cat", 0.973)}
    html = results_html([photo, broken], results, THREE, MP)
    assert html.count('alt="tom.jpg: a cat, 97.3% sure"') == 2  # the row and the large card
    assert 'role="img" aria-label="x.jpg: not classified yet (no preview)"' in html
    assert html.count("<img ") == 2


def test_results_html_is_escaped_and_has_a_live_summary():
    evil = picture("<script>alert(1)</script>.jpg")
    failed = APIError("<b>bad</b> file", code="x")
    html = results_html([evil], {evil.key: failed}, THREE, MP)
    assert "<script>" not in html and "&lt;b&gt;bad&lt;/b&gt; file" in html
    assert '<div role="status" aria-live="polite">' in html
    assert "<b>Failed:</b>" in html and "1 failed" in html
    assert "\n\n" not in html  # a blank line would end the HTML block inside Markdown


def test_every_probability_is_shown_with_its_number():
    p = picture("tom.jpg")
    html = results_html([p], {p.key: said("cat", 0.8)}, THREE, MP)
    for label, number in (("cat", "80.0%"), ("dog", "10.0%"), ("other", "10.0%")):
        assert f"{label}</span>" in html and f"<span>{number}</span>" in html


def test_downloads_have_one_row_per_photo_and_a_column_per_label():
    pictures = [picture("a.jpg"), picture("b.pdf"), picture("c.jpg")]
    results = {pictures[0].key: said("other", 0.9), pictures[1].key: APIError("a PDF", code="x")}
    records = result_records(pictures, results, THREE)
    assert [r["outcome"] for r in records] == ["other", "failed", "pending"]
    rows = list(csv.DictReader(io.StringIO(records_csv(records, THREE))))
    assert [r["file"] for r in rows] == ["a.jpg", "b.pdf", "c.jpg"]
    assert {"p_cat", "p_dog", "p_other"} <= set(rows[0])
    assert float(rows[0]["p_other"]) == pytest.approx(0.9)
    assert rows[1]["error"] == "a PDF" and rows[1]["error_code"] == "x"


def test_status_line_is_plain_words():
    assert status_line(ServerStatus("u", True, True, "ready"))[0] == "ready"
    kind, text = status_line(ServerStatus("u", False, False, "start it with `catdog serve`"))
    assert kind == "offline" and "restarting" in text and "catdog serve" not in text
    assert status_line(ServerStatus("u", False, True, "not ready"))[0] == "starting"


def test_examples_are_small_real_photos():
    files = example_files()
    assert 2 <= len(files) <= 4
    assert all(path.stat().st_size < 40_000 for path in files)


def test_where_it_looked_is_a_toggle_beside_each_answer_with_words(cat_bytes, classifier):
    from PIL import Image

    from catdog.client import ExplainResult
    from catdog.ui.widgets import looked_text

    photo = Picture("cat & co.jpg", cat_bytes, "image/jpeg", len(cat_bytes))
    explanation = classifier.explain(cat_bytes)
    overlay = io.BytesIO()
    explanation.overlay(Image.open(io.BytesIO(cat_bytes)).convert("RGB")).save(overlay, "PNG")
    looked = ExplainResult(explanation.prediction, explanation.label, (), overlay.getvalue())
    page = results_html([photo], {photo.key: explanation.prediction}, classifier.labels, MP, {photo.key: looked})
    toggle = page.split('<details class="catdog-looked">', 1)[1].split("</details>", 1)[0]
    assert "<summary>Show where it looked" in toggle and "cat &amp; co.jpg" in toggle
    assert 'src="data:image/jpeg;base64,' in toggle and 'alt="cat &amp; co.jpg with a heatmap' in toggle
    assert html_text(looked_text(explanation.label, classifier.labels)) in toggle
    # No heatmap (a model that cannot show it, or not asked yet): no toggle, the answer stands.
    assert "catdog-looked" not in results_html([photo], {photo.key: explanation.prediction}, classifier.labels, MP)


def html_text(text: str) -> str:
    import html

    return html.escape(text)


def test_the_heatmap_words_say_why_for_any_label():
    assert "to say a cat" in looked_text_of("cat")
    assert "to say a dog" in looked_text_of("dog")
    other = looked_text_of("other")
    assert "made the model answer “neither a cat nor a dog”" in other


def looked_text_of(label: str) -> str:
    from catdog.ui.widgets import looked_text

    return looked_text(label, THREE)
