"""Item 4: no working default secrets in a deployment, and key rotation that keeps links.

web, worker, beat and run are started as an operator starts them (the ``newsletter``
command in a subprocess, settings in its environment); rotation goes through a real
uvicorn serving the app.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.config import DEV_HASH_KEY, DEV_SECRET_KEY, reload_settings
from newsletter.mail.capture import free_port
from newsletter.models import Reader
from tests.conftest import REQUIRE_SERVERS, SECRET_KEY, live_web

ROOT = Path(__file__).resolve().parents[2]
NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
STRONG = "k" * 40
PUBLIC = "https://news.example"


def operator_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without any NEWSLETTER_ setting, plus ``settings`` (and a
    strong HASH_KEY unless they say otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    settings = {"HASH_KEY": STRONG, **settings}
    return {**env, "NEWSLETTER_VAR_DIR": str(tmp_path / "var"),
            **{f"NEWSLETTER_{k}": v for k, v in settings.items()}}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([NEWSLETTER, *command], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"not started after {timeout}s:\n{log.read_text()}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


UNSAFE = {
    "no secret key (the development key)": ({"ADMIN_TOKEN": STRONG}, "NEWSLETTER_SECRET_KEY"),
    "the old compose default key": ({"SECRET_KEY": "change-me-in-production",
                                     "ADMIN_TOKEN": STRONG}, "NEWSLETTER_SECRET_KEY"),
    "the development key set by hand": ({"SECRET_KEY": DEV_SECRET_KEY, "ADMIN_TOKEN": STRONG},
                                        "NEWSLETTER_SECRET_KEY"),
    "a short key": ({"SECRET_KEY": "k" * 31, "ADMIN_TOKEN": STRONG}, "NEWSLETTER_SECRET_KEY"),
    "the old compose admin token": ({"SECRET_KEY": STRONG, "ADMIN_TOKEN": "change-me-too"},
                                    "NEWSLETTER_ADMIN_TOKEN"),
    "a short admin token": ({"SECRET_KEY": STRONG, "ADMIN_TOKEN": "a" * 31},
                            "NEWSLETTER_ADMIN_TOKEN"),
    "a weak old key in the rotation list": ({"SECRET_KEYS": f"{STRONG},change-me-in-production",
                                             "ADMIN_TOKEN": STRONG}, "NEWSLETTER_SECRET_KEYS"),
    "the development hash key": ({"SECRET_KEY": STRONG, "HASH_KEY": DEV_HASH_KEY},
                                 "NEWSLETTER_HASH_KEY"),
    "a short hash key": ({"SECRET_KEY": STRONG, "HASH_KEY": "h" * 31}, "NEWSLETTER_HASH_KEY"),
    "a short metrics token": ({"SECRET_KEY": STRONG, "METRICS_TOKEN": "m" * 8},
                              "NEWSLETTER_METRICS_TOKEN"),
}


@pytest.mark.parametrize("command", ["web", "worker", "beat", "run"])
@pytest.mark.parametrize("case", list(UNSAFE))
def test_a_deployment_on_a_default_or_short_secret_refuses_to_start(
        tmp_path, command, case) -> None:
    settings, named = UNSAFE[case]
    port = free_port("127.0.0.1")
    args = [command, "--port", str(port)] if command in ("web", "run") else [command]
    try:
        done = subprocess.run([NEWSLETTER, *args], env=operator_env(
            tmp_path, BASE_URL=PUBLIC, **settings), capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`newsletter {command}` started on {case} instead of refusing")
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "32+ random characters" in done.stderr
    assert "refusing to start" in done.stderr
    for value in settings.values():  # the message names the setting, never the secret
        if value != STRONG and len(value) > 8:
            assert value not in done.stderr
    assert not answers(f"http://127.0.0.1:{port}/healthz")
    assert not (tmp_path / "var").exists()  # refused before doing anything


def test_a_secret_key_outside_the_rotation_list_is_refused_even_on_loopback(tmp_path) -> None:
    done = subprocess.run([NEWSLETTER, "beat"], env=operator_env(
        tmp_path, SECRET_KEY=STRONG, SECRET_KEYS="n" * 40), capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 2
    assert "NEWSLETTER_SECRET_KEY is set but is not one of NEWSLETTER_SECRET_KEYS" in done.stderr


def test_web_starts_behind_a_public_url_with_strong_secrets_and_no_admin_token(tmp_path) -> None:
    # An unset ADMIN_TOKEN is safe: the admin API then refuses every call.
    port = free_port("127.0.0.1")
    log = tmp_path / "web.log"
    proc = start(["web", "--port", str(port)],
                 operator_env(tmp_path, BASE_URL=PUBLIC, SECRET_KEY=STRONG), log)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), proc, log)
        refused = httpx.post(f"http://127.0.0.1:{port}/api/editions", json={
            "frequency": "daily"}, headers={"Authorization": "Bearer guess"})
        assert refused.status_code in (401, 403)
    finally:
        stop(proc)


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_start_behind_a_public_url_with_strong_secrets(tmp_path, command) -> None:
    log = tmp_path / f"{command}.log"
    env = operator_env(tmp_path, BASE_URL=PUBLIC, SECRET_KEYS=f"{STRONG},{'o' * 32}",
                       ADMIN_TOKEN="a" * 32)
    (tmp_path / "var" / "broker" / "queue").mkdir(parents=True)
    (tmp_path / "var" / "broker" / "processed").mkdir(parents=True)
    proc = start([command, "--concurrency", "1"] if command == "worker" else [command], env, log)
    ready = b"ready." if command == "worker" else b"beat: Starting"
    try:
        wait_for(lambda: ready in log.read_bytes(), proc, log)
    finally:
        stop(proc)


def test_web_on_loopback_starts_with_no_settings_at_all(tmp_path) -> None:
    # A laptop: the development key, no admin token, the default http://localhost:8000.
    port = free_port("127.0.0.1")
    log = tmp_path / "web.log"
    proc = start(["web", "--port", str(port)], operator_env(tmp_path), log)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), proc, log)
    finally:
        stop(proc)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000", "http://127.9.9.9", "http://[::1]:8000",
                                  "http://localhost", "http://app.localhost:8000"])
def test_loopback_base_urls_keep_the_development_defaults(tmp_path, base) -> None:
    from newsletter.cli import preflight

    assert preflight.is_loopback(base)
    assert not preflight.is_loopback(base.replace("127.", "10.").replace("::1", "::2")
                                     .replace("localhost", "localhost.news.example"))


# ---------------------------------------------------------------- docker-compose

def compose(env: dict[str, str]) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        if REQUIRE_SERVERS:
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run(["docker-compose", "config"], cwd=ROOT, capture_output=True,
                          text=True, env={**clean, **env})


COMPOSE_SECRETS = {"NEWSLETTER_SECRET_KEY": STRONG, "NEWSLETTER_ADMIN_TOKEN": STRONG,
                   "NEWSLETTER_HASH_KEY": STRONG}


@pytest.mark.parametrize("missing", list(COMPOSE_SECRETS))
def test_compose_requires_the_secrets(missing) -> None:
    env = dict(COMPOSE_SECRETS)
    del env[missing]
    done = compose(env)
    assert done.returncode != 0
    assert f"set {missing} to 32+ random characters" in done.stderr


def test_compose_publishes_flower_and_mailpit_on_this_machine_only() -> None:
    done = compose(COMPOSE_SECRETS)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    for name in ("flower", "mailpit"):
        ports = services[name]["ports"]
        assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), ports
    assert "change-me" not in done.stdout


# ---------------------------------------------------------------- key rotation

OLD_KEY = SECRET_KEY
NEW_KEY = "rotated-secret-key-9876543210fedcba9876543210"


def active_reader(email: str) -> Reader:
    with db.session_scope() as session:
        reader = Reader(email=email, status="active", frequency="weekly")
        session.add(reader)
        session.flush()
        session.expunge(reader)
        return reader


def status_of(reader_id: int) -> str:
    with db.session_scope() as session:
        return session.scalar(select(Reader.status).where(Reader.id == reader_id))


def test_a_link_signed_before_a_rotation_still_unsubscribes(fresh, tmp_path) -> None:
    reader = active_reader("rotation.reader@example.com")
    old_link = tokens.make("unsubscribe", reader.id, reader.email)  # in an inbox since
    with live_web(tmp_path / "web.log", NEWSLETTER_SECRET_KEY=NEW_KEY,
                  NEWSLETTER_SECRET_KEYS=f"{NEW_KEY},{OLD_KEY}") as base:
        page = httpx.get(f"{base}/unsubscribe/{old_link}")
        assert page.status_code == 200, page.text
        done = httpx.post(f"{base}/unsubscribe/{old_link}",
                          data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200, done.text
    assert status_of(reader.id) == "unsubscribed"
    # The page links on to preferences with a token made now: signed with the new key.
    new_link = re.search(r'/preferences/([\w.-]+)', page.text).group(1)
    URLSafeTimedSerializer(NEW_KEY, salt="newsletter.preferences").loads(new_link)
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(OLD_KEY, salt="newsletter.preferences").loads(new_link)


def test_a_link_signed_with_a_retired_key_fails_cleanly(fresh, tmp_path) -> None:
    reader = active_reader("retired.key@example.com")
    old_link = tokens.make("unsubscribe", reader.id, reader.email)
    with live_web(tmp_path / "web.log", NEWSLETTER_SECRET_KEY=NEW_KEY,
                  NEWSLETTER_SECRET_KEYS=NEW_KEY) as base:
        page = httpx.get(f"{base}/unsubscribe/{old_link}")
        done = httpx.post(f"{base}/unsubscribe/{old_link}",
                          data={"List-Unsubscribe": "One-Click"})
    assert page.status_code == done.status_code == 400
    assert "This link is not valid" in done.text and "Nothing has been changed" in done.text
    assert status_of(reader.id) == "active"


def test_new_links_are_signed_with_the_newest_key(fresh, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", f"{NEW_KEY},{OLD_KEY}")
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    try:
        settings = reload_settings()
        assert settings.secret_key == NEW_KEY and settings.signing_keys == (NEW_KEY, OLD_KEY)
        link = tokens.make("unsubscribe", 7, "a@example.com")
        URLSafeTimedSerializer(NEW_KEY, salt="newsletter.unsubscribe").loads(link)
        assert tokens.read("unsubscribe", link)[0]["r"] == 7
        form = tokens.make_form_token()
        URLSafeTimedSerializer(NEW_KEY, salt="newsletter.form").loads(form)
    finally:
        monkeypatch.undo()
        reload_settings()
