"""Security, through the real entry points: header injection, escaping, tokens, admin auth,
secrets, templates, and a fuzzed admin API.

Where the rest of the issue's security list is tested (so the whole list is in one place):

- CR/LF in every header ``build_message`` writes: tests/mail/test_mailer.py
  (test_line_breaks_in_header_values_are_rejected, test_extra_headers_…); an article title
  on the API is one line: tests/web/test_web.py (test_subject_header_cannot_carry_a_newline).
- Escaping in the templates themselves: tests/mail/test_rendering.py (test_editor_and_feed_text_…,
  test_confirm_escapes_…, test_correction_text_is_escaped, test_personalise_…); feed HTML made
  harmless: tests/newsroom/test_feeds.py (test_atom_import_…_html_made_harmless, test_to_text_…).
- Tampered, wrong-purpose and expired tokens: tests/web/test_web.py
  (test_tampered_and_wrong_purpose_tokens_change_nothing), tests/readers/test_reader.py
  (test_expired_confirm_link_…); CSRF on preference and erasure posts, including another
  reader's CSRF token: tests/readers/test_reader.py (test_preferences_post_needs_the_pages_csrf_token,
  test_self_service_erasure_needs_confirmation_and_csrf); one-click exempt:
  tests/test_pipeline.py (test_edition_end_to_end), tests/readers/test_reader.py.
- Subscribe bombing: per-IP rate limit, signed form token, honeypot, one confirmation a day
  per address: tests/readers/test_reader.py (test_rate_limit_per_ip, test_form_token_guards,
  test_one_confirmation_email_a_day_per_address), tests/web/test_web.py (test_honeypot_…).
- SMTP password hidden from repr: tests/mail/test_mailer.py (test_smtp_config_repr_hides_the_password).
- Concurrent schedulers and the editor's double click, in-process: tests/editions/test_schedule.py,
  tests/editions/test_requests.py; with real processes, counting Message-IDs at the SMTP server:
  tests/reliability/test_beats.py and tests/reliability/test_double_submit.py.

Here: CR/LF from the API, a feed, the form and the settings into a real message (1); markup
from the API, a feed and tag names in the emails, the archive, the preview and the
preferences page (2); another reader's token (3); admin auth on every /api route (4); no
secrets in 500 pages or logs (5); templates (6): there are no editor-supplied templates —
both Jinja environments load only from their own folders, and nothing builds a template
from a string — so Jinja2's sandbox has nothing to guard; schemathesis over /openapi.json (7).
"""

from __future__ import annotations

import ast
import inspect
import logging
import os
import re
import textwrap
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import jinja2
import lxml.html
import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from itsdangerous import URLSafeTimedSerializer
from schemathesis.checks import not_a_server_error
from sqlalchemy import func, select

from newsletter import db, logs, tokens
from newsletter.config import get_settings, reload_settings
from newsletter.editions import content
from newsletter.mail import compose, rendering
from newsletter.mail.capture import free_port
from newsletter.models import Article, Base, Edition, Reader, Topic, utcnow
from newsletter.newsroom import feeds
from newsletter.readers import subscriptions
from newsletter.web import deps
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, configure, dump_log, offer_topics, post_subscribe
from tests.helpers import html_part, text_part, wait_edition

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INJECT = "\r\nBcc: injected@evil.example"
XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)"]
# The headers our messages carry; anything else in a parsed message was injected.
OUR_HEADERS = {"from", "to", "subject", "date", "message-id", "mime-version", "list-id",
               "list-unsubscribe", "list-unsubscribe-post", "content-type", "dkim-signature"}


# ---------------------------------------------------------------- the app alone, on SQLite

def _set_env(env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)
    reload_settings()
    db.dispose_engines()


