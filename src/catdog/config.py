"""One settings object for every part of catdog, read from ``CATDOG_*`` environment variables.

Passed explicitly (``create_app(settings)``, ``Classifier.from_settings(settings)``);
nothing reads the environment at import time. CLI flags override fields with
``settings.model_copy(update=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Not catdog.model.errors: the web UI imports settings and must not load the engine's package.
from catdog.errors import CatdogError

CommaList = Annotated[list[str], NoDecode]

#: Shortest API key accepted: 16 characters of a random token are ~96 bits, out of reach of guessing.
MIN_API_KEY_LENGTH = 16


class ConfigError(CatdogError):
    """A ``CATDOG_*`` setting is invalid: the program stops with one line saying which and why."""

    code = "config_error"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATDOG_", extra="ignore", validate_default=True)

    # -- model / engine
    model: Path | None = Field(None, description="model file or directory; default: the bundled model")
    threads: int | None = Field(None, ge=1, le=256, description="ONNX Runtime intra-op threads per process")
    max_pixels: int = Field(40_000_000, ge=1, description="largest image (width x height) accepted")
    open_world: bool = Field(
        True, description='answer "other" for photos that show none of the known labels, if the model can; '
        "false: every photo is one of the known labels (cat or dog)")
    max_decode_mb: float = Field(
        200.0, gt=0, description="most memory one image may take to decode, in MB (estimated from its header)")

    # -- API
    max_upload_mb: float = Field(10.0, gt=0, le=1024, description="largest request body, in MB (10^6 bytes)")
    max_batch: int = Field(32, ge=1, le=1024, description="most files in one /v1/predict/batch request")
    batch_decode_mb: float = Field(
        1000.0, gt=0, description="decoding memory one batch may add up to, in MB; later files get an error")
    batch_seconds: float = Field(
        15.0, gt=0, description="seconds a batch may spend decoding; later files get an error (< timeout)")
    read_timeout: float = Field(
        10.0, gt=0, description="seconds a client may take to send a request's headers, and again its "
        "body, before a 408 (slow or stalled clients)")
    cors_origins: CommaList = Field(["http://localhost:8501"], description="origins allowed by CORS, comma-separated")
    api_keys: CommaList | None = Field(
        None, description=f"if set, requests need X-API-Key with one of these (each >= {MIN_API_KEY_LENGTH} characters)")
    rate_limit: str | None = Field(
        None, description='per-client limit on photos, e.g. "120/minute", across every prediction endpoint')
    rate_limit_storage: str = Field(
        "memory://", description="where rate-limit counts live: memory:// (per worker) or redis://host:port "
        "(shared by every worker and instance)")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    proxy_hops: int = Field(
        0, ge=0, le=10,
        description="reverse proxies in front of the API that append X-Forwarded-For (Cloud Run: 1); "
        "the client address they report is what the rate limit counts",
    )

    # -- feedback ("Wrong answer?": catdog.feedback, docs/feedback.md)
    feedback_path: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "catdog" / "feedback.sqlite3",
        description="SQLite file of people's corrections, created with its folder on first use (unless "
        "feedback_url is set); default ~/.local/share/catdog/feedback.sqlite3")
    feedback_url: str | None = Field(
        None, description="SQLAlchemy URL of a shared feedback database instead of the SQLite file, e.g. "
        "postgresql+psycopg://user:password@host/catdog (several instances, Cloud SQL)")
    feedback_photos: Path | None = Field(
        None, description="folder for the photos people share; default: inside the feedback database")
    feedback_retention_days: int = Field(
        365, ge=0, description="days a feedback entry (and its photo) is kept after its last change; 0: for ever")

    # -- server (gunicorn, read by catdog.api.gunicorn_conf)
    # Binding every interface is intended (bandit B104): a container must (Cloud Run, compose);
    # `catdog serve` passes 127.0.0.1 unless told otherwise.
    host: str = Field("0.0.0.0", description="address gunicorn binds")  # nosec B104
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "CATDOG_PORT"),
                      description="port gunicorn binds ($PORT, as Cloud Run sets it)")
    workers: int | None = Field(None, ge=1, le=256, description="gunicorn worker processes; default: usable CPUs")
    worker_class: Literal["sync", "gthread"] = Field(
        "gthread", description="sync: one request per worker; gthread: worker_threads requests per worker, "
        "so slow clients hold a thread, not a worker")
    worker_threads: int = Field(4, ge=1, le=64, description="threads per gthread worker")
    timeout: int = Field(30, ge=5, le=3600, description="seconds before gunicorn replaces a silent worker")

    # -- UI
    api_url: str = Field("http://localhost:8000", description="where the web UI finds the API")
    api_timeout: float = Field(15.0, gt=0, description="seconds the web UI waits for the API")
    api_key: str | None = Field(None, description="X-API-Key the web UI sends, if the API requires keys")
    ui_max_upload_mb: float = Field(
        50.0, gt=0, le=1024,
        description="largest photo the web page takes, in MB; photos over the API's limit are shrunk "
        "by the page before they are sent (phone photos are often over 10 MB)",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if isinstance(value, str):
            keys = [item.strip() for item in value.split(",") if item.strip()]
            # Set but empty ("", " ", ",") would silently run the API open: refuse it instead.
            if not keys:
                raise ValueError("is set but holds no key; unset it to run without keys, or give "
                                 f"comma-separated keys of at least {MIN_API_KEY_LENGTH} characters")
            return keys
        return value

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, keys: list[str] | None) -> list[str] | None:
        short = [key for key in keys or () if len(key) < MIN_API_KEY_LENGTH]
        if short:
            raise ValueError(f"has {len(short)} key(s) shorter than {MIN_API_KEY_LENGTH} characters; "
                             "use long random keys (python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        return keys or None  # an empty list given in code means no keys, as unset does

    @model_validator(mode="after")
    def _batch_ends_before_the_worker_timeout(self) -> Settings:
        if self.batch_seconds >= self.timeout:
            raise ValueError(f"CATDOG_BATCH_SECONDS ({self.batch_seconds:g}) must be below CATDOG_TIMEOUT "
                             f"({self.timeout}): a batch must answer before its worker is replaced")
        return self

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings from the environment, or a :class:`ConfigError` naming the bad variable in one line."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def max_decode_bytes(self) -> int:
        return int(self.max_decode_mb * 1_000_000)

    @property
    def batch_decode_bytes(self) -> int:
        return int(self.batch_decode_mb * 1_000_000)


def _one_line(exc: ValidationError) -> str:
    """"CATDOG_API_KEYS is set but holds no key; ..." from pydantic's multi-line report."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = "PORT" if field == "port" else f"CATDOG_{field.upper()}" if field else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(message if message.startswith("CATDOG_") else f"{name} {message}")
    return "; ".join(problems)
