"""``newsletter topics``: add, list and retire from the command line (SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import Reader, Topic
from tests.conftest import configure, offer_topics


@pytest.fixture
def runner(tmp_path) -> CliRunner:
    configure(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    return CliRunner()


def test_add_and_list(runner) -> None:
    r = runner.invoke(cli, ["topics", "add", "Syria", "--tag", "syria", "--tag", "Aleppo",
                            "--description", "The war and the rebuilding.", "--group", "Levant"])
    assert r.exit_code == 0 and "added syria: Syria (tags: aleppo, syria)" in r.output, r.output
    r = runner.invoke(cli, ["topics", "add", "Syria"])
    assert r.exit_code == 0 and "exists syria" in r.output
    r = runner.invoke(cli, ["topics", "add", "!!!"])
    assert r.exit_code == 2 and "no topic added" in r.output
    r = runner.invoke(cli, ["topics", "list"])
    assert r.exit_code == 0 and "syria (Levant): Syria — 0 readers; tags: aleppo, syria" in r.output
    with db.session_scope() as session:
        assert session.scalar(select(Topic.description)) == "The war and the rebuilding."


def test_retire_says_the_counts_and_asks(runner) -> None:
    with db.session_scope() as session:
        syria, energy = offer_topics(session, "Syria", "Energy")
        session.add_all([Reader(email="a@example.com", status="active", topics=[syria]),
                         Reader(email="b@example.com", status="active",
                                topics=[syria, energy])])
    r = runner.invoke(cli, ["topics", "retire", "syria"], input="n\n")
    assert r.exit_code == 1
    assert "2 readers follow syria; 1 of them follow nothing else" in r.output
    with db.session_scope() as session:
        assert session.scalar(select(Topic.retired_at).where(Topic.slug == "syria")) is None
    r = runner.invoke(cli, ["topics", "retire", "syria", "--yes"])
    assert r.exit_code == 0 and "retired syria" in r.output
    with db.session_scope() as session:
        assert session.scalar(select(Topic.retired_at).where(Topic.slug == "syria"))
    r = runner.invoke(cli, ["topics", "list"])
    assert "Syria [retired]" in r.output
    assert runner.invoke(cli, ["topics", "retire", "atlantis", "--yes"]).exit_code == 1
