"""The newsroom console in real headless Chromium against a live server: an admin and an
editor sign in, make tokens, act through the API, and find it all in the audit log; an
editor gets 403 on admin pages; wrong passwords lock; a POST without the CSRF token is
refused. axe-core checks every page (no serious or critical violation).

Screenshots of each page at phone (390 px) and desktop (1280 px) width go to the test's
temporary directory (and to NEWSLETTER_SCREENSHOTS, if set) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app as cli
from tests.conftest import ADMIN_TOKEN, REQUIRE_SERVERS, live_web
from tests.test_browser import CHROMIUM, DESKTOP, PHONE

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

# axe-core from its npm package, installed by .ci/run (or here, on first use).
AXE_PREFIX = Path(__file__).resolve().parents[2] / ".ci" / "node"
AXE = AXE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
CHIEF, DESK = "chief@news.example", "desk@news.example"
CHIEF_PASSWORD, DESK_PASSWORD = "chief's long password", "the desk's long password"
# Reported by axe but not ours to fix would go here, each with why; there are none.
SERIOUS = ("serious", "critical")


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVERS:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def axe_source() -> Path:
    if not AXE.exists() and shutil.which("npm"):
        subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(AXE_PREFIX), "axe-core@4"], check=False, capture_output=True,
                       timeout=300)
    if not AXE.exists():
        _unavailable("axe-core is not installed (npm install --prefix .ci/node axe-core@4)")
    return AXE


@pytest.fixture
def chromium():
    if not os.path.exists(CHROMIUM):
        _unavailable("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def live(fresh, tmp_path):
    # http on loopback: the session cookie is Secure only behind an https BASE_URL (the
    # TestClient tests check that flag).
    with live_web(tmp_path / "web.log", NEWSLETTER_BASE_URL="http://127.0.0.1") as base:
        yield base


class Console:
    """One browser (context) in the console, checking and photographing each page."""

    def __init__(self, browser, base: str, axe: Path, shots: Path, who: str) -> None:
        self.context = browser.new_context(viewport=PHONE)
        # An init script is not subject to the page's CSP (which allows no inline script).
        self.context.add_init_script(path=str(axe))
        self.page = self.context.new_page()
        # What the browser refused or failed to run (a CSP violation shows up here).
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base, self.shots, self.who = base, shots, who
        self.checked: list[str] = []

    def goto(self, path: str):
        return self.page.goto(self.base + path)

    def check(self, name: str) -> None:
        """axe on the page as it is, then a phone and a desktop screenshot."""
        violations = self.page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }""")
        bad = [v for v in violations if v["impact"] in SERIOUS]
        assert bad == [], f"{name}: {bad}"
        number = len(list(self.shots.glob("*-phone.png"))) + 1
        stem = self.shots / f"{number:02d}-{self.who}-{name}"
        self.page.screenshot(path=f"{stem}-phone.png", full_page=True)
        self.page.set_viewport_size(DESKTOP)
        self.page.screenshot(path=f"{stem}-desktop.png", full_page=True)
        self.page.set_viewport_size(PHONE)
        self.checked.append(name)

    def sign_in(self, email: str, password: str) -> None:
        self.page.get_by_label("Email address").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()

    def new_token(self, name: str) -> str:
        self.goto("/admin/tokens")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_role("button", name="Create token").click()
        return self.page.locator("#new-token").inner_text().strip()

    def audit_rows(self) -> list[str]:
        """The audit table's rows, "when | who | action | what | from"."""
        return self.page.evaluate("""() => Array.from(
            document.querySelectorAll("table.audit tbody tr"),
            tr => Array.from(tr.cells, td => td.textContent.trim().replace(/\\s+/g, " "))
                  .join(" | "))""")


def htmx_ready(console_: Console) -> bool:
    """Our vendored htmx ran under the console's CSP and, signed in, has the session's CSRF
    token to send (hx-headers on <body>, the same as the page's meta tag)."""
    console_.goto("/admin")
    return console_.page.evaluate("""() => typeof htmx === "object" && (
        !document.body.hasAttribute("hx-headers")
        || JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"]
           === document.querySelector('meta[name="csrf-token"]').content)""")


