"""The `chapar` command."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import click

from service.clock import utcnow
from service.commands import LazyGroup, load_runtime, require_current_schema
from service.runtime import Runtime
from service.settings import Settings


class ChaparGroup(LazyGroup):
    """Refused settings end the command with one line naming the variable, not a traceback;
    so does a database that cannot be reached, whether at the start or midway."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError

        from service.commands import DatabaseUnreachable
        from service.db import UNAVAILABLE, unavailable

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
            raise click.ClickException(f"configuration refused: {problems}") from None
        except UNAVAILABLE as exc:
            if not unavailable(exc):
                raise
            # Each unit of work is one transaction: what the command did not finish rolled back.
            raise DatabaseUnreachable(Settings().effective_database_url, exc) from None


# Each area of the domain keeps its own commands next to its code, imported when run.
AREA_COMMANDS = {
    "articles": "service.articles.commands:articles",
    "digest": "service.digests.commands:digest",
    "schedule": "service.digests.review_commands:schedule_group",
    "status": "service.ops.status:status",
    "ops": "service.ops.commands:ops",
    "staff": "service.staff.commands:staff",
}


@click.group(cls=ChaparGroup, lazy=AREA_COMMANDS)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """Chapar: newsletter delivery for right-to-left news sites."""
    from service.web.logs import configure_root

    configure_root(logging.DEBUG if verbose else logging.INFO, log_format())


