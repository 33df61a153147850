"""Delivery benchmark: ``.venv/bin/python bench/run.py [--quick] …`` (see bench/README.md).

A thin entry point kept for the command the docs give; the harness is the ``bench`` package.
"""

import sys
from pathlib import Path

# Run as a script, Python puts bench/ itself first on the path, where its modules would
# shadow top-level ones; the repository root is what the package is imported from.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
