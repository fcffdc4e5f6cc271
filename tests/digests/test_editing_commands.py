"""`chapar digest articles|move|lead|exclude|pin|group|edit|rebuild|test-send` on the embedded defaults."""

from __future__ import annotations

from pathlib import Path

from tests.digests.test_commands import SAMPLE, SAMPLE_LOOKBACK, chapar
from tests.support.smtp import SmtpRecorder


def test_every_edit_of_the_desk_is_a_command(tmp_path: Path, smtp: SmtpRecorder) -> None:
    assert chapar(tmp_path, "db", "upgrade").returncode == 0
    assert chapar(tmp_path, "articles", "fetch", SAMPLE).returncode == 0
    assert chapar(tmp_path, "digest", "build", **SAMPLE_LOOKBACK).returncode == 0

    def listing() -> list[str]:
        shown = chapar(tmp_path, "digest", "articles", "1")
        assert shown.returncode == 0, shown.stderr
        return [line.split(". ", 1)[1].split(" [")[0] for line in shown.stdout.splitlines()
                if line[:4].strip().rstrip(".").isdigit()]

    before = listing()
    assert len(before) == 10
    moved = chapar(tmp_path, "digest", "move", "1", "3", "up")
    assert moved.returncode == 0, moved.stderr
    assert listing()[:3] == [before[0], before[2], before[1]]
    assert chapar(tmp_path, "digest", "lead", "1", "4").returncode == 0
    assert listing()[0] == before[3] and "(lead)" in chapar(tmp_path, "digest", "articles", "1").stdout
    refused = chapar(tmp_path, "digest", "move", "1", "2", "up")
    assert refused.returncode == 1 and "نمی‌رود" in refused.stderr
    assert chapar(tmp_path, "digest", "exclude", "1", "10").returncode == 0
    assert before[9] not in listing()
    assert chapar(tmp_path, "digest", "group", "1", "on").returncode == 0
    edited = chapar(tmp_path, "digest", "edit", "1", "--subject", "عنوان دستی", "--intro", "سلام")
    assert "changed: subject, intro" in edited.stdout, edited.stderr
    sent = chapar(tmp_path, "digest", "test-send", "1", "--to", "desk@example.com",
                  smtp_url=smtp.url, test_send_addresses="seed@example.com")
    assert sent.returncode == 0, sent.stderr
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["desk@example.com", "seed@example.com"]
    assert all(str(m.message["Subject"]) == "[آزمایشی] عنوان دستی" for m in smtp.messages)
    rebuilt = chapar(tmp_path, "digest", "rebuild", "1", **SAMPLE_LOOKBACK)
    assert rebuilt.returncode == 0 and "rebuilt issue 1" in rebuilt.stdout, rebuilt.stderr
    shown = chapar(tmp_path, "digest", "articles", "1").stdout
    assert "عنوان دستی" in shown and before[9] not in shown and "grouped by section: yes" in shown
    missing = chapar(tmp_path, "digest", "articles", "7")
    assert missing.returncode == 1 and "there is no issue 7" in missing.stderr
