"""Fetch a feed over HTTP without letting a feed URL reach into our own network.

Redirects are followed here, one hop at a time, and at every hop the host is
resolved, every address it resolves to is checked, and the connection goes to the
vetted address itself (so a second DNS answer cannot swap in 127.0.0.1). The
response is read with a deadline and a size cap; a conditional GET uses the
ETag/Last-Modified of the previous fetch.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

USER_AGENT = "Chapar feed reader (+https://github.com/chapar)"
MAX_REDIRECTS = 5
CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """The URL or one of its redirects points somewhere Chapar must not go."""


class FetchFailed(Exception):
    """The server did not give us a usable feed (status, size, time)."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a fetch may connect to.

    The default allows only globally routable addresses. Two ways through, both
    explicit: `allowed_hosts` holds host names and addresses an operator named
    (CHAPAR_FEED_ALLOWED_HOSTS), e.g. a feed server on the private network: a listed
    name may resolve anywhere, a listed address may be connected to on any port.
    `allowed_origins` lists (ip, port) pairs: tests serve feeds from 127.0.0.1 and
    name exactly that origin. Every other local address stays refused.
    """

    allowed_origins: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def allowing(cls, hosts: str) -> AddressPolicy:
        """The default policy plus the comma-separated host names or addresses in `hosts`.

        Raises ValueError for an entry that is neither, so a typo (a URL, a port)
        fails loudly instead of silently allowing nothing.
        """
        allowed: set[str] = set()
        for entry in filter(None, (part.strip() for part in hosts.split(","))):
            key = _host_key(entry)
            try:
                ipaddress.ip_address(key)
            except ValueError:
                if not _HOST_NAME.fullmatch(key):
                    raise ValueError(f"{entry!r} is not a host name or an IP address") from None
            allowed.add(key)
        return cls(allowed_hosts=frozenset(allowed))

    def check(self, address: IPAddress, port: int, host: str | None = None) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if (str(address), port) in self.allowed_origins or str(address) in self.allowed_hosts:
            return
        if host is not None and _host_key(host) in self.allowed_hosts:
            return
        if (address.is_loopback or address.is_private or address.is_link_local
                or address.is_reserved or address.is_multicast or address.is_unspecified
                or not address.is_global):
            raise FetchRefused(f"refusing to connect to {address} (not a public address)")


def _host_key(host: str) -> str:
    """A host name or address in one spelling: lower case, no trailing dot, no brackets."""
    text = host.strip().strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


# Letters, digits, hyphens (and underscores, which internal DNS names do use), per label.
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


DEFAULT_POLICY = AddressPolicy()


@dataclass(frozen=True)
class FetchResult:
    url: str  # after redirects
    status: int  # 200, or 304 when nothing changed
    content: bytes
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def resolve(host: str, port: int, policy: AddressPolicy) -> str:
    """The first address of `host`, after checking every address it resolves to."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        policy.check(literal, port, host)
        return str(literal)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"cannot resolve {host}: {exc}") from exc
    if not infos:
        raise FetchFailed(f"{host} has no address")
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        policy.check(address, port, host)
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a vetted address, sending the original Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a vetted address; the certificate is checked for the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    etag: str | None = None,
    last_modified: str | None = None,
    policy: AddressPolicy = DEFAULT_POLICY,
) -> FetchResult:
    """GET a feed, following at most five redirects, each one vetted; raise if refused."""
    deadline = time.monotonic() + timeout
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    with _answer(url, headers, deadline, policy) as (url, response):
        if response.status == 304:
            return FetchResult(url, 304, b"", etag, last_modified)
        if response.status != 200:
            raise FetchFailed(f"HTTP {response.status} from {url[:100]}")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchFailed(f"feed is {declared} bytes, more than the {max_bytes} allowed")
        content = _read_limited(response, max_bytes, deadline)
        return FetchResult(url, 200, content, response.getheader("ETag"),
                           response.getheader("Last-Modified"))


def probe(url: str, *, timeout: float, policy: AddressPolicy = DEFAULT_POLICY) -> int:
    """The HTTP status a GET of `url` ends with after vetted redirects; the body is not read."""
    with _answer(url, {"Accept": "text/html, */*;q=0.5"}, time.monotonic() + timeout,
                 policy) as (_url, response):
        return response.status


@contextmanager
def _answer(url: str, extra_headers: dict[str, str], deadline: float,
            policy: AddressPolicy) -> Iterator[tuple[str, http.client.HTTPResponse]]:
    """The first answer that is not a redirect, and the URL it came from; every hop vetted.

    Network errors while the caller reads the answer are FetchFailed too.
    """
    for _hop in range(MAX_REDIRECTS + 1):
        parts, host, port = _target(url)
        address = resolve(host, port, policy)
        remaining = max(0.1, deadline - time.monotonic())
        connection_type = _PinnedHTTPSConnection if parts.scheme.lower() == "https" else _PinnedHTTPConnection
        connection = connection_type(host, port, address, remaining)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **extra_headers}
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchFailed(f"redirect without Location from {url[:100]}")
                url = _joined(url, location)
                continue
            yield url, response
            return
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(f"{type(exc).__name__} fetching {url[:100]}: {exc}") from exc
        finally:
            connection.close()
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def _target(url: str) -> tuple[SplitResult, str, int]:
    """The parts, host and port of a URL a feed may be fetched from; refuse anything else.

    A malformed host (an unclosed IPv6 bracket, an empty or overlong label, characters no
    host name has) is refused here, the same way for the feed URL and every redirect,
    instead of escaping as a ValueError or UnicodeError from urllib or the IDNA codec.
    """
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", a port that is not a number
        raise FetchRefused(f"malformed URL {url[:100]!r}: {exc}") from exc
    if scheme not in ("http", "https") or not host:
        raise FetchRefused(f"only http and https feeds are fetched, not {url[:100]!r}")
    if not _is_host(host):
        raise FetchRefused(f"malformed host in {url[:100]!r}")
    return parts, host, port or (443 if scheme == "https" else 80)


def _is_host(host: str) -> bool:
    """An IP address, or a name whose IDNA (ASCII) form is a valid DNS name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna").decode("ascii").rstrip(".").lower()
    except UnicodeError:  # an empty or overlong label, or characters IDNA refuses
        return False
    return _HOST_NAME.fullmatch(ascii_name) is not None


def _joined(url: str, location: str) -> str:
    """The redirect target; a Location that urllib cannot even split is refused."""
    try:
        return urljoin(url, location)
    except ValueError as exc:
        raise FetchRefused(f"malformed redirect to {location[:100]!r}: {exc}") from exc


def _read_limited(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"feed is larger than the {max_bytes} bytes allowed")
        if time.monotonic() > deadline:
            raise FetchFailed("feed took longer than the time allowed")
        chunks.append(chunk)
    return b"".join(chunks)
