"""Smoke run of ``benchmarks/limits_unused.py`` so that it never rots: one round, a few workflows, with this
checkout and with ``HEAD`` unpacked from git (a shallow clone has it; the benchmark's default, the commit
before limits by key, may not be there), each in its own child process with its source first on the path —
the benchmark refuses a child that ran another troth. It checks that both
versions ran and reported their figures; it asserts nothing about speed (``make bench-limits-unused``
measures)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_limits_unused_smoke() -> None:
    argv = [sys.executable, "-m", "benchmarks.limits_unused", "--rounds", "1", "--sequential", "2"]
    argv += ["--workflows", "4", "--concurrency", "2", "--before", "HEAD"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    rows = re.findall(r"^\s+1\s+(before|after)\s+([0-9.]+)\s+([0-9.]+)$", done.stdout, re.MULTILINE)
    assert sorted(name for name, _, _ in rows) == ["after", "before"], done.stdout
    assert all(float(steps) > 0 for _, _, steps in rows), done.stdout
    assert "per-round after/before" in done.stdout
