"""One settings object for every Chapar process, read from CHAPAR_* variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - the placeholder production refuses
PLACEHOLDER_SECRETS = frozenset({"", DEV_SECRET, "change-me", "changeme", "secret"})


class SmtpTarget(BaseModel):
    """Where outgoing mail goes, parsed from one URL.

    smtp://user:pass@host:25 (plain), smtp+starttls://host:587 (STARTTLS, required),
    smtps://host:465 (implicit TLS).
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: str = "none"  # none | starttls | implicit

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        modes = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "implicit"}
        if parts.scheme not in modes:
            raise ValueError(f"SMTP URL scheme must be one of {sorted(modes)}, not {parts.scheme!r}")
        default_port = {"none": 25, "starttls": 587, "implicit": 465}[modes[parts.scheme]]
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=modes[parts.scheme],
        )


class Settings(BaseSettings):
    """Configuration; defaults are the embedded development setup."""

    model_config = SettingsConfigDict(env_prefix="CHAPAR_", env_file=".env", extra="ignore")

    # Only development and test run with the placeholder secret; any other value is refused.
    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = REPO_ROOT / "var"
    database_url: str = ""  # default: SQLite file in data_dir
    broker_url: str = ""  # default: kombu filesystem transport in data_dir
    redis_url: str = ""  # rate limits and throttles; default: from broker_url when it is Redis
    smtp_url: str = "smtp://127.0.0.1:8025"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET
    api_key: str = ""  # for the CMS and bounce endpoints; empty disables them
    from_address: str = "newsletter@chapar.localhost"
    from_name: str = "خبرنامه هفتگی"
    list_name: str = "خبرنامه هفتگی"
    list_id: str = "weekly.chapar.localhost"
    timezone: str = "Asia/Tehran"
    templates_dir: Path = REPO_ROOT / "templates"
    smtputf8: bool = False  # accept non-ASCII local parts only when the relay offers SMTPUTF8

    confirm_token_max_age: int = Field(default=7 * 24 * 3600, ge=60)
    confirm_emails_per_address_per_day: int = Field(default=1, ge=1)
    subscribe_rate_per_client: str = "10/minute;60/hour"
    subscribe_rate_per_address: str = "5/hour"
    max_request_bytes: int = 64 * 1024
    api_max_request_bytes: int = 5 * 1024 * 1024  # paths under /api/: CMS batches, bounce messages

    # Articles and digests
    feed_url: str = ""
    feed_refresh_minutes: int = 15
    feed_timeout_seconds: float = 10.0
    feed_max_bytes: int = 5 * 1024 * 1024
    feed_allowed_hosts: str = ""  # comma-separated names/addresses a feed may be on although not public
    digest_max_articles: int = 10
    digest_max_per_section: int = 0  # 0: no cap
    # How far back the first issue (or the first after a pause) reaches for articles.
    digest_max_lookback_days: float = Field(default=7.0, gt=0)
    digest_summary_chars: int = Field(default=280, ge=40)  # summaries are cut near this length
    digest_weekday: int = 4  # Python weekday: Friday
    digest_hour: int = 8
    digest_minute: int = 0
    digest_auto_send: bool = False
    beat_tick_seconds: float = Field(default=60.0, ge=1)  # schedule tick and delivery sweeper

    # Delivery
    send_batch_size: int = 500
    send_rate_per_second: float = 0.0  # 0: unlimited
    send_rate_per_hour: int = 0
    domain_rate_per_second: float = 0.0
    lease_seconds: int = 300
    retry_for_hours: float = 48.0
    dkim_selector: str = ""
    dkim_private_key_path: Path | None = None
    bounce_domain: str = ""  # VERP domain; default: the From domain
    bounce_mailbox_url: str = ""  # imaps://user:pass@host/INBOX or pop3s://...
    bounce_poll_seconds: float = Field(default=300.0, ge=10)
    soft_bounce_limit: int = Field(default=3, ge=1)  # soft bounces (distinct issues) that mark bounced
    soft_bounce_window_days: float = Field(default=30.0, gt=0)
    retry_base_seconds: float = 60.0  # first back-off after a 4xx; doubles per attempt, max 1 h
    domain_slowdown_seconds: float = 60.0  # a 421 pauses its receiving domain this long
    resend_uncertain: bool = True  # at-least-once: resend rows whose outcome is unknown

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if not self.secret_key.strip() and self.environment != "production":
            self.secret_key = DEV_SECRET  # an empty variable means "not set"
        if self.environment == "production" and self.secret_key in PLACEHOLDER_SECRETS:
            raise ValueError("CHAPAR_SECRET_KEY must be set to a real secret in production")
        if self.environment == "production" and len(self.secret_key) < 32:
            raise ValueError("CHAPAR_SECRET_KEY must be at least 32 characters in production")
        return self

    def as_environment(self) -> dict[str, str]:
        """CHAPAR_* variables that make a child process load exactly these settings."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            env[f"CHAPAR_{name.upper()}"] = str(value)
        return env

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chapar.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def effective_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.effective_broker_url.startswith(("redis://", "rediss://")):
            return self.effective_broker_url
        return None

    @property
    def mail_capture_dir(self) -> Path:
        return self.data_dir / "mail"

    @cached_property
    def smtp(self) -> SmtpTarget:
        return SmtpTarget.from_url(self.smtp_url)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def verp_domain(self) -> str:
        return self.bounce_domain or self.from_domain
