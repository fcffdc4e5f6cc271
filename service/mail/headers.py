"""Header encoding that keeps every space of a Persian subject.

CPython's header folder (3.11-3.13) can move the space between two words into the
folding white space between two RFC 2047 encoded-words, where every decoder drops
it: «اینترنت ثابت» arrives as «اینترنتثابت». `email.header.Header` keeps the spaces
inside the encoded-words, so Chapar encodes unstructured headers with it.
"""

from __future__ import annotations

from email.header import Header
from email.policy import EmailPolicy
from typing import Any

UNSTRUCTURED = frozenset({"subject", "comments"})


def encode_unstructured(name: str, value: str) -> str:
    """`Name: value` as one header, folded under 78 characters, without the line ending."""
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


class MailPolicy(EmailPolicy):
    """email.policy.SMTP, except that unstructured headers fold with encode_unstructured."""

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in UNSTRUCTURED:
            return encode_unstructured(name, str(value)) + self.linesep
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in UNSTRUCTURED:
            return (encode_unstructured(name, str(value)) + self.linesep).encode("ascii")
        return bytes(super().fold_binary(name, value))


SMTP_POLICY = MailPolicy(linesep="\r\n")
