"""Security benchmark: what authentication costs, and dispatch while 1,000 hostile sockets are open.

1. **auth cost** — create+settle pairs over 16 keep-alive clients (as ``benchmarks.server``) against a
   ``troth serve`` on a fresh SQLite file without authentication, with JWT authentication (an Ed25519 key;
   the token in ``head.auth`` and ``Authorization: Bearer``, as the SDKs send it) and with a static token
   file; the modes are interleaved over several rounds, so load from elsewhere on the machine hits them
   alike. Reports pairs/s, request p50/p99 and the server process's CPU time per request (from /proc,
   so load from other processes does not count) per run, and the median of each mode relative to "off".
2. **in-process cost** — the same create+settle requests through ``Engine.handle`` on an in-memory store,
   without and with JWT authentication (no HTTP, no other process): CPU microseconds per request, which
   the shared machine's noise does not blur as it blurs the HTTP figures.
3. **hostile sockets** — a server with authentication on and default bounds; a well-behaved worker
   measures create → ``execute`` on its stream (p50/p99) first alone, then with 1,000 hostile sockets
   open: 500 half-sent requests, 300 ``GET /poll`` without a token (answered 401, left idle) and 200
   streams of one token that never read (100 accepted: ``--max-connections-per-token 100``; the rest 503).

Run: ``python -m benchmarks.security`` (``--pairs``, ``--rounds``, ``--dispatches``, ``--hostile``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.server import dispatch_latency, start_server, throughput


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_keys(directory: Path) -> tuple[Path, str, Path, str]:
    """An Ed25519 public key file and a JWT it verifies; a static token file and its token."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = directory / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = jwt.encode({"prefix": "", "sub": "bench", "exp": int(time.time()) + 3600}, key, algorithm="EdDSA")
    static = "bench-static-token-0123456789abcdef"
    tokens = directory / "tokens"
    tokens.write_text(f"sha256:{hashlib.sha256(static.encode()).hexdigest()} prefix= name=bench\n")
    return public, token, tokens, static


async def auth_cost(args: argparse.Namespace, tmp: Path) -> None:
    public, token, tokens, static = make_keys(tmp)
    modes: dict[str, tuple[list[str], str | None]] = {
        "off": ([], None),
        "jwt": (["--auth-public-key", str(public)], token),
        "static": (["--auth-tokens", str(tokens)], static),
    }
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode, (extra, credential) in modes.items():
            store = tmp / f"auth-{mode}-{round_}.db"
            proc, port = start_server(str(store), *extra)
            try:
                cpu = cpu_seconds(proc.pid)
                tp = await throughput(port, args.pairs, args.clients, credential)
                tp["cpu_us"] = (cpu_seconds(proc.pid) - cpu) / (2 * args.pairs) * 1e6
            finally:
                proc.terminate()
                proc.wait(10)
            results[mode].append(tp)
            print(
                f"round {round_ + 1} auth {mode:6}  {tp['pairs_per_s']:7.0f} pairs/s  "
                f"p50 {tp['p50_ms']:.2f} ms  p99 {tp['p99_ms']:.2f} ms  "
                f"server CPU {tp['cpu_us']:.0f} µs/request",
                flush=True,
            )
    base = {k: statistics.median(r[k] for r in results["off"]) for k in ("pairs_per_s", "p50_ms", "cpu_us")}
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in base}
        print(
            f"median auth {mode:6}  {med['pairs_per_s']:7.0f} pairs/s "
            f"({(med['pairs_per_s'] / base['pairs_per_s'] - 1) * 100:+.1f} %)  "
            f"p50 {med['p50_ms']:.2f} ms ({(med['p50_ms'] / base['p50_ms'] - 1) * 100:+.1f} %)  "
            f"server CPU {med['cpu_us']:.0f} µs/request ({(med['cpu_us'] / base['cpu_us'] - 1) * 100:+.1f} %)"
        )


async def inproc_cost(args: argparse.Namespace, tmp: Path) -> None:
    from benchmarks.server import body
    from troth.server.auth import Auth, JwtVerifier
    from troth.server.engine import Engine
    from troth.server.store.sqlite import SqliteStore

    public, token, _, _ = make_keys(tmp)
    far = int(time.time() * 1000) + 3_600_000
    for round_ in range(args.rounds):
        for mode in ("off", "jwt"):
            auth = Auth(JwtVerifier.from_files([public])) if mode == "jwt" else None
            engine = Engine(SqliteStore(":memory:"), auth=auth)
            await engine.start()
            credential = token if auth is not None else None
            bearer = token if auth is not None else None
            n = args.pairs
            started = time.process_time()  # this process's CPU time: other load on the machine is not counted
            for i in range(n):
                pid = f"p-{i}"
                status, _ = await engine.handle(
                    body("promise.create", {"id": pid, "timeoutAt": far}, token=credential), bearer=bearer
                )
                assert status == 200
                settle = {"id": pid, "state": "resolved", "value": {}}
                status, _ = await engine.handle(
                    body("promise.settle", settle, token=credential), bearer=bearer
                )
                assert status == 200
            per_request = (time.process_time() - started) / (2 * n) * 1e6
            await engine.stop()
            print(
                f"round {round_ + 1} in-process auth {mode:3}  {per_request:6.1f} µs per request", flush=True
            )


async def open_hostile(port: int, count: int, token: str) -> list[asyncio.StreamWriter]:
    """``count`` hostile sockets: half half-sent requests, 30 % 401'd polls, 20 % streams never read."""
    writers: list[asyncio.StreamWriter] = []
    half, unauth = count // 2, count * 3 // 10
    for i in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if i < half:
            writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic")
        elif i < half + unauth:
            writer.write(f"GET /poll/h-g/h{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await reader.readline()
        else:
            auth = f"Authorization: Bearer {token}\r\n"
            writer.write(f"GET /poll/h-g/h-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
            await reader.readline()
        writers.append(writer)
    return writers


async def hostile_sockets(args: argparse.Namespace, tmp: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    public = tmp / "hostile-public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def mint(prefix: str, sub: str) -> str:
        claims = {"prefix": prefix, "sub": sub, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, key, algorithm="EdDSA")

    extra = ["--auth-public-key", str(public), "--max-connections-per-token", "100"]
    proc, port = start_server(str(tmp / "hostile.db"), *extra)
    try:
        worker = mint("w", "worker")
        alone = await dispatch_latency(port, args.dispatches, worker, group="w")
        print(
            f"dispatch, worker alone             p50 {alone['p50_ms']:.2f} ms  p99 {alone['p99_ms']:.2f} ms"
        )
        started = time.perf_counter()
        writers = await open_hostile(port, args.hostile, mint("h-", "hostile"))
        opened = time.perf_counter() - started
        crowded = await dispatch_latency(port, args.dispatches, worker, group="w")
        print(
            f"dispatch, {args.hostile} hostile sockets open  p50 {crowded['p50_ms']:.2f} ms  "
            f"p99 {crowded['p99_ms']:.2f} ms  (sockets opened in {opened:.1f} s)"
        )
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    finally:
        proc.terminate()
        proc.wait(10)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "auth"):
            await auth_cost(args, Path(tmp))
        if args.part in ("all", "inproc"):
            await inproc_cost(args, Path(tmp))
        if args.part in ("all", "hostile"):
            await hostile_sockets(args, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dispatches", type=int, default=500)
    parser.add_argument("--hostile", type=int, default=1000)
    parser.add_argument("--part", choices=["all", "auth", "inproc", "hostile"], default="all")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
