"""Settings: every mode refuses weak secrets; one SMTP URL carries host, port, login and TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from service.cli import main
from service.devstack import embedded_settings
from service.settings import EMBEDDED_SECRET_FILE, Settings, SmtpTarget, secret_weakness

STRONG = "9c2f0e7d51b8a4c3e6f1d0b9a8c7e6f5d4c3b2a1"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test sets: no CHAPAR_* from the shell, no .env from the checkout."""
    import os

    for name in list(os.environ):
        if name.startswith("CHAPAR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


OLD_PLACEHOLDER = "dev-insecure-secret-change-me"  # what Chapar itself once shipped as the default
WEAK = {
    "missing": None,
    "empty": "",
    "32 spaces": " " * 32,
    "the old placeholder": OLD_PLACEHOLDER,
    "the old placeholder padded to 32": OLD_PLACEHOLDER + "-pad",
    "the old placeholder padded with spaces": OLD_PLACEHOLDER + " " * 10,
    "another placeholder inside": "please-CHANGE-ME-0123456789abcdefghijkl",
    "short": "short-but-real-9f3a",
    "short once stripped": "   9f3a6c1e0b7d4a2f   ",
    "one character": "k" * 40,
    "two characters": "ab" * 20,
}


@pytest.mark.parametrize("environment", ["production", "development", "test"])
@pytest.mark.parametrize("secret", WEAK.values(), ids=WEAK.keys())
def test_every_mode_refuses_a_missing_placeholder_or_weak_secret(
        monkeypatch: pytest.MonkeyPatch, environment: str, secret: str | None) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", environment)
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    if secret is not None:
        monkeypatch.setenv("CHAPAR_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY") as refused:
        Settings()
    if secret and secret.strip():
        assert secret.strip() not in str(refused.value)  # the refusal does not print the secret


@pytest.mark.parametrize("secret", [v for v in WEAK.values() if v], ids=[k for k, v in WEAK.items() if v])
def test_the_embedded_setup_refuses_a_weak_secret_it_was_given(
        monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("CHAPAR_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY"):
        Settings()


@pytest.mark.parametrize("environment", ["production", "development", "test"])
def test_a_real_secret_is_accepted_in_every_mode(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", environment)
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    assert Settings().secret_key == STRONG


def test_fallback_secrets_are_a_comma_separated_list_and_never_a_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "production")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    older, oldest = "0123456789abcdef" * 3, "fedcba9876543210" * 3
    monkeypatch.setenv("CHAPAR_SECRET_KEY_FALLBACKS", f" {older}, ,{oldest} ")
    assert Settings().fallback_secret_keys == (older, oldest)
    monkeypatch.setenv("CHAPAR_SECRET_KEY_FALLBACKS", f"{older},dev-insecure-secret-change-me-0123456789")
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY_FALLBACKS"):
        Settings()


def test_a_deployment_is_production_unless_it_says_otherwise() -> None:
    assert Settings().environment == "production"


def test_an_unknown_environment_is_refused_rather_than_run_with_a_weak_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="environment"):
        Settings()


def test_the_embedded_setup_makes_its_own_secret_once_and_keeps_it_private(tmp_path: Path) -> None:
    """No secret and SQLite in DATA_DIR: a random secret of this install, shared by its processes."""
    first = Settings()
    kept = tmp_path / "var" / EMBEDDED_SECRET_FILE
    assert first.secret_key == kept.read_text().strip() and secret_weakness(first.secret_key) is None
    assert first.secret_key != OLD_PLACEHOLDER and len(first.secret_key) == 64
    assert kept.stat().st_mode & 0o777 == 0o600
    assert Settings().secret_key == first.secret_key  # every process of the install agrees
    other = Settings(data_dir=tmp_path / "other")
    assert other.secret_key != first.secret_key  # and no other install knows it
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == [EMBEDDED_SECRET_FILE]


def test_a_missing_secret_is_not_made_up_when_the_data_lives_elsewhere(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    with pytest.raises(ValidationError, match="CHAPAR_SECRET_KEY is not set"):
        Settings()
    assert not (tmp_path / "var").exists()


def test_the_cli_refuses_a_weak_secret_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(main, ["config"], env={"CHAPAR_SECRET_KEY": OLD_PLACEHOLDER + "-pad"})
    assert result.exit_code == 1
    assert result.stderr == ("Error: configuration refused: CHAPAR_SECRET_KEY is a published "
                             "placeholder; make one with `openssl rand -hex 32`\n")


def test_chapar_config_hides_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_API_KEY", "api-key-of-this-test")
    result = CliRunner().invoke(main, ["config"], env={"CHAPAR_SECRET_KEY": STRONG})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["secret_key"] == shown["api_key"] == "***"
    assert STRONG not in result.stdout and "api-key-of-this-test" not in result.stdout


def test_chapar_config_hides_the_passwords_in_service_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    monkeypatch.setenv("CHAPAR_BROKER_URL", "amqp://chapar:rabbit-pw@rabbit:5672/chapar")
    monkeypatch.setenv("CHAPAR_REDIS_URL", "redis://:redis-pw@redis:6379/1")
    monkeypatch.setenv("CHAPAR_SMTP_URL", "smtp+starttls://news:smtp-pw@relay.example:587")
    monkeypatch.setenv("CHAPAR_BOUNCE_MAILBOX_URL", "imaps://bounces:box-pw@mail.example/INBOX")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0, result.output
    assert "-pw" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["broker_url"] == "amqp://chapar:***@rabbit:5672/chapar"
    assert shown["smtp_url"] == "smtp+starttls://news:***@relay.example:587"


def test_the_data_folder_is_var_of_the_working_directory(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_dir == tmp_path / "var"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'var' / 'chapar.db'}"


def test_embedded_defaults() -> None:
    settings = Settings()
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_broker_url == "filesystem://"
    assert settings.effective_redis_url is None
    assert settings.timezone == "Asia/Tehran" and str(settings.tz) == "Asia/Tehran"


def test_environment_variables_are_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    monkeypatch.setenv("CHAPAR_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CHAPAR_PUBLIC_URL", "https://news.example/newsletter")
    monkeypatch.setenv("CHAPAR_FROM_ADDRESS", "news@news.example")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///ignored.db")
    settings = Settings()
    assert settings.effective_database_url == "postgresql+psycopg://u@db/chapar"
    assert settings.effective_redis_url == "redis://redis:6379/0"  # rate limits follow the broker
    assert settings.public_url == "https://news.example/newsletter"
    assert settings.from_domain == "news.example"


def test_production_on_rabbitmq_refuses_to_start_without_redis(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    monkeypatch.setenv("CHAPAR_BROKER_URL", "amqp://chapar:pw@rabbit:5672/chapar")
    # Throttles counted per process would let N workers send N times the configured rate.
    with pytest.raises(ValidationError, match="set CHAPAR_REDIS_URL too") as refused:
        Settings()
    assert "pw@" not in str(refused.value)  # the broker's password is not printed
    monkeypatch.setenv("CHAPAR_REDIS_URL", "redis://redis:6379/1")
    settings = Settings()
    assert settings.broker_kind == "amqp"
    assert settings.effective_redis_url == "redis://redis:6379/1"


@pytest.mark.parametrize("environment", ["development", "test"])
def test_rabbitmq_without_redis_counts_per_process_outside_production(
        monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.setenv("CHAPAR_ENVIRONMENT", environment)
    monkeypatch.setenv("CHAPAR_DATABASE_URL", "postgresql+psycopg://u@db/chapar")
    monkeypatch.setenv("CHAPAR_SECRET_KEY", STRONG)
    monkeypatch.setenv("CHAPAR_BROKER_URL", "amqps://chapar:pw@rabbit:5671/chapar")
    settings = Settings()
    assert settings.broker_kind == "amqp" and settings.effective_redis_url is None


@pytest.mark.parametrize(("url", "kind"), [
    ("", "filesystem"), ("redis://r:6379/0", "redis"), ("rediss://r:6380/0", "redis"),
    ("amqp://r//", "amqp"), ("pyamqp://r//", "amqp"), ("amqps://r//", "amqp"),
])
def test_the_broker_kind_follows_the_url_scheme(tmp_path: Path, url: str, kind: str) -> None:
    settings = Settings(data_dir=tmp_path, broker_url=url, redis_url="redis://r:6379/1",
                        secret_key=STRONG)
    assert settings.broker_kind == kind


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
                        digest_auto_send=True, send_rate_per_second=12.5, secret_key=STRONG)
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == original.model_dump()


@pytest.mark.parametrize(("configured", "expected"), [(None, "development"), ("production", "production"),
                                                      ("test", "test")])
def test_chapar_up_runs_the_embedded_setup_in_development_unless_told_otherwise(
        monkeypatch: pytest.MonkeyPatch, configured: str | None, expected: str) -> None:
    if configured:
        monkeypatch.setenv("CHAPAR_ENVIRONMENT", configured)
    assert embedded_settings().environment == expected
