"""``/openapi.json``, a human docs page at ``/docs`` rendered from the same document, and ``/``.

The page is plain server-rendered HTML with inline CSS: no JavaScript, no CDN, so it
works offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from flask import Response

from catdog.api.endpoint import JSON, DocContext, Endpoint, Service, json_body
from catdog.api.errors import ERROR_TABLE

DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;border-radius:4px}
code{padding:.1em .3em} pre{padding:.8em;overflow-x:auto}
section{border-top:1px solid #ddd;padding:.6rem 0}
.m{display:inline-block;min-width:3.5rem;font-weight:700;color:#fff;border-radius:4px;
   text-align:center;margin-right:.5rem;padding:0 .3rem}
.get{background:#2b7bb9}.post{background:#2f9e44}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
"""


def _text(value: str) -> str:
    """Escape, then render `backticks` as code (the only markup the document uses)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(value, quote=False))


def _operation(path: str, method: str, op: dict) -> str:
    badge = f'<span class="m {method}">{method.upper()}</span>'
    parts = [
        f'<section id="{html.escape(op.get("operationId", path))}">',
        f"<h3>{badge}<code>{html.escape(path)}</code> {_text(op.get('summary', ''))}</h3>",
    ]
    if op.get("description"):
        parts.append(f"<p>{_text(op['description'])}</p>")
    body = op.get("requestBody", {}).get("content", {})
    for content_type, spec in body.items():
        fields = spec.get("schema", {}).get("properties", {})
        names = ", ".join(f"<code>{html.escape(name)}</code>" for name in fields) or "the raw bytes"
        parts.append(f"<p>Body <code>{html.escape(content_type)}</code>: {names}</p>")
    rows = "".join(
        f"<tr><td>{html.escape(status)}</td><td>{_text(response.get('description', ''))}</td></tr>"
        for status, response in op.get("responses", {}).items()
    )
    parts.append(f"<table><tr><th>Status</th><th>Meaning</th></tr>{rows}</table></section>")
    return "\n".join(parts)


def render_docs(document: dict) -> str:
    """The whole page, from an OpenAPI document."""
    info = document["info"]
    operations = "\n".join(
        _operation(path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    )
    errors = "".join(
        f"<tr><td>{status}</td><td><code>{code}</code></td><td>{html.escape(when)}</td></tr>"
        for status, code, when in ERROR_TABLE
    )
    auth = (
        "<p>This server needs an API key: send it in the <code>X-API-Key</code> header.</p>"
        if document.get("security") else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(info["title"])} {html.escape(info["version"])}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(info["title"])} <small>{html.escape(info["version"])}</small></h1>
<p>{_text(info.get("description", ""))}</p>{auth}
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI {html.escape(document["openapi"])}).</p>
<h2>Try it</h2>
<pre>curl -F image=@cat.jpg http://HOST/v1/predict
curl -H 'Content-Type: image/jpeg' --data-binary @cat.jpg http://HOST/v1/predict
curl -F images=@cat.jpg -F images=@dog.jpg http://HOST/v1/predict/batch
curl -H 'Content-Type: application/json' http://HOST/v2/models/catdog/infer -d \
  '{{"inputs": [{{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["'$(base64 -w0 cat.jpg)'"]}}]}}'</pre>
<h2>Endpoints</h2>
{operations}
<h2>Errors</h2>
<p>Every error is JSON <code>{{"error": {{"code": "...", "message": "..."}}}}</code>.</p>
<table><tr><th>Status</th><th>Code</th><th>When</th></tr>{errors}</table>
</body></html>
"""


@dataclass(frozen=True)
class RenderedDocs:
    """The document as served: rendered once per app, never per request."""

    spec: bytes
    page: bytes
    index: bytes

    @classmethod
    def of(cls, document: dict) -> RenderedDocs:
        return cls(
            spec=json.dumps(document, indent=2).encode(),
            page=render_docs(document).encode(),
            index=json.dumps({
                "name": document["info"]["title"],
                "version": document["info"]["version"],
                "docs": "/docs",
                "openapi": "/openapi.json",
            }).encode(),
        )


def _rendered(service: Service) -> RenderedDocs:
    if service.docs is None:
        raise RuntimeError("create_app publishes the docs before serving")
    return service.docs


class Index(Endpoint):
    """``GET /``: where the docs are."""

    routes = ("/",)
    open = True

    def get(self) -> Response:
        return Response(_rendered(self.service).index, mimetype="application/json")

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "index", "summary": "Where the docs are",
            "responses": {"200": json_body({"type": "object"}, "name, version and links")},
        }}


class DocsPage(Endpoint):
    """``GET /docs``: this document as a web page."""

    routes = ("/docs",)
    open = True

    def get(self) -> Response:
        response = Response(_rendered(self.service).page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DOCS_CSP
        return response

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "docs", "summary": "This API, as a web page",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }}


class OpenApiJson(Endpoint):
    """``GET /openapi.json``: the machine-readable document."""

    routes = ("/openapi.json",)
    open = True

    def get(self) -> Response:
        return Response(_rendered(self.service).spec, mimetype="application/json")

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": json_body({"type": "object"}, "OpenAPI 3 document")},
        }}


ENDPOINTS: tuple[type[Endpoint], ...] = (Index, DocsPage, OpenApiJson)
