"""Settings from ``NEWSLETTER_*`` environment variables — the only place that reads the env.

Every setting has a default that needs no server: SQLite and Celery's filesystem broker
under ``./var/``. ``demo`` and ``run`` start a local capture SMTP server themselves.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Used only when NEWSLETTER_SECRET_KEY is unset: good enough for a laptop demo, and the
# web process logs a warning so nobody runs production on it unknowingly.
DEV_SECRET_KEY = "dev-only-secret-change-me"

CONSENT_TEXT = (
    "I agree to receive email newsletters about the topics I selected, at the frequency I "
    "chose. I can change my preferences or unsubscribe at any time with the link in every "
    "email. My email address and my choices are kept only to send these newsletters."
)
CONSENT_TEXT_VERSION = "2026-11-01"
LOCAL_SMTP_URL = "smtp://127.0.0.1:8025"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", extra="ignore")

    var_dir: Path = Field(default=Path("var"))
    database_url: str = ""
    broker_url: str = ""
    smtp_url: str = ""  # unset: demo/run start a capture server on LOCAL_SMTP_URL
    from_address: str = "The Newsroom <newsletter@localhost>"
    base_url: str = "http://localhost:8000"
    secret_key: str = DEV_SECRET_KEY
    admin_token: str = ""
    smtp_rate: float = 0.0  # messages/second across all workers; 0 = unlimited
    site_name: str = "The Levant Ledger"
    # A task carries this many deliveries: large enough that Celery's ~1 ms per-task cost
    # and the per-batch claim/commit are noise next to ~1 ms of SMTP per message, small
    # enough that a crashed batch redelivers only seconds of work.
    batch_size: int = 200
    confirm_max_age_days: int = 7
    relay_interval_s: float = 10.0
    daily_send_hour: int = 6
    weekly_send_weekday: int = 0  # Monday
    timezone: str = "UTC"

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, v: str) -> str:
        # "postgresql://" would pick psycopg2, which we do not ship.
        for prefix in ("postgresql://", "postgres://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix):]
        return v

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'newsletter.db').resolve()}"

    @property
    def smtp(self) -> str:
        return self.smtp_url or LOCAL_SMTP_URL

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker.startswith("filesystem://")

    @property
    def mail_domain(self) -> str:
        addr = self.from_address.rsplit("<", 1)[-1].rstrip(">")
        return addr.rsplit("@", 1)[-1] or "localhost"

    @property
    def from_email(self) -> str:
        return self.from_address.rsplit("<", 1)[-1].rstrip(">").strip()

    @property
    def list_id(self) -> str:
        host = urlsplit(self.base_url).hostname or self.mail_domain
        return f"<digest.{host}>"

    @property
    def consent_text_hash(self) -> str:
        return hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()

    def ensure_var(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.uses_embedded_broker:
            for sub in ("queue", "processed"):
                (self.broker_dir / sub).mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


def reload_settings() -> Settings:
    """Re-read the environment (tests and ``demo`` change it within one process)."""
    get_settings.cache_clear()
    return get_settings()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a worker/beat subprocess that must see the same settings."""
    env = dict(os.environ)
    env.update(
        NEWSLETTER_VAR_DIR=str(settings.var_dir.resolve()),
        NEWSLETTER_DATABASE_URL=settings.db_url,
        NEWSLETTER_BROKER_URL=settings.broker_url,
        NEWSLETTER_SMTP_URL=settings.smtp,
        NEWSLETTER_BASE_URL=settings.base_url,
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_FROM_ADDRESS=settings.from_address,
    )
    return env
