"""Serving the web app: one process per core, each with a listening socket of its own.

Why not uvicorn's ``workers=``: its processes share one listening socket, and the one
awake when connections arrive accepts all that are pending. Readers' browsers (and a
proxy's upstream pool) hold keep-alive connections, so the load follows the connections:
with 50 clients one process took ~75 % of them and ran at its limit while the other idled
(subscribe: 145-222/s where the two together answer ~380/s). Here every process binds its
own socket with SO_REUSEPORT and the kernel spreads new connections across them by address.

The parent only supervises: it restarts a process that dies and passes SIGTERM / SIGINT on.
What a process loses when it dies is its own: the connections it held and, for the few
milliseconds until the kernel has closed its socket, new ones hashed to it (refused; browsers
and proxies retry). tests/web/test_web_serve.py shows all three.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from typing import Any

APP = "newsletter.web.app:app"
# How long a process may take to finish its requests on shutdown before it is killed.
_GRACE_S = 10.0
# A process that dies is restarted, but not faster than this (a crash at startup would spin).
_RESTART_EVERY_S = 1.0

log = logging.getLogger(__name__)


def serve(host: str, port: int, workers: int) -> None:
    """Serve the app on ``host:port`` with ``workers`` processes; returns on SIGTERM/SIGINT."""
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, host=host, port=port, workers=workers, **proxy_options())
        return
    if port == 0:  # every process must bind the same port: choose it here
        with _socket(host, 0) as probe:
            port = probe.getsockname()[1]
    _Supervisor(host, port, workers).run()


def proxy_options() -> dict[str, Any]:
    """Whose X-Forwarded-For uvicorn believes: only NEWSLETTER_TRUSTED_PROXIES' (the
    reader's address keys the rate limits and goes in the consent ledger)."""
    from newsletter.config import get_settings

    trusted = get_settings().trusted_proxies
    # An empty list, not None: None would fall back to uvicorn's own default (loopback).
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": list(trusted)}


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_one(host: str, port: int) -> None:
    """One server process: its own socket in the port's SO_REUSEPORT group."""
    import uvicorn

    sock = _socket(host, port)
    config = uvicorn.Config(APP, host=host, port=port, **proxy_options())
    sock.listen(config.backlog)
    uvicorn.Server(config).run(sockets=[sock])


class _Supervisor:
    def __init__(self, host: str, port: int, workers: int) -> None:
        self.args = (host, port)
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.stopping = False

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        self.processes = [self._start() for _ in range(self.workers)]
        last_restart = 0.0
        while not self.stopping:
            time.sleep(0.2)
            for k, process in enumerate(self.processes):
                if process.is_alive() or self.stopping:
                    continue
                wait = last_restart + _RESTART_EVERY_S - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                log.warning("web process %s exited (%s); starting another", process.pid,
                            process.exitcode)
                self.processes[k] = self._start()
                last_restart = time.monotonic()
        self._shutdown()

    def _start(self) -> Any:
        process = self.context.Process(target=_serve_one, args=self.args,
                                       name="newsletter-web")
        process.start()
        return process

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in hand
        deadline = time.monotonic() + _GRACE_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
