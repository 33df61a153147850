"""Feeds in: RSS and Atom files become tagged articles once; the fetch guard keeps feed URLs
away from our own network; configured feeds are polled by the real worker.

The HTTP tests run a real ``http.server`` on 127.0.0.1 — a loopback address the guard
refuses, which is the point: only an explicit allowance reaches it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.config import reload_settings
from newsletter.models import Article, ArticleRevision
from newsletter.newsroom import feeds
from newsletter.newsroom.fetch import FeedError, Guard, Refused, fetch
from tests.conftest import dump_log
from tests.helpers import DATA

RSS, ATOM = DATA / "feed.rss", DATA / "feed.atom"
OPEN = Guard(allow_private=True)  # for the local test server; every other guard is closed


@pytest.fixture(scope="module", autouse=True)
def configured_feeds() -> Iterator[None]:
    """Feeds for beat's poll, set before the module's worker starts so it inherits them."""
    keys = ("NEWSLETTER_FEEDS",)
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["NEWSLETTER_FEEDS"] = ",".join([
        str(RSS), "http://10.0.0.1/feed.rss", str(DATA / "missing.rss"), f"{ATOM} Gulf"])
    reload_settings()
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reload_settings()


def articles_by_url() -> dict[str, Article]:
    with db.session_scope() as session:
        found = session.scalars(select(Article)).all()
        return {a.url: a for a in found}


def tag_names(article: Article) -> list[str]:
    return [t.name for t in article.tags]


# ---------------------------------------------------------------- importing (both backends)

def test_rss_import_creates_tagged_articles_and_a_reimport_changes_nothing(fresh) -> None:
    with db.session_scope() as session:
        result = feeds.import_feed(session, str(RSS))
    assert (result.created, result.updated, result.unchanged, result.skipped) == (5, 0, 0, 1)
    assert result.reasons == ["https://news.example/levant/editors-note: no category and the "
                              "feed has no default tag"]
    got = articles_by_url()
    assert len(got) == 5
    idlib = got["https://news.example/levant/aid-convoy-reaches-idlib"]
    assert tag_names(idlib) == ["Syria", "Diplomacy"]
    assert idlib.author == "Lina Haddad"
    assert idlib.published_at.isoformat() == "2026-11-27T08:15:00+00:00"
    assert idlib.external_id.endswith(":levant-1001")
    geneva = got["https://news.example/levant/geneva-talks-resume"]
    assert geneva.title == "استئناف المحادثات في جنيف"
    assert geneva.published_at.isoformat() == "2026-11-27T08:40:00+00:00"  # +0200 → UTC
    assert got["https://news.example/levant/beyrouth-port-rouvre"].title == (
        "Beyrouth : le port rouvre ses quais, façade côté mer réparée")
    water = got["https://news.example/levant/amman-damascus-water-deal"]
    assert water.title == "Amman & Damascus sign water deal"
    assert water.summary == "The deal shares the Yarmouk basin & its dams. Signed today."
    assert tag_names(water) == ["Jordan", "Energy"]
    undated = got["https://news.example/levant/brent-steady"]
    assert abs((undated.published_at - undated.created_at).total_seconds()) < 5  # missing → now

    with db.session_scope() as session:
        again = feeds.import_feed(session, str(RSS))
    assert (again.created, again.updated, again.unchanged, again.skipped) == (0, 0, 5, 1)
    after = articles_by_url()
    assert len(after) == 5
    # Unchanged means untouched: not even the undated entry's date moved.
    assert after[undated.url].published_at == undated.published_at
    assert after[undated.url].updated_at == undated.updated_at
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ArticleRevision)) == 0


def test_atom_import_with_a_default_tag_and_html_made_harmless(fresh) -> None:
    with db.session_scope() as session:
        result = feeds.import_feed(session, str(ATOM), default_tag="Gulf")
    assert (result.created, result.skipped) == (6, 0)
    got = articles_by_url()
    assert tag_names(got["https://news.example/gulf/round-up"]) == ["Gulf"]
    assert tag_names(got["https://news.example/gulf/doha-summit-opens"]) == ["Gulf", "Diplomacy"]
    assert got["https://news.example/gulf/doha-summit-opens"].title == "قمة الخليج تنطلق في الدوحة"
    assert got["https://news.example/gulf/doha-summit-opens"].author == "Omar Al-Masri"
    assert got["https://news.example/gulf/bahrein-f1"].title == (
        "Bahreïn : la Formule 1 confirme son calendrier")
    iran = got["https://news.example/gulf/iran-resumes-exports"]
    assert iran.title == "Iran resumes crude exports via Jask"
    assert iran.summary == ("Tankers loaded at Jask for the first time since May. "
                            "Buyers & brokers were cautious.")
    assert iran.image_url == "https://cdn.news.example/img/jask.jpg"
    for article in got.values():
        for text in (article.title, article.summary):
            assert "<" not in text and "script" not in text and "evil" not in text
    # Only <updated>: that is the date.
    assert got["https://news.example/gulf/riyad-prolonge-baisse"].published_at.isoformat() == (
        "2026-11-25T09:00:00+00:00")

    with db.session_scope() as session:
        again = feeds.import_feed(session, str(ATOM), default_tag="Gulf")
    assert (again.created, again.unchanged) == (0, 6)
    assert len(articles_by_url()) == 6


def test_an_edited_entry_is_updated_not_duplicated(fresh, tmp_path) -> None:
    with db.session_scope() as session:
        feeds.import_feed(session, str(RSS))
    before = articles_by_url()
    edited = tmp_path / "levant.xml"  # another copy of the same feed (its self link says so)
    edited.write_text(RSS.read_text(encoding="utf-8").replace(
        "Aid convoy reaches Idlib after week-long delay",
        "Aid convoy turned back before reaching Idlib").replace(
        "<category>Lebanon</category>", "<category>Lebanon</category><category>Ports</category>"),
        encoding="utf-8")
    with db.session_scope() as session:
        result = feeds.import_feed(session, str(edited))
    assert (result.created, result.updated, result.unchanged) == (0, 2, 3)
    after = articles_by_url()
    assert set(after) == set(before)
    idlib = after["https://news.example/levant/aid-convoy-reaches-idlib"]
    assert idlib.id == before[idlib.url].id
    assert idlib.title == "Aid convoy turned back before reaching Idlib"
    assert idlib.updated_at > before[idlib.url].updated_at
    assert tag_names(after["https://news.example/levant/beyrouth-port-rouvre"]) == [
        "Lebanon", "Ports"]
    with db.session_scope() as session:
        revisions = {r.article_id: r for r in session.scalars(select(ArticleRevision))}
    assert revisions[idlib.id].changes == {"title": [
        "Aid convoy reaches Idlib after week-long delay",
        "Aid convoy turned back before reaching Idlib"]}
    assert revisions[idlib.id].substantial is True
    port = after["https://news.example/levant/beyrouth-port-rouvre"]
    assert revisions[port.id].changes == {"tags": [["Lebanon"], ["Lebanon", "Ports"]]}
    assert revisions[port.id].substantial is False


def test_cli_import_feed(fresh) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["import-feed", str(ATOM)])
    assert result.exit_code == 0, result.output
    assert "5 created, 0 updated, 0 unchanged, 1 skipped" in result.output
    assert "round-up: no category" in result.output
    result = runner.invoke(cli, ["import-feed", "file:///etc/passwd"])
    assert result.exit_code == 2 and "only http and https" in result.output
    assert len(articles_by_url()) == 5


def test_feed_over_http_only_with_private_targets_allowed(fresh, feed_server) -> None:
    url = feed_server.url("/feed.rss")
    with db.session_scope() as session, pytest.raises(Refused, match="loopback"):
        feeds.import_feed(session, url)  # the default guard, from the settings
    assert feed_server.requests == []  # refused before connecting
    with db.session_scope() as session:
        result = feeds.import_feed(session, url, guard=OPEN)
    assert result.created == 5 and feed_server.requests == ["/feed.rss"]
    # The same feed read from disk is the same feed: nothing new.
    with db.session_scope() as session:
        assert feeds.import_feed(session, str(RSS)).unchanged == 5


def test_the_worker_polls_configured_feeds_and_one_failure_stops_none(fresh) -> None:
    from workers.celery_app import get_app

    get_app().send_task("newsletter.poll_feeds")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(articles_by_url()) < 11:
        time.sleep(0.2)
    got = articles_by_url()
    assert len(got) == 11, dump_log(fresh)  # 5 RSS + 6 Atom (the default tag took the 6th)
    assert tag_names(got["https://news.example/gulf/round-up"]) == ["Gulf"]
    # Both broken feeds were reported in the worker's log (the others imported regardless).
    deadline = time.monotonic() + 10
    while True:
        log = fresh.worker_log.read_text(errors="replace")
        if "feed http://10.0.0.1/feed.rss failed: refused" in log:
            break
        assert time.monotonic() < deadline, dump_log(fresh)
        time.sleep(0.2)
    assert "missing.rss failed: cannot read" in log


# ---------------------------------------------------------------- parsing (no database)

def test_to_text_drops_markup_scripts_and_styles() -> None:
    html = ('<p>It&#39;s <b>bold</b> &amp; <i>true</i></p><script>steal()</script>'
            '<style>p{}</style><img src=x onerror=alert(1)><p>Next&nbsp;line</p><br>end')
    assert feeds.to_text(html) == "It's bold & true Next line end"
    assert feeds.to_text("a < b and c > d") == "a < b and c > d"  # text, not markup
    assert feeds.to_text(None) == ""


def test_not_a_feed_is_a_clear_error(tmp_path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body>Hello</body></html>")
    with pytest.raises(FeedError, match="not an RSS or Atom feed"):
        feeds.entries(page.read_bytes(), page.as_uri())
    with pytest.raises(FeedError, match="cannot read"):
        feeds.read(str(tmp_path / "nope.xml"))


def test_feed_sources_and_their_settings() -> None:
    assert feeds.FeedSource.parse("https://a.example/f.xml  Gulf  States ") == feeds.FeedSource(
        "https://a.example/f.xml", "Gulf States")
    assert feeds.FeedSource.parse("https://a.example/f.xml").default_tag is None
    from newsletter.config import get_settings

    assert get_settings().feeds[-1] == f"{ATOM} Gulf"  # comma-separated env
    os.environ["NEWSLETTER_FEEDS"] = '["https://a.example/1.xml", "https://b.example/2.xml Oil"]'
    try:
        assert reload_settings().feeds == ["https://a.example/1.xml", "https://b.example/2.xml Oil"]
    finally:
        os.environ["NEWSLETTER_FEEDS"] = ",".join([
            str(RSS), "http://10.0.0.1/feed.rss", str(DATA / "missing.rss"), f"{ATOM} Gulf"])
        reload_settings()


# ---------------------------------------------------------------- the guard (no database)

class FeedServer:
    """A real HTTP server on loopback whose routes misbehave on purpose."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # a client that hung up on purpose
        self.port = self.httpd.server_address[1]
        self.routes = {
            "/feed.rss": lambda h: self.send(h, 200, RSS.read_bytes()),
            "/moved": lambda h: self.send(h, 301, b"", location="/feed.rss"),
            "/to-private": lambda h: self.send(
                h, 302, b"", location=f"http://localhost:{self.port}/feed.rss"),
            "/to-metadata": lambda h: self.send(
                h, 302, b"", location="http://169.254.169.254/latest/meta-data/"),
            "/loop": lambda h: self.send(h, 302, b"", location="/loop"),
            "/big": lambda h: self.send(h, 200, b"x" * 5000),
            "/big-unannounced": self.unannounced,
            "/slow": self.slow,
            "/trickle": self.trickle,
        }

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @staticmethod
    def send(h, status: int, body: bytes, location: str | None = None) -> None:
        h.send_response(status)
        if location:
            h.send_header("Location", location)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def unannounced(h) -> None:  # no Content-Length: the body ends when the server closes
        h.close_connection = True
        h.send_response(200)
        h.end_headers()
        for _ in range(50):
            h.wfile.write(b"y" * 100)

    @staticmethod
    def slow(h) -> None:
        time.sleep(5)
        FeedServer.send(h, 200, RSS.read_bytes())

    @staticmethod
    def trickle(h) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b"z")
            h.wfile.flush()
            time.sleep(0.05)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.mark.parametrize(("url", "why"), [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://ftp.example.com/feed.xml", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/feed.xml", "loopback"),
    ("http://10.0.0.1/feed.xml", "private"),
    ("http://192.168.1.1/feed.xml", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::ffff:10.0.0.1]/", "private"),  # an IPv4 address in IPv6 clothing
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
    ("http://localhost/", "loopback"),  # a name is judged by what it resolves to
])
def test_refused_targets_are_refused_before_any_connection(url: str, why: str) -> None:
    # Refused is raised by the check that precedes the connection: no packet is sent to a
    # private range (a connection attempt would time out or be refused, not raise this).
    with pytest.raises(Refused, match=why):
        fetch(url, Guard(timeout_s=30))


