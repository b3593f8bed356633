"""Smoke run of the soak benchmark (``benchmarks/soak.py``), so that it never rots: a few seconds of the
mixed workflows against a real ``troth serve``, two real worker processes, one of them SIGKILLed and
replaced. It checks what the benchmark checks — no workflow lost, no step of a finished workflow missing,
no step run twice except after a kill — and asserts nothing about speed (``make bench-soak`` measures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, "-m", "benchmarks.soak", "--seconds", "8", "--rate", "8", "--workers", "2"]
    argv += ["--kill-every", "3", "--every", "2", "--json", str(out), "--keep", str(tmp_path / "keep")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert summary["started"] >= 40, summary
    assert summary["finished"] == summary["started"], summary
    assert (summary["lost"], summary["missing_steps"], summary["repeated_steps"]) == (0, 0, 0), summary
    assert summary["worker_kills"] >= 1, summary
    assert summary["server_rss_mb_max"] > 0 and summary["worker_rss_mb_max"] > 0, summary
