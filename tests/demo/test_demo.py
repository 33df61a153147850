"""`newsletter demo`, the Quick start's first command, as a reader of the README runs it."""

from __future__ import annotations

import mailbox
import os
import re
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path


def test_demo_delivers_real_messages_into_the_outbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    cli = Path(sys.executable).with_name("newsletter")
    done = subprocess.run([str(cli), "demo", "--readers", "50"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    sent = int(re.search(r"(\d+) emails sent", done.stdout).group(1))
    distinct = int(re.search(r"(\d+) distinct digests", done.stdout).group(1))
    assert "50 of 50" in done.stdout and sent >= 40 and 1 < distinct <= sent

    box = mailbox.Maildir(str(tmp_path / "var" / "outbox"), create=False)
    messages = [message_from_bytes(box.get_bytes(k), policy=policy.default) for k in box.iterkeys()]
    digests = [m for m in messages if m["Subject"].startswith("Your weekly")]
    confirmations = [m for m in messages if m["Subject"].startswith("Confirm")]
    assert len(confirmations) == 50 and len(digests) == sent
    for message in digests:
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # Story links go through the click counter (CLICK_TRACKING=aggregate, the default),
        # which answers with a redirect to the story (tests/web/test_clicks.py follows one).
        assert "localhost:8000/r/" in message.get_body(("html",)).get_content()
