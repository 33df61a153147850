"""Unsubscribes attributed to an edition on each backend: by the reason readers gave, the
one-clicks apart (they carry none), bounces and complaints counted apart from both."""

from __future__ import annotations

from newsletter import db, tokens
from newsletter.insight import attribution
from newsletter.models import Edition, Reader
from newsletter.readers import bounces, reasons, subscriptions
from tests.conftest import offer_topics


def readers(session, n: int, topic) -> list[Reader]:
    made = [Reader(email=f"r{k}@example.org", status="active", topics=[topic]) for k in range(n)]
    session.add_all(made)
    session.flush()
    return made


def leave(session, reader: Reader, edition_id: int | None, *, method: str = "link",
          reason: str | None = None) -> None:
    """What the unsubscribe page and the one-click POST call, with the edition's link."""
    extra = {"e": edition_id} if edition_id else {}
    subscriptions.unsubscribe(session, tokens.make("unsubscribe", reader.id, reader.email,
                                                   **extra), method=method, reason=reason)


def test_an_editions_unsubscribes_by_reason(fresh) -> None:
    with db.session_scope() as session:
        (syria,) = offer_topics(session, "Syria")
        edition, other = Edition(frequency="weekly", status="done"), \
            Edition(frequency="daily", status="done")
        session.add_all([edition, other])
        session.flush()
        r = readers(session, 9, syria)
        too_many, never = reasons.OFFERED["too-many"], reasons.OFFERED["never-signed-up"]
        leave(session, r[0], edition.id, reason=too_many)
        # Two ticked and their own words: each reason counts, the words as "other".
        leave(session, r[1], edition.id,
              reason=reasons.SEPARATOR.join([too_many, never, "Your <b>coverage</b> of X"]))
        leave(session, r[2], edition.id)  # the page, no reason given
        leave(session, r[3], edition.id, method="one-click")
        leave(session, r[4], edition.id, method="one-click")
        bounces.suppress_reader(session, r[5], "bounce", edition.id, {"kind": "hard"})
        bounces.suppress_reader(session, r[6], "complaint", edition.id, {"kind": "complaint"})
        leave(session, r[7], other.id, reason=too_many)  # another edition's link
        leave(session, r[8], None, reason=too_many)  # a link that names no edition
        leave(session, r[0], edition.id, method="one-click")  # already gone: not twice
        edition_id, other_id = edition.id, other.id
    with db.session_scope() as session:
        found = attribution.for_edition(session, edition_id)
        elsewhere = attribution.for_edition(session, other_id)
        nothing = attribution.for_edition(session, edition_id + 1000)
    assert found == {
        "unsubscribed": 5,
        "reasons": [
            {"reason": "too-many", "label": "Too many emails", "readers": 2},
            {"reason": "never-signed-up", "label": "I never signed up", "readers": 1},
            {"reason": "other", "label": "Other (in their own words)", "readers": 1},
            {"reason": "none", "label": "Gave no reason", "readers": 1},
            {"reason": "one-click", "label": "One-click (no reason)", "readers": 2},
        ],
        "bounced": 1, "complained": 1,
    }
    assert elsewhere["unsubscribed"] == 1 and elsewhere["reasons"][0]["reason"] == "too-many"
    assert nothing == {"unsubscribed": 0, "reasons": [], "bounced": 0, "complained": 0}


def test_reason_codes_read_what_the_page_posts() -> None:
    assert reasons.codes(None) == [] and reasons.codes("") == [] and reasons.codes(" ; ") == []
    assert reasons.codes("Too many emails") == ["too-many"]
    assert reasons.codes("too many emails; I GET THE NEWS ELSEWHERE") == ["too-many", "elsewhere"]
    assert reasons.codes("meh; Too many emails; bah") == ["other", "too-many"]
