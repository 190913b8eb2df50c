# catdog container images: the REST API (default target) and the Streamlit web UI.
#
#   docker build -t cat_dog_classifier .                         # API  (target "api", the last stage)
#   docker build --target ui -t cat_dog_classifier_ui .          # web UI
#
# Both targets share one wheel build and one serving virtualenv; the UI venv is that venv plus
# Streamlit. Neither contains torch/timm (training only) or the tests and data (see .dockerignore).
# The base image is pinned by tag; for byte-for-byte reproducible builds pin it by digest too,
# e.g. FROM python:3.11-slim@sha256:<digest> (docs/deploy.md says how to look the digest up).

# ---------------------------------------------------------------------------- base
# Settings every stage shares. The venv lives at /opt/venv and comes first on PATH.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# ---------------------------------------------------------------------------- wheel
# One wheel of catdog. Only pyproject.toml and src/ are copied, so editing docs or tests
# does not invalidate this layer.
FROM base AS wheel
WORKDIR /build
COPY pyproject.toml ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------- api-venv
# The serving dependencies ([project].dependencies: onnxruntime, flask, gunicorn, ...).
# They are installed from pyproject.toml alone first, so this slow layer stays cached
# while only the code changes; the wheel then adds catdog itself. The venv has no pip or
# setuptools of its own (~25 MB): the base image's pip installs into it with --python.
FROM base AS api-venv
WORKDIR /build
COPY pyproject.toml ./
RUN python -m venv --without-pip /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && pip --python /opt/venv/bin/python install --no-cache-dir -r requirements.txt
COPY --from=wheel /wheels /wheels
RUN pip --python /opt/venv/bin/python install --no-cache-dir /wheels/catdog-*.whl

# ---------------------------------------------------------------------------- ui-venv
# The serving venv plus the [ui] extra (Streamlit); still no torch.
FROM api-venv AS ui-venv
# DL3013 (pin versions): the argument is the local wheel built above, not an index package;
# its [ui] extra is bounded in pyproject.toml like every other dependency.
# hadolint ignore=DL3013
RUN set -- /wheels/catdog-*.whl \
 && pip --python /opt/venv/bin/python install --no-cache-dir "$1[ui]"

# ---------------------------------------------------------------------------- runtime
# What both final images have in common: an unprivileged user and the PORT convention
# (Cloud Run sets $PORT; 8080 is its default and ours).
FROM base AS runtime
ARG REVISION=unknown
LABEL org.opencontainers.image.vendor="catdog" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
# The API's feedback database defaults to ~/.local/share/catdog/ (CATDOG_FEEDBACK_PATH): made here,
# owned by the user, so a volume mounted there (compose.yaml) is writable too.
RUN groupadd --system --gid 10001 catdog \
 && useradd --system --uid 10001 --gid catdog --create-home --home-dir /home/catdog \
      --shell /usr/sbin/nologin catdog \
 && install -d -o catdog -g catdog /home/catdog/.local /home/catdog/.local/share /home/catdog/.local/share/catdog
WORKDIR /app
# ONNX Runtime's Linux wheels ship Microsoft 1DS telemetry (events.data.microsoft.com);
# a service sends nothing it was not asked to.
ENV PORT=8080 \
    ORT_DISABLE_TELEMETRY=1
EXPOSE 8080

# ---------------------------------------------------------------------------- ui
# Streamlit runs the installed catdog/ui/app.py; the page calls the API from the server
# process, at $CATDOG_API_URL. The script path follows the base image's Python version;
# the RUN test makes a mismatch fail the build, not the deployment.
FROM runtime AS ui
LABEL org.opencontainers.image.title="cat_dog_classifier_ui" \
      org.opencontainers.image.description="catdog web UI (Streamlit) for the cat-vs-dog classification API"
COPY --from=ui-venv /opt/venv /opt/venv
# Hiding Streamlit's start-up banner also skips its "External URL" line, for which it
# would call checkip.amazonaws.com on every start.
ENV CATDOG_API_URL=http://localhost:8000 \
    CATDOG_UI_SCRIPT=/opt/venv/lib/python3.11/site-packages/catdog/ui/app.py \
    STREAMLIT_LOGGER_HIDE_WELCOME_MESSAGE=true
RUN test -f "$CATDOG_UI_SCRIPT"
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('PORT', '8080'), timeout=4)"]
# A shell is needed only to expand $PORT; exec hands PID 1 (and SIGTERM) to Streamlit.
CMD ["sh", "-c", "exec streamlit run \"$CATDOG_UI_SCRIPT\" --server.port=\"$PORT\" --server.address=0.0.0.0 --server.headless=true --browser.gatherUsageStats=false"]

# ---------------------------------------------------------------------------- api (default)
# gunicorn serves catdog.api:create_app(); catdog.api.gunicorn_conf binds 0.0.0.0:$PORT and
# sizes the workers. The default model is inside the installed wheel (package data), so
# nothing needs to point at it; CATDOG_MODEL=/app/models/catdog-lite0 picks the other one.
FROM runtime AS api
LABEL org.opencontainers.image.title="cat_dog_classifier" \
      org.opencontainers.image.description="catdog REST API: cat-vs-dog photo classification (ONNX Runtime, Flask, gunicorn)"
COPY --from=api-venv /opt/venv /opt/venv
# The smaller, faster, 1-point-less-accurate model rides along (3.6 MB): CATDOG_MODEL picks it.
COPY models/catdog-lite0 /app/models/catdog-lite0
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
CMD ["gunicorn", "--config", "python:catdog.api.gunicorn_conf", "catdog.api:create_app()"]
