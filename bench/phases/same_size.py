"""The same-size phase: our pipeline with messages of the peer's size, through the peer's
own kind of sink, then that sink alone fed prebuilt messages (the most any sender gets)."""

from __future__ import annotations

import os

from bench.config import PEER_DIR
from bench.phases.ceiling import ceiling, sample_message
from bench.phases.edition import run_edition
from bench.sinks import PeerSink

# A smaller week (fewer stories per digest) and three stories shown whole per topic give
# digests of ~36 kB on average (32 kB median), near the peer's 33 kB message.
SAME_SIZE_ARTICLES = 200
SAME_SIZE_LEAD = "3"


def same_size(readers: int) -> dict:
    """Our pipeline against the peer's kind of sink, with messages of the peer's size."""
    sink = PeerSink(PEER_DIR)
    try:
        run = run_edition(readers, SAME_SIZE_ARTICLES, sink, "same",
                          NEWSLETTER_DIGEST_LEAD_STORIES=SAME_SIZE_LEAD)
    finally:
        stats = sink.stop()
        os.environ.pop("NEWSLETTER_DIGEST_LEAD_STORIES", None)
    run["sink_stats"] = stats
    run["avg_message_bytes"] = stats.get("bytes", 0) // max(stats.get("messages", 0), 1)
    run.update(_sink_alone(readers))
    return run


def _sink_alone(readers: int) -> dict:
    # What this sink takes at most: prebuilt messages of this shape over the same number of
    # connections. It is a Python process on the same 2 cores, so no sender, ours or the
    # peer's, can get more than this through it; the ratio to the peer is bounded by it.
    try:
        message = sample_message(articles=SAME_SIZE_ARTICLES,
                                 NEWSLETTER_DIGEST_LEAD_STORIES=SAME_SIZE_LEAD)
    finally:
        os.environ.pop("NEWSLETTER_DIGEST_LEAD_STORIES", None)
    sink = PeerSink(PEER_DIR)
    try:
        return {"sink_ceiling_emails_per_s": round(ceiling(sink, message, min(readers, 10_000)), 1),
                "sink_ceiling_message_bytes": len(message)}
    finally:
        sink.stop()
