"""The README's test-kit sample passes in a fresh project under plain ``pytest`` (issue 10, item 7).

The sample is copied from README.md into an empty directory (no pytest or pytest-asyncio configuration)
and run by ``python -m pytest`` in a subprocess with the installed package: once as it is here (with
pytest-asyncio installed, in its default strict mode, which does not run unmarked ``async def`` tests), and
once with pytest-asyncio disabled, as in a project that installed only troth and pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_sample() -> str:
    text = README.read_text()
    section = text[text.index("### Testing workflows") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's testing section has no python sample"
    return match.group(1)


@pytest.mark.parametrize("plugins", [[], ["-p", "no:asyncio"]], ids=["asyncio-strict", "no-asyncio"])
def test_the_readme_sample_passes_in_a_fresh_project(tmp_path: Path, plugins: list[str]) -> None:
    (tmp_path / "test_journey.py").write_text(readme_sample())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_", "PYTEST"))}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins, "test_journey.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout  # no "coroutine was never awaited" and alike
