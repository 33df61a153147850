"""SMTP sinks the phases send to: postfix's smtp-sink (C, nearly free) when installed, else
aiosmtpd; the peer's own aiosmtpd sink for the same-size phase; an in-process timestamping one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.config import free_port, log

_SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


def smtp_sink_binary() -> str | None:
    for p in _SMTP_SINK_PATHS:
        if os.path.exists(p):
            return p
    if shutil.which("apt-get") and os.geteuid() == 0:
        log("installing postfix for smtp-sink")
        subprocess.run(["apt-get", "install", "-y", "postfix"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in _SMTP_SINK_PATHS:
            if os.path.exists(p):
                return p
    return shutil.which("smtp-sink")


def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)


class Sink:
    """postfix's smtp-sink (C, cheap) when installed, else an aiosmtpd counting sink.

    With ``dump_dir`` smtp-sink writes each message to a file there, and a file's mtime is
    when its message arrived (the alert latency phase reads them).
    """

    def __init__(self, dump_dir: Path | None = None) -> None:
        self.port = free_port()
        binary = smtp_sink_binary()
        self.kind = "smtp-sink" if binary else "aiosmtpd"
        self.dump_dir = dump_dir
        cmd = (self._smtp_sink(binary, dump_dir) if binary
               else [sys.executable, str(Path(__file__).with_name("sink.py")), str(self.port)])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_listening(self.port)
        self.url = f"smtp://127.0.0.1:{self.port}"

    def _smtp_sink(self, binary: str, dump_dir: Path | None) -> list[str]:
        dump = []
        if dump_dir is not None:
            shutil.rmtree(dump_dir, ignore_errors=True)
            dump_dir.mkdir(parents=True)
            dump_dir.chmod(0o777)  # smtp-sink drops to the postfix user
            dump = ["-d", f"{dump_dir}/m."]
        return [binary, *(["-u", "postfix"] if os.geteuid() == 0 else []), *dump,
                f"127.0.0.1:{self.port}", "1000"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def times(self) -> list[float]:
        return [e.stat().st_mtime for e in os.scandir(self.dump_dir)]

    def clear(self) -> None:
        for e in os.scandir(self.dump_dir):
            os.unlink(e.path)


class PeerSink:
    """The peer's own sink (``$PEER_DIR/sink.py``, aiosmtpd, written by the peer script), for
    the same-size comparison: both sides measured against the same kind of sink."""

    kind = "the peer's aiosmtpd sink"

    def __init__(self, peer_dir: Path) -> None:
        self.port = free_port()
        self.stats = peer_dir / "ours-sink.json"
        ready = peer_dir / "ours-ready"
        ready.unlink(missing_ok=True)
        self.stats.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(peer_dir / "sink.py"), "--port", str(self.port),
             "--stats", str(self.stats), "--ready", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            if ready.exists():
                break
            time.sleep(0.1)
        else:
            self.proc.kill()
            raise RuntimeError("the peer's sink did not start")
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> dict:
        self.proc.terminate()
        self.proc.wait(10)
        return json.loads(self.stats.read_text()) if self.stats.exists() else {}


class TimestampSink:
    """An in-process aiosmtpd sink that records when each message arrived (for latency)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrivals: list[tuple[float, bytes]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.arrivals.append((time.time(), envelope.original_content or b""))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()

    def times(self) -> list[float]:
        return [at for at, _ in self.arrivals]

    def clear(self) -> None:
        self.arrivals.clear()
