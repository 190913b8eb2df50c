"""The ``catdog bulk`` pipeline: classify every photo under a folder, a glob or a bucket.

::

    patterns ─▶ match files (Beam FileSystems: local, gs://, s3://...) ─▶ Reshuffle
             ─▶ ReadAndPrepare: read at most max_bytes, Classifier.prepare  ──(ImageError)──▶ error rows
             ─▶ RunInference(KeyedModelHandler(ClassifierHandler)): batches ─▶ probabilities ─▶ decide
             ─▶ predictions-*.jsonl (+ .csv, .parquet)      errors-*.jsonl      _counts.jsonl ─▶ summary.json

The same pipeline runs on Beam's local runner and on Dataflow, Flink or Spark; nothing in it
depends on the runner. The ``Reshuffle`` after matching is what lets a distributed runner
spread the files over its workers (matching itself is one step per pattern), and it
shuffles paths only, never photo bytes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import posixpath
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from catdog.bulk.handler import (
    DEFAULT_BATCH_SIZE,
    ClassifierHandler,
    ModelSpec,
    model_info,
    shared_classifier,
)
from catdog.model.decode import IMAGE_SUFFIXES
from catdog.model.errors import CatdogError, ImageError, ImageTooLarge, UnreadableFile

log = logging.getLogger("catdog.bulk")

ERRORS = "errors"
#: The code of an error row for a failure that is catdog's fault, as the API's 500 says.
INTERNAL_ERROR = "internal_error"
#: The largest file read. The API's 10 MB upload limit is for request bodies; a bulk job
#: reads straight from storage, where camera originals reach 30-40 MB.
DEFAULT_MAX_FILE_MB = 50.0
COUNTS_NAME = "_counts.jsonl"
SUMMARY_NAME = "summary.json"
OUTPUT_GLOBS = ("predictions-*", "errors-*", COUNTS_NAME, SUMMARY_NAME)
_GLOB_CHARS = frozenset("*?[")


class BulkError(CatdogError):
    """The job cannot start: bad input or output location (the CLI prints it in one line)."""

    code = "bulk_error"


@dataclass(frozen=True)
class BulkJob:
    """Everything one ``catdog bulk`` run needs; the CLI builds it from its flags."""

    inputs: Sequence[str]
    out: str
    spec: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = DEFAULT_BATCH_SIZE
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    formats: Sequence[str] = ()  # extra outputs: "csv", "parquet"
    runner: str = "DirectRunner"
    pipeline_args: Sequence[str] = ()
    overwrite: bool = False

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1_000_000)


# -- inputs --------------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def input_patterns(inputs: Sequence[str]) -> list[tuple[str, bool]]:
    """Each INPUT as ``(Beam file pattern, images only)``.

    A folder (local, or a remote prefix without a glob) is searched recursively for image
    files (``IMAGE_SUFFIXES``, as ``catdog predict`` does), so a bucket's sidecar files do
    not become error rows. A glob or a named file is taken as given: every file it matches
    is classified or reported. Remote folders are not listed here, so launching a job on a
    bucket of millions of files costs nothing on the launching machine.
    """
    patterns = []
    for item in inputs:
        if _GLOB_CHARS & set(item):
            patterns.append((item, False))
        elif _is_local(item):
            path = Path(item)
            if path.is_dir():
                patterns.append((FileSystems.join(item, "**"), True))
            elif path.is_file():
                patterns.append((item, False))
            else:
                raise FileNotFoundError(f"No such file or folder: {item}")
        elif posixpath.splitext(item)[1].lower() in IMAGE_SUFFIXES:
            patterns.append((item, False))
        else:
            patterns.append((item.rstrip("/") + "/**", True))
    return patterns


def match_paths(entry: tuple[str, bool]) -> Iterator[tuple[str, int]]:
    """``(path, size in bytes)`` of the files one pattern matches (only image files for a folder)."""
    pattern, images_only = entry
    for result in FileSystems.match([pattern]):
        for metadata in result.metadata_list:
            path = metadata.path
            if images_only and posixpath.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
                continue
            yield path, int(metadata.size_in_bytes)


def read_file(path: str, max_bytes: int, size: int | None = None) -> bytes:
    """A file's bytes; an enormous one is refused by its listed size, unread.

    At most ``max_bytes + 1`` bytes are read even so, in case the file grew since it was
    listed. Always uncompressed: Beam would otherwise gunzip a ``.gz`` by its name.
    """
    if size is not None and size > max_bytes:
        raise ImageTooLarge(size, max_bytes)
    if _is_local(path) and Path(path).exists() and not Path(path).is_file():
        # A named pipe or a device would block the read or never end.
        raise UnreadableFile("Cannot read the file: it is not a regular file (a pipe or a device?).")
    try:
        with FileSystems.open(path, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:  # BeamIOError is an OSError too
        raise UnreadableFile(f"Cannot read the file: {getattr(exc, 'strerror', None) or exc}.") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(len(data), max_bytes)  # at least that many: the rest was not read
    return data


def error_row(path: str, code: str, message: str) -> dict:
    return {"path": path, "error": {"code": code, "message": message}}


class ReadAndPrepare(beam.DoFn):
    """``(path, size)`` ─▶ ``(path, model input)``, or an error row on the ``errors`` output.

    The tensor comes from ``Classifier.prepare``: the server's own decoding and
    preprocessing, so a photo gets the same answer here as from the API.
    """

    def __init__(self, spec: ModelSpec, max_bytes: int):
        self.spec = spec
        self.max_bytes = max_bytes
        self.failed = Metrics.counter("catdog", "errors")

    def setup(self) -> None:
        self.classifier = shared_classifier(self.spec)

    def process(self, element: tuple[str, int]):
        path, size = element
        try:
            tensor = self.classifier.prepare(read_file(path, self.max_bytes, size))
        except ImageError as exc:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(path, exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("unexpected error on %s", path)
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(
                path, INTERNAL_ERROR, f"catdog failed on this file ({type(exc).__name__}); "
                "please report it with the file."))
            return
        yield path, tensor


# -- outputs -------------------------------------------------------------------------------


def csv_header(labels: Sequence[str]) -> str:
    return ",".join(["path", "label", "confidence", *(f"p_{label}" for label in labels),
                     "model_name", "model_version"])


def csv_line(row: dict, labels: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [row["path"], row["label"], row["confidence"], *(row["probabilities"].get(label) for label in labels),
         row["model"]["name"], row["model"]["version"]])
    return buffer.getvalue()


def parquet_schema(labels: Sequence[str]):
    import pyarrow as pa  # type: ignore[import-untyped]

    return pa.schema([
        ("path", pa.string()),
        ("label", pa.string()),
        ("confidence", pa.float64()),
        ("sure", pa.bool_()),
        ("probabilities", pa.struct([(label, pa.float64()) for label in labels])),
        ("model", pa.struct([("name", pa.string()), ("version", pa.string())])),
    ])


def _write_jsonl(prefix: str, labels: Sequence[str]) -> beam.PTransform:
    return beam.Map(json.dumps) | beam.io.WriteToText(prefix, file_name_suffix=".jsonl")


def _write_csv(prefix: str, labels: Sequence[str]) -> beam.PTransform:
    return beam.Map(csv_line, labels) | beam.io.WriteToText(prefix, file_name_suffix=".csv",
                                                             header=csv_header(labels))


def _write_parquet(prefix: str, labels: Sequence[str]) -> beam.PTransform:
    return beam.io.WriteToParquet(prefix, parquet_schema(labels), file_name_suffix=".parquet")


#: Output format -> the transform that writes prediction rows in it under a path prefix.
WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}
#: The formats a flag adds to the JSON lines that are always written.
EXTRA_FORMATS = tuple(fmt for fmt in WRITERS if fmt != "jsonl")


def _write(rows, out: str, name: str, fmt: str, labels: Sequence[str]):
    return rows | f"write {name}.{fmt}" >> WRITERS[fmt](FileSystems.join(out, name), labels)


# -- the pipeline --------------------------------------------------------------------------


def build(pipeline: beam.Pipeline, job: BulkJob, labels: Sequence[str]) -> None:
    """Add the bulk classification steps to ``pipeline``."""
    photos, errors = (
        pipeline
        | "patterns" >> beam.Create(input_patterns(job.inputs))
        | "match files" >> beam.FlatMap(match_paths)
        | "spread over workers" >> beam.Reshuffle()
        | "read and prepare" >> beam.ParDo(ReadAndPrepare(job.spec, job.max_bytes)).with_outputs(
            ERRORS, main="photos")
    )
    predictions = (
        photos
        | "classify" >> RunInference(KeyedModelHandler(ClassifierHandler(job.spec, job.batch_size)))
        | "rows" >> beam.MapTuple(lambda path, row: {"path": path, **row})
    )
    for fmt in ("jsonl", *job.formats):
        _write(predictions, job.out, "predictions", fmt, labels)
    _write(errors, job.out, "errors", "jsonl", labels)

    # Counted by the pipeline from the rows it wrote, so the summary agrees with the
    # files on every runner (metrics may be approximate or missing on some).
    _ = (
        (predictions | "label of" >> beam.Map(lambda row: ("labels", row["label"])),
         errors | "code of" >> beam.Map(lambda row: ("errors", row["error"]["code"])))
        | "all kinds" >> beam.Flatten()
        | "count" >> beam.combiners.Count.PerElement()
        | "count as JSON" >> beam.MapTuple(lambda key, n: json.dumps({"kind": key[0], "name": key[1], "count": n}))
        | "write counts" >> beam.io.WriteToText(FileSystems.join(job.out, COUNTS_NAME), shard_name_template="")
    )


def _prepare_out(job: BulkJob) -> None:
    if _is_local(job.out):
        Path(job.out).mkdir(parents=True, exist_ok=True)
    old = [m.path for r in FileSystems.match([FileSystems.join(job.out, g) for g in OUTPUT_GLOBS])
           for m in r.metadata_list]
    if old and not job.overwrite:
        raise BulkError(f"{job.out} already holds the results of a run ({len(old)} files); "
                        "choose another --out or pass --overwrite to replace them.")
    if old:
        FileSystems.delete(old)


def _read_counts(out: str) -> list[dict]:
    path = FileSystems.join(out, COUNTS_NAME)
    with FileSystems.open(path) as f:
        lines = f.read().decode().splitlines()
    FileSystems.delete([path])
    return [json.loads(line) for line in lines if line.strip()]


def summarise(counts: list[dict], labels: Sequence[str], seconds: float) -> dict:
    per_label = {label: 0 for label in labels}
    per_code: dict[str, int] = {}
    for entry in counts:
        target = per_label if entry["kind"] == "labels" else per_code
        target[entry["name"]] = target.get(entry["name"], 0) + entry["count"]
    photos = sum(per_label.values())
    return {
        "photos": photos,
        "errors": sum(per_code.values()),
        "labels": per_label,
        "error_codes": dict(sorted(per_code.items())),
        "seconds": round(seconds, 3),
        "photos_per_second": round(photos / seconds, 2) if seconds > 0 else None,
    }


def pipeline_options(job: BulkJob) -> PipelineOptions:
    """Beam's options from the pass-through arguments, checked now (a bad value is one line,
    not Beam's 150-line usage text after the model has loaded). Beam itself warns about
    an unknown option and suggests the closest known one."""
    options = PipelineOptions(list(job.pipeline_args), runner=job.runner)
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            options.get_all_options(display_warnings=True)
    except SystemExit:
        last = (usage.getvalue().strip().splitlines() or ["invalid"])[-1]
        raise BulkError(f"Beam pipeline option: {last.split(' error: ', 1)[-1]}") from None
    return options


def run(job: BulkJob) -> dict:
    """Run the job to the end and return its summary (also written to OUT/summary.json).

    The model is loaded here first, so a missing or broken model is a one-line error
    before any worker starts; on the local runner the workers reuse this very copy.
    """
    for fmt in job.formats:
        if fmt not in EXTRA_FORMATS:
            raise BulkError(f"unknown output format {fmt!r}; choose from {', '.join(EXTRA_FORMATS)}")
    if job.max_bytes < 1:
        raise BulkError("--max-file-mb must be positive")
    options = pipeline_options(job)
    patterns = input_patterns(job.inputs)
    classifier = shared_classifier(job.spec)
    labels = list(classifier.labels)
    _prepare_out(job)
    log.info("classifying %s with %s on %s", ", ".join(p for p, _ in patterns), classifier.recipe.name, job.runner)
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    build(pipeline, job, labels)
    pipeline.run().wait_until_finish()
    summary = summarise(_read_counts(job.out), labels, time.perf_counter() - started)
    summary.update(model=model_info(classifier), runner=job.runner, inputs=list(job.inputs), out=job.out)
    with FileSystems.create(FileSystems.join(job.out, SUMMARY_NAME), mime_type="application/json") as f:
        f.write((json.dumps(summary, indent=2) + "\n").encode())
    return summary
