"""How many digests an edition renders, for cache policies we have not built.

Plans a weekly edition for the benchmark's data set (bench/seeding.py) in a fresh
PostgreSQL database, in-process and with nothing sent, then replays its deliveries in the
order they are enqueued (batches of BATCH_SIZE, each to one of CONCURRENCY processes at
random) against per-process LRU caches of rendered digests, as rendering.Renderer.digest keeps
them. Prints the renders for: today's policy; caching only digests with more than one
reader (known only once the whole edition is planned), or only those known to be shared
when a process first meets them; batches sorted by content key in windows of N pages; an
unbounded cache.

    BENCH_REDIS=redis://127.0.0.1:6379/9 .venv/bin/python bench/cache_sim.py [readers]

100,000 readers: planning takes about half a minute, the replays a few seconds.
"""

from __future__ import annotations

import bisect
import collections
import random
import sys
from pathlib import Path

# Run as a script: the repository root, not bench/ itself, is where the package is found.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from sqlalchemy import create_engine, select  # noqa: E402

from bench.config import CONCURRENCY  # noqa: E402
from bench.processes import configure  # noqa: E402
from bench.seeding import drop_database, fresh_database, seed  # noqa: E402

BATCH = 200  # NEWSLETTER_BATCH_SIZE's default
PROCESSES = CONCURRENCY


def planned_keys(readers: int) -> list[str]:
    from newsletter import db
    from newsletter.editions import planning
    from newsletter.editions import requests as editions
    from newsletter.models import Delivery

    name = "bench_cache_sim"
    url = fresh_database(name)
    try:
        seed(url, readers, 300)
        configure(url, "smtp://127.0.0.1:9")
        with db.session_scope() as s:
            edition_id = editions.request(s, "weekly", source="bench").id
            s.commit()
        with db.session_scope() as s:
            planning.plan(s, edition_id)
        engine = create_engine(url)
        with engine.connect() as c:
            keys = list(c.scalars(select(Delivery.content_key)
                                  .where(Delivery.edition_id == edition_id)
                                  .order_by(Delivery.id)))
        engine.dispose()
        return keys
    finally:
        db.dispose_engines()
        drop_database(name)


def renders(keys: list[str], size: int | None, *, only_shared: bool = False,
            known_ahead: float | None = None, window_pages: int = 1, seed: int = 1) -> int:
    """Renders when batches go to random processes, each with an LRU of ``size`` digests.

    ``only_shared``: digests with one reader in the whole edition are never cached (perfect
    knowledge). ``known_ahead``: what a worker could know instead — a digest is cached if
    the deliveries planned by the time a process first meets it give it a second reader
    (planning runs ``known_ahead`` times faster than sending), or if the process met it
    before.
    """
    readers_of = collections.Counter(keys)
    at: dict[str, list[int]] = collections.defaultdict(list)
    for j, key in enumerate(keys):
        at[key].append(j)
    met: list[set[str]] = [set() for _ in range(PROCESSES)]
    rng = random.Random(seed)
    caches: list[collections.OrderedDict[str, None]] = [
        collections.OrderedDict() for _ in range(PROCESSES)]
    count = 0
    window = window_pages * BATCH
    for w in range(0, len(keys), window):
        chunk = keys[w:w + window]
        if window_pages > 1:
            chunk = sorted(chunk)
        for b in range(0, len(chunk), BATCH):
            process = rng.randrange(PROCESSES)
            cache = caches[process]
            for key in sorted(chunk[b:b + BATCH]):  # send_batch goes in content-key order
                if key in cache:
                    cache.move_to_end(key)
                    continue
                count += 1
                if only_shared and readers_of[key] == 1:
                    continue
                if known_ahead is not None:
                    planned = min(len(keys), int(known_ahead * (w + b)) + BATCH)
                    shared = bisect.bisect_left(at[key], planned) > 1 or key in met[process]
                    met[process].add(key)
                    if not shared:
                        continue
                cache[key] = None
                if size is not None and len(cache) > size:
                    cache.popitem(last=False)
    return count


def main() -> None:
    from newsletter.mail import rendering

    readers = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    keys = planned_keys(readers)
    readers_of = collections.Counter(keys)
    size = rendering.DIGEST_CACHE
    print(f"{len(keys)} deliveries, {len(readers_of)} distinct digests, "
          f"{sum(1 for n in readers_of.values() if n == 1)} with one reader")
    print(f"today ({size} per process): {renders(keys, size)} renders")
    print(f"only digests with more than one reader cached: "
          f"{renders(keys, size, only_shared=True)}")
    # Planning finished at 15-19 s of a ~70-90 s edition in the full runs of 2026-11-28.
    for ahead in (1.0, 2.0, 4.67):
        print(f"only digests known to be shared when first met, planning x{ahead} ahead of "
              f"sending: {renders(keys, size, known_ahead=ahead)}")
    for pages in (10, 100, 500):
        print(f"sorted by key in windows of {pages} pages: {renders(keys, size, window_pages=pages)}")
    print(f"unbounded caches: {renders(keys, None)}")


if __name__ == "__main__":
    main()
