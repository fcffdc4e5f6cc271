"""Keys that belong to this installation's database and never rotate.

Some keyed hashes must stay the same for the life of the data they protect: the
suppression list holds only keyed hashes of erased addresses, and a hash made
under a key that is gone can never be matched again. Those keys cannot be
CHAPAR_SECRET_KEY, which an operator must be free to rotate; they live in the
database, made by the migration that created the table, so every process of
one installation shares them and a restore from backup brings them along.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.db import Base

SUPPRESSION = "suppression"  # HMAC key for suppressions.email_hash
MESSAGE_ID = "message-id"  # keeps the per-recipient Message-ID unguessable and stable


class InstanceKey(Base):
    __tablename__ = "instance_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))  # the key's bytes in hexadecimal
    created_at: Mapped[datetime]


class MissingInstanceKey(RuntimeError):
    def __init__(self, name: str) -> None:
        super().__init__(f"instance key {name!r} is missing: run `chapar db upgrade`")


# Per process: the keys never change, so one read per database is enough.
_cache: dict[tuple[str, str], bytes] = {}


def instance_key(session: Session, name: str) -> bytes:
    """The installation's key called `name`; raises MissingInstanceKey if there is none.

    Never made on the fly: a key made inside a transaction that then rolls back
    would live on in this process's cache alone, and hashes made with it would
    match nothing anywhere else.
    """
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    cached = _cache.get((database, name))
    if cached is not None:
        return cached
    row = session.get(InstanceKey, name)
    if row is None:
        raise MissingInstanceKey(name)
    key = bytes.fromhex(row.value)
    _cache[(database, name)] = key
    return key
