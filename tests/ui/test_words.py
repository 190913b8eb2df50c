"""The page's words: one catalogue, complete in both languages, and answers that say what
their numbers say."""

from __future__ import annotations

import string

import pytest

from catdog.client import APIError
from catdog.testing.hostile import REJECTED_IMAGE
from catdog.ui.words import API_ERRORS_FR, LANGUAGES, TEXTS, Words, language_of, megabytes
from tests.ui.helpers import THREE, answer, said

EN = Words("en", THREE, "other")
FR = Words("fr", THREE, "other")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_every_string_with_the_same_placeholders():
    assert set(TEXTS) == set(LANGUAGES)
    keys = set(TEXTS["en"])
    for lang, texts in TEXTS.items():
        assert set(texts) == keys, f"{lang}: missing {keys - set(texts)}, extra {set(texts) - keys}"
        for key in keys:
            assert fields(texts[key]) == fields(TEXTS["en"][key]), (lang, key)
            assert texts[key].strip(), (lang, key)


def test_french_says_every_image_error_of_the_api():
    codes = {code for _, code in REJECTED_IMAGE} | {"rate_limited", "decode_too_costly", "empty_file"}
    assert codes <= set(API_ERRORS_FR)
    error = APIError("The file looks like a PDF document.", code="not_an_image", status=415)
    assert EN.error(error) == "The file looks like a PDF document."  # the API's own, precise words
    assert FR.error(error).startswith("Ce fichier n’est pas une photo")


@pytest.mark.parametrize("locale, lang", [("fr-FR", "fr"), ("fr", "fr"), ("FR-ca", "fr"), ("en-US", "en"),
                                          ("de-DE", "en"), (None, "en"), ("", "en")])
def test_the_browser_language_picks_the_page_language(locale, lang):
    assert language_of(locale) == lang


def test_verdicts_come_from_the_models_labels():
    assert EN.verdict("cat") == "Cat" and FR.verdict("cat") == "Chat"
    assert EN.verdict("other") == "Neither a cat nor a dog"
    assert FR.verdict("other") == "Ni un chat ni un chien"
    assert Words("en", ("owl", "eagle", "none"), "none").verdict("none") == "Neither an owl nor an eagle"
    assert Words("en", ("bird", "fish")).verdict("bird") == "Bird"
    assert Words("en", ("cat", "dog")).verdict("other") == "Other"  # no catch-all in that model


def test_a_sure_answer_and_one_that_is_not():
    assert EN.sentence(said("cat", 0.973)) == "a cat, 97.3% sure"
    assert FR.sentence(said("cat", 0.973)) == "un chat, sûr à 97,3\u202f%"
    assert EN.sentence(said("other", 0.9)) == "neither a cat nor a dog, 90.0% sure"
    assert EN.sentence(None) == "not classified yet"


def test_not_sure_names_the_most_probable_first_whatever_the_answer():
    """Issue 26: a cat answer kept by the recipe while "other" is more probable."""
    contradictory = answer("cat", {"cat": 0.296, "dog": 0.013, "other": 0.691}, sure=False)
    probably, maybe = EN.hedge(contradictory)
    assert probably == "probably neither a cat nor a dog (69.1%)"
    assert maybe == "maybe a cat (29.6%)"
    assert FR.hedge(contradictory) == ("probablement ni un chat ni un chien (69,1\u202f%)",
                                       "peut-être un chat (29,6\u202f%)")
    assert EN.sentence(contradictory, sure=False) == "not sure: probably neither a cat nor a dog (69.1%)"
    assert EN.hedge(answer("dog", {"dog": 0.995, "cat": 0.005, "other": 0.0}, sure=False))[1] is None


def test_count_words():
    assert EN.count("cat", 1) == "1 cat" and EN.count("dog", 3) == "3 dogs"
    assert EN.count("other", 2) == "2 neither a cat nor a dog"
    assert EN.count("unsure", 1) == "1 not sure" and EN.count("pending", 4) == "4 not classified yet"
    assert FR.count("cat", 3) == "3 chats" and FR.count("unsure", 2) == "2 incertaines"
    assert FR.count("other", 1) == "1 ni un chat ni un chien"
    assert EN.count("fox", 1) == "1 fox"  # a label with no words of its own is named as it is


def test_what_the_classifier_knows_follows_its_labels():
    assert "for anything else it answers “neither a cat nor a dog”" in EN.knows()
    assert FR.knows() == "Il connaît les chats et les chiens ; pour tout le reste il répond « ni un chat ni un chien »."
    assert Words("en", ("cat", "dog")).knows().startswith("It knows only cats and dogs")
    assert "which animal" in Words("en").knows()


@pytest.mark.parametrize("p, en, fr", [(0.973, "97.3%", "97,3\u202f%"), (0.9999, ">99.9%", ">99,9\u202f%"),
                                       (0.00004, "<0.1%", "<0,1\u202f%"), (0.5, "50.0%", "50,0\u202f%")])
def test_percent(p, en, fr):
    assert EN.percent(p) == en and FR.percent(p) == fr


def test_messages_are_said_in_each_language_with_their_sizes():
    note = ("note.shrunk", {"before": 12_300_000, "after": 900_000, "limit": 10_000_000})
    assert EN.say(note) == "Shrunk from 12.3 MB to 900 KB before sending (the limit is 10.0 MB)."
    assert FR.say(note) == "Réduite de 12,3 Mo à 900 ko avant l’envoi (la limite est de 10,0 Mo)."
    nested = ("problem.too_big", {"size": 2000, "limit": 1000, "reason": ("reason.unreadable", {})})
    assert "this page cannot make it smaller: it is not a photo this page can read." in EN.say(nested)
    assert megabytes(1_500_000, "fr") == "1,5 Mo"


def test_the_heatmap_words_say_why_for_any_label():
    assert "to say a cat" in EN.looked("cat")
    assert "made the model answer “neither a cat nor a dog”" in EN.looked("other")
    assert "pour dire un chien" in FR.looked("dog")
