"""catdog's own Classifier served by LitServe (issue 24's peer), as a LitServe user would write it.

    python bench/baselines/litserve_app.py --port 8000 --workers 2

``POST /predict`` with the multipart field ``image`` (what bench/speed.py's wrk sends); one
inference worker per core (``workers_per_device``), one ONNX Runtime thread each, uvicorn in
front. Runs in the bench-only environment (``pip install -e .[peers]``), never in serving's.
"""

from __future__ import annotations

import argparse
import os

import litserve as ls


class CatdogAPI(ls.LitAPI):
    def setup(self, device):
        from catdog.model.engine import Classifier

        self.classifier = Classifier.load(os.environ.get("CATDOG_MODEL") or None, threads=1)

    def decode_request(self, request):
        upload = request["image"]
        return upload.file.read() if hasattr(upload, "file") else upload

    def predict(self, data):
        return self.classifier.predict(data)

    def encode_response(self, prediction):
        return prediction.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    server = ls.LitServer(CatdogAPI(), accelerator="cpu", workers_per_device=args.workers)  # POST /predict
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