def test_loopback_server_refused_then_allowed(feed_server) -> None:
    with pytest.raises(Refused, match="127.0.0.1 is a loopback address"):
        fetch(feed_server.url("/feed.rss"), Guard())
    assert feed_server.requests == []
    fetched = fetch(feed_server.url("/feed.rss"), OPEN)
    assert fetched.content == RSS.read_bytes()
    # An allow-listed host is reachable while others stay refused.
    only_this = Guard(allowed_hosts=frozenset({"127.0.0.1"}))
    assert fetch(feed_server.url("/feed.rss"), only_this).content == RSS.read_bytes()


def test_redirects_are_followed_and_each_hop_checked(feed_server) -> None:
    only_this = Guard(allowed_hosts=frozenset({"127.0.0.1"}))
    fetched = fetch(feed_server.url("/moved"), only_this)
    assert fetched.url == feed_server.url("/feed.rss") and fetched.content == RSS.read_bytes()
    feed_server.requests.clear()
    # The first hop is allowed, the target it redirects to is not: refused, never requested.
    with pytest.raises(Refused, match="localhost resolves to .*loopback"):
        fetch(feed_server.url("/to-private"), only_this)
    with pytest.raises(Refused, match="169.254.169.254 is a link-local"):
        fetch(feed_server.url("/to-metadata"), only_this)
    assert feed_server.requests == ["/to-private", "/to-metadata"]
    with pytest.raises(FeedError, match="more than 5 redirects"):
        fetch(feed_server.url("/loop"), only_this)
    assert feed_server.requests.count("/loop") == 6


def test_oversize_bodies_are_aborted(feed_server) -> None:
    small = Guard(allow_private=True, max_bytes=1000)
    with pytest.raises(FeedError, match="5000 bytes is over the 1000-byte limit"):
        fetch(feed_server.url("/big"), small)
    with pytest.raises(FeedError, match="more than the 1000-byte limit"):
        fetch(feed_server.url("/big-unannounced"), small)
    assert len(fetch(feed_server.url("/big-unannounced"), OPEN).content) == 5000


def test_slow_servers_time_out(feed_server) -> None:
    quick = Guard(allow_private=True, timeout_s=0.5)
    # Both servers take 5 s; the fetch gives up long before.
    for path in ("/slow", "/trickle"):  # silent, then bytes arriving steadily but too slowly
        started = time.monotonic()
        with pytest.raises(FeedError, match="timed out after 0.5 s"):
            fetch(feed_server.url(path), quick)
        assert time.monotonic() - started < 4, path


def test_a_local_feed_file_over_the_size_limit_is_refused(tmp_path) -> None:
    big = tmp_path / "big.rss"
    shutil.copy(RSS, big)
    with pytest.raises(FeedError, match="over the 100-byte limit"):
        feeds.read(str(big), Guard(max_bytes=100))
