"""Helpers for testing a catdog deployment: the hostile-input corpus (:mod:`catdog.testing.hostile`).

Used by catdog's own tests and ``bench/stress.py``; importable by anyone who wants to throw
the same bad uploads at their own server. Serving never imports it.
"""
