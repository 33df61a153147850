"""The peer phase: django-newsletter's own benchmark script (``../shared/peers``), run as is."""

from __future__ import annotations

import json
import os
import re
import subprocess

from bench.config import PEER, PEER_DIR, VAR, free_port, log


def peer(n: int) -> float | None:
    """The peer's median emails/s over ``n`` readers (one run), or None without the script."""
    if not PEER.exists():
        log(f"peer script not found at {PEER}")
        return None
    env = {**os.environ, "N": str(n), "RUNS": "1", "PORT": str(free_port()),
           "PEER_DIR": str(PEER_DIR)}
    proc = subprocess.run(["bash", str(PEER)], env=env, capture_output=True, text=True,
                          timeout=1200)
    out = proc.stdout + proc.stderr
    (VAR / "peer.log").write_text(out)
    m = re.findall(r"([\d.]+)\s*emails/s", out)
    if not m:
        log("peer produced no figure; see var/bench/peer.log")
        return None
    return float(m[-1])


def peer_message_bytes() -> int | None:
    """The peer's average message size, from its results.json."""
    try:
        return json.loads((PEER_DIR / "results.json").read_text())["avg_message_bytes"]
    except (OSError, KeyError, ValueError):
        return None
