"""``troth token create`` / ``troth token static`` and ``--token``/``TROTH_TOKEN`` on the client commands,
against a real ``troth serve`` with authentication on; and an example application run end to end through
``TROTH_URL``, ``TROTH_TOKEN`` and ``TROTH_CA`` against a server with TLS and JWT authentication."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from authkit import CertificateAuthority, Keys
from examples._common import ROOT
from helpers import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def troth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
    return subprocess.run(
        [sys.executable, "-m", "troth.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ec"])
def test_a_minted_token_works_within_its_prefix(kind: str, tmp_path: Path) -> None:
    keys = Keys.generate(tmp_path, kind)
    minted = troth("token", "create", "--key", str(keys.private_path), "--prefix", "cli-", "--ttl", "10m")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    admin = troth("token", "create", "--key", str(keys.private_path), "--admin").stdout.strip()
    with ServerProcess(":memory:", args=["--auth-public-key", str(keys.public_path)]) as server:
        url = server.url
        assert troth("-S", url, "-T", token, "promises", "create", "cli-1", "--timeout", "1h").returncode == 0
        env = {"TROTH_URL": url, "TROTH_TOKEN": token}
        assert troth("promises", "get", "cli-1", env=env).returncode == 0
        outside = troth("promises", "create", "other-1", "--timeout", "1h", env=env)
        assert outside.returncode == 1
        assert outside.stderr.strip() == "troth: promise.create answered 403: Forbidden"
        anonymous = troth("-S", url, "promises", "get", "cli-1")
        assert anonymous.stderr.strip() == "troth: promise.get answered 401: Unauthorized"
        listed = troth("-S", url, "-T", admin, "promises", "search", "--json")
        assert listed.returncode == 0 and "cli-1" in listed.stdout
        # the command-level -T wins over TROTH_TOKEN
        assert troth("promises", "get", "cli-1", "-T", "junk", env=env).returncode == 1


def test_token_create_mistakes_are_one_line(tmp_path: Path) -> None:
    keys = Keys.generate(tmp_path)
    no_scope = troth("token", "create", "--key", str(keys.private_path))
    assert no_scope.returncode == 2 and "--prefix" in no_scope.stderr
    public = troth("token", "create", "--key", str(keys.public_path), "--prefix", "a-")
    assert public.returncode == 1
    assert public.stderr.count("\n") == 1 and "not an unencrypted PEM private key" in public.stderr
    missing = troth("token", "create", "--key", str(tmp_path / "nope.pem"), "--prefix", "a-")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    bad_ttl = troth("token", "create", "--key", str(keys.private_path), "--prefix", "a-", "--ttl", "soon")
    assert bad_ttl.returncode == 2


def test_a_static_token_and_its_file_line(tmp_path: Path) -> None:
    made = troth("token", "static", "--prefix", "st-", "--name", "team")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    line = made.stderr.strip().split(": ", 1)[1]
    assert line.startswith("sha256:") and token not in line and "prefix=st-" in line
    tokens = tmp_path / "tokens"
    tokens.write_text(line + "\n", encoding="utf-8")
    with ServerProcess(":memory:", args=["--auth-tokens", str(tokens)]) as server:
        env = {"TROTH_URL": server.url, "TROTH_TOKEN": token}
        assert troth("promises", "create", "st-1", "--timeout", "1h", env=env).returncode == 0
        assert troth("promises", "create", "zz-1", "--timeout", "1h", env=env).returncode == 1


def test_an_example_runs_with_troth_url_token_and_ca(tmp_path: Path) -> None:
    """``python -m examples.hello_world`` (a worker process, ``troth invoke``, ``troth tree`` and an SDK
    client) against a TLS server with authentication, configured only through the environment."""
    keys = Keys.generate(tmp_path)
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("server")
    args = ["--auth-public-key", str(keys.public_path), "--tls-cert", str(cert), "--tls-key", str(key)]
    with ServerProcess(str(tmp_path / "troth.db"), args=args, ca=ca.path) as server:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
        env = {**base, "TROTH_URL": server.url, "TROTH_CA": str(ca.path), "TROTH_TOKEN": keys.token("")}
        run = subprocess.run(
            [sys.executable, "-m", "examples.hello_world", "--id", "greet-tls"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Hello, World!" in run.stdout
        assert "greet-tls" in run.stdout  # troth tree

        refused = subprocess.run(
            [sys.executable, "-m", "examples.hello_world.worker"],
            cwd=ROOT,
            env={**env, "TROTH_TOKEN": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert "SSE connection refused with HTTP 401 (no valid token" in refused.stderr
        assert "Unclosed client session" not in refused.stderr
