"""Admin API: the topics editors curate for readers, and the tags articles carry.

Every change goes through newsletter.newsroom.topics; the routes only call, note what
changed in the audit log (action ``topic.change``, target ``topic:<slug>``) and commit.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from newsletter import audit
from newsletter.accounts.actors import Actor
from newsletter.newsroom import topics
from newsletter.web.deps import Editor, EditorActor, SessionDep

router = APIRouter(prefix="/api", dependencies=[Editor])

Slug = Annotated[str, Path(max_length=64)]


class TopicIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    tags: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=topics.MAX_TAGS)
    description: str = Field(default="", max_length=500)
    group: str | None = Field(default=None, max_length=128)


class TopicChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=500)
    group: str | None = Field(default=None, max_length=128)
    position: int | None = None
    tags: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=topics.MAX_TAGS)


@router.post("/topics", status_code=201, responses={200: {"description": "already there"}})
def create_topic(item: TopicIn, session: SessionDep, response: Response,
                 actor: EditorActor) -> dict[str, Any]:
    """Make a topic (201), or answer the one of that name (200: idempotent, unchanged)."""
    before = topics.snapshot(session, item.name)
    topic, created = topics.create(session, item.name, tags=item.tags,
                                   description=item.description, group=item.group)
    record_change(session, actor, before, topic)
    session.commit()
    response.status_code = 201 if created else 200
    return topics.to_dict(topic)


@router.get("/topics")
def list_topics(session: SessionDep) -> list[dict[str, Any]]:
    """Every topic with its tags, group, position, followers and whether it is retired."""
    return topics.listing(session)


@router.patch("/topics/{slug}")
def change_topic(slug: Slug, item: TopicChange, session: SessionDep,
                 actor: EditorActor) -> dict[str, Any]:
    """Change what the body names; ``"group": null`` takes the topic out of its group."""
    given = item.model_dump(exclude_unset=True)
    before = topics.snapshot(session, slug)
    topic = topics.update(session, slug, description=given.get("description"),
                          position=given.get("position"), tags=given.get("tags"),
                          **({"group": given["group"]} if "group" in given else {}))
    record_change(session, actor, before, topic)
    session.commit()
    return topics.to_dict(topic)


@router.post("/topics/{slug}/retire")
def retire_topic(slug: Slug, session: SessionDep, actor: EditorActor,
                 dry_run: bool = False) -> dict[str, Any]:
    """Retire a topic; ``?dry_run=true`` only says how many readers follow it and how many
    of them follow nothing else (the confirmation an editor sees first)."""
    if dry_run:
        return topics.retirement(session, slug).as_dict()
    before = topics.snapshot(session, slug)
    done = topics.retire(session, slug)
    record_change(session, actor, before, topics.get(session, slug), followers=done.followers,
            follow_nothing_else=done.only_topic)
    session.commit()
    return done.as_dict()


def record_change(session, actor: Actor, before: dict[str, Any] | None, topic,
                  **extra: Any) -> None:
    """An audit entry for what changed (the API's and the console's); a call that changed
    nothing records nothing."""
    details = topics.changes(before, topics.to_dict(topic))
    if details:
        audit.record(session, actor.name, "topic.change", f"topic:{topic.slug}",
                     {**details, **extra}, actor.ip)


@router.get("/tags")
def list_tags(session: SessionDep,
              uncovered: Annotated[bool, Query()] = False) -> list[dict[str, str]]:
    """The tags articles carry; ``?uncovered=true``: only those no topic covers yet."""
    found = topics.uncovered_tags(session) if uncovered else topics.all_tags(session)
    return [{"slug": t.slug, "name": t.name} for t in found]
