"""Finding 2 (an open server on the network) and TLS, against real ``troth serve`` processes.

* ``--host 0.0.0.0`` without authentication exits at once with one line; ``--insecure`` allows it; with a
  key it starts, and its metrics listener still binds loopback unless ``--metrics-host`` says otherwise.
* TLS with a CA and certificates made in the test: the troth SDK (requests and its SSE stream) and the CLI
  verify the server's certificate against ``ca``/``--ca`` and refuse one they cannot verify; mutual TLS
  (``--tls-client-ca``) refuses a client without a certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvloop

from authkit import CertificateAuthority, Keys
from helpers import ServerProcess, free_port, server_command
from troth import Context, Troth
from troth.protocol import messages as wire
from troth.sdk.errors import ConnectorError, TrothError
from troth.sdk.transport import HttpTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server_command(), "serve", "--store", ":memory:", "--port", "0", "--metrics-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listening_address(port: int) -> str | None:
    """The local address a TCP socket listens on at ``port`` (from /proc/net/tcp), e.g. ``127.0.0.1``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            raw = bytes.fromhex(address)[::-1]
            return socket.inet_ntoa(raw)
    return None


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_an_open_non_loopback_bind_is_refused_with_one_line(host: str) -> None:
    done = serve("--host", host)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"troth: refusing to serve {host} without authentication")
    assert "--insecure" in lines[0]


def test_insecure_opens_it_with_a_warning() -> None:
    server = ServerProcess(":memory:", host="0.0.0.0", args=["--insecure"])
    with server:
        assert "without authentication (--insecure)" in server.stderr
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


def test_with_a_key_it_serves_and_metrics_stay_on_loopback(tmp_path: Path) -> None:
    keys = Keys.generate(tmp_path)
    metrics = free_port()
    args = ["--auth-public-key", str(keys.public_path)]
    with ServerProcess(":memory:", host="0.0.0.0", args=args, metrics_port=metrics) as server:
        assert listening_address(server.port or 0) == "0.0.0.0"
        assert listening_address(metrics) == "127.0.0.1"
    metrics = free_port()
    with ServerProcess(
        ":memory:", host="0.0.0.0", args=[*args, "--metrics-host", "0.0.0.0"], metrics_port=metrics
    ):
        assert listening_address(metrics) == "0.0.0.0"


def test_issuer_without_a_key_and_half_tls_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in [
        (["--auth-audience", "x"], "need --auth-public-key"),
        (["--tls-cert", str(tmp_path / "c.pem")], "needs both --tls-cert and --tls-key"),
        (["--tls-client-ca", str(tmp_path / "ca.pem")], "--tls-client-ca needs --tls-cert"),
        (["--auth-public-key", str(tmp_path / "missing.pem")], "cannot read the auth public key"),
    ]:
        done = serve(*args)
        assert done.returncode == 1, args
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)


# ─── TLS ────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_server(ca: CertificateAuthority) -> ServerProcess:
    cert, key = ca.issue("server")
    with ServerProcess(
        ":memory:", args=["--tls-cert", str(cert), "--tls-key", str(key)], ca=ca.path
    ) as server:
        yield server


async def _double(ctx: Context, x: int) -> int:
    return x * 2


async def _workflow(ctx: Context, x: int) -> int:
    return await ctx.run(_double, x) + 1


def test_the_sdk_verifies_the_server_with_its_ca_and_runs_a_workflow(
    tls_server: ServerProcess, ca: CertificateAuthority
) -> None:
    async def main() -> int:
        async with Troth(tls_server.url, ca=str(ca.path), group="tls") as troth:
            troth.register(_workflow, name="workflow")
            troth.register(_double, name="double")
            return int(await troth.run("tls-1", _workflow, 20))

    assert tls_server.url.startswith("https://")
    assert asyncio.run(main()) == 41


def test_the_sdk_refuses_a_server_it_cannot_verify(tls_server: ServerProcess, tmp_path: Path) -> None:
    other = CertificateAuthority.create(tmp_path, "another CA")

    async def main(ca: str | None) -> None:
        async with Troth(tls_server.url, ca=ca, group="tls", request_timeout=5) as troth:
            await troth.promises.get("nothing")

    for ca in [None, str(other.path)]:
        with pytest.raises((TrothError, ssl.SSLError, OSError)) as caught:
            asyncio.run(main(ca))
        assert "certificate" in str(caught.value).lower(), caught.value


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_request_refuses_a_certificate_it_cannot_verify_at_once(
    tls_server: ServerProcess,
    ca: CertificateAuthority,
    tmp_path: Path,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Requests alone (no stream first): retrying cannot fix a certificate, so no backoff (without a bound,
    backing off would never end). On asyncio's loop and on uvloop's (its TLS is its own)."""
    other = CertificateAuthority.create(tmp_path, "yet another CA")

    async def main(ca: str | None) -> str:
        transport = HttpTransport(tls_server.url, ca=ca, unreachable_timeout=None)
        try:
            answer = await transport.request(wire.promise_get("tls-nothing"))
            return str(answer.status)
        except ConnectorError as exc:
            return str(exc)
        finally:
            await transport.stop()

    for wrong in [None, str(other.path)]:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            refused = runner.run(main(wrong))
        assert "promise.get: the certificate of https://" in refused and "cannot be verified" in refused
    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert runner.run(main(str(ca.path))) == "404"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "troth.cli", *args], capture_output=True, text=True, timeout=30
    )


def test_the_cli_verifies_with_ca_and_refuses_without(
    tls_server: ServerProcess, ca: CertificateAuthority
) -> None:
    ok = cli("-S", tls_server.url, "--ca", str(ca.path), "promises", "create", "tls-cli", "--timeout", "1h")
    assert ok.returncode == 0, ok.stderr
    refused = cli("-S", tls_server.url, "promises", "get", "tls-cli")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate verify failed" in lines[0], lines


def test_mutual_tls_refuses_a_client_without_a_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    cert, key = ca.issue("mtls-server")
    client_cert, client_key = ca.issue("worker", server=False)
    bundle = tmp_path / "worker.pem"
    bundle.write_bytes(client_cert.read_bytes() + client_key.read_bytes())
    args = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca.path)]
    server = ServerProcess(":memory:", args=args, ca=ca.path)
    server.verify = ssl.create_default_context(cafile=str(ca.path))
    server.verify.load_cert_chain(str(client_cert), str(client_key))
    with server:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.url}/health", verify=ssl.create_default_context(cafile=ca.path), timeout=5)
        assert server.get("/health").status_code == 200
        ok = cli(
            "-S",
            server.url,
            "--ca",
            str(ca.path),
            "--client-cert",
            str(bundle),
            "promises",
            "create",
            "m-1",
            "--timeout",
            "1h",
        )
        assert ok.returncode == 0, ok.stderr
        refused = cli("-S", server.url, "--ca", str(ca.path), "promises", "get", "m-1")
        assert refused.returncode == 1

        async def main() -> str:
            async with Troth(
                server.url, ca=str(ca.path), client_cert=(str(client_cert), str(client_key))
            ) as t:
                handle = await t.get("m-1")
                return handle.id

        assert asyncio.run(main()) == "m-1"


def test_mutual_tls_counts_as_authentication_for_a_non_loopback_bind(ca: CertificateAuthority) -> None:
    cert, key = ca.issue("wide-server")
    args = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca.path)]
    server = ServerProcess(":memory:", host="0.0.0.0", args=args)
    server.ready_status = lambda: 200  # type: ignore[method-assign]  # no certificate names 0.0.0.0
    with server:
        assert "troth: listening on https://0.0.0.0:" in server.stderr
