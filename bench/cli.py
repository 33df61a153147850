"""The command line: which phases run, at what size, in what order; then the report."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.config import PEER_DIR, log
from bench.phases.alert import alert_latency
from bench.phases.ceiling import ceiling, sample_message
from bench.phases.edition import run_edition
from bench.phases.peer import peer, peer_message_bytes
from bench.phases.same_size import same_size
from bench.phases.subscribe import subscribe_throughput
from bench.report import machine, report
from bench.sinks import Sink


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Delivery benchmark (see bench/README.md).")
    ap.add_argument("--quick", action="store_true", help="5k vs 10k readers, small phases")
    ap.add_argument("--readers", type=int, help="readers in the large run (default 100000)")
    ap.add_argument("--small", type=int, help="readers in the RSS comparison run")
    ap.add_argument("--articles", type=int, default=300)
    ap.add_argument("--skip", default="", help="comma list: small,peer,ceiling,alert,subscribe")
    ap.add_argument("--profile", action="store_true", help="py-spy the large run's worker")
    ap.add_argument("--zones", type=int, default=0, choices=range(0, 25), metavar="N",
                    help="spread the editions' readers over N time zones (1-24) and send the "
                         "schedule's edition, released per zone; 0: no zones (the default)")
    ap.add_argument("--languages", default="",
                    help="comma list, e.g. en,ar: articles in each in turn, readers reading "
                         "one or both (default: one language, readers from before languages)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    r: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "machine": machine()}
    smtp_sink_phases(args, skip, r)
    if "peer" not in skip:
        peer_phases(args.quick, r)
    if "alert" not in skip:
        r["alert"] = alert_latency(1000)
        log(f"alert: {r['alert']}")
    if "subscribe" not in skip:
        r["subscribe"] = subscribe_throughput(600 if args.quick else 3000,
                                              paced_seconds=3 if args.quick else 10)
        log(f"subscribe: {r['subscribe']}")
    report(args.quick, r)


def smtp_sink_phases(args: argparse.Namespace, skip: set[str], r: dict) -> None:
    """The editions (small for the RSS comparison, then large) and the ceiling, on one sink."""
    large = args.readers or (10_000 if args.quick else 100_000)
    langs = tuple(filter(None, (v.strip() for v in args.languages.split(","))))
    if langs:
        r["languages"] = list(langs)
    small = args.small or (5_000 if args.quick else 10_000)
    sink = Sink()
    r["sink"] = sink.kind
    log(f"sink: {sink.kind} on {sink.url}")
    try:
        if "small" not in skip:
            r["small"] = run_edition(small, args.articles, sink, "small", zones=args.zones,
                                     languages=langs)
        r["large"] = run_edition(large, args.articles, sink, "large", profile=args.profile,
                                 zones=args.zones, languages=langs)
        if "ceiling" not in skip:
            msg = sample_message()
            r["message_bytes"] = len(msg)
            n = 2000 if args.quick else 20000
            r["ceiling_emails_per_s"] = round(ceiling(sink, msg, n), 1)
            r["ceiling_smtplib_emails_per_s"] = round(ceiling(sink, msg, n, "smtplib"), 1)
            log(f"ceiling: {r['ceiling_emails_per_s']}/s with {len(msg)} B messages "
                f"(smtplib.sendmail: {r['ceiling_smtplib_emails_per_s']}/s)")
    finally:
        sink.stop()


def peer_phases(quick: bool, r: dict) -> None:
    """The peer's own run, then ours at its message size through its kind of sink."""
    # --quick: 600 readers (the peer's rate is steady from a few hundred; 2,000 took
    # half a minute of the two the quick run may last on this machine).
    r["peer_n"] = 600 if quick else 2000
    r["peer_emails_per_s"] = peer(r["peer_n"])
    r["peer_message_bytes"] = peer_message_bytes()
    log(f"peer: {r['peer_emails_per_s']}/s, {r['peer_message_bytes']} B messages")
    if (PEER_DIR / "sink.py").exists():
        r["same_size"] = same_size(1_000 if quick else 20_000)
        log(f"same size, peer's sink: {r['same_size']['emails_per_s']}/s, "
            f"{r['same_size']['avg_message_bytes']} B messages")
