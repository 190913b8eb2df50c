#!/usr/bin/env bash
# Set up the app (idempotent) and run it: the REST API and the web UI on the bundled model.
#   bash scripts/up.sh              # then open the printed URL (http://127.0.0.1:8501)
#   bash scripts/up.sh --api-port 9000 --ui-port 9501   # any `catdog up` options
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
install_catdog "ui"
exec "$VENV/bin/catdog" up "$@"
