"""Who may call the API and what browsers may do with its answers.

CORS for the configured origins only, browser-hardening headers on every response,
an optional API key (``CATDOG_API_KEYS``) and an optional per-client rate limit on
photos (``CATDOG_RATE_LIMIT``). Endpoints declared ``open`` (health, readiness, metrics, the
docs: see :mod:`catdog.api.endpoint`) need no key and are never throttled, so probes,
scrapers and people reading the docs are never locked out.

The rate limit is one budget of photos per client address across every endpoint declared
``counts_photos`` (the ones that classify: ``/v1/predict``, ``/v1/explain``,
``/v1/predict/batch``, v2 ``infer``): a single prediction costs one, a batch of 8 costs 8. Its counts live in
``CATDOG_RATE_LIMIT_STORAGE``: ``memory://`` keeps them in each worker process (the limit is
then per worker, and per instance), ``redis://host:port`` shares one count between every
worker and every instance.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from flask_cors import CORS

from catdog.api.endpoint import is_open_request, is_photo_request
from catdog.api.errors import RateLimited, RateLimitStoreDown, Unauthorized
from catdog.api.observability import REQUEST_ID_HEADER
from catdog.config import Settings

log = logging.getLogger("catdog.api")

API_KEY_HEADER = "X-API-Key"

#: Headers every response carries: no MIME sniffing, no framing, no referrer leaks.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: JSON and metrics need no content policy at all; the docs page sets a looser one.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


def init_security(app: Flask, settings: Settings) -> None:
    """Install CORS, security headers, then the rate limit, then the key check (in that order:
    throttling comes before authentication so nobody can guess keys at full speed)."""
    if settings.cors_origins:
        CORS(
            app,
            origins=settings.cors_origins,
            methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", API_KEY_HEADER, REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            max_age=600,
            always_send=False,  # no CORS headers for requests without an Origin (curl, servers)
        )

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    if settings.rate_limit:
        _init_rate_limit(app, settings)
    else:
        log.info("rate limit: none (set CATDOG_RATE_LIMIT, e.g. 120/minute, to limit photos per client)")
    if settings.api_keys:
        _init_api_keys(app, settings.api_keys)
    else:
        log.info("API keys: none; anyone who can reach the API may use it (set CATDOG_API_KEYS)")


#: Seconds between attempts to reach a store that failed: meanwhile requests do not wait on it.
STORE_RETRY_SECONDS = 5.0


@dataclass
class PhotoRateLimit:
    """One moving-window budget of photos per client, in the configured store.

    When the store cannot be reached (Redis down), ``store_down`` decides: ``local`` counts in
    this worker's memory with the same limit until the store answers again (a client gets at
    most the limit per worker), ``refuse`` answers photo requests 503 with Retry-After. The
    store is tried again every :data:`STORE_RETRY_SECONDS` only, so a store that hangs costs
    one request a second at most per worker; the outage is logged once when it starts and once
    when it ends, and shows in /metrics (``catdog_rate_limit_store_up``) and /readyz.
    """

    limit: object  # limits.RateLimitItem
    limiter: object  # limits.strategies.MovingWindowRateLimiter
    text: str
    store_down: str = "local"
    #: Where the counts live, as logged ("redis://host"); "memory" for the per-worker store.
    where: str = "memory"
    metrics: Any = None
    down_since: float | None = None
    retry_at: float = 0.0
    _local: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, photos: int) -> None:
        """Spend ``photos`` of this client's budget, or raise 429 (nothing is spent then)."""
        self._ask(photos, spend=True)

    def check(self) -> None:
        """Raise 429 if this client has no photo left, spending nothing."""
        self._ask(1, spend=False)

    def _ask(self, photos: int, *, spend: bool) -> None:
        if photos <= 0:
            return
        key = client_address()
        limiter: Any = self.limiter
        if self.down_since is not None and time.monotonic() < self.retry_at:
            limiter = self._fallback()
        else:
            try:
                allowed = (limiter.hit if spend else limiter.test)(self.limit, "photos", key, cost=photos)
                stats = None if allowed else limiter.get_window_stats(self.limit, "photos", key)
            except Exception as exc:  # noqa: BLE001 - whatever the store raises (connection, timeout)
                self._store_failed(exc)
                limiter = self._fallback()
            else:
                self._store_answered()
                if allowed:
                    return
                self._refuse(stats, photos)
        allowed = (limiter.hit if spend else limiter.test)(self.limit, "photos", key, cost=photos)
        if not allowed:
            self._refuse(limiter.get_window_stats(self.limit, "photos", key), photos)

    def _refuse(self, stats: Any, photos: int) -> None:
        retry = max(1, int(stats.reset_time - time.time() + 0.999))
        raise RateLimited(self.text, retry_after=retry, photos=photos, remaining=stats.remaining)

    def _fallback(self) -> Any:
        """The per-worker limiter used while the store is down (``local``), or a 503 (``refuse``)."""
        if self.store_down == "refuse":
            raise RateLimitStoreDown(retry_after=int(STORE_RETRY_SECONDS))
        with self._lock:
            if self._local is None:
                from limits.storage import MemoryStorage
                from limits.strategies import MovingWindowRateLimiter

                self._local = MovingWindowRateLimiter(MemoryStorage())
            return self._local

    def _store_failed(self, exc: Exception) -> None:
        with self._lock:
            self.retry_at = time.monotonic() + STORE_RETRY_SECONDS
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        what = ("counting photos in this worker's memory (at most the limit per worker) until it is back"
                if self.store_down == "local" else "refusing photo requests with 503 until it is back")
        log.error("rate limit store %s unreachable (%s); %s (CATDOG_RATE_LIMIT_STORE_DOWN=%s)",
                  self.where, type(exc).__name__, what, self.store_down)
        if self.metrics is not None:
            self.metrics.store_up.set(0)
            self.metrics.outages.inc()

    def _store_answered(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
            self._local = None  # the store's counts are the truth again
        if since is not None:
            log.warning("rate limit store %s reachable again after %.0f s", self.where, time.monotonic() - since)
        if self.metrics is not None:
            self.metrics.store_up.set(1)

    def status(self) -> dict[str, Any]:
        return {"store": self.where, "reachable": self.down_since is None, "when_down": self.store_down}


@dataclass(frozen=True)
class StoreMetrics:
    store_up: Any
    outages: Any

    @classmethod
    def create(cls, registry: Any) -> StoreMetrics:
        from prometheus_client import Counter, Gauge

        up = Gauge("catdog_rate_limit_store_up", "1 when the rate limit store answers, 0 while it is "
                   "unreachable (per worker; the minimum over workers)", registry=registry,
                   multiprocess_mode="livemin")
        up.set(1)
        return cls(up, Counter("catdog_rate_limit_store_outages", "Times a worker found the rate limit "
                               "store unreachable (once per outage)", registry=registry))


def rate_limit_status() -> dict[str, Any] | None:
    """The rate limit's store, for /readyz (None without a limit)."""
    rate = current_app.extensions.get("catdog_rate_limit")
    return rate.status() if rate is not None else None


def client_address() -> str:
    """The address the limit counts: the peer, or what CATDOG_PROXY_HOPS trusted proxies report."""
    return request.remote_addr or "unknown"


def charge_photos(photos: int) -> None:
    """Count ``photos`` against this client's limit, all or nothing (429 when they do not fit).

    Prediction endpoints call it once the number of photos is known and before decoding any;
    a no-op without a rate limit.
    """
    limiter = current_app.extensions.get("catdog_rate_limit")
    if limiter is not None:
        limiter.charge(photos)


def _init_rate_limit(app: Flask, settings: Settings) -> None:
    from limits import parse_many
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    text = settings.rate_limit or ""
    try:
        limits = parse_many(text)
    except ValueError:
        raise ValueError(f"CATDOG_RATE_LIMIT={text!r} is not a rate limit like '120/minute'") from None
    if len(limits) != 1:
        raise ValueError(f"CATDOG_RATE_LIMIT={text!r}: give one limit, like '120/minute'")
    where = urlsplit(settings.rate_limit_storage)
    # A store that does not answer must cost a request a second at most, not hang it.
    options = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0} if where.scheme.startswith("redis") else {}
    storage = storage_from_string(settings.rate_limit_storage, **options)
    service = app.extensions.get("catdog")
    registry = getattr(getattr(service, "metrics", None), "registry", None)
    shared = where.scheme != "memory"
    rate = PhotoRateLimit(limits[0], MovingWindowRateLimiter(storage), text,
                          store_down=settings.rate_limit_store_down,
                          where=f"{where.scheme}://{where.hostname or ''}" if shared else "memory",
                          metrics=StoreMetrics.create(registry) if shared and registry is not None else None)
    app.extensions["catdog_rate_limit"] = rate
    if where.scheme == "memory":
        log.warning("rate limit: %s photos per client, counted in memory by each worker process: with N "
                    "workers a client gets up to N times that, and again on each instance; set "
                    "CATDOG_RATE_LIMIT_STORAGE=redis://host:port for one shared limit", text)
    else:
        log.info("rate limit: %s photos per client, shared by every worker and instance through %s://%s",
                 text, where.scheme, where.hostname or "")

    @app.before_request
    def refuse_when_spent() -> None:
        # Before the key check (registered first): a client with no photo left is refused
        # before anything else; a wrong key costs a photo (see require_api_key), so nobody
        # guesses keys at full speed.
        if is_photo_request():
            rate.check()


def _init_api_keys(app: Flask, keys: list[str]) -> None:
    encoded = [key.encode() for key in keys]
    log.info("API keys: %d active; prediction endpoints need X-API-Key", len(encoded))

    @app.before_request
    def require_api_key() -> None:
        if is_open_request() or request.url_rule is None:
            return  # unknown paths answer 404/405, which reveal nothing
        sent = request.headers.get(API_KEY_HEADER, "").encode()
        # Compare against every key, constant-time, so timing says nothing about which key or prefix.
        valid = False
        for key in encoded:
            valid |= hmac.compare_digest(sent, key)
        if not valid:
            charge_photos(1)  # a guess costs what a photo does
            raise Unauthorized(sent_key=bool(sent))
