"""Counts the cells the permission and credential matrices ran, for the run's summary."""

from __future__ import annotations

from collections import Counter

CASES: Counter[str] = Counter()


def count(matrix: str, cases: int = 1) -> None:
    CASES[matrix] += cases
