"""Memory a server worker gives back to the system, and the ceiling that replaces it.

A worker that decoded a 40 MP image or ran a batch holds memory it no longer uses: glibc
keeps freed blocks in its arenas (one per thread that allocated) and ONNX Runtime keeps the
peak of its largest run (the engine shrinks it after batches, see
:class:`catdog.model.backends.OnnxBackend`). Between requests, :class:`MemoryGuard`

* asks glibc to return free memory (``malloc_trim(0)``) once the requests since the last
  time decoded more than :data:`TRIM_AFTER_BYTES` (a photo decodes in a few MB: ordinary
  traffic pays nothing);
* compares the worker's resident memory with ``CATDOG_WORKER_MAX_RSS_MB``; over it (after a
  trim), the worker is replaced gracefully: it finishes what it is serving, accepts nothing
  new, and the master starts a fresh one (:mod:`catdog.api.workers`).

glibc's arenas are also capped (:func:`limit_arenas`, as ``MALLOC_ARENA_MAX=2`` would): each
gthread thread would otherwise keep an arena of its own. Elsewhere than glibc (musl, macOS)
all of this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

#: Decoding (estimated bytes, :class:`catdog.model.decode.DecodeGate`) after which freed memory
#: is handed back: a batch of photos or one large image, not a single phone photo.
TRIM_AFTER_BYTES = 32 << 20
#: glibc's mallopt parameter for the arena count, and the count (main arena + one more).
_M_ARENA_MAX = -8
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


def limit_arenas(count: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas for this process (threads share them instead of one each)."""
    try:
        return bool(_LIBC.mallopt(_M_ARENA_MAX, count)) if _LIBC is not None else False
    except AttributeError:
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
        """Trim if the requests since the last trim decoded a lot; True if over the ceiling."""
        with self._lock:
            decoded = self._gate.decoded
            trimmed = decoded - self._seen >= self.trim_after
            if trimmed:
                self._seen = decoded
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