@pytest.fixture(scope="module")
def web_env(tmp_path_factory) -> dict[str, str]:
    """A migrated SQLite database and no worker (events are queued, nothing is sent)."""
    saved = dict(os.environ)
    var = tmp_path_factory.mktemp("security")
    configure(var, f"sqlite:///{var / 'web.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    env = dict(os.environ)
    _set_env(saved)
    return env


@pytest.fixture
def web(web_env) -> Iterator[TestClient]:
    """A client on the SQLite app; the environment is put back afterwards, so the module's
    worker-backed tests (``fresh``) keep theirs whatever order pytest picks."""
    saved = dict(os.environ)
    _set_env(web_env)
    try:
        yield TestClient(create_app())
    finally:
        _set_env(saved)


def row_counts() -> dict[str, int]:
    with db.session_scope() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables}


def parse(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


def assert_no_injection(raw: bytes) -> None:
    """Only our headers, none carrying a line break, and no line over 998 octets."""
    message = parse(raw)
    names = {k.lower() for k in message}
    assert names <= OUR_HEADERS, names - OUR_HEADERS
    assert "bcc" not in names and b"injected@evil.example>" not in raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    # A folded header continues with whitespace; a line starting otherwise is a new header.
    for line in head.split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[A-Za-z-]+: ", line), line
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# 1. CR/LF -------------------------------------------------------------------------------

@pytest.mark.parametrize("email", ["victim@example.com" + INJECT, "victim@example.com\nBcc: x@y.z",
                                   "victim@example.com\rX: y", "Victim\r\n <victim@example.com>"])
def test_an_address_with_a_line_break_is_refused_and_nothing_stored(web, email) -> None:
    web.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/seed", "title": "Seed", "tags": ["Syria"]})
    before = row_counts()
    r = post_subscribe(web, email=email, topics=["syria"], frequency="daily", consent="yes")
    assert r.status_code == 422 and "valid email" in r.text
    assert row_counts() == before


def test_a_trailing_line_break_is_trimmed_like_any_whitespace(web) -> None:
    # Pasted addresses often end in a newline: it is whitespace around the address, not in it.
    with db.session_scope() as session:
        offer_topics(session, "Syria")
    r = post_subscribe(web, email="pasted@example.com\r\n", topics=["syria"],
                       frequency="daily", consent="yes")
    assert r.status_code == 200
    with db.session_scope() as session:
        stored = session.scalars(select(Reader.email).where(Reader.email.like("pasted%"))).all()
    assert stored == ["pasted@example.com"]


def _transient_digest(title: str = "Aid reaches Idlib") -> bytes:
    """A digest built from unsaved rows through mail.compose, as a worker builds it."""
    now = utcnow()
    article = Article(id=1, url="https://news.example/a/1", title=title, summary="Convoys.",
                      author="Desk", image_url=None, published_at=now)
    topic = Topic(id=1, name="Syria", slug="syria")
    article.updated_at = now
    edition = Edition(id=7, kind="digest", frequency="daily", cutoff_at=now)
    digest = content.contents_from_rows(edition, [(1, "new", article, topic, None)])
    rendered = rendering.Renderer.from_settings().rendered_digest(digest)
    return compose.compose(rendered, compose.personal_links(1, "reader@example.com", 7),
                           "<d7.1@news.example>")


def test_a_line_break_in_the_site_name_never_reaches_a_header(web, web_env) -> None:
    # The site name ends every subject: a newline there would open a header.
    _set_env(web_env | {"NEWSLETTER_SITE_NAME": "Ledger" + INJECT})
    raw = _transient_digest()
    assert_no_injection(raw)
    assert "Ledger Bcc: injected@evil.example" in parse(raw)["Subject"]  # kept, as text


@pytest.mark.parametrize("from_address", ["Levant" + INJECT + " <digest@news.example>",
                                          "Levant <digest@news.example>\r\nBcc: x@evil.example",
                                          "Levant\n <digest@news.example>"])
def test_a_line_break_in_the_from_address_is_refused(web, web_env, from_address) -> None:
    _set_env(web_env | {"NEWSLETTER_FROM_ADDRESS": from_address})
    with pytest.raises(ValueError):
        _transient_digest()


def test_line_breaks_from_the_api_and_a_feed_never_reach_a_received_header(fresh, tmp_path
                                                                           ) -> None:
    backend = fresh
    client = TestClient(create_app())
    r = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/crlf-api", "title": "Talks resume" + INJECT,
        "author": "Desk" + INJECT, "summary": "Line one\r\nBcc: nobody@evil.example",
        "tags": ["Syria"]})
    assert r.status_code == 201, r.text
    assert "\r" not in r.json()["title"] and "\n" not in r.json()["author"]
    feed = tmp_path / "feed.xml"
    feed.write_text(textwrap.dedent("""\
        <?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
        <link>https://wire.example/</link>
        <item><title>Wire story&#13;&#10;Bcc: injected@evil.example</title>
        <link>https://wire.example/1</link><guid>wire-1</guid><category>Syria</category>
        <author>wire@wire.example&#13;&#10;Bcc: injected@evil.example</author>
        <description>Body</description></item></channel></rss>"""))
    with db.session_scope() as session:
        result = feeds.import_feed(session, str(feed))
        assert result.created == 1, result.as_dict()
    with db.session_scope() as session:
        for article in session.scalars(select(Article)):
            assert not re.search(r"[\r\n]", article.title + (article.author or "")), article.title
    assert client.post("/api/topics", headers=AUTH, json={"name": "Syria"}).status_code == 201
    assert client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "reader@example.com", "topics": ["syria"], "frequency": "daily",
         "consented_at": utcnow().isoformat()}]).json()["created"] == 1
    report = wait_edition(client, client.post("/api/editions", headers=AUTH,
                                              json={"frequency": "daily"}).json()["id"])
    assert report["counts"]["sent"] == 1, dump_log(backend)
    [received] = backend.smtp.wait_for(1)
    raw = backend.smtp.received[0].data
    assert backend.smtp.received[0].rcpt_tos == ["reader@example.com"]
    assert_no_injection(raw)
    assert "Talks resume Bcc: injected@evil.example" in text_part(received)
    assert "Wire story" in text_part(received)


