"""Header encoding that keeps every space of a Persian subject.

CPython's header folder (3.11-3.13) can move the space between two words into the
folding white space between two RFC 2047 encoded-words, where every decoder drops
it: «اینترنت ثابت» arrives as «اینترنتثابت». `email.header.Header` keeps the spaces
inside the encoded-words, so Chapar encodes unstructured headers with it.
"""

from __future__ import annotations

from email.header import Header
from email.headerregistry import Address
from email.policy import EmailPolicy
from typing import Any

UNSTRUCTURED = frozenset({"subject", "comments"})
SINGLE_ADDRESS = frozenset({"from", "to", "reply-to", "sender"})
MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters, excluding CRLF


def encode_unstructured(name: str, value: str) -> str:
    """`Name: value` as one header, folded under 78 characters, without the line ending."""
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def encode_address(name: str, address: Address) -> str:
    """`Name: display-name <addr>` folded at 78 characters, without the line ending.

    CPython folds `From:` right after the colon and keeps the last encoded-word and the
    `<address>` together on a line of up to 80 characters. Here every encoded-word
    (or word, for an ASCII name) and the address are separate pieces, and a line
    breaks only between pieces, so a line passes 78 only if one piece alone does.
    """
    pieces = _display_name_pieces(name, address.display_name)
    pieces.append(f"<{address.addr_spec}>" if pieces else address.addr_spec)
    lines = [f"{name}:"]
    for piece in pieces:
        if lines[-1] == f"{name}:" or len(lines[-1]) + 1 + len(piece) <= MAX_LINE:
            lines[-1] += " " + piece
        else:
            lines.append(" " + piece)
    return "\r\n".join(lines)


def _display_name_pieces(name: str, display_name: str) -> list[str]:
    if not display_name:
        return []
    if not display_name.isascii():
        # Header puts the spaces inside the encoded-words, where decoders keep them.
        return Header(display_name, "utf-8", header_name=name).encode(linesep="\r\n").split()
    phrase = str(Address(display_name=display_name, addr_spec="x@x")).rsplit(" <", 1)[0]
    return phrase.split(" ")  # quoted where needed; folding inside quotes is allowed


def _single_address(name: str, value: Any) -> Address | None:
    """The one address of a From/To header we can fold ourselves, or None."""
    if name.lower() not in SINGLE_ADDRESS:
        return None
    addresses: tuple[Address, ...] = tuple(getattr(value, "addresses", ()))
    if len(addresses) != 1 or not addresses[0].addr_spec.isascii():
        return None
    return addresses[0]


class MailPolicy(EmailPolicy):
    """email.policy.SMTP, except that unstructured and single-address headers fold here."""

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in UNSTRUCTURED:
            return encode_unstructured(name, str(value)) + self.linesep
        address = _single_address(name, value)
        if address is not None:
            return encode_address(name, address) + self.linesep
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in UNSTRUCTURED or _single_address(name, value) is not None:
            return self.fold(name, value).encode("ascii")
        return bytes(super().fold_binary(name, value))


SMTP_POLICY = MailPolicy(linesep="\r\n")
