"""Settings: production refuses weak secrets; one SMTP URL carries host, port, login and TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEV_SECRET, Settings, SmtpTarget

STRONG = "k" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test sets: no CHAPAR_* from the shell, no .env from the checkout."""
    import os

    for name in list(os.environ):
        if name.startswith("CHAPAR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("secret", [None, "", DEV_SECRET, "change-me", "secret", "short-but-real"])
def test_production_refuses_a_missing_placeholder_or_short_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("CHAPAR_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY"):
        Settings()


def test_production_starts_with_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "production")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    assert Settings().secret_key == STRONG


def test_fallback_secrets_are_a_comma_separated_list_and_never_a_placeholder_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "production")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    monkeypatch.setenv("CHAPAR_SECRET_KEY_FALLBACKS", f" {'a' * 40}, ,{'b' * 40} ")
    assert Settings().fallback_secret_keys == ("a" * 40, "b" * 40)
    monkeypatch.setenv("CHAPAR_SECRET_KEY_FALLBACKS", f"{'a' * 40},{DEV_SECRET}")
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY_FALLBACKS"):
        Settings()


def test_an_unknown_environment_is_refused_rather_than_run_with_a_weak_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="environment"):
        Settings()


def test_an_empty_secret_in_development_means_the_development_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAPAR_SECRET_KEY", "")
    assert Settings().secret_key == DEV_SECRET


def test_development_runs_on_embedded_defaults() -> None:
    settings = Settings()
    assert settings.environment == "development" and settings.secret_key == DEV_SECRET
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_broker_url == "filesystem://"
    assert settings.effective_redis_url is None
    assert settings.timezone == "Asia/Tehran" and str(settings.tz) == "Asia/Tehran"


def test_environment_variables_are_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    monkeypatch.setenv("CHAPAR_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CHAPAR_PUBLIC_URL", "https://news.example/newsletter")
    monkeypatch.setenv("CHAPAR_FROM_ADDRESS", "news@news.example")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///ignored.db")
    settings = Settings()
    assert settings.effective_database_url == "postgresql+psycopg://u@db/chapar"
    assert settings.effective_redis_url == "redis://redis:6379/0"  # rate limits follow the broker
    assert settings.public_url == "https://news.example/newsletter"
    assert settings.from_domain == "news.example"


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://127.0.0.1:8025", ("127.0.0.1", 8025, None, None, "none")),
    ("smtp://mail.example", ("mail.example", 25, None, None, "none")),
    ("smtp+starttls://user%40example.com:p%40ss%3Aw0rd@relay.example",
     ("relay.example", 587, "user@example.com", "p@ss:w0rd", "starttls")),
    ("smtps://apikey:secret@smtp.example:2465", ("smtp.example", 2465, "apikey", "secret", "implicit")),
    ("smtps://smtp.example", ("smtp.example", 465, None, None, "implicit")),
])
def test_smtp_url_parsing(url: str, expected: tuple[object, ...]) -> None:
    target = SmtpTarget.from_url(url)
    assert (target.host, target.port, target.username, target.password, target.tls) == expected


@pytest.mark.parametrize("url", ["http://mail.example", "smtp+tls://mail.example", "mail.example:25"])
def test_an_unknown_smtp_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        SmtpTarget.from_url(url)


def test_settings_parse_the_smtp_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_SMTP_URL", "smtp+starttls://u:p@relay.example:2587")
    assert Settings().smtp == SmtpTarget(host="relay.example", port=2587, username="u", password="p",
                                         tls="starttls")


def test_a_child_process_environment_reproduces_the_settings(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(environment="test", data_dir=tmp_path, smtp_url="smtps://u:p@127.0.0.1:4650",
                        digest_auto_send=True, send_rate_per_second=12.5, secret_key="s" * 40)
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == original.model_dump()