def seed_reader(base: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = httpx.post(f"{base}/api/articles", headers=admin, json={
        "url": "https://news.example/a/1", "title": "Ceasefire holds", "tags": ["Syria"]})
    assert r.status_code == 201
    r = httpx.post(f"{base}/api/subscribers", headers=admin, json=[{
        "email": "leaving.reader@example.com", "topics": ["syria"],
        "consented_at": "2026-01-01T00:00:00Z"}])
    assert r.json()["created"] == 1, r.text


def test_an_admin_and_an_editor_in_the_console(backend, live, chromium, axe_source,
                                               tmp_path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    result = CliRunner().invoke(cli, ["editors", "add", CHIEF, "--role", "admin",
                                      "--password-stdin"], input=CHIEF_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    seed_reader(live)

    # 1. The admin, signed out, asks for the audit log and is sent to sign in first.
    chief = Console(chromium, live, axe_source, shots, "admin")
    chief.goto("/admin/audit?action=reader.erase")
    assert chief.page.url.startswith(f"{live}/admin/login?next=")
    assert chief.page.locator("html").get_attribute("lang") == "en"
    chief.check("sign-in")
    chief.sign_in(CHIEF, "not my password")
    assert "The email address or the password is wrong." in chief.page.locator(
        ".error-summary").inner_text()
    assert chief.page.get_by_label("Email address").input_value() == CHIEF  # kept
    chief.check("sign-in-error")
    chief.sign_in(CHIEF, CHIEF_PASSWORD)
    assert chief.page.url == f"{live}/admin/audit?action=reader.erase"  # back where asked
    chief.goto("/admin")
    chief.check("home")

    # 2. An editor's account: a short password is refused and what was typed is kept.
    chief.page.get_by_role("navigation", name="Console").get_by_role(
        "link", name="Editors").click()
    chief.page.get_by_label("Email address").fill(DESK)
    chief.page.get_by_label("Password").fill("short")
    chief.page.evaluate("document.querySelector('#password').removeAttribute('minlength')")
    chief.page.get_by_role("button", name="Add editor").click()
    assert "at least 12 characters" in chief.page.locator(".error-summary").inner_text()
    assert chief.page.get_by_label("Email address").input_value() == DESK
    chief.check("editors-error")
    chief.page.get_by_label("Password").fill(DESK_PASSWORD)
    chief.page.get_by_role("button", name="Add editor").click()
    assert chief.page.get_by_role("status").inner_text() == "The editor can now sign in."
    chief.check("editors")
    chief.page.get_by_role("link", name=f"Reset password of {DESK}").click()
    chief.check("editor-password")
    chief.page.get_by_role("link", name="Cancel").click()
    chief.page.get_by_role("link", name=f"Remove {DESK}").click()
    chief.check("editor-remove")
    chief.page.get_by_role("link", name="Cancel").click()

    # 3. A token, shown once; with it the admin erases a reader through the API.
    chief_token = chief.new_token("chief-laptop")
    assert chief_token.startswith("nlt_")
    chief.check("token-created")
    chief.goto("/admin/tokens")
    assert chief_token not in chief.page.content()  # never shown again
    r = httpx.delete(f"{live}/api/subscribers/leaving.reader@example.com",
                     headers={"Authorization": f"Bearer {chief_token}"})
    assert r.json() == {"status": "erased"}

    # 4. Each action is in the audit log, newest first, and the filter finds one kind.
    chief.goto("/admin/audit")
    rows = chief.audit_rows()
    assert [row.split(" | ")[2] for row in rows[:3]] == [
        "reader.erase", "token.create", "editor.add"]
    assert "token:chief-laptop" in rows[0] and CHIEF in rows[1] and CHIEF in rows[2]
    assert "leaving.reader" not in chief.page.content()  # the reader is named by id only
    chief.check("audit")
    chief.page.get_by_label("Action").select_option("reader.erase")
    chief.page.get_by_role("button", name="Filter").click()
    assert len(chief.audit_rows()) == 1
    chief.page.get_by_label("From").fill("2026-12-31")
    chief.page.get_by_label("To").fill("2026-01-01")
    chief.page.get_by_role("button", name="Filter").click()
    assert "before the start date" in chief.page.locator(".error-summary").inner_text()
    chief.check("audit-error")

    # 5. Signing out: every console page sends the browser to sign in again.
    chief.page.get_by_role("button", name="Sign out").click()
    assert chief.page.get_by_role("status").inner_text() == "You are signed out."
    for path in ("/admin", "/admin/audit", "/admin/editors", "/admin/tokens"):
        chief.goto(path)
        assert chief.page.url.startswith(f"{live}/admin/login?next=")

    # 6. The editor: no way into admin pages, a token of their own that cannot erase.
    desk = Console(chromium, live, axe_source, shots, "editor")
    desk.goto("/admin/login")
    desk.sign_in(DESK, DESK_PASSWORD)
    assert desk.page.get_by_role("link", name="Editors").count() == 0
    response = desk.goto("/admin/editors")
    assert response.status == 403
    assert desk.page.get_by_role("heading", name="Not allowed").is_visible()
    desk.check("forbidden")
    desk_token = desk.new_token("desk-cms")
    desk.check("tokens")
    desk.page.get_by_role("link", name="Revoke desk-cms").click()
    desk.check("token-revoke")
    desk.page.get_by_role("link", name="Cancel").click()
    r = httpx.delete(f"{live}/api/subscribers/someone@example.com",
                     headers={"Authorization": f"Bearer {desk_token}"})
    assert r.status_code == 403
    # A POST without the CSRF token, with the editor's own cookie: refused.
    r = desk.context.request.post(f"{live}/admin/tokens", form={"name": "sneaky"})
    assert r.status == 403
    desk.goto("/admin/tokens")
    assert "sneaky" not in desk.page.content()
    desk.goto("/admin/audit")
    assert any("token.create" in row and DESK in row for row in desk.audit_rows())

    # 7. Wrong passwords lock the account, and the page says until when.
    thief = Console(chromium, live, axe_source, shots, "locked")
    thief.goto("/admin/login")
    for _ in range(5):
        thief.sign_in(DESK, "a guessed password")
    assert re.search(r"locked .* Try again after \d\d:\d\d", thief.page.locator(
        ".error-summary").inner_text())
    thief.check("locked")
    thief.sign_in(DESK, DESK_PASSWORD)
    assert "locked" in thief.page.locator(".error-summary").inner_text()

    # Nothing blocked or broken in any page. The 4xx answers the test asked for (a form's
    # errors, 403, a lock) are logged by Chromium as failed resources: those are expected.
    for console_ in (chief, desk, thief):
        unexpected = [e for e in console_.errors
                      if "the server responded with a status of 4" not in e]
        assert unexpected == [], unexpected
        assert htmx_ready(console_)
    assert desk.page.get_attribute("body", "hx-headers")  # signed in: the token is there

    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
