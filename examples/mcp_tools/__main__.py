"""One command: the fake NWS, a worker and the MCP client for Seattle; prints the forecast.

    python -m examples.mcp_tools

Uses ``TROTH_URL`` when set, else starts an embedded troth server; stops everything it started.
"""

from __future__ import annotations

import re
import subprocess
import sys

from examples._common import ROOT, Processes, line_buffered, server

LAT, LON = 47.6062, -122.3321


def main() -> int:
    line_buffered()
    with server() as url, Processes(url) as procs:
        print(f"troth server: {url}")
        fake = procs.start("examples.mcp_tools.fake_nws", "--port", "0", name="fake_nws")
        nws = re.search(r"(http://\S+)", fake.wait_for(r"fake NWS listening on")).group(1)  # type: ignore[union-attr]
        print(f"fake NWS: {nws}")
        worker = procs.start("examples.mcp_tools.worker", env={"NWS_BASE_URL": nws}, name="worker")
        worker.wait_for(r"worker ready")
        print(f"worker started (pid {worker.pid})")
        print(f"calling the MCP tool get_forecast({LAT}, {LON}) through examples.mcp_tools.client ...")
        client = subprocess.run(
            [sys.executable, "-u", "-m", "examples.mcp_tools.client", "--lat", str(LAT), "--lon", str(LON)],
            env=procs.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        print()
        print(client.stdout.rstrip("\n"))
        if client.stderr.strip():
            print(client.stderr.rstrip("\n"), file=sys.stderr)
        print()
        print(f"client exited with {client.returncode}")
        code = client.returncode
        return code


if __name__ == "__main__":
    sys.exit(main())