def log_format() -> str:
    """CHAPAR_LOG_FORMAT; text when the settings are refused (the command then says why)."""
    from pydantic import ValidationError

    try:
        return Settings().log_format
    except ValidationError:
        return "text"


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    from service.migrations import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    click.echo(f"database is up to date: {redact(settings.effective_database_url)}")


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the web app."""
    import uvicorn

    from service.web.logs import log_config

    # A refused configuration or an old schema ends here in one line, before uvicorn imports the app.
    require_current_schema(Settings())
    # Forwarded headers are the app's to judge (CHAPAR_TRUSTED_PROXIES), not uvicorn's.
    uvicorn.run("service.web.asgi:app", host=host, port=port, workers=workers,
                proxy_headers=False, log_level="info",
                log_config=log_config(logging.getLogger().level, log_format()))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", "-c", default=2, show_default=True, type=int)
@click.option("--queues", "-Q", default="mail,send,default", show_default=True)
@click.pass_context
def worker(ctx: click.Context, concurrency: int, queues: str) -> None:
    """Run a Celery worker (extra arguments go to Celery)."""
    from worker.app import app

    require_current_schema(Settings())
    app.worker_main(["worker", f"--concurrency={concurrency}", f"--queues={queues}",
                     "--loglevel=INFO", *ctx.args])


@main.command()
@click.option("--schedule-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where beat keeps its last run times (default: DATA_DIR/celerybeat-schedule).")
def beat(schedule_file: Path | None) -> None:
    """Run the Celery beat scheduler."""
    from worker.app import app

    settings = Settings()
    require_current_schema(settings)
    schedule = schedule_file or settings.data_dir / "celerybeat-schedule"
    app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@main.command("smtp-capture")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
def smtp_capture(host: str, port: int) -> None:
    """A local SMTP server that saves every message as a .eml file."""
    from service.devstack import run_capture

    run_capture(Settings().mail_capture_dir, host, port)


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--send", "send_number", type=int, default=None,
              help="Once the SMTP capture answers, send issue N (as `chapar digest send N` does).")
def up(port: int, send_number: int | None) -> None:
    """Run everything on the embedded defaults: web, worker, beat and the SMTP capture."""
    from service.devstack import chapar_command, embedded_settings, run_all
    from service.migrations import upgrade

    settings = embedded_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    smtp = settings.smtp
    click.echo(f"\n  Chapar is starting. Open {settings.public_url}/ to subscribe.\n"
               f"  Mail is captured as .eml files in {settings.mail_capture_dir}\n")
    env = {**os.environ, "CHAPAR_ENVIRONMENT": settings.environment}
    threading.Thread(target=report_when_sent, args=(settings, send_number, env), daemon=True).start()
    commands = [
        chapar_command("smtp-capture", "--host", smtp.host, "--port", str(smtp.port)),
        chapar_command("worker", "--concurrency", "2"),
        chapar_command("beat"),
        chapar_command("serve", "--port", str(port)),
    ]
    sys.exit(run_all(commands, env))


def report_when_sent(settings: Settings, send_number: int | None, env: dict[str, str]) -> None:
    """On the embedded start: send the issue asked for once the capture answers (the send
    checks its relay first), then print `chapar status` once the issue being sent has finished."""
    import socket
    import subprocess

    from service.devstack import chapar_command
    from service.digests.models import IssueStatus
    from service.ops.status import render_text, snapshot

    if send_number is not None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection((settings.smtp.host, settings.smtp.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        subprocess.run(chapar_command("digest", "send", str(send_number)), env=env, check=False)  # noqa: S603
    rt = Runtime.from_settings(settings)
    try:
        time.sleep(3)
        while True:
            snap = snapshot(rt, utcnow())
            if snap.issue is None or snap.issue.status != IssueStatus.SENDING.value:
                break
            time.sleep(2)
        if snap.issue is not None:
            click.echo("\n--- chapar status ---\n" + render_text(snap) + "\n")
    finally:
        rt.close()


@main.group(cls=LazyGroup, lazy={
    "export": "service.subscribers.commands:export",
    "unsubscribe": "service.subscribers.commands:unsubscribe",
    "resend-confirmation": "service.subscribers.commands:resend_confirmation",
    "erase": "service.subscribers.commands:erase",
})
def subscribers() -> None:
    """The subscriber store."""


@subscribers.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="Consent source to record (default: import:FILE).")
@click.option("--pending", is_flag=True, help="Import as pending instead of confirmed.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rejected lines to this CSV file.")
def subscribers_import(path: Path, source: str | None, pending: bool,
                       report_path: Path | None) -> None:
    """Import addresses from a CSV file; running it twice adds nothing twice."""
    from rich.progress import Progress

    from service.subscribers.importer import ImportReport, import_batches, read_addresses, write_rejected
    from service.subscribers.models import Status

    rt = load_runtime()
    report = ImportReport()
    with path.open(encoding="utf-8-sig") as counting:
        total = max(0, sum(1 for _ in counting) - 1)
    with path.open(encoding="utf-8-sig", newline="") as stream, Progress() as progress:
        bar = progress.add_task("importing", total=total)
        try:
            for batch in import_batches(
                    rt.sessions, read_addresses(stream), source=source or f"import:{path.name}",
                    status=Status.PENDING if pending else Status.CONFIRMED, clock=utcnow,
                    batch_size=rt.settings.import_batch_size, allow_smtputf8=rt.settings.smtputf8):
                report.include(batch)
                progress.update(bar, completed=report.seen)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    for rejected in report.rejected:
        click.echo(f"line {rejected.line}: {rejected.value!r}: {rejected.reason_en}", err=True)
    if report_path:
        with report_path.open("w", encoding="utf-8", newline="") as out:
            write_rejected(out, report.rejected)
    click.echo(f"added {report.added}, already present {report.already_present}, "
               f"erased earlier (skipped) {report.suppressed}, rejected {len(report.rejected)}")


@subscribers.command("growth")
@click.option("--weeks", default=12, show_default=True, type=click.IntRange(1, 260),
              help="How many weeks, the current one included.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def subscribers_growth(weeks: int, as_json: bool) -> None:
    """Subscriptions, confirmations and unsubscribes per week (Saturday to Friday, local time)."""
    from service.commands import opened_runtime
    from service.subscribers.growth import describe, weekly_growth

    with opened_runtime() as rt, rt.sessions() as session:
        figures = weekly_growth(session, utcnow(), rt.settings.tz, weeks)
    click.echo(json.dumps(figures.as_dict(), ensure_ascii=False, indent=2) if as_json
               else "\n".join(describe(figures)))


@main.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets hidden)."""
    settings = Settings()
    data = settings.model_dump(mode="json")
    for secret in ("secret_key", "secret_key_fallbacks", "api_key"):
        data[secret] = "***" if data.get(secret) else ""
    data["database_url"] = redact(settings.effective_database_url)
    # A RabbitMQ, Redis, SMTP or mailbox URL carries its password as the database's does.
    for name in ("broker_url", "redis_url", "smtp_url", "bounce_mailbox_url"):
        if data.get(name):
            data[name] = redact(data[name])
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
