"""DKIM signatures (RFC 6376, relaxed/relaxed) through OpenSSL: rsa-sha256, or
ed25519-sha256 (RFC 8463) when the configured key is an Ed25519 key.

dkimpy signs with pure-Python RSA (about 11 ms a message); one RSA-2048
signature through the `cryptography` package costs about 0.25-0.4 ms, an Ed25519
one about 0.04 ms. At thousands of messages a second on two cores that is the
difference between DKIM costing a third of the throughput and about a tenth
(README, "Benchmarks"). A verifier that does not know ed25519-sha256 treats such
a signature as absent (RFC 6376 6.1.1), so an Ed25519-only sender is unsigned to
it: the README says when to choose which. dkimpy's default header list also
omits List-Unsubscribe-Post and Feedback-ID, which bulk senders must sign.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
)

if TYPE_CHECKING:
    from service.settings import Settings

_WSP = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb"[ \t]+\r\n")


class DkimKeyError(ValueError):
    """DKIM is configured but its key cannot be used; the text is one line for ops."""


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of blanks as one space."""
    unfolded = value.replace(b"\r\n", b"")
    return name.strip().lower() + b":" + _WSP.sub(b" ", unfolded).strip() + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4 for bodies that are already CRLF lines without trailing blanks."""
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def relaxed_lines(body: bytes) -> bytes:
    """RFC 6376 3.4.4 in full, for bodies that may carry trailing or repeated blanks."""
    return _WSP_EOL.sub(b"\r\n", _WSP.sub(b" ", body))


def split_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """`Name: value` lines (folded with CRLF + blank) as (name, raw value) pairs."""
    pairs: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and pairs:
            name, value = pairs[-1]
            pairs[-1] = (name, value + b"\r\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            pairs.append((name, value.lstrip(b" ")))
    return pairs


class DkimSigner:
    """Signs one message's headers and body; keeps the parsed key for the whole send."""

    def __init__(self, private_key_pem: bytes, domain: str, selector: str,
                 headers: Sequence[str] = SIGNED_HEADERS) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        else:
            raise ValueError("DKIM key must be an RSA or an Ed25519 private key")
        self.key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = key
        self.domain = domain
        self.selector = selector
        self.headers = tuple(headers)

    @classmethod
    def from_file(cls, path: Path, domain: str, selector: str) -> DkimSigner:
        return cls(path.read_bytes(), domain, selector)

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The configured signer, None without DKIM; DkimKeyError when the key cannot be used."""
        selector, path = settings.dkim_selector, settings.dkim_private_key_path
        if not selector and path is None:
            return None
        if not selector or path is None:
            raise DkimKeyError("DKIM half configured: set both CHAPAR_DKIM_SELECTOR and "
                               "CHAPAR_DKIM_PRIVATE_KEY_PATH, or neither")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise DkimKeyError(f"DKIM key unreadable: {exc.strerror or exc}: {path}") from exc
        try:
            return cls(pem, settings.from_domain, selector)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise DkimKeyError(f"DKIM key invalid ({path}): {exc}") from exc

    def sign(self, message: bytes, timestamp: int) -> bytes:
        """A complete message (CRLF lines) with its DKIM-Signature put first."""
        head, _, body = message.partition(b"\r\n\r\n")
        signature = self.signature_header(split_headers(head), relaxed_lines(body), timestamp)
        return signature + message

    def signature_header(self, headers: Sequence[tuple[bytes, bytes]], body: bytes,
                         timestamp: int) -> bytes:
        """The complete `DKIM-Signature: ...\\r\\n` line(s) to put first in the message.

        `headers` are (name, raw value) pairs as written; only those named in the
        signed list that are present are signed, in the list's order.
        """
        present = {name.lower(): value for name, value in headers}
        names = [h for h in self.headers if h.lower().encode() in present]
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        tags = (f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector};\r\n"
                f"\tt={timestamp}; h={':'.join(names)};\r\n\tbh={body_hash};\r\n\tb=")
        canonical = b"".join(relaxed_header(n.encode(), present[n.lower().encode()]) for n in names)
        canonical += relaxed_header(b"DKIM-Signature", tags.encode())[:-2]
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463 3: PureEdDSA over the SHA-256 hash of what RSA would sign
            signature = self.key.sign(hashlib.sha256(canonical).digest())
        b64 = base64.b64encode(signature).decode()
        folded = "\r\n\t".join(b64[i:i + 72] for i in range(0, len(b64), 72))
        return f"DKIM-Signature: {tags}{folded}\r\n".encode()
