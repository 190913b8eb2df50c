"""The results as downloads (CSV and JSON): plain functions, no Streamlit.

JSON keeps stable English keys and the model's labels (it is for programs); the CSV's
column headers are in the page's language (it is opened by people, in a spreadsheet).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from catdog.client import APIError
from catdog.prediction import Prediction
from catdog.ui.outcomes import Result, is_sure, outcome
from catdog.ui.photos import Picture
from catdog.ui.words import Words

COLUMNS = ("file", "outcome", "label", "confidence", "sure")
TAIL = ("error", "error_code", "note")


def result_records(pictures: Sequence[Picture], results: Mapping[str, Result], words: Words) -> list[dict[str, Any]]:
    """One record per photo, in page order: what a CSV or JSON download holds."""
    records = []
    for picture in pictures:
        result = results.get(picture.key)
        record: dict[str, Any] = {"file": picture.name, "outcome": outcome(result)}
        if isinstance(result, Prediction):
            record |= {
                "label": result.label,
                "confidence": round(result.confidence, 6),
                "sure": is_sure(result),
                "probabilities": {k: round(v, 6) for k, v in result.probabilities.items()},
            }
        elif isinstance(result, APIError):
            record |= {"error": words.error(result), "error_code": result.code}
        if picture.note:
            record["note"] = words.say(picture.note)
        records.append(record)
    return records


def records_csv(records: Sequence[Mapping[str, Any]], words: Words) -> str:
    """The records as CSV: one ``p_<label>`` column per label the model knows."""
    seen = [k for r in records for k in r.get("probabilities", {}) if k not in words.labels]
    probability_labels = list(words.labels) + list(dict.fromkeys(seen))
    columns = [*COLUMNS, *(f"p_{x}" for x in probability_labels), *TAIL]
    headers = {c: words(f"col.{c}") if f"col.{c}" in words.texts else c for c in columns}
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writerow(headers)
    for record in records:
        flat = dict(record)
        flat |= {f"p_{k}": v for k, v in record.get("probabilities", {}).items()}
        writer.writerow(flat)
    return out.getvalue()


def records_json(records: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(records), indent=2, ensure_ascii=False)
