"""Cached, locked installs of other systems' clients: Python venvs built by pip, packages installed by npm.

This module owns how troth's benchmarks and compatibility tests get software that is *not* troth's own
dependency (the official ``resonate-sdk``, DBOS, Restate's SDK and server): each install lands in a cache
folder outside the repository (``~/.cache/troth/<kind>/<name>``; ``XDG_CACHE_HOME`` moves it, and
``TROTH_PEERS_CACHE`` / ``TROTH_COMPAT_CACHE`` override the peers' and the compat tests' roots), is built
once under a file lock (several pytest workers or benchmark runs may ask at the same time), in a scratch
folder that is renamed into place only after an import check passed, so a half-built install is never
reused. A folder is ready when it holds ``.troth-ready``.

It imports nothing of troth and nothing of pytest: the compat tests turn an :class:`InstallError` into a
skip (or a failure under ``TROTH_REQUIRE_SERVICES=1``), the peer benchmark into a "cannot run" line.

Rejected: installing the peers into troth's own venv (their pins would fight ours, and a user of troth
would inherit them); ``pip install --target`` without a venv (console scripts and compiled wheels for
another interpreter do not work that way); re-installing on every run (minutes per run on these machines).
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

READY = ".troth-ready"


class InstallError(Exception):
    """Something could not be installed; the message is the reason, fit to show a user."""


class FetchError(InstallError):
    """The package registry did not deliver (unreachable, or no such version for this interpreter)."""


def cache_root(kind: str) -> Path:
    """``<cache>/troth/<kind>``: ``TROTH_<KIND>_CACHE`` if set, else under ``XDG_CACHE_HOME`` or ~/.cache."""
    configured = os.environ.get(f"TROTH_{kind.upper()}_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "troth" / kind


# ── interpreters ────────────────────────────────────────────────────────────────────────────────────


def python_version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (int(out[0]), int(out[1])) if len(out) == 2 else None


def exact_version(exe: str) -> str:
    """``3.12.1``: the full version of an interpreter (part of a cached venv's name)."""
    return subprocess.run(
        [exe, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def find_python(major: int, minor: int) -> str | None:
    """An interpreter of exactly ``major.minor``: ``TROTH_PYTHON312``-style override, PATH, then pyenv."""
    candidates: list[str] = []
    override = os.environ.get(f"TROTH_PYTHON{major}{minor}")
    if override:
        candidates.append(override)
    on_path = shutil.which(f"python{major}.{minor}")
    if on_path:
        candidates.append(on_path)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv"]
    for root in filter(None, roots):
        candidates.extend(sorted(glob.glob(f"{root}/versions/{major}.{minor}.*/bin/python3"), reverse=True))
    for exe in candidates:
        if python_version(exe) == (major, minor):
            return exe
    return None


# ── building once ───────────────────────────────────────────────────────────────────────────────────


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first building it with ``build(scratch)`` unless a ready copy is there.

    Holds ``<parent>/.<name>.lock`` while it looks and builds; the scratch folder is renamed into place
    only when ``build`` returned, and removed whatever happened.
    """
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / READY).exists():
            return target
        scratch = root / f".{target.name}.building-{uuid.uuid4().hex[:8]}"
        try:
            scratch.mkdir()
            build(scratch)
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
            (target / READY).write_text(target.name + "\n", encoding="utf-8")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def is_ready(target: Path) -> bool:
    return (target / READY).exists()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


def python_env(
    root: Path, name: str, python: str, requirements: Sequence[str], check_import: str, timeout: float = 900
) -> Path:
    """The python of a cached venv ``root/name`` holding ``requirements`` (pip specs), built if missing.

    Raises :class:`FetchError` when pip cannot install them, :class:`InstallError` when they install but
    ``import check_import`` fails.
    """

    def build(scratch: Path) -> None:
        try:
            subprocess.run([python, "-m", "venv", str(scratch)], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallError(f"cannot create a venv with {python}: {exc}") from exc
        venv_python = str(scratch / "bin" / "python")
        pip = subprocess.run(
            [venv_python, "-m", "pip", "install", "--disable-pip-version-check", *requirements],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if pip.returncode != 0:
            raise FetchError(
                f"cannot pip install {' '.join(requirements)} for {python} (is PyPI reachable?):\n"
                + _tail(pip.stdout + pip.stderr)
            )
        check = subprocess.run(
            [venv_python, "-c", f"import {check_import}"], capture_output=True, text=True, timeout=120
        )
        if check.returncode != 0:
            raise InstallError(f"{' '.join(requirements)} installed but does not import:\n{check.stderr}")

    # venvs hard-code their own path in scripts; the interpreter itself is path-independent, and callers
    # run only ``bin/python``, so renaming the folder into place is safe.
    return build_once(root / name, build) / "bin" / "python"


def npm_env(root: Path, name: str, packages: Sequence[str], check: Callable[[Path], None]) -> Path:
    """The ``node_modules`` of a cached ``npm install`` of ``packages`` (``name@version`` specs).

    ``check(node_modules)`` raises :class:`InstallError` when what npm installed is unusable.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("no `npm` on PATH")

    def build(scratch: Path) -> None:
        (scratch / "package.json").write_text('{"private": true}\n', encoding="utf-8")
        install = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", *packages],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if install.returncode != 0:
            raise FetchError(
                f"cannot npm install {' '.join(packages)} (is the npm registry reachable?):\n"
                + _tail(install.stdout + install.stderr)
            )
        check(scratch / "node_modules")

    return build_once(root / name, build) / "node_modules"
