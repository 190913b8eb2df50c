"""The page's HTML and its downloads, from plain functions: outcomes, counts, rows, heatmap."""

from __future__ import annotations

import csv
import io
import json

from catdog.client import APIError
from catdog.ui.export import records_csv, records_json, result_records
from catdog.ui.markup import bars_html, looked_html, row_html, summary_html, verdict_html
from catdog.ui.outcomes import outcome, tally
from catdog.ui.photos import Picture
from catdog.ui.words import Words
from tests.ui.helpers import THREE, answer, picture, said

EN = Words("en", THREE, "other")
FR = Words("fr", THREE, "other")


def test_each_photo_has_exactly_one_outcome_and_not_sure_is_the_apis():
    assert outcome(None) == "pending"
    assert outcome(APIError("nope", code="x")) == "failed"
    assert outcome(said("dog", 0.9)) == "dog"
    assert outcome(said("dog", 0.9, sure=False)) == "unsure"  # the API's rule, not a constant here
    assert outcome(said("dog", 0.55)) == "dog"  # low, but the API says sure: the page does not judge
    assert outcome(said("other", 0.95)) == "other"


def test_the_summary_has_only_the_counts_that_are_not_zero():
    pictures = [picture(f"{i}.jpg") for i in range(7)]
    answers = [said("cat", 0.99), said("dog", 0.62, sure=False), said("other", 0.9), APIError("bad", code="x"),
               said("cat", 0.8), APIError("too big", code="x")]  # fmt: skip
    results = {p.key: a for p, a in zip(pictures, answers)}  # the 7th is not classified yet
    counts = tally(pictures, results, THREE)
    assert counts == {"cat": 2, "other": 1, "unsure": 1, "failed": 2, "pending": 1}  # no "0 dogs"
    assert sum(counts.values()) == len(pictures)
    one = tally(pictures[:1], results, THREE)
    assert one == {"cat": 1}
    html = summary_html(one, EN)
    assert "1 photo:</b><span> 1 cat</span>" in html and "not classified" not in html  # shown
    assert '<span class="catdog-sr"> 2 cats, 1 neither' in summary_html(counts, EN)  # the filters show them
    assert 'role="status" aria-live="polite"' in html and 'id="catdog-results"' in html


def test_a_label_the_model_card_did_not_list_is_still_counted():
    p = picture("x.jpg")
    assert tally([p], {p.key: said("fox", 0.9, ("fox", "cat"))}, ())["fox"] == 1


def test_the_verdict_says_what_the_numbers_say():
    contradictory = answer("cat", {"cat": 0.296, "dog": 0.013, "other": 0.691}, sure=False)
    html = verdict_html(contradictory, EN)
    assert "<b>Not sure</b> — probably neither a cat nor a dog (69.1%), maybe a cat (29.6%)" in html
    assert html.index("neither") < html.index("a cat (")
    assert "<b>Pas sûr</b> — probablement ni un chat ni un chien" in verdict_html(contradictory, FR)
    assert "<b>Cat</b> · 97.3% sure" in verdict_html(said("cat", 0.973), EN)
    assert "<b>Chat</b> · sûr à 97,3\u202f%" in verdict_html(said("cat", 0.973), FR)


def test_every_row_shows_its_bars_inline_most_probable_first():
    bars = bars_html(answer("cat", {"cat": 0.296, "dog": 0.013, "other": 0.691}, sure=False), EN)
    assert bars.index("> neither<") < bars.index("> cat<") < bars.index("> dog<")
    for number in ("69.1%", "29.6%", "1.3%"):
        assert f">{number}</span>" in bars
    p = picture("tom.jpg")
    row = row_html(p, said("cat", 0.8), EN, None)
    assert 'class="catdog-probs"' in row and "80.0%" in row


def test_rows_are_escaped_and_say_what_happened_in_alt_text(cat_bytes):
    evil = picture("<script>alert(1)</script>.jpg")
    row = row_html(evil, APIError("<b>bad</b> file", code="x"), EN, None)
    assert "<script>" not in row and "&lt;b&gt;bad&lt;/b&gt; file" in row
    assert "<b>Failed:</b>" in row
    photo = Picture("tom.jpg", cat_bytes, "image/jpeg", len(cat_bytes))
    row = row_html(photo, said("cat", 0.973), EN, "data:image/jpeg;base64,AAAA")
    assert row.count("<img ") == 1 and 'alt="tom.jpg: a cat, 97.3% sure"' in row
    assert 'aria-label="x.jpg: not classified yet"' in row_html(picture("x.jpg"), None, EN, None)
    assert "\n\n" not in row


def test_the_heatmap_has_a_colour_scale_the_models_square_and_words():
    html = looked_html("data:image/png;base64,AAAA", "cat & co.jpg", "cat", (0.1, 0.0, 0.9, 1.0), EN)
    assert 'alt="cat &amp; co.jpg with a heatmap of where the model looked"' in html
    assert html.count("<img ") == 1  # the photo once
    assert 'class="catdog-square"' in html and "left:10.00%" in html and "width:80.00%" in html
    assert "linear-gradient" in html and "counted little" in html and "counted most" in html
    assert EN.looked("cat") in html and "outlined square" in html
    assert "outlined square" not in looked_html(None, "x.jpg", "cat", None, EN)


def test_downloads_have_one_row_per_photo_a_column_per_label_and_headers_in_the_pages_language():
    pictures = [picture("a.jpg"), picture("b.pdf"), picture("c.jpg")]
    results = {pictures[0].key: said("other", 0.9),
               pictures[1].key: APIError("The file looks like a PDF document.", code="not_an_image")}
    records = result_records(pictures, results, EN)
    assert [r["outcome"] for r in records] == ["other", "failed", "pending"]
    assert records[0]["sure"] is True
    rows = list(csv.DictReader(io.StringIO(records_csv(records, EN))))
    assert [r["file"] for r in rows] == ["a.jpg", "b.pdf", "c.jpg"]
    assert {"p_cat", "p_dog", "p_other"} <= set(rows[0])
    assert float(rows[0]["p_other"]) == 0.9 and rows[1]["error_code"] == "not_an_image"
    french = list(csv.DictReader(io.StringIO(records_csv(result_records(pictures, results, FR), FR))))
    assert french[1]["fichier"] == "b.pdf" and french[1]["erreur"].startswith("Ce fichier n’est pas une photo")
    assert json.loads(records_json(records))[0]["probabilities"]["other"] == 0.9
