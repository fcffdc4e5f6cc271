"""What a process needs, built once from Settings and passed down: no module globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db import make_engine, make_session_factory
from service.mail.render import EmailTemplates
from service.settings import Settings
from service.tokens import Tokens

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis

    from service.ops.outages import OutageTracker


def database_options(settings: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    """Engine options from the settings: the pool's size, and psycopg's prepared statements.

    `overrides` win; a caller that brings its own pool class (NullPool) gets no pool size.
    """
    options: dict[str, Any] = {}
    if not settings.effective_database_url.startswith("sqlite"):
        if "poolclass" not in overrides:
            options.update(pool_size=settings.database_pool_size,
                           max_overflow=settings.database_max_overflow)
        if not settings.database_prepared_statements:
            options["connect_args"] = {"prepare_threshold": None}
    return options | overrides


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    tokens: Tokens
    _celery: Celery | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **engine_kwargs: Any) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url,
                             connect_timeout=settings.database_connect_timeout,
                             **database_options(settings, engine_kwargs))
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            tokens=Tokens(settings.secret_key, settings.confirm_token_max_age,
                          settings.fallback_secret_keys),
        )

    @cached_property
    def email_templates(self) -> EmailTemplates:
        return EmailTemplates(self.settings.templates_dir)

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            from worker.app import create_celery

            self._celery = create_celery(self.settings)
        return self._celery

    def ring(self, task: str, *args: int) -> None:
        """Ring the doorbell: tell workers there is work. Carries ids only.

        Call after the transaction that wrote the rows has committed; a lost ring is
        recovered by the sweepers, never by resending data through the broker.
        """
        self.celery.send_task(task, args=list(args))

    @cached_property
    def redis(self) -> Redis | None:
        url = self.settings.effective_redis_url
        if not url:
            return None
        from redis import Redis

        return Redis.from_url(url)

    @cached_property
    def database_outages(self) -> OutageTracker:
        """This process's view of whether the database answers (one warning per outage)."""
        from service.db import where
        from service.ops.outages import OutageTracker

        return OutageTracker(where(self.settings.effective_database_url)).follow(self.engine)

    def url(self, path: str) -> str:
        return self.settings.public_url.rstrip("/") + path

    def close(self) -> None:
        self.engine.dispose()