# 2. Escaping end to end -------------------------------------------------------------------

HOSTILE_TAG = "<b>Syria</b>"


def assert_inert(html: str, where: str) -> None:
    """Parsed as a browser would: no script element but our own files (/static/, empty), no
    event-handler attribute, no javascript: link or source, and the hostile tag name did not
    become a <b> element."""
    tree = lxml.html.document_fromstring(html)
    for script in tree.xpath("//script"):
        assert script.get("src", "").startswith("/static/") and not (script.text or "").strip(), \
            (where, lxml.html.tostring(script))
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue  # comments
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (where, element.tag, name, value)
            if name.lower() in ("href", "src", "action", "formaction", "background"):
                assert not re.sub(r"\s", "", value).lower().startswith("javascript:"), \
                    (where, element.tag, value)
    assert not any("Syria" in (b.text or "") for b in tree.xpath("//b")), where


def test_markup_from_editors_feeds_and_tags_is_escaped_everywhere(fresh, tmp_path) -> None:
    backend = fresh
    client = TestClient(create_app())
    # URLs must be http(s): a javascript: link or image is refused at the door.
    for field in ("url", "image_url"):
        r = client.post("/api/articles", headers=AUTH, json={
            "url": "https://news.example/a/js", "title": "t", "tags": ["Syria"],
            field: "javascript:alert(1)"})
        assert r.status_code == 422, (field, r.text)
    r = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/xss", "title": " ".join(XSS),
        "summary": " ".join(XSS), "author": XSS[1], "image_url": "https://cdn.example/x.jpg",
        "tags": ["Syria", HOSTILE_TAG]})
    assert r.status_code == 201, r.text
    hostile_slug = next(t["slug"] for t in r.json()["tags"] if t["name"] == HOSTILE_TAG)
    feed = tmp_path / "feed.xml"
    feed.write_text(textwrap.dedent("""\
        <?xml version="1.0"?><rss version="2.0"
          xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Wire</title>
        <link>https://wire.example/</link>
        <item><title>&lt;script&gt;alert(2)&lt;/script&gt; Wire</title>
        <link>https://wire.example/2</link><guid>wire-2</guid><category>Syria</category>
        <media:thumbnail url="javascript:alert(3)"/>
        <description>&lt;p onclick="alert(4)"&gt;Hi&lt;/p&gt;&lt;script&gt;alert(5)&lt;/script&gt;
        &lt;a href="javascript:alert(6)"&gt;x&lt;/a&gt;</description></item></channel></rss>"""))
    with db.session_scope() as session:
        assert feeds.import_feed(session, str(feed)).created == 1
    for name in ("Syria", HOSTILE_TAG):  # offered to readers: a topic named as hostilely
        assert client.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    assert client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "reader@example.com", "topics": ["syria", hostile_slug], "frequency": "daily",
         "consented_at": utcnow().isoformat()}]).json()["created"] == 1

    preview = client.get("/api/preview", headers=AUTH, params={"email": "reader@example.com"})
    assert preview.status_code == 200 and "alert(1)" in preview.text  # shown, as text
    assert_inert(preview.text, "preview")

    report = wait_edition(client, client.post("/api/editions", headers=AUTH,
                                              json={"frequency": "daily"}).json()["id"])
    assert report["counts"]["sent"] == 1, dump_log(backend)
    [received] = backend.smtp.wait_for(1)
    email_html = html_part(received)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email_html
    assert_inert(email_html, "email")

    archive = client.get(f"/editions/{report['id']}")
    assert archive.status_code == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in archive.text
    assert_inert(archive.text, "archive")

    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "reader@example.com"))
        prefs = tokens.make("preferences", reader.id, reader.email)
    page = client.get(f"/preferences/{prefs}")
    assert page.status_code == 200 and "&lt;b&gt;Syria&lt;/b&gt;" in page.text
    assert_inert(page.text, "preferences")
    form = client.get("/subscribe")
    assert "&lt;b&gt;Syria&lt;/b&gt;" in form.text
    assert_inert(form.text, "subscribe form")


