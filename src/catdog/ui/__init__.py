"""The web UI: a Streamlit page (:mod:`catdog.ui.app`) that talks to the REST API over HTTP.

The page never imports the model; :mod:`catdog.ui.client` is the only place that
knows the API's URLs and JSON, so the page script can stay short.
"""
