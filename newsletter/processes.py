"""Starting the Celery worker and beat as child processes (for demo, run, and tests).

They run as ``python -m celery -A workers.celery_app …``: a separate program, so this
package still never imports ``workers``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CELERY = [sys.executable, "-m", "celery", "-A", "workers.celery_app"]


def worker_command(concurrency: int = 2, loglevel: str = "INFO",
                   node: str | None = None) -> list[str]:
    """A real ``celery worker`` (prefork pool) on the newsletter and webhooks queues.

    ``node``: Celery's node name (``-n``); each worker node sharing a broker needs its own
    (Celery's default, ``celery@<hostname>``, clashes when two run on one host)."""
    named = ["-n", node] if node else []
    return [*CELERY, "worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "--without-mingle", "--without-gossip", "-Q", "newsletter,webhooks", *named]


def beat_command(loglevel: str = "INFO") -> list[str]:
    return [*CELERY, "beat", f"--loglevel={loglevel}"]


def worker_env(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """``env`` plus a fresh directory where the pool processes keep their metrics."""
    metrics = Path(var_dir) / "metrics" / f"worker-{os.getpid()}-{time.monotonic_ns()}"
    metrics.mkdir(parents=True, exist_ok=True)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics.resolve())}


def start_worker(env: dict[str, str], *, concurrency: int = 2, logfile: Path | None = None,
                 loglevel: str = "INFO", node: str | None = None) -> subprocess.Popen:
    var_dir = Path(env.get("NEWSLETTER_VAR_DIR", "var"))
    return _spawn(worker_command(concurrency, loglevel, node), worker_env(env, var_dir),
                  logfile)


def start_beat(env: dict[str, str], *, logfile: Path | None = None,
               loglevel: str = "INFO") -> subprocess.Popen:
    return _spawn(beat_command(loglevel), env, logfile)


def _spawn(cmd: list[str], env: dict[str, str], logfile: Path | None) -> subprocess.Popen:
    out = open(logfile, "ab") if logfile else None  # noqa: SIM115
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 20, *, graceful: bool = True) -> None:
    """Warm shutdown (SIGTERM: finish running tasks), or cold (SIGQUIT: give them back to
    the broker at once); SIGKILL to the whole group if it lingers."""
    if proc.poll() is not None:
        return
    try:
        # The main process only: it stops its own pool in order (a signal to the whole
        # group kills the pool children under it and the main process waits for them).
        os.kill(proc.pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
