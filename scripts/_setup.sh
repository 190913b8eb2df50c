# Shared by scripts/*.sh (sourced, from the repository root): the virtual environment and the install.
VENV=${CATDOG_VENV:-.venv}

install_catdog() {  # $1: the extras, e.g. "ui" or "train,test,keras"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  echo "== installing catdog with the $1 extras into $VENV"
  # pip's notes about this machine's local package mirrors are noise; a failed install is not:
  # with pipefail the pipeline keeps pip's exit status, and set -e stops the script on it.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$1]" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
}
