"""The delivery benchmark: our pipeline, a raw SMTP ceiling and a peer, in one run.

    .venv/bin/python bench/run.py --quick       # ~2 minutes: 5k vs 10k readers
    .venv/bin/python bench/run.py                # full: 10k vs 100k readers

Modules by concept: ``config`` (where things run), ``seeding`` (the data set, by COPY),
``sinks`` (smtp-sink, aiosmtpd), ``processes`` (the celery worker and what it reports),
``phases`` (one module per phase), ``report`` (RESULTS.md and results.jsonl), ``cli``.
See bench/README.md for what each phase measures. Not part of CI.
"""
