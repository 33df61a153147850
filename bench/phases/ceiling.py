"""The ceiling phase: a real digest message, prebuilt, sent as fast as the sink takes it."""

from __future__ import annotations

import multiprocessing
import os
import smtplib
import time

from sqlalchemy import select

from bench import processes
from bench.config import CONCURRENCY
from bench.seeding import drop_database, fresh_database, seed


def sample_message(readers: int = 200, articles: int = 300, **extra_env: str) -> bytes:
    """A real digest message from our renderer (same content shape as the run), of median size
    among the first 50 deliveries of an edition planned in-process."""
    from newsletter import db, events
    from newsletter.editions import planning
    from newsletter.editions import requests as editions

    name = f"bench_sample_{os.getpid()}"
    url = fresh_database(name)
    seed(url, readers, articles)
    processes.configure(url, "smtp://127.0.0.1:9", **extra_env)
    # Plan in-process and send nothing: the events are taken as dispatched.
    events._dispatcher = lambda *_: True
    try:
        with db.session_scope() as s:
            edition_id = editions.request(s, "weekly", source="bench").id
            s.commit()
            planning.plan(s, edition_id)
            msgs = _first_messages(s, edition_id, 50)
        median = sorted(len(m) for m in msgs)[len(msgs) // 2]
        return min(msgs, key=lambda m: abs(len(m) - median))
    finally:
        events._dispatcher = None  # found through the entry point again
        db.dispose_engines()
        drop_database(name)


def _first_messages(s, edition_id: int, count: int) -> list[bytes]:
    from newsletter.editions import content
    from newsletter.mail import compose, rendering
    from newsletter.models import Delivery

    msgs = []
    for d in s.scalars(select(Delivery).where(Delivery.edition_id == edition_id)
                       .order_by(Delivery.id).limit(count)):
        key = (d.edition_id, d.content_key)
        rendered = rendering.renderer().rendered_digest(content.load_batch(s, [key])[key])
        msgs.append(compose.compose(rendered, compose.personal_links(d.reader_id, "r@example.org",
                                                                     edition_id), d.message_id))
    return msgs


def _ceiling_worker(port: int, message: bytes, count: int, out, client: str) -> None:
    if client == "smtplib":
        conn = smtplib.SMTP("127.0.0.1", port)
        for i in range(count):
            conn.sendmail("newsletter@localhost", [f"reader{i}@example.org"], message)
        conn.quit()
    else:  # our transport as send_batch uses it: one round trip a message, dot-stuffing in C
        from newsletter.mail.mailer import SmtpConfig, SmtpTransport

        with SmtpTransport(SmtpConfig("127.0.0.1", port)) as transport:
            for i in range(count):
                for _, failure in transport.push("newsletter@localhost",
                                                 f"reader{i}@example.org", message, i):
                    if failure is not None:
                        raise failure
            for _, failure in transport.flush():
                if failure is not None:
                    raise failure
    out.put(count)


def ceiling(sink, message: bytes, total: int, client: str = "transport") -> float:
    """Prebuilt messages over CONCURRENCY SMTP connections (one per process) to the sink.

    ``client`` "transport" is the fastest client we have (the physical limit of this sink
    and loopback); "smtplib" is the standard library's sendmail, for reference.
    """
    q = multiprocessing.Queue()
    per = total // CONCURRENCY
    procs = [multiprocessing.Process(target=_ceiling_worker,
                                     args=(sink.port, message, per, q, client))
             for _ in range(CONCURRENCY)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    return per * CONCURRENCY / elapsed
