"""A local SMTP server that files every message into a Maildir (for demo and run)."""

from __future__ import annotations

import mailbox
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(path), create=True)
        self.lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.maildir.add(envelope.original_content or envelope.content)
            self.count += 1
        return "250 Message accepted for delivery"


class CaptureServer:
    """``with CaptureServer(path, port) as server: server.url`` — SMTP into ``path``."""

    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 0):
        self.handler = MaildirHandler(path)
        self.controller = Controller(self.handler, hostname=host, port=port or free_port(host))

    @property
    def url(self) -> str:
        return f"smtp://{self.controller.hostname}:{self.controller.port}"

    def start(self) -> CaptureServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
