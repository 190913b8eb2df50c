"""How the API reads request bodies: in memory, and loudly when a form cannot be parsed.

Two changes to Flask's request class, both for uploads:

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
from typing import IO

from flask import Request
from werkzeug.formparser import FormDataParser

from catdog.api.errors import MalformedForm


class UploadRequest(Request):
    """The request class of the catdog app (``app.request_class``)."""

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