# 3. Another reader's token ---------------------------------------------------------------

def _active(email: str) -> int:
    with db.session_scope() as session:
        offer_topics(session, "Syria")
        reader = session.get(Reader, subscriptions.subscribe(
            session, email, ["syria"], "weekly", consent_given=True))
        reader.status = "active"
        session.flush()
        return reader.id


def test_a_token_works_only_for_the_reader_and_the_secret_it_was_made_with(web) -> None:
    a, b = _active("reader.a@example.com"), _active("reader.b@example.com")
    test_secret = os.environ["NEWSLETTER_SECRET_KEY"]

    def signed(purpose: str, reader_id: int, email: str, secret: str = test_secret) -> str:
        return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}").dumps(
            {"r": reader_id, "h": tokens.email_tag(email)})

    # The forgery is well signed: with the right hash it would work, as the control shows.
    assert web.get(f"/preferences/{signed('preferences', b, 'reader.b@example.com')}"
                   ).status_code == 200
    before = row_counts()
    for forged in (signed("preferences", b, "reader.a@example.com"),  # A's hash, B's id
                   signed("preferences", b, "reader.b@example.com", secret="another-secret")):
        assert web.get(f"/preferences/{forged}").status_code == 400
        r = web.post(f"/preferences/{forged}", data={"topics": ["syria"], "frequency": "daily",
                                                     "csrf": "x"})
        assert r.status_code == 400 and "not valid" in r.text
    for forged in (signed("unsubscribe", b, "reader.a@example.com"),
                   signed("unsubscribe", b, "reader.b@example.com", secret="another-secret")):
        r = web.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 400 and "not valid" in r.text
        assert web.post(f"/unsubscribe/{forged}", data={"reason": "x"}).status_code == 400
    assert row_counts() == before
    with db.session_scope() as session:
        assert session.get(Reader, b).status == "active"
        assert session.get(Reader, b).frequency == "weekly"
        assert session.get(Reader, a).status == "active"


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm", "view"])
@pytest.mark.parametrize("extra", [{}, {"e": 12345}])
def test_a_token_is_the_one_itsdangerous_makes_and_reads_back(purpose, extra) -> None:
    # Links already in inboxes were made by itsdangerous's URLSafeTimedSerializer, by hand
    # before 2026-12: what tokens.make makes must be that very token (unless the second
    # turns between the two), and read back under its purpose only.
    secret = get_settings().secret_key
    reference = URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")
    for _ in range(3):
        ours = tokens.make(purpose, 987654, "Reader.A+x@example.com", **extra)
        theirs = reference.dumps({"r": 987654, "h": tokens.email_tag("Reader.A+x@example.com"),
                                  **extra})
        if ours.rsplit(".", 2)[1] == theirs.rsplit(".", 2)[1]:  # signed in the same second
            break
    assert ours == theirs
    data, _ = tokens.read(purpose, ours, max_age_s=60)
    assert data == {"r": 987654, "h": tokens.email_tag("Reader.A+x@example.com"), **extra}
    other = "preferences" if purpose != "preferences" else "unsubscribe"
    with pytest.raises(tokens.InvalidToken):
        tokens.read(other, ours)
    with pytest.raises(ValueError):
        tokens.make("nonsense", 1, "a@example.com")


