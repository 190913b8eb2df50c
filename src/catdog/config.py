"""One settings object for every part of catdog, read from ``CATDOG_*`` environment variables.

Passed explicitly (``create_app(settings)``, ``Classifier.load(settings.model)``);
nothing reads the environment at import time. CLI flags override fields with
``settings.model_copy(update=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATDOG_", extra="ignore", validate_default=True)

    # -- model / engine
    model: Path | None = Field(None, description="model file or directory; default: the bundled model")
    threads: int | None = Field(None, ge=1, le=256, description="ONNX Runtime intra-op threads per process")
    max_pixels: int = Field(40_000_000, ge=1, description="largest image (width x height) accepted")
    open_world: bool = Field(
        True, description='answer "other" for photos that show none of the known labels, if the model can; '
        "false: every photo is one of the known labels (cat or dog)")

    # -- API
    max_upload_mb: float = Field(10.0, gt=0, le=1024, description="largest request body, in MB (10^6 bytes)")
    max_batch: int = Field(32, ge=1, le=1024, description="most files in one /v1/predict/batch request")
    cors_origins: CommaList = Field(["http://localhost:8501"], description="origins allowed by CORS, comma-separated")
    api_keys: CommaList = Field([], description="if set, requests need X-API-Key with one of these")
    rate_limit: str | None = Field(None, description='per-client limit, e.g. "120/minute"; unset = none')
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    proxy_hops: int = Field(
        0, ge=0, le=10,
        description="reverse proxies in front of the API that append X-Forwarded-For (Cloud Run: 1); "
        "the client address they report is what the rate limit counts",
    )

    # -- UI
    api_url: str = Field("http://localhost:8000", description="where the web UI finds the API")
    api_timeout: float = Field(15.0, gt=0, description="seconds the web UI waits for the API")
    api_key: str | None = Field(None, description="X-API-Key the web UI sends, if the API requires keys")
    ui_max_upload_mb: float = Field(
        50.0, gt=0, le=1024,
        description="largest photo the web page takes, in MB; photos over the API's limit are shrunk "
        "by the page before they are sent (phone photos are often over 10 MB)",
    )

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

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
