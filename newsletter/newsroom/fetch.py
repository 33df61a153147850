"""Fetch a feed over HTTP without opening a door into our own network (SSRF guard).

A feed URL comes from outside (an editor, a config line, a redirect chosen by a remote
server), so before any connection: only http and https; the host must resolve, and every
address it resolves to must be public unless private targets are allowed or the host is on
the operator's allow-list. The connection then goes to the address that was checked, so a
second DNS answer cannot swap in an internal one. Redirects are followed by hand and each
hop is checked again; the whole fetch has one deadline and a size cap.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from newsletter.config import Settings, get_settings
from newsletter.errors import FeedError, Refused  # noqa: F401 - re-exported

REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "newsletter-feed-reader/0.1"
ACCEPT = ("application/rss+xml, application/atom+xml, application/xml;q=0.9, "
          "text/xml;q=0.9, */*;q=0.1")


@dataclass(frozen=True)
class Guard:
    """What a fetch may reach and how long and how much it may take."""

    allow_private: bool = False
    # Hosts (names as written in URLs) exempt from the address check: an internal CMS.
    allowed_hosts: frozenset[str] = frozenset()
    timeout_s: float = 10.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    # The settings that widen this guard, named in its refusals (webhooks have their own).
    switches: str = "NEWSLETTER_FEED"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Guard:
        s = settings or get_settings()
        return cls(allow_private=s.feed_allow_private,
                   allowed_hosts=frozenset(h.strip().lower() for h in s.feed_allowed_hosts),
                   timeout_s=s.feed_timeout_s, max_bytes=s.feed_max_bytes)


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content: bytes
    content_type: str


# IPv6 prefixes that carry an IPv4 address a gateway or relay will connect to for us, and
# where in the 128 bits it sits (the bit offset from the left, and whether it is inverted).
_EMBEDDING_V4 = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), 96, False),      # IPv4-mapped
    (ipaddress.IPv6Network("::/96"), 96, False),              # IPv4-compatible (deprecated)
    (ipaddress.IPv6Network("64:ff9b::/96"), 96, False),       # NAT64, well-known prefix
    (ipaddress.IPv6Network("64:ff9b:1::/48"), 96, False),     # NAT64, local-use (RFC 8215)
    (ipaddress.IPv6Network("2002::/16"), 16, False),          # 6to4
)
_TEREDO = ipaddress.IPv6Network("2001::/32")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to through mapping, NAT64, 6to4 or Teredo."""
    value = int(ip)
    found = []
    for network, offset, _ in _EMBEDDING_V4:
        if ip in network:
            found.append(ipaddress.IPv4Address((value >> (96 - offset)) & 0xFFFFFFFF))
    if ip in _TEREDO:  # server in bits 32-64; the client's address inverted in the last 32
        found.append(ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF))
        found.append(ipaddress.IPv4Address(~value & 0xFFFFFFFF))
    return found


def why_not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address must not be fetched from (its kind), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and not (ip.is_unspecified or ip.is_loopback):
        embedded = embedded_ipv4(ip)
        for v4 in embedded:
            why = why_not_public(v4)  # ::ffff:127.0.0.1 is 127.0.0.1
            if why:
                return why
        if embedded and ip not in _TEREDO:
            return None  # a translation of a public IPv4 address (NAT64 in an IPv6-only net)
    # Most specific first: 127.0.0.1 and 169.254.x are "private" to Python as well.
    for attribute, label in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                             ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                             ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:  # shared (100.64/10), documentation, benchmarking ranges …
        return "non-public"
    return None


def check(url: str, guard: Guard) -> str:
    """The address to connect to for ``url``; raises Refused when the guard says no."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Refused(f"refused {url!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise Refused(f"refused {url!r}: only http and https URLs can be reached")
    host = (parts.hostname or "").lower()
    if not host:
        raise Refused(f"refused {url!r}: no host")
    try:
        # getaddrinfo has no timeout of its own; the resolver's (a few seconds) bounds it.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FeedError(f"cannot resolve {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not (guard.allow_private or host in guard.allowed_hosts):
        for address in addresses:
            why = why_not_public(ipaddress.ip_address(address.split("%", 1)[0]))
            if why:
                # Refuse if ANY answer is internal: a host that resolves both ways could
                # be steered to the internal one.
                what = f"{'an' if why[0] in 'aeiou' else 'a'} {why} address"
                where = (f"{address} is {what}" if host.strip("[]") == address
                         else f"{host} resolves to {address}, {what}")
                raise Refused(f"refused {url!r}: {where} (set {guard.switches}_ALLOW_PRIVATE "
                              f"or {guard.switches}_ALLOWED_HOSTS to allow it)")
    return addresses[0]


def fetch(url: str, guard: Guard | None = None) -> Fetched:
    """GET ``url`` within the guard's limits, following up to max_redirects checked hops."""
    guard = guard or Guard.from_settings()
    deadline = time.monotonic() + guard.timeout_s
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        for _hop in range(guard.max_redirects + 1):
            address = check(url, guard)
            parts = urlsplit(url)
            pinned = httpx.URL(url).copy_with(host=address)
            headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": USER_AGENT,
                       "Accept": ACCEPT}
            # TLS still checks the certificate against the name, not the address.
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FeedError(f"{url}: timed out after {guard.timeout_s:g} s")
            try:
                with client.stream("GET", pinned, headers=headers, extensions=extensions,
                                   timeout=remaining) as response:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise FeedError(f"{url}: the server answered HTTP "
                                        f"{response.status_code}")
                    content = _read(response, url, guard, deadline)
                    return Fetched(url, content, response.headers.get("content-type", ""))
            except httpx.TimeoutException:
                raise FeedError(f"{url}: timed out after {guard.timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise FeedError(f"{url}: {exc.__class__.__name__}: {exc}") from None
    raise FeedError(f"{url}: more than {guard.max_redirects} redirects")


def _read(response: httpx.Response, url: str, guard: Guard, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > guard.max_bytes:
        raise FeedError(f"{url}: {declared} bytes is over the {guard.max_bytes}-byte limit")
    chunks, size = [], 0
    # Counted after decompression, so a small gzip bomb is stopped as well.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > guard.max_bytes:
            raise FeedError(f"{url}: more than the {guard.max_bytes}-byte limit")
        if time.monotonic() > deadline:  # a server trickling bytes slower than the timeout
            raise FeedError(f"{url}: timed out after {guard.timeout_s:g} s")
        chunks.append(chunk)
    return b"".join(chunks)
