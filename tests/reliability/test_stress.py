"""``bench/stress.py`` as a test with smaller numbers: 16 clients for 8 s on a 2-worker server.

Photos alternate with the hostile corpus; every answer is checked. The full run (64 clients,
60 s) is ``python bench/stress.py``; its figures are in docs/reliability.md.
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import bench_module

pytestmark = pytest.mark.slow


def test_mixed_load_gets_no_connection_error_no_5xx_and_no_wrong_answer(gunicorn, figures):
    stress = bench_module("stress")
    server = gunicorn(workers=2)
    workers = sorted(server.workers())
    result = stress.run_stress(server.port, stress.mix(), clients=16, seconds=8)
    summary = result.to_dict()
    figures.results["stress-test"] = {
        "command": "pytest tests/reliability/test_stress.py (16 clients, 8 s, 2 workers)",
        **{key: summary[key] for key in ("requests", "valid", "invalid", "rps", "p50_ms", "p99_ms",
                                         "connection_errors", "server_errors_5xx", "wrong_answers", "shed_503")},
    }
    assert result.requests > 150
    assert result.connection_errors == 0, result.examples
    assert result.server_errors == 0, result.examples
    assert result.wrong_answers == 0, result.examples
    assert sorted(server.workers()) == workers, "a worker died under load"
    assert "Traceback" not in server.log()
