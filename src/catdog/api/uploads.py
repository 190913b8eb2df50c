"""How the API reads request bodies: only what it takes, in memory, bounded, loudly.

What Flask's request class does differently here, all for uploads:

* Prediction endpoints read only the body types they declare: the REST ones
  ``multipart/form-data`` and ``image/*`` (:func:`require_upload_body`), v2 ``infer`` its
  JSON and binary-extension bodies (:func:`catdog.api.v2.require_infer_body`); anything
  else is ``415`` before a byte is parsed (:func:`require_body_type`). A 10 MB urlencoded
  body of 5 million empty fields would otherwise cost seconds and 400 MB.
* The body is read through :class:`BoundedBody`: a chunked body (no Content-Length) over
  the upload limit is ``413``, not silently cut at the limit; a body that does not arrive
  within ``CATDOG_READ_TIMEOUT`` seconds is ``408``; broken chunked framing is ``400``.

* File parts stay in memory. Werkzeug spools any part over 500 KB to a temporary file;
  here no byte of an upload ever reaches the disk. Memory stays bounded: Werkzeug refuses
  a body over ``MAX_CONTENT_LENGTH`` (413) before reading it, and stops reading a body
  without a length (chunked) at the same limit.
* A form body that cannot be parsed (cut short, a boundary that does not match, a part
  header that is not UTF-8) raises :class:`~catdog.api.errors.MalformedForm`. Werkzeug's
  default is to swallow the error and return an empty form, which a client would read as
  "you sent no field named image".
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from typing import IO

from flask import Request, current_app
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge, RequestTimeout
from werkzeug.formparser import FormDataParser
from werkzeug.utils import cached_property

from catdog.api.errors import MalformedBody, MalformedForm, UnsupportedBody

#: ``app.config`` key of the seconds a client may take to send its body (CATDOG_READ_TIMEOUT).
READ_TIMEOUT_KEY = "CATDOG_READ_TIMEOUT"
MULTIPART = "multipart/form-data"


def require_body_type(req: Request, accepted: Callable[[str], bool], how: str) -> None:
    """Refuse (415) a body whose type ``accepted`` does not take, before anything parses it.

    ``how`` completes "send ..." in the error: what the endpoint does read.
    """
    mimetype = req.mimetype
    if accepted(mimetype):
        return
    if not mimetype and not req.content_length and "Transfer-Encoding" not in req.headers:
        return  # no body at all: nothing to parse, and the endpoint's own error says what to send
    raise UnsupportedBody(mimetype, how)


def require_upload_body(req: Request, *, raw_image: bool = True) -> None:
    """The REST prediction endpoints: multipart, and (for one photo) a raw ``image/*`` body."""
    if raw_image:
        require_body_type(req, lambda mimetype: mimetype == MULTIPART or mimetype.startswith("image/"),
                          "the photo as the multipart/form-data file field 'image', or its raw bytes "
                          "with an image/* Content-Type")
    else:
        require_body_type(req, lambda mimetype: mimetype == MULTIPART,
                          "the photos as multipart/form-data file fields 'images'")


class BoundedBody(io.RawIOBase):
    """The request body as the server hands it over, read within a size limit and a deadline.

    ``length`` is the Content-Length (None when chunked). A chunked body may not go past
    ``limit``: one byte more is a 413. Each read may wait only for what is left of
    ``seconds`` (the socket's timeout is set to it when the server exposes the socket,
    as gunicorn does); past it the answer is 408. Errors the server raises on broken
    framing (a chunk size that is not hex) become 400 ``malformed_body``.
    """

    def __init__(self, raw: IO[bytes], *, length: int | None, limit: int | None, seconds: float,
                 sock: socket.socket | None = None):
        self._raw, self._length, self._limit, self._sock = raw, length, limit, sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._read = 0
        if hasattr(sock, "arm_body"):
            # catdog's gunicorn workers: one deadline over every recv of the body, however the
            # server loops over them (catdog.api.workers.ReadDeadline).
            sock.arm_body(seconds)  # type: ignore[union-attr]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        want = len(view)
        if self._length is not None:
            want = min(want, self._length - self._read)
        elif self._limit is not None:
            want = min(want, self._limit + 1 - self._read)  # one byte past the limit tells
        if want <= 0:
            return 0
        data = self._read_raw(want)
        if not data:
            if self._length is not None and self._read < self._length:
                raise ClientDisconnected()
            return 0
        self._read += len(data)
        if self._length is None and self._limit is not None and self._read > self._limit:
            raise RequestEntityTooLarge()
        view[: len(data)] = data
        return len(data)

    def _read_raw(self, size: int) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout(f"The request body did not arrive within {self._seconds:g} s; "
                                 "send it again over a faster connection.")
        previous = self._sock.gettimeout() if self._sock is not None else None
        try:
            if self._sock is not None:
                self._sock.settimeout(remaining)
            return self._raw.read(size)
        except TimeoutError:
            raise RequestTimeout(f"The request body did not arrive within {self._seconds:g} s; "
                                 "send it again over a faster connection.") from None
        except OSError:
            raise ClientDisconnected() from None
        except Exception as exc:
            # The server's parser on broken framing (gunicorn.http.errors: InvalidChunkSize,
            # ChunkMissingTerminator...); matched by module so the app does not import gunicorn.
            if type(exc).__module__.startswith("gunicorn."):
                raise MalformedBody(type(exc).__name__) from None
            raise
        finally:
            if self._sock is not None:
                try:
                    self._sock.settimeout(previous)
                except OSError:
                    pass


class UploadRequest(Request):
    """The request class of the catdog app (``app.request_class``)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        """The body through :class:`BoundedBody` (Werkzeug's own stream would cut a chunked
        body at the limit without a word, and wait on a stalled client for ever)."""
        length, limit = self.content_length, self.max_content_length
        if length is not None and limit is not None and length > limit:
            raise RequestEntityTooLarge()
        if length is None and "wsgi.input_terminated" not in self.environ:
            return io.BytesIO()  # a server that does not frame chunked bodies: read nothing (as Werkzeug)
        seconds = float(current_app.config.get(READ_TIMEOUT_KEY) or 10.0)
        raw = self.environ["wsgi.input"]
        body = BoundedBody(raw, length=length, limit=limit, seconds=seconds,
                           sock=self.environ.get("gunicorn.socket"))
        return io.BufferedReader(body, 64 * 1024)

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()

    def make_form_data_parser(self) -> FormDataParser:
        parser = super().make_form_data_parser()
        parser.silent = False  # parse errors raise ValueError; _load_form_data names them
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError as exc:
            # Leave an empty form behind, so nothing that reads it later parses the body again.
            empty = self.parameter_storage_class()
            self.__dict__.update(form=empty, files=empty)
            raise MalformedForm(self.mimetype, not_utf8=isinstance(exc, UnicodeDecodeError)) from None
