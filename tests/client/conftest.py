"""The client is tested against the real app: reuse the API's app fixtures."""

from tests.api.conftest import app, bad_inputs, live_url, make_app  # noqa: F401 (pytest fixtures)
