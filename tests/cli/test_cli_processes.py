"""The commands operators run: `newsletter worker` and `newsletter beat` become Celery."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from newsletter import db
from newsletter.config import child_env, get_settings
from tests.conftest import configure


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_the_worker_and_beat_commands_become_celery(tmp_path) -> None:
    """`newsletter worker` and `newsletter beat` replace themselves with Celery (execve)."""
    configure(tmp_path, f"sqlite:///{tmp_path / 'cmd.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    newsletter = str(Path(sys.executable).with_name("newsletter"))
    for args, expected in ((["worker", "--concurrency", "1"], b"worker"), (["beat"], b"beat")):
        log = (tmp_path / f"{args[0]}.log").open("wb")
        proc = subprocess.Popen([newsletter, *args], env=child_env(get_settings()),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (b"celery" in _cmdline(proc.pid) and expected in _cmdline(proc.pid)):
                assert proc.poll() is None, (tmp_path / f"{args[0]}.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def test_the_worker_command_takes_a_node_name(tmp_path) -> None:
    """`newsletter worker --node NAME@%h`: a second worker node on a host gets its own name
    (Celery's -n, %h the host name), as scaling out across hosts needs."""
    configure(tmp_path, f"sqlite:///{tmp_path / 'cmd.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    newsletter = str(Path(sys.executable).with_name("newsletter"))
    logfile = tmp_path / "node.log"
    with logfile.open("wb") as log:
        proc = subprocess.Popen([newsletter, "worker", "--concurrency", "1", "--node",
                                 "sender2@%h"], env=child_env(get_settings()),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while b"ready." not in logfile.read_bytes():
                assert proc.poll() is None, logfile.read_text()
                assert time.monotonic() < deadline, logfile.read_text()
                time.sleep(0.1)
            assert b"\0-n\0sender2@%h\0" in _cmdline(proc.pid)
            assert f"sender2@{socket.gethostname()}" in logfile.read_text()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
