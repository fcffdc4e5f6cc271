"""One settings object for every Chapar process, read from CHAPAR_* variables."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Placeholders that sample configurations (ours once, and many others) ship with: a secret
# that contains one is public however long it is.
KNOWN_PLACEHOLDERS = ("dev-insecure-secret-change-me", "change-me", "changeme", "change_me",
                      "replace-me", "replaceme", "your-secret", "insecure")
MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT = 8  # "aaaa..." or "abab..." is long but guessable
EMBEDDED_SECRET_FILE = "secret_key"  # noqa: S105 - the file name in DATA_DIR, not a secret


def secret_weakness(secret: str) -> str | None:
    """Why `secret` must not sign tokens, or None when it may."""
    if not secret.strip():
        return "is not set"
    lowered = secret.lower()
    if any(placeholder in lowered for placeholder in KNOWN_PLACEHOLDERS):
        return "is a published placeholder"
    if len("".join(secret.split()).encode()) < MIN_SECRET_BYTES:
        return f"must hold at least {MIN_SECRET_BYTES} bytes that are not whitespace"
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return f"must use at least {MIN_SECRET_DISTINCT} different characters"
    return None


def embedded_secret(data_dir: Path) -> str:
    """The install's own random secret, made on first use and kept in data_dir (mode 0600).

    Only the embedded setup (SQLite in data_dir) gets one: every process of that install
    reads the same file, and nobody else knows it, so the demo needs no configuration and
    still has no public secret. Created under a temporary name and linked into place, so
    processes starting together all end up with the one that won.
    """
    path = data_dir / EMBEDDED_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as stream:
                stream.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


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
    """Configuration; defaults are the embedded setup (SQLite, filesystem broker, local capture)."""

    # hide_input_in_errors: a refused secret must not be printed in the error saying so.
    model_config = SettingsConfigDict(env_prefix="CHAPAR_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    # A deployment is production unless it says otherwise; `chapar up` and scripts/demo run
    # the embedded setup in development, the tests in test. An unknown value is refused.
    environment: Literal["development", "test", "production"] = "production"
    # The working directory's var/, never the interpreter's tree the package is installed in.
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "var")
    database_url: str = ""  # default: SQLite file in data_dir
    # Connections each process may hold to PostgreSQL: the pool keeps up to pool_size open
    # and opens up to max_overflow more for a burst (see "Running at scale" in the README).
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    # false: psycopg never prepares statements on the server, as PgBouncer before 1.21 in
    # transaction mode needs (each transaction may land on another server connection).
    database_prepared_statements: bool = True
    # PostgreSQL: give up a connection attempt after this many seconds (libpq's least is 2),
    # so pages answer 503 quickly while the database is unreachable.
    database_connect_timeout: int = Field(default=2, ge=2, le=60)
    broker_url: str = ""  # default: kombu filesystem transport in data_dir; redis:// or amqp://
    # Rate limits, throttles and 421 pauses; default: broker_url when it is Redis. Required in
    # production beside any other network broker (RabbitMQ).
    redis_url: str = ""
    smtp_url: str = "smtp://127.0.0.1:8025"
    smtp_helo: str = ""  # the name given in EHLO; default: the From domain
    smtp_idle_seconds: float = Field(default=30.0, gt=0)  # an unused connection is closed with QUIT
    # Connections each pool process sends a chunk over at once (service/delivery/sender.py).
    smtp_connections: int = Field(default=2, ge=1, le=8)
    smtp_ca_file: Path | None = None  # PEM bundle trusted in addition to the system store
    smtp_tls_server_name: str = ""  # name the certificate must carry (and SNI); default: the URL's host
    smtp_tls_verify: bool = True  # false: development only, refused in production
    public_url: str = "http://127.0.0.1:8000"
    # Reverse proxies (addresses or networks, comma-separated, or *) whose X-Forwarded-For
    # names the reader; empty: nobody's, the connecting address is the client.
    trusted_proxies: str = ""
    secret_key: str = ""  # required, except on the embedded setup (see embedded_secret)
    # Earlier secrets, comma-separated: links signed with them still work; nothing new is signed.
    secret_key_fallbacks: str = ""
    api_key: str = ""  # for the CMS and bounce endpoints; empty disables them
    from_address: str = "newsletter@chapar.localhost"
    from_name: str = "خبرنامه هفتگی"
    list_name: str = "خبرنامه هفتگی"
    list_id: str = "weekly.chapar.localhost"
    timezone: str = "Asia/Tehran"
    templates_dir: Path | None = None  # a folder with email/<name>/...; default: the packaged ones
    smtputf8: bool = False  # accept non-ASCII local parts only when the relay offers SMTPUTF8

    confirm_token_max_age: int = Field(default=7 * 24 * 3600, ge=60)
    confirm_emails_per_address_per_day: int = Field(default=1, ge=1)
    subscribe_rate_per_client: str = "10/minute;60/hour"
    subscribe_rate_per_address: str = "5/hour"
    max_request_bytes: int = 64 * 1024
    api_max_request_bytes: int = 5 * 1024 * 1024  # paths under /api/: CMS batches, bounce messages
    # Readers imported from the desk: the largest CSV file taken, the addresses each
    # transaction imports, and how long a worker holds a running import without reporting
    # progress before the sweeper hands it to another.
    import_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    import_batch_size: int = Field(default=1000, ge=1)
    import_lease_seconds: float = Field(default=120.0, gt=0)

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
    # The coming slot's draft is built this long before it, for the editors; 0: only at the slot.
    digest_draft_hours_before: float = Field(default=24.0, ge=0)
    # Clicks on the digest's article links: false (links go straight to the articles),
    # true (counted per article, nobody's identity in the link) or per-reader (the
    # subscriber is recorded too). No open-tracking pixel in any mode.
    track_clicks: Literal["false", "true", "per-reader"] = "false"
    click_rate_per_client: str = "30/minute;300/hour"  # more from one client: redirected, not counted
    test_send_addresses: str = ""  # comma-separated seed list that gets every test send
    beat_tick_seconds: float = Field(default=60.0, ge=1)  # schedule tick and delivery sweeper

    # Delivery
    send_batch_size: int = 500
    send_rate_per_second: float = 0.0  # 0: unlimited
    send_rate_per_hour: int = 0
    domain_rate_per_second: float = 0.0
    # A claim is a lease the worker renews while it is alive (every twentieth of it); rows of a
    # worker that died are taken back once it runs out, checked every lease_check_seconds.
    lease_seconds: int = Field(default=20, ge=2)
    lease_check_seconds: float = Field(default=5.0, gt=0)
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
    # Ops: alert emails (comma-separated; empty: none), the incident log's retention, workers'
    # heartbeats, when a send with due rows and no progress counts as stalled, /metrics access
    # (empty: loopback only) and the log format (text, or json: one object per line).
    ops_emails: str = ""
    ops_incident_retention_days: float = Field(default=90.0, gt=0)
    ops_heartbeat_seconds: float = Field(default=10.0, gt=0)
    ops_worker_lost_seconds: float = Field(default=45.0, gt=0)
    ops_stall_minutes: float = Field(default=10.0, gt=0)
    metrics_token: str = ""
    log_format: Literal["text", "json"] = "text"

    # Staff desk: server-side sessions end after this long unused, or this long after login,
    # whichever comes first. Logins are throttled per submitted address and per client, and
    # an account is locked for a while after this many failures in a row.
    staff_session_idle_minutes: int = Field(default=60, ge=1)
    staff_session_max_hours: float = Field(default=12.0, gt=0)
    staff_login_rate_per_account: str = "5/minute;30/hour"
    staff_login_rate_per_client: str = "20/minute;200/hour"
    staff_lockout_failures: int = Field(default=10, ge=1)
    staff_lockout_minutes: int = Field(default=15, ge=1)
    staff_require_totp: bool = False  # admins must set up TOTP before using the desk
    staff_invite_max_age_hours: int = Field(default=72, ge=1)

    @field_validator("track_clicks", mode="before")
    @classmethod
    def _click_mode_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _require_a_real_secret(self) -> Settings:
        """Every mode refuses a missing, placeholder or weak secret; the embedded setup makes its own.

        Not only production: a development or test instance can hold real readers too, and
        a token signed with a public secret opens their preferences page.
        """
        if not self.secret_key and not self.database_url:  # unset (an empty variable too)
            self.secret_key = embedded_secret(self.data_dir)
        problem = secret_weakness(self.secret_key)
        if problem:
            raise ValueError(f"CHAPAR_SECRET_KEY {problem}; make one with `openssl rand -hex 32`")
        return self

    @model_validator(mode="after")
    def _refuse_weak_fallbacks(self) -> Settings:
        # A weak or published secret that still verifies links would let anyone forge them.
        for key in self.fallback_secret_keys:
            problem = secret_weakness(key)
            if problem:
                raise ValueError(f"a secret in CHAPAR_SECRET_KEY_FALLBACKS {problem}")
        return self

    @property
    def fallback_secret_keys(self) -> tuple[str, ...]:
        """CHAPAR_SECRET_KEY_FALLBACKS as a list, newest first; blanks ignored."""
        return tuple(key.strip() for key in self.secret_key_fallbacks.split(",") if key.strip())

    @model_validator(mode="after")
    def _refuse_unverified_tls_in_production(self) -> Settings:
        if self.environment == "production" and not self.smtp_tls_verify:
            raise ValueError("CHAPAR_SMTP_TLS_VERIFY=false is for development only; in production "
                             "trust a private CA with CHAPAR_SMTP_CA_FILE instead")
        return self

    @model_validator(mode="after")
    def _require_redis_beside_another_network_broker(self) -> Settings:
        # Send throttles, 421 pauses and the form and login limits are shared through Redis;
        # without it every process would count alone, and N workers would send N times the
        # configured rate. The embedded setup (one host, filesystem broker) counts per process.
        if (self.environment == "production" and not self.effective_redis_url
                and self.broker_kind not in ("filesystem", "redis")):
            raise ValueError(
                f"CHAPAR_BROKER_URL ({self.broker_kind}://) is not Redis: set CHAPAR_REDIS_URL "
                "too (send throttles, 421 pauses and rate limits are shared through Redis)")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if entries == ["*"]:
            return "*"
        # As networks (a lone address is a /32 or /128): the ValueError names a bad entry.
        return ",".join(str(ip_network(entry, strict=False)) for entry in entries)

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
    def ops_addresses(self) -> list[str]:
        return [a.strip() for a in self.ops_emails.split(",") if a.strip()]

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chapar.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_kind(self) -> str:
        """filesystem, redis or amqp (RabbitMQ): what the broker URL's scheme names."""
        scheme = self.effective_broker_url.partition("://")[0].lower()
        return {"rediss": "redis", "pyamqp": "amqp", "amqps": "amqp"}.get(scheme, scheme)

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
    def helo_name(self) -> str:
        return self.smtp_helo or self.from_domain or "localhost"

    @property
    def verp_domain(self) -> str:
        return self.bounce_domain or self.from_domain