def test_a_link_itsdangerous_compressed_still_verifies() -> None:
    # tokens.make no longer tries zlib (our payloads never shrink), but a link made by the
    # plain serializer with a payload it did compress (a leading ".") must read all the same.
    secret = get_settings().secret_key
    email = "Reader.A+x@example.com"
    payload = {"r": 42, "h": tokens.email_tag(email), "e": 7, "pad": "a" * 200}
    old = URLSafeTimedSerializer(secret, salt="newsletter.unsubscribe").dumps(payload)
    assert old.startswith(".")  # compressed
    data, _ = tokens.read("unsubscribe", old, max_age_s=60)
    assert data == payload


# 4. Admin auth ---------------------------------------------------------------------------

def _walk(routes, prefix: str = ""):
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        # FastAPI ≥ 0.16x keeps an included router whole, behind a lazy wrapper.
        elif hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes,
                             prefix + getattr(route.include_context, "prefix", ""))


def api_routes() -> list[tuple[str, str]]:
    return sorted((method, path) for path, route in _walk(create_app().routes)
                  if path.startswith("/api") for method in route.methods)


WRONG = [None, f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}", "Bearer ", "Bearer",
         f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN, "bearer  wrong"]


def test_every_api_route_refuses_a_missing_wrong_or_empty_token(web) -> None:
    routes = api_routes()
    documented = {(m.upper(), p) for p, ops in create_app().openapi()["paths"].items()
                  if p.startswith("/api") for m in ops}
    assert documented <= set(routes) and len(routes) >= 10  # the walk missed none
    before = row_counts()
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "1", path)
        for header in WRONG:
            headers = {"Authorization": header} if header is not None else {}
            r = web.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, path, header, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert row_counts() == before


def test_an_unset_admin_token_closes_the_api(web, web_env) -> None:
    _set_env(web_env | {"NEWSLETTER_ADMIN_TOKEN": ""})
    client = TestClient(create_app())
    for header in ("Bearer ", "Bearer x", None):
        r = client.get("/api/editions", headers={"Authorization": header} if header else {})
        assert r.status_code == 401, header


def test_the_token_comparison_is_constant_time() -> None:
    # Structural: a timing test would be flaky on a shared machine.
    tree = ast.parse(textwrap.dedent(inspect.getsource(deps.api_actor)))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and any(isinstance(op, ast.Eq | ast.NotEq) for op in n.ops)]
    assert compares == [], "the token is compared with == somewhere"


# 5. No secrets in error pages or logs ------------------------------------------------------

