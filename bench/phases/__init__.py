"""The benchmark's phases, one module each: edition (small and large runs), ceiling, peer
and same-size, alert, subscribe. Each starts from a fresh database and stops what it started."""
