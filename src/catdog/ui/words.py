"""Everything the page says, in English and French: one keyed catalogue and the words built
from it (verdicts, counts, what the model knows).

No Streamlit and no HTML here. Labels come from the served model; :data:`LABEL_WORDS` only
says how to *name* a label in a language, and a label without an entry is named as it is.
The catch-all label ("other") is the one the model card names (``/v1/model`` ->
``other_label``); it reads "Neither a cat nor a dog", built from the other labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catdog.client import APIError
from catdog.prediction import Prediction

LANGUAGES = {"en": "English", "fr": "Français"}
DEFAULT_LANGUAGE = "en"

#: Every sentence of the page, by key, in every language (``tests/ui/test_words.py`` checks that
#: both have the same keys and the same ``{placeholders}``).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "catdog: cat or dog?",
        "intro": "Drop photos below (or try an example, or take one) and press **Classify**: a "
        "neural network says what it sees in each one, and how sure it is. {knows}",
        "knows.none": "The classifier says which animal it sees in each photo.",
        "knows.other": "It knows {animals}; for anything else it answers “{other}”.",
        "knows.only": "It knows only {animals}: a photo of anything else still gets one of those "
        "answers, usually with low confidence.",
        "and": " and ",
        "nor": " nor ",
        "neither": "Neither {things}",
        "something_else": "Something else",
        "neither_short": "neither",
        "language": "Language",
        "settings_invalid": "The catdog settings (CATDOG_* environment variables) are not valid:\n\n{error}",
        "upload_label": "Photos to classify",
        "upload_button": "Choose photos",
        "formats": "JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF, up to {mb} MB each; larger than "
        "{api_mb} MB is shrunk before sending.",
        "camera_toggle": "Take a photo with the camera",
        "camera_label": "Photo from the camera",
        "examples": "No photo at hand? Try an example:",
        "example_help": "Classify the example photo “{name}”",
        "example_alt": "Example photo: {name}",
        "classify": "Classify",
        "clear_all": "Clear all",
        "clear_question": "Remove all {n} photos and their answers?",
        "clear_yes": "Yes, clear all",
        "progress": "Classifying {done} of {total}…",
        "status.ready": "Classifier ready.",
        "status.starting": "The classifier is starting up; try again in a moment.",
        "status.offline": "The classifier is not answering right now; it may be restarting. "
        "Your photos stay here and are classified as soon as it is back.",
        "status.unexpected": "The classifier sent an answer this page does not understand. "
        "Please try again later.",
        "details": "Technical details",
        "address": "Classifier service address: {url} ({what}).",
        "no_answer": "no answer",
        "about": "About the classifier",
        "version": "version {version}",
        "accuracy": "Accuracy on validation photos",
        "accuracy_unknown": "Accuracy: not measured yet.",
        "results": "Results",
        "photos.one": "{n} photo:",
        "photos.many": "{n} photos:",
        "filter": "Show only",
        "filter_help": "Pick a count to list only those photos; pick it again to list all.",
        "count.unsure.one": "{n} not sure",
        "count.unsure.many": "{n} not sure",
        "count.failed.one": "{n} failed",
        "count.failed.many": "{n} failed",
        "count.pending.one": "{n} not classified yet",
        "count.pending.many": "{n} not classified yet",
        "count.label": "{n} {name}",
        "not_sure": "Not sure",
        "probably": "probably {what} ({p})",
        "maybe": "maybe {what} ({p})",
        "sure": "{p} sure",
        "pending": "Not classified yet: press **Classify**.",
        "failed": "Failed",
        "sentence.pending": "not classified yet",
        "sentence.failed": "could not be classified",
        "sentence.sure": "{what}, {p} sure",
        "sentence.unsure": "not sure: probably {what} ({p})",
        "bars": "Probability of each answer",
        "unsure_note": "Not sure about this one: a blurry photo, several animals, or something "
        "the model was not taught can confuse it.",
        "mistakes": "What the model gets wrong",
        "mistakes_missing": "The model card of {name} lists its known failures.",
        "looked": "Show where it looked",
        "looked_alt": "{name} with a heatmap of where the model looked",
        "looked.label": "The brighter the colour, the more that part of the photo counted: what "
        "the model looked at to say {what}.",
        "looked.other": "The brighter the colour, the more that part of the photo counted: what "
        "made the model answer “{what}”.",
        "looked_square": "The outlined square is what the model looks at; the rest of the photo "
        "was not seen.",
        "scale_low": "counted little",
        "scale_high": "counted most",
        "scale": "Colour scale",
        "looked_unavailable": "This model cannot show where it looked.",
        "looked_failed": "Where it looked could not be shown: {message}",
        "feedback": "Wrong answer?",
        "feedback_help": "Tell us what is really in {name}",
        "feedback_question": "What is really in this photo?",
        "feedback_share": "Share this photo to improve the model",
        "feedback_share_help": "Without this, only the answers and a fingerprint (hash) of "
        "the photo are kept, never the photo.",
        "feedback_send": "Send the correction",
        "feedback_thanks": "Thank you! Saved: “{what}”.",
        "feedback_changed": "Thank you! Changed to “{what}”.",
        "feedback_failed": "The correction could not be sent: {message}",
        "download_csv": "Download CSV",
        "download_json": "Download JSON",
        "col.file": "file",
        "col.outcome": "outcome",
        "col.label": "label",
        "col.confidence": "confidence",
        "col.sure": "sure",
        "col.error": "error",
        "col.error_code": "error_code",
        "col.note": "note",
        "note.shrunk": "Shrunk from {before} to {after} before sending (the limit is {limit}).",
        "problem.too_big": "The photo is {size}, over the limit of {limit}, and this page cannot "
        "make it smaller: {reason} Send a smaller photo.",
        "problem.stays_big": "The photo is {size}, over the limit of {limit}, and stays too large "
        "even when shrunk.",
        "reason.pixels": "it has {width} x {height} pixels, more than the {max} allowed.",
        "reason.unreadable": "it is not a photo this page can read.",
    },
    "fr": {
        "page_title": "catdog : chat ou chien ?",
        "intro": "Déposez des photos ci-dessous (ou essayez un exemple, ou prenez-en une) et "
        "appuyez sur **Classer** : un réseau de neurones dit ce qu’il voit sur chacune, et à "
        "quel point il en est sûr. {knows}",
        "knows.none": "Le classificateur dit quel animal il voit sur chaque photo.",
        "knows.other": "Il connaît les {animals} ; pour tout le reste il répond « {other} ».",
        "knows.only": "Il ne connaît que les {animals} : une photo d’autre chose reçoit quand "
        "même l’une de ces réponses, le plus souvent avec peu de confiance.",
        "and": " et les ",
        "nor": " ni ",
        "neither": "Ni {things}",
        "something_else": "Autre chose",
        "neither_short": "aucun des deux",
        "language": "Langue",
        "settings_invalid": "Les réglages de catdog (variables d’environnement CATDOG_*) ne "
        "sont pas valides :\n\n{error}",
        "upload_label": "Photos à classer",
        "upload_button": "Choisir des photos",
        "formats": "JPEG, PNG, WebP, GIF, BMP, HEIC ou AVIF, jusqu’à {mb} Mo chacune ; au-delà "
        "de {api_mb} Mo, la photo est réduite avant l’envoi.",
        "camera_toggle": "Prendre une photo avec l’appareil",
        "camera_label": "Photo de l’appareil",
        "examples": "Pas de photo sous la main ? Essayez un exemple :",
        "example_help": "Classer la photo d’exemple « {name} »",
        "example_alt": "Photo d’exemple : {name}",
        "classify": "Classer",
        "clear_all": "Tout effacer",
        "clear_question": "Retirer les {n} photos et leurs réponses ?",
        "clear_yes": "Oui, tout effacer",
        "progress": "Classement : {done} sur {total}…",
        "status.ready": "Classificateur prêt.",
        "status.starting": "Le classificateur démarre ; réessayez dans un instant.",
        "status.offline": "Le classificateur ne répond pas pour le moment ; il redémarre "
        "peut-être. Vos photos restent ici et seront classées dès son retour.",
        "status.unexpected": "Le classificateur a envoyé une réponse que cette page ne comprend "
        "pas. Réessayez plus tard.",
        "details": "Détails techniques",
        "address": "Adresse du service de classement : {url} ({what}).",
        "no_answer": "pas de réponse",
        "about": "À propos du classificateur",
        "version": "version {version}",
        "accuracy": "Exactitude sur les photos de validation",
        "accuracy_unknown": "Exactitude : pas encore mesurée.",
        "results": "Résultats",
        "photos.one": "{n} photo :",
        "photos.many": "{n} photos :",
        "filter": "N’afficher que",
        "filter_help": "Choisissez un compte pour ne lister que ces photos ; choisissez-le à "
        "nouveau pour tout lister.",
        "count.unsure.one": "{n} incertaine",
        "count.unsure.many": "{n} incertaines",
        "count.failed.one": "{n} en échec",
        "count.failed.many": "{n} en échec",
        "count.pending.one": "{n} pas encore classée",
        "count.pending.many": "{n} pas encore classées",
        "count.label": "{n} {name}",
        "not_sure": "Pas sûr",
        "probably": "probablement {what} ({p})",
        "maybe": "peut-être {what} ({p})",
        "sure": "sûr à {p}",
        "pending": "Pas encore classée : appuyez sur **Classer**.",
        "failed": "Échec",
        "sentence.pending": "pas encore classée",
        "sentence.failed": "n’a pas pu être classée",
        "sentence.sure": "{what}, sûr à {p}",
        "sentence.unsure": "pas sûr : probablement {what} ({p})",
        "bars": "Probabilité de chaque réponse",
        "unsure_note": "Pas sûr pour celle-ci : une photo floue, plusieurs animaux ou quelque "
        "chose que le modèle n’a pas appris peuvent le tromper.",
        "mistakes": "Ce que le modèle confond",
        "mistakes_missing": "La fiche du modèle {name} liste ses erreurs connues.",
        "looked": "Montrer où il a regardé",
        "looked_alt": "{name} avec une carte de chaleur de l’endroit où le modèle a regardé",
        "looked.label": "Plus la couleur est vive, plus cette partie de la photo a compté : ce "
        "que le modèle a regardé pour dire {what}.",
        "looked.other": "Plus la couleur est vive, plus cette partie de la photo a compté : ce "
        "qui a fait répondre au modèle « {what} ».",
        "looked_square": "Le carré entouré est ce que le modèle regarde ; le reste de la photo "
        "n’a pas été vu.",
        "scale_low": "a peu compté",
        "scale_high": "a le plus compté",
        "scale": "Échelle des couleurs",
        "looked_unavailable": "Ce modèle ne sait pas montrer où il a regardé.",
        "looked_failed": "Impossible de montrer où il a regardé : {message}",
        "feedback": "Mauvaise réponse ?",
        "feedback_help": "Dites-nous ce qu’il y a vraiment sur {name}",
        "feedback_question": "Qu’y a-t-il vraiment sur cette photo ?",
        "feedback_share": "Partager cette photo pour améliorer le modèle",
        "feedback_share_help": "Sans cela, seules les réponses et une empreinte (hash) de la "
        "photo sont gardées, jamais la photo.",
        "feedback_send": "Envoyer la correction",
        "feedback_thanks": "Merci ! Enregistré : « {what} ».",
        "feedback_changed": "Merci ! Changé en « {what} ».",
        "feedback_failed": "La correction n’a pas pu être envoyée : {message}",
        "download_csv": "Télécharger en CSV",
        "download_json": "Télécharger en JSON",
        "col.file": "fichier",
        "col.outcome": "résultat",
        "col.label": "étiquette",
        "col.confidence": "confiance",
        "col.sure": "sûr",
        "col.error": "erreur",
        "col.error_code": "code_erreur",
        "col.note": "note",
        "note.shrunk": "Réduite de {before} à {after} avant l’envoi (la limite est de {limit}).",
        "problem.too_big": "La photo fait {size}, plus que la limite de {limit}, et cette page ne "
        "peut pas la réduire : {reason} Envoyez une photo plus petite.",
        "problem.stays_big": "La photo fait {size}, plus que la limite de {limit}, et reste trop "
        "grande même réduite.",
        "reason.pixels": "elle a {width} x {height} pixels, plus que les {max} permis.",
        "reason.unreadable": "ce n’est pas une photo que cette page sait lire.",
    },
}

#: How to name a label: (singular, plural, with its article). Display only: which labels
#: exist is the model's business.
LABEL_WORDS: dict[str, dict[str, tuple[str, str, str]]] = {
    "en": {"cat": ("cat", "cats", "a cat"), "dog": ("dog", "dogs", "a dog")},
    "fr": {"cat": ("chat", "chats", "un chat"), "dog": ("chien", "chiens", "un chien")},
}

#: The API's own messages are English; in French, these say the same by error code (the
#: English page shows the API's message itself, which can be more precise).
API_ERRORS_FR = {
    "not_an_image": "Ce fichier n’est pas une photo ; envoyez une photo JPEG, PNG, WebP, GIF, "
    "BMP, HEIC ou AVIF.",
    "unsupported_format": "Ce format d’image n’est pas pris en charge ; envoyez une photo "
    "JPEG, PNG, WebP, GIF, BMP, HEIC ou AVIF.",
    "truncated_image": "La photo est abîmée ou incomplète ; exportez-la ou envoyez-la à nouveau.",
    "empty_file": "Le fichier est vide.",
    "too_many_pixels": "La photo a trop de pixels ; envoyez une photo plus petite.",
    "decode_too_costly": "Décoder cette image demanderait trop de mémoire ; envoyez une photo "
    "plus petite ou en JPEG.",
    "file_too_large": "Le fichier est trop gros ; envoyez une photo plus petite.",
    "batch_budget_exceeded": "Ce lot de photos est trop lourd ; classez-en moins à la fois.",
    "batch_deadline_exceeded": "Ce lot a pris trop de temps ; classez-en moins à la fois.",
    "rate_limited": "Trop de photos en peu de temps ; attendez un peu et réessayez.",
    "unauthorized": "Le classificateur refuse cette page (clé d’API manquante ou fausse).",
    "too_many_files": "Trop de photos dans une seule requête.",
    "model_error": "Le modèle a échoué sur cette photo ; réessayez.",
    "unreadable_file": "Le fichier ne peut pas être lu.",
    "explain_unavailable": "Ce modèle ne sait pas montrer où il a regardé.",
}

#: Values of a message that are sizes in bytes.
SIZE_KEYS = frozenset({"size", "limit", "before", "after"})
#: A message for later, in any language: (catalogue key, its values).
Message = tuple[str, Mapping[str, Any]]


def language_of(locale: str | None) -> str:
    """The page's language for a browser locale: French for ``fr*``, English otherwise."""
    return "fr" if (locale or "").lower().startswith("fr") else DEFAULT_LANGUAGE


