"""Fetching feeds: limits, conditional GET, and no way into our own network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.articles.fetch import (
    DEFAULT_POLICY,
    AddressPolicy,
    FetchFailed,
    FetchRefused,
    fetch,
)
from tests.articles.feeds import RSS
from tests.articles.feedserver import FeedServer, Route, feed_server, self_signed_context


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def only(server: FeedServer) -> AddressPolicy:
    """Loopback allowed for this test server's origin, and nothing else local."""
    return AddressPolicy(allowed_origins=frozenset({server.origin}))


def test_fetches_a_feed_and_remembers_its_validators(server: FeedServer) -> None:
    server.routes["/feed"] = Route(body=RSS.encode(), etag='"v1"',
                                   headers={"Last-Modified": "Thu, 26 Nov 2026 16:00:00 GMT"})
    result = fetch(server.url("/feed"), timeout=5, max_bytes=1_000_000, policy=only(server))
    assert result.status == 200 and result.content == RSS.encode()
    assert result.etag == '"v1"' and result.last_modified == "Thu, 26 Nov 2026 16:00:00 GMT"


def test_conditional_get_sends_validators_and_accepts_304(server: FeedServer) -> None:
    server.routes["/feed"] = Route(body=RSS.encode(), etag='"v1"')
    result = fetch(server.url("/feed"), timeout=5, max_bytes=1_000_000, etag='"v1"',
                   last_modified="Thu, 26 Nov 2026 16:00:00 GMT", policy=only(server))
    assert result.not_modified and result.content == b""
    _path, headers = server.requests[-1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Thu, 26 Nov 2026 16:00:00 GMT"


def test_oversized_feed_is_refused_by_its_declared_length(server: FeedServer) -> None:
    server.routes["/big"] = Route(body=b"x" * 200_000)
    with pytest.raises(FetchFailed, match="more than"):
        fetch(server.url("/big"), timeout=5, max_bytes=100_000, policy=only(server))


def test_oversized_feed_without_a_length_is_cut_off_while_reading(server: FeedServer) -> None:
    server.routes["/stream"] = Route(body=b"x" * 500_000, chunked=True)
    with pytest.raises(FetchFailed, match="larger than"):
        fetch(server.url("/stream"), timeout=5, max_bytes=100_000, policy=only(server))


def test_slow_feed_is_given_up_on(server: FeedServer) -> None:
    server.routes["/slow"] = Route(body=b"x" * 64 * 1024, chunked=True, delay=0.5)
    with pytest.raises(FetchFailed):
        fetch(server.url("/slow"), timeout=0.6, max_bytes=1_000_000, policy=only(server))


def test_http_errors_are_failures(server: FeedServer) -> None:
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(server.url("/missing"), timeout=5, max_bytes=1000, policy=only(server))


def test_redirects_are_followed_within_the_allowed_origin(server: FeedServer) -> None:
    server.routes["/old"] = Route(301, headers={"Location": "/feed"})
    server.routes["/feed"] = Route(body=b"<rss/>")
    result = fetch(server.url("/old"), timeout=5, max_bytes=1000, policy=only(server))
    assert result.content == b"<rss/>" and result.url == server.url("/feed")


def test_redirect_to_another_loopback_port_is_refused(server: FeedServer) -> None:
    with feed_server() as other:
        other.routes["/feed"] = Route(body=b"<rss/>")
        server.routes["/go"] = Route(302, headers={"Location": other.url("/feed")})
        with pytest.raises(FetchRefused):
            fetch(server.url("/go"), timeout=5, max_bytes=1000, policy=only(server))
        assert other.requests == []  # never connected


def test_redirect_to_a_non_http_scheme_is_refused(server: FeedServer) -> None:
    server.routes["/go"] = Route(302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(FetchRefused):
        fetch(server.url("/go"), timeout=5, max_bytes=1000, policy=only(server))


def test_endless_redirects_stop(server: FeedServer) -> None:
    server.routes["/loop"] = Route(302, headers={"Location": "/loop"})
    with pytest.raises(FetchFailed, match="redirects"):
        fetch(server.url("/loop"), timeout=5, max_bytes=1000, policy=only(server))


def test_default_policy_refuses_the_test_server_itself(server: FeedServer) -> None:
    server.routes["/feed"] = Route(body=b"<rss/>")
    with pytest.raises(FetchRefused):
        fetch(server.url("/feed"), timeout=5, max_bytes=1000)
    assert server.requests == []


def test_default_policy_refuses_a_redirect_to_loopback() -> None:
    """Origin allowed (as a public host would be), its redirect target is not."""
    with feed_server() as origin:
        origin.routes["/go"] = Route(302, headers={"Location": "http://127.0.0.1:9/feed"})
        with pytest.raises(FetchRefused, match=r"127\.0\.0\.1"):
            fetch(origin.url("/go"), timeout=5, max_bytes=1000, policy=only(origin))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/feed", "http://127.1.2.3/feed", "http://10.1.2.3/feed",
    "http://192.168.1.1/feed", "http://172.16.0.1/feed", "http://169.254.169.254/latest/meta-data",
    "http://[::1]/feed", "http://[fe80::1]/feed", "http://[::ffff:127.0.0.1]/feed",
    "http://0.0.0.0/feed", "http://localhost/feed", "http://100.64.0.1/feed",
])
def test_default_policy_refuses_local_and_private_addresses(url: str) -> None:
    with pytest.raises(FetchRefused):
        fetch(url, timeout=2, max_bytes=1000)


