#!/usr/bin/env python3
"""Fill the placeholders of a Cloud Run service YAML and print it, for ``gcloud run services replace``.

    python3 deploy/cloudrun/render.py deploy/cloudrun/service.yaml \\
        --project my-project --region europe-west1 --tag 1a2b3c4 > /tmp/service.yaml

The YAML files stay readable and valid with their placeholders (``REGION``, ``PROJECT_ID``,
``TAG``, the repository ``catdog`` and ``https://API_SERVICE_URL``); this one script fills them
in for Cloud Build and for people alike, and refuses to print a file with a placeholder left.
Standard library only: it runs in the Cloud SDK image as well as on a laptop.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: How the YAML files spell the registry part of an image reference, before rendering.
REGISTRY_PLACEHOLDER = "REGION-docker.pkg.dev/PROJECT_ID/catdog/"
TAG_PLACEHOLDER = re.compile(r"^(\s*image:\s*\S+):TAG\s*$", re.MULTILINE)
API_URL_PLACEHOLDER = "https://API_SERVICE_URL"
SERVICE_NAME = re.compile(r"^(metadata:\n  name:) \S+$", re.MULTILINE)
LEFTOVERS = ("PROJECT_ID", REGISTRY_PLACEHOLDER, ":TAG", "API_SERVICE_URL")


def render(text: str, *, project: str, region: str, tag: str, repo: str = "catdog",
           service: str | None = None, api_url: str | None = None) -> str:
    """Return ``text`` without its comment lines and with every placeholder replaced.

    Raises ValueError if a placeholder is left (e.g. the UI's API URL was not given).
    """
    lines = text.splitlines(keepends=True)
    text = "".join(line for line in lines if not line.lstrip().startswith("#"))
    text = text.replace(REGISTRY_PLACEHOLDER, f"{region}-docker.pkg.dev/{project}/{repo}/")
    text = TAG_PLACEHOLDER.sub(lambda m: f"{m.group(1)}:{tag}", text)
    text = text.replace("PROJECT_ID", project)
    if api_url:
        text = text.replace(API_URL_PLACEHOLDER, api_url.rstrip("/"))
    if service:
        text = SERVICE_NAME.sub(lambda m: f"{m.group(1)} {service}", text, count=1)
    left = [p for p in LEFTOVERS if p in text]
    if left:
        raise ValueError(f"placeholders left unfilled: {', '.join(left)} (see --help)")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("yaml", type=Path, help="deploy/cloudrun/service.yaml or service-ui.yaml")
    parser.add_argument("--project", required=True, help="Google Cloud project ID")
    parser.add_argument("--region", required=True, help="Cloud Run and Artifact Registry region")
    parser.add_argument("--tag", required=True, help="image tag, e.g. the short commit SHA")
    parser.add_argument("--repo", default="catdog", help="Artifact Registry repository (default: catdog)")
    parser.add_argument("--service", help="Cloud Run service name (default: the one in the file)")
    parser.add_argument("--api-url", help="the API service's URL (service-ui.yaml only)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.yaml.read_text(), project=args.project, region=args.region,
                                tag=args.tag, repo=args.repo, service=args.service,
                                api_url=args.api_url))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