class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_no_secret_in_a_500_page_or_a_log_line(web, web_env) -> None:
    secrets = {"secret key": "sk-Q7zSECRETKEYzz", "admin token": "adm-Q7zADMINTOKENzz",
               "SMTP password": "smtp-Q7zSMTPPASSzz", "database password": "db-Q7zDBPASSzz"}
    closed = free_port("127.0.0.1")  # nothing listens here: the database is down
    _set_env(web_env | {
        "NEWSLETTER_DATABASE_URL":
            f"postgresql+psycopg://newsletter:{secrets['database password']}@127.0.0.1:{closed}/nl",
        "NEWSLETTER_SMTP_URL": f"smtp://mailer:{secrets['SMTP password']}@127.0.0.1:9"
                               "?insecure=true",
        "NEWSLETTER_SECRET_KEY": secrets["secret key"],
        "NEWSLETTER_ADMIN_TOKEN": secrets["admin token"], "NEWSLETTER_LOG_LEVEL": "DEBUG"})
    app = create_app()
    capture = Capture()
    logging.getLogger().addHandler(capture)  # after create_app: it resets the root handlers
    auth = {"Authorization": f"Bearer {secrets['admin token']}"}
    token = tokens.make("preferences", 1, "reader@example.com")
    requests = [("GET", "/subscribe", {}), ("GET", "/api/editions", {"headers": auth}),
                ("POST", "/api/articles", {"headers": auth, "json": {
                    "url": "https://news.example/a/1", "title": "t", "tags": ["Syria"]}}),
                ("GET", f"/preferences/{token}", {}), ("GET", "/editions/1", {}),
                ("GET", "/healthz", {}), ("GET", "/readyz", {})]
    texts = []
    try:
        quiet = TestClient(app, raise_server_exceptions=False)
        loud = TestClient(app)
        for method, url, kw in requests:
            r = quiet.request(method, url, **kw)
            assert r.status_code >= 500, (url, r.status_code)
            texts.append(r.text + str(r.headers))
            try:  # what uvicorn would log: the exception with its traceback
                loud.request(method, url, **kw)
            except Exception as exc:  # noqa: BLE001 - any error is what we look at
                logging.getLogger("uvicorn.error").error("Exception in ASGI application",
                                                         exc_info=exc)
    finally:
        logging.getLogger().removeHandler(capture)
    assert len(capture.records) >= 5  # the errors were logged, so the check below has teeth
    for formatter in (logs.JsonFormatter(), logs.TextFormatter("%(message)s")):
        texts += [formatter.format(record) for record in capture.records]
    assert any("OperationalError" in t for t in texts)
    for name, secret in secrets.items():
        leaks = [t[:300] for t in texts if secret in t]
        assert not leaks, f"{name} leaked: {leaks}"


# 6. Templates ---------------------------------------------------------------------------

def test_templates_come_only_from_our_folders_never_from_data() -> None:
    env = rendering.Renderer.from_settings().env
    assert isinstance(env.loader, jinja2.FileSystemLoader)
    assert [Path(p) for p in env.loader.searchpath] == [rendering.TEMPLATES_DIR]
    web_env_ = deps.templates.env
    assert isinstance(web_env_.loader, jinja2.FileSystemLoader)
    assert [Path(p) for p in web_env_.loader.searchpath] == [deps.HERE / "templates"]
    assert web_env_.autoescape is True or web_env_.autoescape("x.html")
    assert env.autoescape("digest/body.html") and not env.autoescape("digest/body.txt")
    # No template is ever built from a string, so no editor or feed text is template source.
    package = Path(rendering.__file__).parent
    offenders = []
    for source in package.rglob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                last = name.rsplit(".", 1)[-1]
                if last in ("from_string", "Template") or (
                        last.endswith("Environment") and source.name != "rendering.py"):
                    offenders.append(f"{source.name}: {name}")
    assert offenders == []


# 7. Fuzzing the HTTP API ----------------------------------------------------------------

# schemathesis.pytest.from_fixture does not run under pytest 9, so the test walks the
# operations itself: one Hypothesis run per operation and generation mode.
EXAMPLES = 25


def test_fuzzed_api_never_answers_5xx(web) -> None:
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_asgi("/openapi.json", web.app, headers=AUTH)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def run(case) -> None:
                case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:  # nothing to get wrong (no parameters): no negative cases
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (AssertionError, FailureGroup) as exc:
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
