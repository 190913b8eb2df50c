#!/usr/bin/env bash
# Set up the app (idempotent) and run it: the REST API and the web UI on the bundled model.
#   bash scripts/up.sh              # then open the printed URL (http://127.0.0.1:8501)
#   bash scripts/up.sh --api-port 9000 --ui-port 9501   # any `catdog up` options
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CATDOG_VENV:-.venv}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
echo "== installing catdog with the ui extra into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[ui]" 2>&1 \
  | grep -v "^WARNING: Location" || true
exec "$VENV/bin/catdog" up "$@"
