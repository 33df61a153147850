"""House rules that code review would otherwise have to catch."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import newsletter

ROOT = Path(newsletter.__file__).parent


def test_the_rooms_keep_their_import_contracts() -> None:
    """pyproject's [tool.importlinter] contracts: the layers of the rooms, the floor that
    imports no room, and newsletter never importing workers."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_newsletter_never_imports_workers() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n == "workers" or n.startswith("workers.")]
    assert offenders == []


def test_tasks_take_only_ids_and_plain_values() -> None:
    from workers import tasks

    allowed = {"int", "str", "list[int]", "bool"}
    for name, fn in vars(tasks).items():
        if getattr(fn, "name", "").startswith("newsletter."):
            for param in inspect.signature(fn.run).parameters.values():
                assert param.annotation in allowed, (name, param.name, param.annotation)
