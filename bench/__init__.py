"""Benchmarks; they run from a checkout, next to the tests they borrow helpers from."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
