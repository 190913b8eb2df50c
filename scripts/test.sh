#!/usr/bin/env bash
# Set up everything the test suite needs (idempotent), lint and type-check src/, then run the tests.
#   bash scripts/test.sh            # the whole suite, slow tests included (what CI runs)
#   bash scripts/test.sh -m "not slow" tests/model   # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
install_catdog "train,test,keras,bulk"

# A real browser for the end-to-end UI test: Debian's Chromium (Playwright's own download cannot work here).
# The emoji font makes the page's 🐱/🐶 render in the screenshot.
if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/noto ]; then
  echo "== installing Debian's chromium (and an emoji font) for the browser test"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped"
fi

# A real Redis for the shared rate-limit tests (tests/reliability/test_limits.py), and wrk, the C
# load generator bench/speed.py drives (its harness tests run it): Debian's packages, like chromium.
if ! command -v redis-server >/dev/null || ! command -v wrk >/dev/null; then
  echo "== installing Debian's redis-server and wrk"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  ($SUDO apt-get install -y -qq redis-server wrk >/dev/null 2>&1 \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server wrk >/dev/null)) \
    || echo "warning: could not install redis-server/wrk; the shared rate-limit and wrk harness tests will be skipped"
fi

# A real PostgreSQL for the feedback store's tests (tests/feedback: the suite starts its own server in a
# temporary folder, as the postgres user, on a free loopback port): Debian's package, like redis-server.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "== installing Debian's postgresql"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  ($SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null)) \
    || echo "warning: could not install postgresql; the feedback tests on PostgreSQL will be skipped"
fi

echo "== lint (ruff) and types (mypy) on src/"
"$VENV/bin/ruff" check src/
"$VENV/bin/mypy" src/

echo "== running the tests"
exec "$VENV/bin/python" -m pytest "$@"
