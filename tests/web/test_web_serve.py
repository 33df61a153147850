"""`newsletter web` with several processes (newsletter/web/serve.py): each listens on a
socket of its own, so readers' keep-alive connections spread across them; a process that
dies is replaced while the others go on answering; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from newsletter import db
from newsletter.config import child_env, get_settings
from newsletter.mail.capture import free_port
from tests.conftest import configure


def _servers(parent: int) -> list[int]:
    """The server processes under ``parent`` (not multiprocessing's resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return sorted(found)


def _connections_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """How many established connections to ``port`` each process holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    held = {}
    for pid in pids:
        links = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
        held[pid] = sum(1 for link in links if link[8:-1] in inodes and link.startswith("socket:"))
    return held


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _get(conn: socket.socket, port: int) -> bytes:
    conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return conn.recv(4096)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            return _get(conn, port).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_two_processes_share_the_connections_survive_a_crash_and_stop_on_sigterm(
        tmp_path) -> None:
    configure(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    port = free_port("127.0.0.1")
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        [str(Path(sys.executable).with_name("newsletter")), "web", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2"],
        env=child_env(get_settings()), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (len(_servers(web.pid)) == 2 and _answers(port)):
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # both processes listening, not only the first
        servers = _servers(web.pid)

        # Forty readers with keep-alive connections: the kernel spreads them by address.
        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        try:
            assert all(_get(c, port).startswith(b"HTTP/1.1 200") for c in conns)
            held = _connections_by_process(port, servers)
            assert sum(held.values()) == 40, held
            # Even: each holds some; on one shared socket one process can take them all.
            assert min(held.values()) >= 5, held
        finally:
            for c in conns:
                c.close()

        # A server process dies. Until the kernel has closed its socket, a few milliseconds
        # after the process is gone (measured: up to 6 ms), connections hashed to that
        # socket are refused; from then on the other process answers every new one while
        # the dead one is replaced.
        os.kill(servers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(servers[0]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert all(_answers(port) for _ in range(20))
        deadline = time.monotonic() + 30
        while True:
            now = _servers(web.pid)
            if len(now) == 2 and servers[0] not in now:
                break
            assert time.monotonic() < deadline, (now, (tmp_path / "web.log").read_text())
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while not _answers(port):
            assert time.monotonic() < deadline
            time.sleep(0.2)

        # SIGTERM: every process goes, the parent last, cleanly.
        web.send_signal(signal.SIGTERM)
        assert web.wait(30) == 0
        assert _servers(web.pid) == []
        assert not _answers(port)
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
        log.close()
