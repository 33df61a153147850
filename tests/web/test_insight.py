"""What editors see over HTTP (each backend): GET /api/stats/topics (who may ask, its
bounds, its figures after readers subscribe, confirm, change and leave through the app), an
edition's unsubscribes by reason in its JSON and on its console page, and the dashboard's
topic growth."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from newsletter import db, tokens
from newsletter.accounts import api_tokens, editors
from newsletter.config import get_settings
from newsletter.models import Edition, Reader
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, sign_in

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UA = {"User-Agent": "Mozilla/5.0 (test reader)"}


def offer(client, *names: str) -> None:
    for name in names:
        assert client.post("/api/topics", headers=ADMIN, json={"name": name}).status_code == 201


def join(client, email: str, topics: list[str]) -> Reader:
    """Subscribe on the form and confirm with the emailed link's token."""
    assert client.post("/subscribe", headers=UA, data={
        "email": email, "topics": topics, "frequency": "weekly", "consent": "yes",
        "form_token": tokens.make_form_token()}).status_code == 200
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == email))
        session.expunge(reader)
    assert client.post(f"/confirm/{tokens.make('confirm', reader.id, email)}",
                       headers=UA).status_code == 200
    return reader


def unsubscribe_link(reader: Reader, edition_id: int) -> str:
    return f"/unsubscribe/{tokens.make('unsubscribe', reader.id, reader.email, e=edition_id)}"


