"""Bulk import from CSV: idempotent, never resurrects a suppressed or erased address."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.db import unit_of_work
from service.instance_keys import SUPPRESSION, instance_key
from service.persian import single_line
from service.subscribers.addresses import (
    MESSAGES,
    MESSAGES_EN,
    AddressError,
    address_hash,
    normalize_address,
)
from service.subscribers.models import Status, Subscriber, Suppression, new_nonce
from service.subscribers.store import Consent, record, record_consent

EMAIL_COLUMNS = ("email", "e-mail", "email_address", "ایمیل", "نشانی ایمیل")


@dataclass(frozen=True)
class Rejected:
    line: int
    value: str
    code: str  # a key of addresses.MESSAGES

    @property
    def reason(self) -> str:
        return MESSAGES[self.code]

    @property
    def reason_en(self) -> str:
        return MESSAGES_EN[self.code]


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    suppressed: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.added + self.already_present + self.suppressed + len(self.rejected)

    def include(self, other: ImportReport) -> None:
        """Add another batch's figures to these."""
        self.added += other.added
        self.already_present += other.already_present
        self.suppressed += other.suppressed
        self.rejected.extend(other.rejected)


REPORT_COLUMNS = ("line", "value", "reason_fa", "reason_en")


def write_rejected(out: TextIO, rejected: Iterable[Rejected]) -> None:
    """The rejected-lines report as CSV: line number, the value, the reason in Persian and English."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for r in rejected:
        writer.writerow([r.line, r.value, r.reason, r.reason_en])


def read_addresses(stream: TextIO) -> Iterator[tuple[int, str]]:
    """(line number, raw address) from a CSV with an email column, or one address a line."""
    sample = stream.read(4096)
    stream.seek(0)
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    lowered = [h.strip().lower().lstrip("\ufeff") for h in header]
    column = next((i for i, h in enumerate(lowered) if h in EMAIL_COLUMNS), None)
    if column is None:
        if "@" not in sample.splitlines()[0]:
            raise ValueError("no email column: name one of " + ", ".join(EMAIL_COLUMNS))
        column = 0
        yield 1, header[0]
    for row in reader:
        if row and any(cell.strip() for cell in row):
            yield reader.line_num, row[column] if column < len(row) else ""


def import_batches(
    sessions: sessionmaker[Session],
    rows: Iterable[tuple[int, str]],
    *,
    source: str,
    status: Status,
    clock: Callable[[], datetime],
    batch_size: int,
    allow_smtputf8: bool = False,
    within: Callable[[Session, int, ImportReport], None] | None = None,
) -> Iterator[ImportReport]:
    """Import `rows` a batch at a time, one transaction each; yield each batch's report once committed.

    `within(session, rows in the batch, report)` runs inside the batch's transaction, after
    its rows are imported: a desk import's progress commits with the rows it counts. The
    command line and the desk's worker both import through here.
    """
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, batch_size)):
        report = ImportReport()
        with unit_of_work(sessions) as session:
            import_batch(session, batch, source=source, status=status, now=clock(), report=report,
                         allow_smtputf8=allow_smtputf8)
            if within is not None:
                within(session, len(batch), report)
        yield report


def import_batch(
    session: Session,
    rows: Iterable[tuple[int, str]],
    *,
    source: str,
    status: Status,
    now: datetime,
    report: ImportReport,
    allow_smtputf8: bool = False,
) -> None:
    """Import one batch of (line, raw address); the caller commits between batches."""
    source = single_line(source)[:200]  # it is typed by an editor; the column holds 200
    valid: dict[str, int] = {}
    for line, raw in rows:
        try:
            address = normalize_address(raw, allow_smtputf8=allow_smtputf8)
        except AddressError as exc:
            report.rejected.append(Rejected(line, raw[:200], exc.code))
            continue
        if address in valid:
            report.already_present += 1
            continue
        valid[address] = line
    if not valid:
        return
    existing = set(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(valid))))
    key = instance_key(session, SUPPRESSION)
    hashes = {a: address_hash(key, a) for a in valid if a not in existing}
    erased = set(session.scalars(
        select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes.values()))
    ))
    fresh: list[str] = []
    for address in valid:
        if address in existing:
            report.already_present += 1
        elif hashes[address] in erased:
            report.suppressed += 1
        else:
            fresh.append(address)
    added = insert_new(session, fresh, source=source, status=status, now=now)
    report.added += added
    report.already_present += len(fresh) - added


def insert_new(session: Session, addresses: list[str], *, source: str, status: Status,
               now: datetime) -> int:
    """Insert subscribers believed new; how many were. One that appeared meanwhile is left be.

    A reader may subscribe on the web between our look-up and our insert: the whole
    batch goes in at once, and only if that fails is it retried row by row.
    """

    def add(address: str) -> None:
        subscriber = Subscriber(
            email=address, status=status, created_at=now, updated_at=now,
            confirmed_at=now if status is Status.CONFIRMED else None,
            confirm_nonce=new_nonce(), consent_source=source, consent_at=now,
        )
        session.add(subscriber)
        record(session, subscriber, "import", source, now)
        record_consent(session, subscriber, "import", Consent(source), now,
                       nonce=subscriber.confirm_nonce)

    try:
        with session.begin_nested():
            for address in addresses:
                add(address)
            session.flush()
        return len(addresses)
    except IntegrityError:
        pass
    added = 0
    for address in addresses:
        try:
            with session.begin_nested():
                add(address)
                session.flush()
            added += 1
        except IntegrityError:
            continue  # it exists now; whoever added it recorded its own consent
    return added
