"""The ops snapshot, its actions (desk and CLI, audited), /metrics and the alert emails."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from service.cli import main
from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control
from service.delivery.models import Delivery, DeliveryStatus
from service.delivery.transport import Result
from service.ops import incidents, marks
from service.ops.alerts import watch_once
from service.ops.conditions import BEAT_NOT_TICKING
from service.ops.metrics import SendTally
from service.ops.status import render_text, snapshot
from service.runtime import Runtime
from service.staff.models import AuditEntry
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.staff.factories import staff_account
from tests.support.browser import serving
from tests.support.network import free_port
from tests.support.processes import settings_env
from tests.support.smtp import SmtpRecorder
from tests.web.desk.support import csrf_from, desk_client, sign_in

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def sending_issue(rt: Runtime, number: int = 3) -> int:
    """An issue mid-send: 2 sent, 2 deferred (451, due later), 1 uncertain, 1 failed (550)."""
    now = utcnow()
    with unit_of_work(rt.sessions) as db:
        add_subscribers(db, 4, domain="good.test")
        add_subscribers(db, 2, domain="slow.test", prefix="s")
        issue_id = make_issue(db, number=number).id
    control.start_and_ring(rt, issue_id, now)
    with unit_of_work(rt.sessions) as db:
        ids = list(db.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)
                              .order_by(Delivery.domain, Delivery.id)))
        good, slow = ids[:4], ids[4:]
        db.execute(update(Delivery).where(Delivery.id.in_(good[:2]))
                   .values(status=DeliveryStatus.SENT, sent_at=now, last_code=250))
        db.execute(update(Delivery).where(Delivery.id.in_(slow))
                   .values(status=DeliveryStatus.DEFERRED, last_code=451,
                           next_attempt_at=now + timedelta(minutes=30)))
        db.execute(update(Delivery).where(Delivery.id == good[2])
                   .values(status=DeliveryStatus.UNCERTAIN, uncertain_count=1))
        db.execute(update(Delivery).where(Delivery.id == good[3])
                   .values(status=DeliveryStatus.FAILED, last_code=550))
        incidents.record(db, incidents.DOMAIN_PAUSED, now, "421: paused", subject="slow.test")
    return issue_id


def statuses(rt: Runtime, issue_id: int) -> list[str]:
    with rt.sessions() as db:
        return sorted(s.value for s in db.scalars(select(Delivery.status)
                                                  .where(Delivery.issue_id == issue_id)))


def test_the_snapshot_says_where_mail_fails_and_why_the_send_waits(runtime: Runtime) -> None:
    sending_issue(runtime)
    snap = snapshot(runtime, utcnow())
    assert snap.issue is not None and snap.issue.counts["sent"] == 2
    assert snap.failures is not None
    assert {(r.code, r.count) for r in snap.failures.replies} == {(250, 2), (451, 2), (550, 1)}
    assert [d.domain for d in snap.failures.domains] == ["good.test", "slow.test"] or \
        [d.domain for d in snap.failures.domains] == ["slow.test", "good.test"]
    assert snap.failures.deferred is not None and snap.failures.deferred.within_hour == 2
    # Nothing is due: every pending row waits for its back-off, and the ETA says so.
    assert any("در انتظار تلاش دوباره تا" in w for w in snap.issue.waiting)
    assert snap.issue.eta_seconds is not None and snap.issue.eta_seconds > 25 * 60  # after it
    assert [i.kind for i in snap.incidents] == [incidents.DOMAIN_PAUSED]
    assert "waiting:" in render_text(snap)


def test_cli_actions_change_the_ledger_and_are_audited(runtime: Runtime) -> None:
    issue_id = sending_issue(runtime)
    env = settings_env(runtime.settings)
    run = CliRunner().invoke
    result = run(main, ["ops", "retry-deferred", "3"], env=env)
    assert result.exit_code == 0, result.output
    assert snapshot(runtime, utcnow()).oldest_due_at is not None  # the deferred rows are due now
    result = run(main, ["ops", "settle-uncertain", "3", "--as-sent"], env=env)
    assert result.exit_code == 0, result.output
    assert statuses(runtime, issue_id).count("uncertain") == 0
    assert statuses(runtime, issue_id).count("sent") == 3
    with runtime.sessions() as db:  # the possible duplicate stays on record
        assert sum(db.scalars(select(Delivery.uncertain_count))) == 1
    assert run(main, ["ops", "pause", "3"], env=env).exit_code == 0
    assert snapshot(runtime, utcnow()).issue.status == "paused"  # type: ignore[union-attr]
    refused = run(main, ["ops", "pause", "3"], env=env)
    assert refused.exit_code != 0 and "not sending" in refused.output
    with runtime.sessions() as db:
        done = [(a.actor, a.action, a.target) for a in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert done == [("cli", "ops.retry-deferred", "issue:3"),
                    ("cli", "ops.settle-uncertain-sent", "issue:3"),
                    ("cli", "ops.pause-send", "issue:3")]


def test_the_console_shows_the_send_and_its_actions_are_confirmed_forms(runtime: Runtime) -> None:
    sending_issue(runtime)
    with unit_of_work(runtime.sessions) as db:
        staff_account(db, "ops@example.com", "ops")
    client = desk_client(runtime)
    assert sign_in(client, "ops@example.com").status_code == 303
    page = client.get("/desk/ops")
    assert page.status_code == 200
    assert 'hx-get="/desk/ops/live"' in page.text and 'hx-trigger="every 5s"' in page.text
    assert "۴ از ۶" in page.text  # settled of total, in Persian digits
    assert "slow.test" in page.text and "دامنه با ۴۲۱ کند شد" in page.text
    assert '<details class="confirm">' in page.text  # every action asks first
    live = client.get("/desk/ops/live")
    assert "خوانده‌شده ساعت" in live.text and "<html" not in live.text
    answer = client.post("/desk/ops/issues/3/pause", data={"csrf_token": csrf_from(page)})
    assert answer.status_code == 303 and "done=" in answer.headers["location"]
    assert "ارسال مکث شد" in client.get(answer.headers["location"]).text
    assert "forged" not in client.get("/desk/ops?done=forged").text  # only signed outcomes show
    assert snapshot(runtime, utcnow()).issue.status == "paused"  # type: ignore[union-attr]
    with runtime.sessions() as db:
        [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "ops.pause-send"))
    assert entry.actor == "ops@example.com"


def test_metrics_need_the_token_or_loopback_and_pass_promtool(
        sqlite_url: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url))
    truncate_all(rt)
    try:
        sending_issue(rt)
        tally = SendTally()
        tally.observe([Result("sent", 250, "ok"), Result("deferred", 451, "later")], 0.2)
        with unit_of_work(rt.sessions) as db:
            tally.flush(db)
            marks.record(db, marks.BEAT_TICK, utcnow())
        port = free_port()
        with serving(create_app(rt), port):
            url = f"http://127.0.0.1:{port}/metrics"
            body = httpx.get(url).text
            assert httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert 'chapar_deliveries{issue="3",status="sent"} 2.0' in body
        assert "chapar_messages_sent_total 1.0" in body
        assert 'chapar_smtp_replies_total{class="4xx",code="451"} 1.0' in body
        assert 'chapar_send_seconds_bucket{le="0.1"} 2.0' in body
        assert 'chapar_subscribers{status="confirmed"} 6.0' in body
        assert "chapar_beat_last_tick_timestamp_seconds " in body
        assert 'chapar_queue_messages{queue="send"}' in body
        check_metrics(body)
        exposed = set(re.findall(r"^# TYPE (\w+) ", body, re.MULTILINE)) | \
            set(re.findall(r"^(chapar_\w+)[{ ]", body, re.MULTILINE))
        for used in (DEPLOY / "alerts.yml", DEPLOY.parent / "grafana" / "chapar.json"):
            names = set(re.findall(r"chapar_\w+", used.read_text()))
            assert names <= exposed, f"{used.name} reads metrics nobody exposes: {names - exposed}"
    finally:
        truncate_all(rt)
        rt.close()


def test_metrics_with_a_token_need_it(runtime: Runtime) -> None:
    rt = Runtime.from_settings(runtime.settings.model_copy(update={"metrics_token": "s3cret-token"}))
    try:
        client = desk_client(rt)
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert answer.status_code == 200 and "chapar_workers_alive" in answer.text
    finally:
        rt.close()


@needs_promtool
def test_alert_rules_pass_promtool_and_fire_when_they_should() -> None:
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(DEPLOY / "alerts.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    tests = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=DEPLOY,
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr


@needs_promtool
def test_the_monitoring_profiles_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    (tmp_path / "token").write_text("t")
    config = (DEPLOY / "prometheus.yml").read_text() \
        .replace("/etc/prometheus/alerts.yml", str(DEPLOY / "alerts.yml")) \
        .replace("/tmp/metrics-token", str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def check_metrics(body: str) -> None:
    if PROMTOOL is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_alerts_email_ops_once_per_condition_per_hour(runtime: Runtime, smtp: SmtpRecorder) -> None:
    rt = Runtime.from_settings(runtime.settings.model_copy(update={"ops_emails": "ops@site.test"}))
    try:
        now = utcnow()
        with unit_of_work(rt.sessions) as db:
            marks.record(db, marks.BEAT_TICK, now - timedelta(minutes=10))
        assert [c.key for c in watch_once(rt, now)] == [BEAT_NOT_TICKING]
        [mail] = smtp.to("ops@site.test")
        assert "زمان‌بند" in mail.message["Subject"]
        assert watch_once(rt, now + timedelta(minutes=30)) == []  # not again within the hour
        assert len(smtp.to("ops@site.test")) == 1
        assert [c.key for c in watch_once(rt, now + timedelta(minutes=61))] == [BEAT_NOT_TICKING]
        assert len(smtp.to("ops@site.test")) == 2
        with rt.sessions() as db:
            assert [i.kind for i in incidents.recent(db)] == [incidents.ALERT_SENT] * 2
    finally:
        rt.close()


def test_incidents_are_pruned_after_their_retention(runtime: Runtime) -> None:
    now = utcnow()
    with unit_of_work(runtime.sessions) as db:
        incidents.record(db, incidents.GAVE_UP, now - timedelta(days=100), "old")
        incidents.record(db, incidents.GAVE_UP, now - timedelta(days=1), "new")
    watch_once(runtime, now)
    with runtime.sessions() as db:
        assert [i.detail for i in incidents.recent(db)] == ["new"]
