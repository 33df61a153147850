"""A breaking-news alert of a hostile story: its text stays text (issue 16, item 1).

A module of its own: alerts go at once only with the worker's window at 0, which must be
in the environment before this module's worker starts (as in tests/editions/test_alerts_window0.py).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from newsletter.web.app import create_app
from tests.editions.test_alerts import add_readers, set_window, wait_alerts_settled
from tests.helpers import html_part, text_part
from tests.security.test_hostile_text import AUTH, EVIL_LINK, HOSTILE


@pytest.fixture(scope="module")
def alert_window() -> Iterator[None]:
    yield from set_window(0)


@pytest.fixture(scope="module")
def backend(alert_window, backend):  # the window must be in the env before the worker starts
    return backend


def test_an_alert_of_a_hostile_story_carries_its_text_not_a_readers_links(fresh) -> None:
    add_readers({"first@example.com": ("immediate", ["Syria"], "active"),
                 "second@example.org": ("immediate", ["Syria"], "active")})
    r = TestClient(create_app()).post("/api/articles", headers=AUTH, json=HOSTILE)
    assert r.status_code == 201, r.text
    [edition] = wait_alerts_settled(fresh)
    messages = fresh.smtp.wait_for(2)
    assert sorted(str(m["To"]) for m in messages) == ["first@example.com", "second@example.org"]
    for message in messages:
        # Story links as the story URLs they redirect to (click counting is on by default).
        body_html, text = html_part(message), text_part(message)
        hrefs = {html.unescape(h) for h in re.findall(r'href="([^"]*)"', body_html)}
        assert {h for h in hrefs if "evil.example" in h} == {EVIL_LINK}
        assert EVIL_LINK in text
        assert "__nl_x__ news __nls_0__" in str(message["Subject"]) + text
        for part in (body_html, text, str(message["Subject"])):
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", part)
