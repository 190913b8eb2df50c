"""How much each worker takes on at once: read by the gunicorn config (in the master, so no
Flask here) and by :mod:`catdog.api.overload` (in each worker)."""

from __future__ import annotations

import math

from catdog.config import Settings
from catdog.model.backends import default_threads

#: Photo requests a worker classifies at once. One: a worker has one core (one worker per
#: core), and a second photo decoding while the first is in ONNX Runtime only shared that core,
#: evicting the model from its cache: 16 vs 15 ms of CPU a request, 123 vs 133-142 req/s at 16
#: connections (docs/benchmarks.md, "Serving side by side"). Other threads still read bodies.
ACTIVE_PER_WORKER = 1
#: Requests that are costly to decode (catdog.api.overload, the heavy lane) a worker works on at once.
HEAVY_PER_WORKER = 1
#: Threads beyond the slots and the queues, that read bodies and answer 503s (gthread).
SPARE_THREADS = 4


def worker_count(settings: Settings) -> int:
    return settings.workers or default_threads()


def queue_per_worker(settings: Settings) -> int:
    """Each worker's share of CATDOG_MAX_QUEUE (rounded up: 0 stays 0)."""
    return math.ceil(settings.max_queue / worker_count(settings))


def threads_per_worker(settings: Settings) -> int:
    """gthread threads: enough to hold both lanes' slots and queues and still answer the excess."""
    lanes = ACTIVE_PER_WORKER + HEAVY_PER_WORKER + 2 * queue_per_worker(settings)
    return max(settings.worker_threads, lanes + SPARE_THREADS)
