"""The data set: fresh PostgreSQL databases, seeded with COPY (fast for 100,000 readers)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from bench.config import PG_ADMIN, TAGS, ZONES

_NAMES = [f"Topic {i:02d} {w}" for i, w in
          enumerate(["Syria", "Russia", "Jordan", "Lebanon", "Iraq", "Egypt", "Iran",
                     "Turkey"] * 5)]
_LOREM = ("Officials said talks would resume next week as aid convoys waited at the "
          "border crossing, while residents described a tense night in the capital. ")


def fresh_database(name: str) -> str:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
        # Each phase starts from a quiet server: the previous phase's dirty pages (the
        # 100,000-reader run writes gigabytes) are written now, not by a checkpoint spread
        # over the next phases (measured: subscribe p99 at 300/s 111 ms after the large run
        # against 43-59 ms alone). pgbench starts its runs the same way.
        c.execute(text("CHECKPOINT"))
    admin.dispose()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    from newsletter import db

    db.upgrade(url)
    return url


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def skewed(rng: random.Random, k: int, weights: list[float]) -> list[int]:
    """k distinct tag indexes drawn by popularity."""
    chosen: set[int] = set()
    while len(chosen) < k:
        chosen.add(rng.choices(range(TAGS), weights)[0])
    return sorted(chosen)


def _write_topics(cur, now: datetime) -> None:
    """One topic per tag, as the migration turns a site's tags into topics."""
    with cur.copy("COPY topics (id, slug, name, description, position, created_at) "
                  "FROM STDIN") as cp:
        for i in range(TAGS):
            cp.write_row((i + 1, f"topic-{i:02d}", _NAMES[i], "", i, now))
    with cur.copy("COPY topic_tags (topic_id, tag_id) FROM STDIN") as cp:
        for i in range(TAGS):
            cp.write_row((i + 1, i + 1))


def seed(url: str, readers: int, articles: int, *, frequency: str = "weekly",
         reader_tags: tuple[int, int] = (1, 5), seed_value: int = 1, zones: int = 0,
         languages: tuple[str, ...] = ()) -> None:
    """Tags, a week of articles and active readers, written with COPY (fast for 100k).

    ``zones``: readers spread in turn over the first that many of config.ZONES (0: no zone
    stored, the site's, as before time zones). ``languages`` (e.g. ("en", "ar")): articles
    spread over them in turn, readers reading one of them or two (see reader_languages);
    none: every article in the site's language and readers from before languages (NULL:
    every language), as before languages existed."""
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    eng = create_engine(url)
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY tags (id, slug, name) FROM STDIN") as cp:
            for i in range(TAGS):
                cp.write_row((i + 1, f"topic-{i:02d}", _NAMES[i]))
        _write_topics(cur, now)
        _write_articles(cur, rng, articles, now, languages)
        _write_readers(cur, rng, readers, now, frequency, reader_tags, ZONES[:zones], languages)
        for table in ("tags", "topics", "articles", "readers"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")
        # Only the seeded tables: an ANALYZE of the still empty deliveries tables would tell the
        # planner they hold nothing, a state no real list is in.
        cur.execute("ANALYZE tags, topics, topic_tags, articles, article_tags, readers, "
                    "reader_topics")
        raw.commit()
    finally:
        raw.close()
        eng.dispose()


_ARABIC_LOREM = ("قال مسؤولون إن المحادثات ستُستأنف الأسبوع المقبل بينما انتظرت قوافل "
                 "المساعدات عند المعبر الحدودي، ووصف السكان ليلة متوترة في العاصمة. ")


def _write_articles(cur, rng: random.Random, articles: int, now: datetime,
                    languages: tuple[str, ...] = ()) -> None:
    """A week of published articles, each on one topic (two in a third of them)."""
    # Milder skew than the readers': a few big stories and a long tail.
    article_weights = [1 / (i + 1) ** 0.5 for i in range(TAGS)]
    with cur.copy("COPY articles (id, url, title, summary, author, image_url, status, "
                  "published_at, created_at, updated_at, lang) FROM STDIN") as cp:
        for a in range(articles):
            at = now - timedelta(minutes=10 + a * (7 * 24 * 60 - 60) // max(articles, 1))
            lang = languages[a % len(languages)] if languages else "en"
            title, summary = (f"Story {a + 1}: ceasefire talks, aid and the week ahead", _LOREM) \
                if lang != "ar" else (f"الخبر {a + 1}: محادثات وقف إطلاق النار والمساعدات",
                                      _ARABIC_LOREM)
            cp.write_row((a + 1, f"https://news.example.com/2026/story-{a + 1}", title,
                          summary, "Staff reporter",
                          f"https://img.example.com/{a + 1}.jpg", "published", at, at, at,
                          lang))
    with cur.copy("COPY article_tags (article_id, tag_id, position) FROM STDIN") as cp:
        for a in range(articles):
            for pos, t in enumerate(skewed(rng, rng.choice((1, 1, 2)), article_weights)):
                cp.write_row((a + 1, t + 1, pos))


def reader_languages(rng: random.Random, languages: tuple[str, ...]) -> str | None:
    """What a reader reads: of two languages, 45 % the first only, 35 % the second only,
    20 % both (either order) — a Middle-East site's English and Arabic readers, a few
    reading both. None without languages."""
    if not languages:
        return None
    if len(languages) == 1:
        return languages[0]
    first, second = languages[0], languages[1]
    roll = rng.random()
    if roll < 0.45:
        return first
    if roll < 0.80:
        return second
    return f"{first},{second}" if roll < 0.90 else f"{second},{first}"


def _write_readers(cur, rng: random.Random, readers: int, now: datetime,
                   frequency: str, reader_tags: tuple[int, int],
                   zones: tuple[str, ...] = (), languages: tuple[str, ...] = ()) -> None:
    """Active readers, each following ``reader_tags`` topics of Zipf-like popularity, in
    ``zones`` in turn (none: NULL, the site's)."""
    # Zipf-like popularity: a few big stories (Syria, Russia) and a long tail.
    weights = [1 / (i + 1) ** 0.9 for i in range(TAGS)]
    with cur.copy("COPY readers (id, email, status, frequency, source, created_at, "
                  "confirmed_at, timezone, languages, locale) FROM STDIN") as cp:
        for r in range(readers):
            reads = reader_languages(rng, languages)
            cp.write_row((r + 1, f"reader{r + 1}@example.org", "active", frequency,
                          "import", now - timedelta(days=30), now - timedelta(days=30),
                          zones[r % len(zones)] if zones else None,
                          reads, reads.split(",")[0] if reads else None))
    with cur.copy("COPY reader_topics (reader_id, topic_id) FROM STDIN") as cp:
        for r in range(readers):
            for t in skewed(rng, rng.randint(*reader_tags), weights):
                cp.write_row((r + 1, t + 1))
