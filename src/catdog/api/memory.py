"""Memory a server worker gives back to the system, and the ceiling that replaces it.

A worker that decoded a 40 MP image or ran a batch holds memory it no longer uses: glibc
keeps freed blocks in its arenas (one per thread that allocated) and ONNX Runtime keeps the
peak of its largest run (the engine shrinks it after batches, see
:class:`catdog.model.backends.OnnxBackend`). Between requests, :class:`MemoryGuard`

* asks glibc to return free memory (``malloc_trim(0)``) after requests that decoded more
  than :data:`TRIM_AFTER_BYTES` since the previous check: a large image or a large batch, never
  ordinary photos, however many (counting them up to the threshold trimmed every 40 photos or
  so, and the worker faulted the freed pages back in: 260 page faults a request on average);
* compares the worker's resident memory with ``CATDOG_WORKER_MAX_RSS_MB``; over it (after a
  trim), the worker is replaced gracefully: it finishes what it is serving, accepts nothing
  new, and the master starts a fresh one (:mod:`catdog.api.workers`).

:func:`tune_malloc` sets glibc up for this once per worker (as ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_ARENA_MAX`` would):

* **big blocks are mmapped** (from 1 MB): glibc would otherwise raise its mmap threshold to
  32 MB after the first large free, and the pixel blocks of a 40 MP image (Pillow allocates
  in 16 MB blocks) would stay in the arena of the thread that decoded it, one per thread;
  mmapped, they go back to the system on free (docs/reliability.md, "Memory under
  decoded-size bombs");
* **the heap's top is kept** up to 32 MB: fixing the mmap threshold stops glibc adjusting
  its trim threshold too, which stays at 128 KB, so every photo shrank the heap at free and
  grew it again at the next request, about 500 page faults and 0.6-1 ms of CPU a photo
  (docs/benchmarks.md, "Serving side by side"). Large decodes are trimmed by the guard;
* **two arenas**: each gthread thread would otherwise keep an arena of its own.

Elsewhere than glibc (musl, macOS) all of this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

#: Decoding (estimated bytes, :class:`catdog.model.decode.DecodeGate`) after which freed memory
#: is handed back: a batch of photos or one large image, not a single phone photo.
TRIM_AFTER_BYTES = 32 << 20
#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: Allocations from this size are mmapped, and unmapped on free.
MMAP_THRESHOLD = 1 << 20
#: Free memory at the top of the heap kept for the next request rather than given back at once.
TRIM_THRESHOLD = 32 << 20
#: Arenas: the main one and one more, shared by every thread.
ARENA_MAX = 2
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


_LIBC = _libc()


def trim() -> bool:
    """Give free heap memory back to the system (glibc ``malloc_trim``); True if anything was."""
    try:
        return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False
    except AttributeError:  # not glibc
        return False


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds and its arena count for this process (see the module
    docstring); True if glibc took all three."""
    try:
        return _LIBC is not None and all([
            _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX),
        ])
    except AttributeError:  # not glibc
        return False


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryGuard:
    """Called after every request of a worker; says when the worker should be replaced."""

    def __init__(self, max_rss_bytes: int | None, *, trim_after: int = TRIM_AFTER_BYTES):
        from catdog.model.decode import DECODE_GATE

        self._gate = DECODE_GATE
        self.max_rss_bytes = max_rss_bytes
        self.trim_after = trim_after
        self._seen = DECODE_GATE.decoded
        self._lock = threading.Lock()
        self.trims = 0
        self.last_rss = 0

    def after_request(self) -> bool:
        """Trim if the requests since the previous call decoded a lot; True if over the ceiling."""
        with self._lock:
            decoded = self._gate.decoded
            trimmed = decoded - self._seen >= self.trim_after
            self._seen = decoded
            if trimmed:
                trim()
                self.trims += 1
            if self.max_rss_bytes is None:
                return False
            self.last_rss = rss_bytes()
            if self.last_rss <= self.max_rss_bytes:
                return False
            if not trimmed:
                trim()
                self.trims += 1
                self.last_rss = rss_bytes()
            return self.last_rss > self.max_rss_bytes