@pytest.mark.parametrize("url", ["ftp://example.com/feed", "file:///etc/passwd",
                                 "gopher://example.com/", "javascript:alert(1)"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(FetchRefused):
        fetch(url, timeout=2, max_bytes=1000)


def test_public_addresses_pass_the_default_policy() -> None:
    DEFAULT_POLICY.check(ipaddress.ip_address("93.184.216.34"), 443)
    DEFAULT_POLICY.check(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"), 443)


def test_https_certificates_are_verified(tmp_path: Path) -> None:
    """An https feed is fetched over TLS and its certificate checked: a self-signed one fails."""
    with feed_server(tls=self_signed_context(tmp_path)) as server:
        server.routes["/feed"] = Route(body=b"<rss/>")
        url = server.url("/feed")
        assert url.startswith("https://")
        with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(url, timeout=5, max_bytes=1000, policy=only(server))


def test_listed_hosts_are_let_through_and_nothing_else() -> None:
    """CHAPAR_FEED_ALLOWED_HOSTS: an address is allowed on any port, a name wherever it
    resolves; every other private address is still refused."""
    policy = AddressPolicy.allowing(" 127.0.0.1 , Feeds.Internal. ,[fd00::5],")
    assert policy.allowed_hosts == {"127.0.0.1", "feeds.internal", "fd00::5"}
    policy.check(ipaddress.ip_address("127.0.0.1"), 8080)
    policy.check(ipaddress.ip_address("::ffff:127.0.0.1"), 443)
    policy.check(ipaddress.ip_address("fd00::5"), 80)
    policy.check(ipaddress.ip_address("10.1.2.3"), 80, "FEEDS.internal.")
    for address, host in [("127.0.0.2", None), ("::1", None), ("10.1.2.3", None),
                          ("10.1.2.3", "other.internal"), ("169.254.169.254", "feeds.internal.evil")]:
        with pytest.raises(FetchRefused):
            policy.check(ipaddress.ip_address(address), 80, host)
    assert AddressPolicy.allowing("") == DEFAULT_POLICY


@pytest.mark.parametrize("entry", ["http://feeds.internal", "feeds.internal:8080", "10.0.0.0/8",
                                   "feeds internal", "*.internal"])
def test_an_allowed_host_that_is_not_a_host_is_a_configuration_error(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name or an IP address"):
        AddressPolicy.allowing(f"127.0.0.1,{entry}")


def test_a_feed_on_a_listed_address_is_fetched_over_http(server: FeedServer) -> None:
    server.routes["/feed"] = Route(body=RSS.encode())
    url = server.url("/feed")
    with pytest.raises(FetchRefused):
        fetch(url, timeout=5, max_bytes=1_000_000, policy=AddressPolicy.allowing("10.0.0.5"))
    assert server.requests == []
    result = fetch(url, timeout=5, max_bytes=1_000_000, policy=AddressPolicy.allowing("10.0.0.5,127.0.0.1"))
    assert result.status == 200 and result.content == RSS.encode()


@pytest.mark.parametrize("url", ["http://a..b/feed", "http://[::1/feed", "http://" + "a" * 64 + ".example/",
                                 "http://exa mple.com/feed"])
def test_a_malformed_host_is_refused(url: str) -> None:
    with pytest.raises(FetchRefused, match="malformed"):
        fetch(url, timeout=2, max_bytes=1000)


@pytest.mark.parametrize("location", ["http://a..b/feed", "http://[::1/feed"])
def test_a_redirect_to_a_malformed_host_is_refused(server: FeedServer, location: str) -> None:
    server.routes["/go"] = Route(302, headers={"Location": location})
    with pytest.raises(FetchRefused, match="malformed"):
        fetch(server.url("/go"), timeout=5, max_bytes=1000, policy=only(server))
