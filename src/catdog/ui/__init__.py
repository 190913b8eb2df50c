"""The web UI: a Streamlit page (:mod:`catdog.ui.app`) that talks to the REST API over HTTP.

The page never imports the model; it talks to the API through :mod:`catdog.client`
(the package's Python client), so the page script knows no URLs or JSON.
"""
