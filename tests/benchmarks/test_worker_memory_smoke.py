"""Smoke run of the worker-memory benchmark (``benchmarks/worker_memory.py``), so that it never rots: a real
``troth serve``, a real worker process, a few workflows started with ``rpc`` (and, in the other mode, with
``begin_run`` inside the worker) that suspend on a latent promise or a long sleep; the reports idle and
suspended; the latent ones resumed. It checks what the benchmark checks — every workflow suspended, every
resumed one finished with the right result — and that the reports carry their figures. It asserts nothing
about memory (``make bench-worker-memory`` measures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.mark.parametrize("mode", ["rpc", "run"])
def test_worker_memory_smoke(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "wmem.json"
    argv = [sys.executable, "-m", "benchmarks.worker_memory", "--workflows", "40", "--mode", mode]
    argv += ["--settle", "0", "--timeout", "240", "--json", str(out), "--keep", str(tmp_path / "keep")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["workflows"] == 40 and figures["mode"] == mode
    assert figures["resumed"] == 20 and figures["wrong"] == {}, figures
    for report in ("idle", "suspended", "resumed_report"):
        assert figures[report]["rss_mb"] > 0 and figures[report]["gc_objects"] > 0, figures[report]
    assert figures["suspended"]["tables"]["frontiers"] >= 40, figures["suspended"]["tables"]
    assert figures["server_rss_mb_suspended"] > 0 and figures["client_rss_mb_suspended"] > 0
    if mode == "run":
        assert figures["suspended"]["handles"] == 40
