"""`newsletter editors …` over a real database (each backend): the first admin, the rest of
the accounts' life, and every change in the audit log as ``cli``."""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from newsletter import db
from newsletter.accounts import api_tokens, editors, passwords
from newsletter.cli import app as cli
from newsletter.models import AuditEntry, Editor

PASSWORD = "the first admin's password"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def log() -> list[tuple[str, str, str]]:
    with db.session_scope() as session:
        return [(e.actor, e.action, e.target) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


def test_the_first_admin_and_the_life_of_an_account(fresh) -> None:
    result = run("editors", "add", "Chief@News.example", "--role", "admin", "--password-stdin",
                 input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "added chief@news.example (admin)" in result.output
    # Without --password-stdin it asks twice, without echo.
    result = run("editors", "add", "desk@news.example", input="desk password 123\n" * 2)
    assert result.exit_code == 0, result.output
    result = run("editors", "list")
    assert "chief@news.example" in result.output and "desk@news.example" in result.output
    result = run("editors", "token", "desk@news.example", "--name", "cms")
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    with db.session_scope() as session:
        assert api_tokens.authenticate(session, token).editor.email == "desk@news.example"
    spare = run("editors", "token", "desk@news.example", "--name", "spare").output.split()[-1]
    assert run("editors", "revoke-token", "spare").exit_code == 0
    assert run("editors", "revoke-token", "spare").exit_code == 1  # no live token by that name
    with db.session_scope() as session:
        assert api_tokens.authenticate(session, spare) is None
    result = run("editors", "reset-password", "desk@news.example", "--password-stdin",
                 input="a brand new password\n")
    assert result.exit_code == 0, result.output
    with db.session_scope() as session:
        desk = editors.by_email(session, "desk@news.example")
        assert passwords.verify("a brand new password", desk.password_hash)
    assert run("editors", "remove", "desk@news.example").exit_code == 0
    with db.session_scope() as session:
        assert api_tokens.authenticate(session, token) is None
    assert [(a, b) for a, b, _ in log()] == [
        ("cli", "editor.add"), ("cli", "editor.add"), ("cli", "token.create"),
        ("cli", "token.create"), ("cli", "token.revoke"), ("cli", "editor.password"),
        ("cli", "editor.remove")]
    assert PASSWORD not in str(log()) and token not in str(log())


def test_bad_input_changes_nothing(fresh) -> None:
    result = run("editors", "add", "a@news.example", "--password-stdin", input="short\n")
    assert result.exit_code == 2 and "at least 12 characters" in result.output
    result = run("editors", "add", "not-an-address", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 2 and "not an email address" in result.output
    result = run("editors", "add", "a@news.example", "--role", "owner", "--password-stdin",
                 input=PASSWORD + "\n")
    assert result.exit_code == 2 and "unknown role" in result.output
    assert run("editors", "remove", "nobody@news.example").exit_code == 1
    assert run("editors", "token", "nobody@news.example").exit_code == 1
    with db.session_scope() as session:
        assert session.scalar(select(Editor.id)) is None
    assert log() == []


def test_the_last_admin_cannot_be_removed(fresh) -> None:
    run("editors", "add", "chief@news.example", "--role", "admin", "--password-stdin",
        input=PASSWORD + "\n")
    result = run("editors", "remove", "chief@news.example")
    assert result.exit_code == 1 and "last admin" in result.output
    with db.session_scope() as session:
        assert editors.find(session, "chief@news.example") is not None