def growth(client, days: int = 30) -> dict[str, dict]:
    r = client.get(f"/api/stats/topics?days={days}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["days"] == days
    return {t["topic"]: t for t in r.json()["topics"]}


def test_topic_growth_answers_editors_and_admins_only(fresh) -> None:
    add_editor("desk@news.example")
    with db.session_scope() as session:
        token, _ = api_tokens.create(session, editors.by_email(session, "desk@news.example"))
    client = console_client()
    assert client.get("/api/stats/topics").status_code == 401
    assert client.get("/api/stats/topics",
                      headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    sign_in(client, "desk@news.example")  # a console cookie is no credential for the API
    assert client.get("/api/stats/topics").status_code == 401
    desk = client.get("/api/stats/topics", headers={"Authorization": f"Bearer {token}"})
    assert desk.status_code == 200 and desk.json()["topics"] == []
    assert client.get("/api/stats/topics", headers=ADMIN).status_code == 200


def test_days_are_bounded(fresh) -> None:
    client = console_client()
    offer(client, "Syria")
    for bad in ("0", "366", "-3", "x", "1e3", ""):
        r = client.get(f"/api/stats/topics?days={bad}", headers=ADMIN)
        assert r.status_code == 422 and r.json()["detail"], bad
    # The default is 30 days; the bounds themselves are allowed, one entry per day.
    default = client.get("/api/stats/topics", headers=ADMIN).json()
    assert default["days"] == 30 and len(default["topics"][0]["days"]) == 30
    assert len(growth(client, 1)["syria"]["days"]) == 1
    year = growth(client, 365)["syria"]["days"]
    assert len(year) == 365 and year[-1]["day"] == datetime.now(
        ZoneInfo(get_settings().timezone)).date().isoformat()


def test_figures_after_readers_join_change_and_leave(fresh) -> None:
    client = console_client()
    offer(client, "Syria", "Energy", "Sport")
    # Signed up but never confirmed: not a follower.
    assert client.post("/subscribe", headers=UA, data={
        "email": "pending@example.org", "topics": ["syria"], "frequency": "weekly",
        "consent": "yes", "form_token": tokens.make_form_token()}).status_code == 200
    a = join(client, "a@example.org", ["syria", "energy"])
    b = join(client, "b@example.org", ["syria"])
    c = join(client, "c@example.org", ["syria", "sport"])
    # a changes their topics on the preference page: loses Energy, gains Sport.
    prefs = f"/preferences/{tokens.make('preferences', a.id, a.email)}"
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(prefs).text).group(1)
    assert client.post(prefs, headers=UA, data={"topics": ["syria", "sport"],
                                                 "frequency": "weekly", "pause": "",
                                                 "csrf": csrf}).status_code == 200
    with db.session_scope() as session:
        edition = Edition(frequency="weekly", status="done", source="test")
        session.add(edition)
        session.flush()
        edition_id = edition.id
    # b leaves from the edition's page with two reasons and words of their own; c with the
    # mailbox provider's one-click button.
    assert client.post(unsubscribe_link(b, edition_id), headers=UA, data={
        "reason": ["Too many emails", "I never signed up", "<script>alert(1)</script>"]}
    ).status_code == 200
    assert client.post(unsubscribe_link(c, edition_id),
                       files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200

    found = growth(client)
    figures = {slug: (t["gained"], t["lost"], t["net"], t["followers"])
               for slug, t in found.items()}
    assert figures == {"syria": (3, 2, 1, 1), "energy": (1, 1, 0, 0), "sport": (2, 1, 1, 1)}
    today = found["syria"]["days"][-1]
    assert today == {"day": datetime.now(UTC).date().isoformat(), "gained": 3, "lost": 2}
    assert list(found) == ["syria", "sport", "energy"]  # the biggest net growth first

    report = client.get(f"/api/editions/{edition_id}", headers=ADMIN).json()
    assert report["counts"]["unsubscribed"] == 2
    assert report["unsubscribes"] == {
        "unsubscribed": 2, "bounced": 0, "complained": 0, "reasons": [
            {"reason": "too-many", "label": "Too many emails", "readers": 1},
            {"reason": "never-signed-up", "label": "I never signed up", "readers": 1},
            {"reason": "other", "label": "Other (in their own words)", "readers": 1},
            {"reason": "one-click", "label": "One-click (no reason)", "readers": 1}]}

    # The console: the edition's page lists the reasons (never the reader's own words),
    # the dashboard the topics that moved and why opens are not counted.
    add_editor("desk@news.example")
    sign_in(client, "desk@news.example")
    page = client.get(f"/admin/editions/{edition_id}").text
    section = page[page.index('id="unsubscribes-heading"'):]
    section = section[:section.index("</section>")]
    assert "2 readers unsubscribed from its links" in section
    for label, n in (("Too many emails", 1), ("I never signed up", 1),
                     ("Other (in their own words)", 1), ("One-click (no reason)", 1)):
        assert re.search(rf">{re.escape(label)}</td><td data-label=\"Readers\">{n}<", section)
    assert "alert(1)" not in page and "Gave no reason" not in section
    dashboard = client.get("/admin").text
    growth_section = dashboard[dashboard.index('id="topic-growth-heading"'):]
    growth_section = growth_section[:growth_section.index("</section>")]
    assert '<script src="/static/console/topic_growth.js" defer></script>' in growth_section
    rows = re.findall(r'<td data-label="Topic">([^<]+)</td><td data-label="Gained">(\d+)</td>'
                      r'<td data-label="Lost">(\d+)</td><td data-label="Net">([+-]?\d+)</td>'
                      r'<td data-label="Followers now">(\d+)</td>', growth_section)
    assert rows == [("Syria", "3", "2", "+1", "1"), ("Sport", "2", "1", "+1", "1"),
                    ("Energy", "1", "1", "+0", "0")]
    assert "Apple Mail" in growth_section and "Opens are not counted" in growth_section
    # The dashboard keeps its figures half a minute, but a new follow shows at once.
    join(client, "d@example.org", ["energy"])
    assert '<td data-label="Topic">Energy</td><td data-label="Gained">2</td>' \
        in client.get("/admin").text
    assert client.get("/static/console/topic_growth.js").status_code == 200


def test_the_dashboard_says_when_no_topic_moved(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "desk@news.example")
    page = client.get("/admin").text
    assert "No topic gained or lost a follower in the last 30 days." in page
    assert "topic-growth-chart" not in page and "Opens are not counted" in page
