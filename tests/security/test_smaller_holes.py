"""Item 12: credentials never cross a plain SMTP connection unless the URL says so, and the
feed fetcher refuses internal IPv4 addresses dressed as IPv6 (mapped, NAT64, 6to4, Teredo)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.mail import mailer
from newsletter.mail.capture import free_port
from newsletter.mail.mime import build_message
from newsletter.models import Article
from newsletter.newsroom.fetch import Guard, Refused, check, fetch, why_not_public

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))

# ---------------------------------------------------------------- SMTP AUTH without TLS


class PlainAuthRelay:
    """A relay that offers AUTH on a plain connection (aiosmtpd, TLS not required) and
    notes every connection and every credential it is handed."""

    def __init__(self) -> None:
        self.connections = 0
        self.credentials: list[tuple[bytes, bytes]] = []
        self.delivered: list[bytes] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.delivered.append(envelope.content)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        assert isinstance(auth_data, LoginPassword)
        self.credentials.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)


@contextmanager
def plain_auth_relay() -> Iterator[tuple[PlainAuthRelay, int]]:
    relay = PlainAuthRelay()
    port = free_port("127.0.0.1")
    controller = Controller(relay, hostname="127.0.0.1", port=port, authenticator=relay.authenticate,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        yield relay, port
    finally:
        controller.stop()


def message() -> bytes:
    return build_message(from_addr="news@example.com", to_addr="reader@example.org",
                         subject="Digest", text="Hello", html="<p>Hello</p>",
                         message_id=mailer.make_message_id("example.com"),
                         list_id="<digest.example.com>",
                         unsubscribe_url="https://example.com/unsubscribe/x")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_credentials_over_plain_smtp_are_refused_before_they_are_sent() -> None:
    with plain_auth_relay() as (relay, port):
        url = f"smtp://editor:hunter2-relay-password@127.0.0.1:{port}"
        with pytest.raises(ValueError, match=r"\?starttls=true.*\?insecure=true") as err:
            mailer.send_one(mailer.get_transport(url), "news@example.com", "reader@example.org",
                            message())
        assert "hunter2" not in str(err.value)
        # A config built by hand (not from a URL) is refused by the transport itself.
        by_hand = mailer.SmtpConfig("127.0.0.1", port, "editor", "hunter2-relay-password")
        with pytest.raises(mailer.AuthenticationFailure, match="insecure=true"):
            mailer.send_one(mailer.SmtpTransport(by_hand), "news@example.com",
                            "reader@example.org", message())
        assert relay.connections == 0 and relay.credentials == [] and relay.delivered == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_starttls_demanded_of_a_relay_without_it_sends_no_credentials() -> None:
    with plain_auth_relay() as (relay, port):
        url = f"smtp://editor:hunter2-relay-password@127.0.0.1:{port}?starttls=true"
        with pytest.raises(mailer.MailerError):
            mailer.send_one(mailer.SmtpTransport(mailer.SmtpConfig.from_url(url)),
                            "news@example.com", "reader@example.org", message())
        assert relay.connections == 1 and relay.credentials == [] and relay.delivered == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_insecure_true_sends_over_a_plain_relay_when_the_operator_says_so() -> None:
    with plain_auth_relay() as (relay, port):
        url = f"smtp://editor:hunter2-relay-password@127.0.0.1:{port}?insecure=true"
        with mailer.SmtpTransport(mailer.SmtpConfig.from_url(url)) as transport:
            mailer.send_one(transport, "news@example.com", "reader@example.org", message())
        assert relay.credentials == [(b"editor", b"hunter2-relay-password")]
        assert len(relay.delivered) == 1


def test_a_worker_on_a_plain_url_with_credentials_refuses_to_start(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_VAR_DIR=str(tmp_path / "var"),
               NEWSLETTER_SMTP_URL="smtp://editor:hunter2-relay-password@relay.example:587")
    for command in ("worker", "beat", "web"):
        done = subprocess.run([NEWSLETTER, command], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "NEWSLETTER_SMTP_URL" in done.stderr and "?starttls=true" in done.stderr
        assert "hunter2" not in done.stderr


def test_a_url_without_credentials_needs_no_tls() -> None:
    # A local relay that takes mail without a login (mailpit, the test sink) is unaffected.
    assert mailer.SmtpConfig.from_url("smtp://127.0.0.1:1025").username is None
    assert mailer.SmtpConfig.from_url("smtp://u:p@h?insecure=true").insecure is True
    with pytest.raises(ValueError, match="insecure must be true or false"):
        mailer.SmtpConfig.from_url("smtp://u:p@h?insecure=perhaps")


# ---------------------------------------------------------------- IPv4 inside IPv6

INTERNAL_IN_V6 = {
    "2002:7f00:1::": "loopback",                       # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1": "link-local",                 # 6to4 of 169.254.169.254
    "2002:c0a8:101::": "private",                      # 6to4 of 192.168.1.1
    "64:ff9b::7f00:1": "loopback",                     # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe": "link-local",                # NAT64 of the metadata service
    "64:ff9b:1::a00:1": "private",                     # local-use NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback",  # Teredo, client 127.0.0.1 (inverted)
    "2001:0:a00:1:8000:63bf:3fff:fdd2": "private",     # Teredo, server 10.0.0.1
    "::ffff:127.0.0.1": "loopback",                    # IPv4-mapped
    "::ffff:a9fe:a9fe": "link-local",
    "::127.0.0.1": "loopback",                         # IPv4-compatible
    "::10.0.0.1": "private",
}


@pytest.mark.parametrize(("address", "why"), list(INTERNAL_IN_V6.items()))
def test_the_guard_sees_the_ipv4_inside_an_ipv6_address(address, why) -> None:
    assert why_not_public(ipaddress.ip_address(address)) == why
    with pytest.raises(Refused, match=f"an? {why} address"):
        check(f"http://[{address}]/feed", Guard())


@pytest.mark.parametrize("address", ["2002:808:808::", "64:ff9b::808:808", "::ffff:8.8.8.8",
                                     "2606:4700:4700::1111"])
def test_public_ipv4_behind_a_translation_prefix_stays_reachable(address) -> None:
    # An IPv6-only network reaches public feeds through NAT64: those must keep working.
    assert why_not_public(ipaddress.ip_address(address)) is None


class Listener(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        Listener.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    Listener.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def article_count() -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Article))


def test_import_feed_refuses_ipv6_dressed_internal_targets(fresh, local_server) -> None:
    port = local_server
    runner = CliRunner()
    before = article_count()
    for url in (f"http://[::ffff:127.0.0.1]:{port}/feed", f"http://[::127.0.0.1]:{port}/feed",
                f"http://[2002:7f00:1::]:{port}/feed", f"http://[64:ff9b::7f00:1]:{port}/feed",
                f"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/feed"):
        result = runner.invoke(cli, ["import-feed", url])
        assert result.exit_code == 2, result.output
        assert "loopback" in result.output and "NEWSLETTER_FEED_ALLOW_PRIVATE" in result.output
    assert Listener.hits == []  # the server on 127.0.0.1 was never reached
    assert article_count() == before
    # The same server is reachable through the mapped address once private targets are
    # allowed: what the guard stopped above was a real way in.
    with pytest.raises(Exception, match="404"):
        fetch(f"http://[::ffff:127.0.0.1]:{port}/feed", Guard(allow_private=True))
    assert Listener.hits == ["/feed"]