def megabytes(size: int, lang: str = DEFAULT_LANGUAGE) -> str:
    """1.2 MB, or 350 KB under a megabyte (decimal units, as the API's limit)."""
    mb, kb = ("Mo", "ko") if lang == "fr" else ("MB", "KB")
    text = f"{size / 1e6:.1f} {mb}" if size >= 1e6 else f"{size / 1e3:.0f} {kb}"
    return text.replace(".", ",") if lang == "fr" else text


@dataclass(frozen=True)
class Words:
    """The page's words in one language, for the labels of the served model."""

    lang: str = DEFAULT_LANGUAGE
    labels: Sequence[str] = ()
    other: str | None = None
    texts: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", TEXTS.get(self.lang, TEXTS[DEFAULT_LANGUAGE]))

    def __call__(self, key: str, **values: Any) -> str:
        return self.texts[key].format(**values)

    def say(self, message: Message) -> str:
        """A :data:`Message` in this language: sizes (``*_BYTES``, in bytes) in this language's
        units, and messages inside it said too."""
        key, values = message
        said = {
            k: self.say(v) if isinstance(v, tuple) else megabytes(v, self.lang) if k in SIZE_KEYS else v
            for k, v in values.items()
        }
        return self(key, **said)

    # -- labels --------------------------------------------------------------------------------

    def _forms(self, label: str) -> tuple[str, str, str]:
        known = LABEL_WORDS.get(self.lang, {}).get(label)
        if known:
            return known
        article = "un" if self.lang == "fr" else ("an" if label[:1].lower() in "aeiou" else "a")
        return label, label + "s", f"{article} {label}"

    def name(self, label: str) -> str:
        return self._forms(label)[0]

    def plural(self, label: str) -> str:
        return self._forms(label)[1]

    def a(self, label: str) -> str:
        """The label in running text: "a cat", "un chien", "neither a cat nor a dog"."""
        if label == self.other:
            said = self.verdict(label)
            return said[0].lower() + said[1:]
        return self._forms(label)[2]

    def verdict(self, label: str) -> str:
        """What a label means, as an answer: "Cat", or "Neither a cat nor a dog"."""
        if label == self.other:
            others = [self._forms(x)[2] for x in self.labels if x != self.other]
            if len(others) < 2:
                return self("something_else")
            return self("neither", things=self("nor").join(others))
        name = self.name(label)
        return name[:1].upper() + name[1:]

    # -- numbers -------------------------------------------------------------------------------

    def percent(self, p: float) -> str:
        """97.3% (never a misleading 100.0% or 0.0%); 97,3 % in French."""
        text = ">99.9%" if p > 0.999 else "<0.1%" if p < 0.001 else f"{p:.1%}"
        return text.replace(".", ",").replace("%", "\u202f%") if self.lang == "fr" else text

    def count(self, key: str, n: int) -> str:
        """ "3 cats", "1 neither a cat nor a dog", "2 not sure"."""
        form = "one" if n == 1 else "many"
        if f"count.{key}.{form}" in self.texts:
            return self(f"count.{key}.{form}", n=n)
        if key == self.other:
            return self("count.label", n=n, name=self.a(key))
        return self("count.label", n=n, name=self.name(key) if n == 1 else self.plural(key))

    def photos(self, n: int) -> str:
        return self("photos.one" if n == 1 else "photos.many", n=n)

    def knows(self) -> str:
        """The "what this knows" note: which answers the model can give."""
        if not self.labels:
            return self("knows.none")
        animals = self("and").join(self.plural(x) for x in self.labels if x != self.other)
        if self.other in self.labels:
            return self("knows.other", animals=animals, other=self.a(self.other or ""))
        return self("knows.only", animals=animals)

    # -- answers -------------------------------------------------------------------------------

    def ranked(self, prediction: Prediction) -> list[tuple[str, float]]:
        """The answers, most probable first (ties: the model's order)."""
        order = {label: i for i, label in enumerate(self.labels)}
        return sorted(prediction.probabilities.items(), key=lambda kv: (-kv[1], order.get(kv[0], 99)))

    def hedge(self, prediction: Prediction) -> tuple[str, str | None]:
        """For a photo the API is not sure of: ("probably X (p)", "maybe Y (q)" or None), named
        by what the numbers say, the most probable first, whatever the answer was."""
        ranked = self.ranked(prediction) or [(prediction.label, prediction.confidence)]
        (first, p), rest = ranked[0], ranked[1:]
        probably = self("probably", what=self.a(first), p=self.percent(p))
        if not rest or rest[0][1] < 0.01:
            return probably, None
        second, q = rest[0]
        return probably, self("maybe", what=self.a(second), p=self.percent(q))

    def sentence(self, result: Prediction | APIError | None, sure: bool = True) -> str:
        """The result in one sentence, for alt text."""
        if result is None:
            return self("sentence.pending")
        if isinstance(result, APIError):
            return self("sentence.failed")
        if sure:
            return self("sentence.sure", what=self.a(result.label), p=self.percent(result.confidence))
        first, p = (self.ranked(result) or [(result.label, result.confidence)])[0]
        return self("sentence.unsure", what=self.a(first), p=self.percent(p))

    def looked(self, label: str) -> str:
        """What the heatmap shows, in words; for the catch-all, that it is why the model said so."""
        if label == self.other:
            return self("looked.other", what=self.a(label))
        return self("looked.label", what=self.a(label))

    def error(self, error: APIError) -> str:
        """An API error for people, in this language."""
        if self.lang == "fr" and error.code in API_ERRORS_FR:
            return API_ERRORS_FR[error.code]
        if error.code == "not_sent" and error.details.get("message"):
            return self.say(error.details["message"])
        return error.message
