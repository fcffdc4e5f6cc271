"""Staff management: invite by email, set a password through the link, roles, disable; API docs."""

from __future__ import annotations

import re
import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff import accounts, invites
from service.staff.audit import CLI
from service.staff.models import AuditEntry
from tests.staff.factories import staff_account
from tests.support.smtp import SmtpRecorder
from tests.web.desk.support import csrf_from, desk_client, sign_in

LINK = re.compile(r"https?://\S+/desk/welcome/[\w.\-]+")


def admin_client(rt: Runtime) -> object:
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
    client = desk_client(rt)
    assert sign_in(client, "boss@example.com").status_code == 303
    return client


def test_an_invited_editor_sets_a_password_once_and_signs_in(runtime: Runtime, smtp: SmtpRecorder) -> None:
    client = admin_client(runtime)
    page = client.get("/desk/staff")  # type: ignore[attr-defined]
    sent = client.post("/desk/staff/invite", data={  # type: ignore[attr-defined]
        "csrf_token": csrf_from(page), "email": "New.Editor@Example.com", "name": "سارا", "role": "editor"})
    assert sent.status_code == 303 and sent.headers["location"] == "/desk/staff?done=invited"
    [mail] = smtp.messages
    message = mail.message
    assert mail.rcpt_tos == ["new.editor@example.com"]
    assert "دعوت" in str(message["Subject"])
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = LINK.search(text).group(0)  # type: ignore[union-attr]
    assert link in html and "ویراستار" in text
    path = link.split("chapar.test", 1)[1]

    guest = desk_client(runtime)
    form = guest.get(path)
    assert form.status_code == 200 and "new.editor@example.com" in form.text
    token = csrf_from(form)
    short = guest.post(path, data={"csrf_token": token, "password": "short", "password2": "short"})
    assert short.status_code == 422
    done = guest.post(path, data={"csrf_token": token, "password": "a good long password",
                                  "password2": "a good long password"})
    assert done.status_code == 303 and done.headers["location"] == "/desk/login?welcome=1"
    again = guest.get(path)
    assert again.status_code == 400 and "پیش‌تر گذرواژه ساخته شده" in again.text  # one use only
    assert sign_in(guest, "new.editor@example.com", "a good long password").status_code == 303
    home = guest.get("/desk/")
    assert "ویراستار" in home.text and "/desk/staff" not in home.text
    assert guest.get("/desk/staff").status_code == 403
    with runtime.sessions() as db:
        actions = [(e.actor, e.action) for e in db.query(AuditEntry).order_by(AuditEntry.id)]
    assert ("boss@example.com", "staff.invite") in actions
    assert ("new.editor@example.com", "staff.password") in actions


class TwoHoursAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 7200


def test_a_forged_or_expired_link_is_refused(runtime: Runtime) -> None:
    client = desk_client(runtime)
    assert client.get("/desk/welcome/forged").status_code == 400
    with unit_of_work(runtime.sessions) as db:
        account = accounts.invite(db, CLI, "late@example.com", "viewer", utcnow())
        fresh = invites.make_token(runtime, account)
        late = URLSafeTimedSerializer(runtime.settings.secret_key, salt=invites.SALT, signer=TwoHoursAgo)
        stale = late.dumps(late.loads(fresh))  # the same content, signed two hours ago
    assert client.get(f"/desk/welcome/{fresh}").status_code == 200
    assert client.get(f"/desk/welcome/{stale}").status_code == 200  # 72 hours by default
    short = runtime.settings.model_copy(update={"staff_invite_max_age_hours": 1})
    shorter = Runtime.from_settings(short)
    answer = desk_client(shorter).get(f"/desk/welcome/{stale}")
    assert answer.status_code == 400 and "منقضی" in answer.text
    shorter.close()


def test_disabling_an_account_ends_its_sessions_at_once(runtime: Runtime) -> None:
    client = admin_client(runtime)
    with unit_of_work(runtime.sessions) as db:
        ed = staff_account(db, "ed@example.com", "editor")
    editor = desk_client(runtime)
    sign_in(editor, "ed@example.com")
    assert editor.get("/desk/").status_code == 200
    page = client.get("/desk/staff")  # type: ignore[attr-defined]
    off = client.post(f"/desk/staff/{ed.id}/disable", data={"csrf_token": csrf_from(page)})  # type: ignore[attr-defined]
    assert off.status_code == 303
    assert editor.get("/desk/").status_code == 303
    assert sign_in(desk_client(runtime), "ed@example.com").status_code == 401
    role = client.post(f"/desk/staff/{ed.id}/role", data={"csrf_token": csrf_from(page), "role": "ops"})  # type: ignore[attr-defined]
    assert role.status_code == 303
    audit_page = client.get("/desk/audit")  # type: ignore[attr-defined]
    assert "staff.disable" in audit_page.text and "staff.role" in audit_page.text


def test_the_api_docs_page_lists_every_endpoint_for_staff_only(runtime: Runtime) -> None:
    assert desk_client(runtime).get("/desk/api").status_code == 303
    with unit_of_work(runtime.sessions) as db:
        staff_account(db, "viewer@example.com", "viewer")
    client = desk_client(runtime)
    sign_in(client, "viewer@example.com")
    page = client.get("/desk/api")
    assert page.status_code == 200
    doc = client.app.openapi()  # type: ignore[attr-defined]
    for path, item in doc["paths"].items():
        assert path in page.text
        for method in item:
            assert f'class="method {method}"' in page.text
    assert "/desk/" not in "".join(doc["paths"])  # the desk itself is not in the public API
    assert client.get("/api/openapi.json").status_code == 200


def test_an_invitation_the_relay_refuses_leaves_no_account_behind(runtime: Runtime,
                                                                  smtp: SmtpRecorder) -> None:
    smtp.faults.rcpt["lost@example.com"] = "550 5.1.1 no such user"
    smtp.faults.once = True
    client = admin_client(runtime)
    page = client.get("/desk/staff")  # type: ignore[attr-defined]
    refused = client.post("/desk/staff/invite", data={  # type: ignore[attr-defined]
        "csrf_token": csrf_from(page), "email": "lost@example.com", "role": "editor"})
    assert refused.status_code == 503 and "ایمیل دعوت فرستاده نشد" in refused.text
    assert smtp.messages == []
    with runtime.sessions() as db:
        assert accounts.find(db, "lost@example.com") is None
        actions = [e.action for e in db.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-2:] == ["staff.invite", "staff.invite_withdrawn"]
    retried = client.post("/desk/staff/invite", data={  # type: ignore[attr-defined]
        "csrf_token": csrf_from(page), "email": "lost@example.com", "role": "editor"})
    assert retried.status_code == 303  # the address is free for a second try, which arrives
    assert [m.rcpt_tos for m in smtp.messages] == [["lost@example.com"]]
