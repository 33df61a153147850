"""Errors defined once (newsletter/errors.py) and answered by one handler, over real HTTP."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import newsletter
from newsletter import db, errors
from newsletter.models import Edition
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Exceptions that stay in their own module, each named in errors.py's docstring with why.
OUTSIDE_THE_TREE = {"MailerError", "TemporaryFailure", "PermanentFailure",
                    "AuthenticationFailure", "_Retryable", "SigningError", "OverCeiling"}


def _all_modules() -> None:
    for info in pkgutil.walk_packages(newsletter.__path__, "newsletter."):
        if ".migrations" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_domain_error_has_a_status_and_a_line_in_the_tree() -> None:
    _all_modules()
    tree = errors.__doc__ or ""
    domain = _subclasses(errors.NewsletterError)
    assert len(domain) >= 20
    for cls in domain:
        assert cls.__module__ == "newsletter.errors", f"{cls.__name__} defined outside errors.py"
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls
        line = re.search(rf"\b{cls.__name__} \((\d{{3}})\)", tree)
        assert line, f"{cls.__name__} is missing from the tree in errors.py's docstring"
        assert int(line.group(1)) == cls.status, f"{cls.__name__}: the tree says {line.group(1)}"
        # In the tree under its own parent: the nearest line above it with less indent.
        lines = tree.splitlines()
        at = next(i for i, text in enumerate(lines) if f" {cls.__name__} (" in f" {text}")
        depth = lines[at].index(cls.__name__)
        parent = next(re.search(r"(\w+) \(\d{3}\)", lines[i]).group(1)
                      for i in range(at - 1, -1, -1)
                      if re.search(r"(\w+) \(\d{3}\)", lines[i])
                      and lines[i].index(re.search(r"(\w+) \(\d{3}\)", lines[i]).group(1)) < depth)
        assert parent == cls.__mro__[1].__name__, f"{cls.__name__} drawn under {parent}"


def test_no_other_exception_class_is_defined_in_newsletter() -> None:
    _all_modules()
    strays = set()
    for name, module in list(__import__("sys").modules.items()):
        if not name.startswith("newsletter.") or name == "newsletter.errors":
            continue
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, BaseException) and cls.__module__ == name
                    and not issubclass(cls, errors.NewsletterError)):
                strays.add(cls_name)
    assert strays == OUTSIDE_THE_TREE
    for kept in OUTSIDE_THE_TREE - {"_Retryable", "TemporaryFailure", "PermanentFailure",
                                    "AuthenticationFailure"}:
        assert kept in (errors.__doc__ or ""), f"errors.py does not say why {kept} stays out"


@pytest.fixture
def client(fresh) -> TestClient:
    app = create_app()

    # A bug: what no domain code raises on purpose. The old routes caught LookupError (and
    # so KeyError) as "not found"; a bug must be a 500 that says nothing of itself.
    @app.get("/api/bug")
    def api_bug() -> None:
        raise KeyError("the secret column name")

    @app.get("/page-bug")
    def page_bug() -> None:
        raise LookupError("the secret table name")

    return TestClient(app, raise_server_exceptions=False)


def test_an_unknown_edition_is_404_with_its_message(client) -> None:
    for path in ("/api/editions/987654", "/api/editions/987654/resume"):
        r = (client.get if "resume" not in path else client.post)(path, headers=AUTH)
        assert r.status_code == 404, r.text
        assert r.json() == {"detail": "no edition 987654"}


def test_resuming_an_edition_that_is_not_paused_is_409(client) -> None:
    with db.session_scope() as session:
        edition = Edition(frequency="weekly", status="done", source="test")
        session.add(edition)
        session.flush()
        edition_id = edition.id
    r = client.post(f"/api/editions/{edition_id}/resume", headers=AUTH)
    assert r.status_code == 409, r.text
    assert "not paused" in r.json()["detail"]
    with db.session_scope() as session:
        assert session.scalar(select(Edition.status).where(Edition.id == edition_id)) == "done"


def test_a_bad_article_is_422_and_changes_nothing(client) -> None:
    first = {"url": "https://news.example/a/1", "title": "One", "tags": ["Syria"],
             "external_id": "cms-1"}
    assert client.post("/api/articles", headers=AUTH, json=first).status_code == 201
    other = {"url": "https://news.example/a/2", "title": "Two", "tags": ["Syria"]}
    assert client.post("/api/articles", headers=AUTH, json=other).status_code == 201
    # cms-1 moved onto the second article's address: refused, not merged.
    r = client.post("/api/articles", headers=AUTH, json=first | {"url": other["url"]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("url: already belongs to article")
    assert client.get("/api/editions", headers=AUTH).status_code == 200


def test_unknown_reader_and_bad_preview_keep_their_statuses(client) -> None:
    r = client.get("/api/subscribers/nobody@example.com", headers=AUTH)
    assert (r.status_code, r.json()) == (404, {"detail": "no reader with that address"})
    r = client.get("/api/preview", params={"email": "nobody@example.com"}, headers=AUTH)
    assert r.status_code == 404 and "no reader" in r.json()["detail"]
    r = client.get("/api/preview", headers=AUTH)
    assert r.status_code == 422 and "name one reader" in r.json()["detail"]
    r = client.post("/api/editions/test-send", headers=AUTH, json={"to": "not an address",
                                                                   "tags": ["syria"]})
    assert r.status_code == 422 and "not an email address" in r.json()["detail"]


def test_a_bad_link_is_400_on_the_reader_page(client) -> None:
    for method, path in (("GET", "/preferences/garbage"), ("POST", "/confirm/garbage"),
                         ("POST", "/unsubscribe/garbage"), ("GET", "/emails/garbage")):
        r = client.request(method, path)
        assert r.status_code == 400, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
        assert "This link is not valid" in r.text and "Nothing has been changed." in r.text


def test_a_bug_is_a_500_that_says_nothing(client) -> None:
    r = client.get("/api/bug", headers=AUTH)
    assert r.status_code == 500
    assert "secret" not in r.text
    r = client.get("/page-bug")
    assert r.status_code == 500
    assert "secret" not in r.text
