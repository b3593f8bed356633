"""One command: ``python -m examples.human_in_the_loop``.

Uses ``TROTH_URL`` when set, else an embedded server on a free loopback port; starts the gateway (on a free
port) and one worker; starts workflow ``hitl-demo`` through the gateway; "clicks" the printed link; prints
the final message; stops everything it started; exits 0.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time

import httpx

from examples._common import Process, Processes, line_buffered, server, url_from_env

WORKFLOW_ID = "hitl-demo"
_LISTENING = re.compile(r"Gateway listening on (http://\S+)")
_CLICK = "CLICK TO RESOLVE: "


class _Request(threading.Thread):
    """The blocking ``POST /start-workflow``, on a thread."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.status = 0
        self.body = ""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            answer = httpx.post(self.url, json={"workflow_id": WORKFLOW_ID}, timeout=300)
            self.status, self.body = answer.status_code, answer.text
        except httpx.HTTPError as exc:
            self.error = exc


def _link(worker: Process, request: _Request, timeout: float = 10.0) -> str | None:
    """The link the worker prints; ``None`` if the request ended first or no new link came in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and request.is_alive():
        try:
            return worker.wait_for(_CLICK, timeout=0.2).split(_CLICK, 1)[1].strip()
        except TimeoutError:
            continue
    return None


def main() -> int:
    line_buffered()
    with server() as url:
        print(f"troth server: {url}" + ("" if url_from_env() else " (embedded, in memory)"))
        with Processes(url) as procs:
            gateway = procs.start("examples.human_in_the_loop.gateway", "--port", "0", name="gateway")
            listening = _LISTENING.search(gateway.wait_for("Gateway listening on"))
            assert listening is not None
            base = listening.group(1)
            print(f"[gateway] Gateway listening on {base}")
            worker = procs.start(
                "examples.human_in_the_loop.worker", env={"PUBLIC_BASE_URL": base}, name="worker"
            )
            print(f"[worker]  {worker.wait_for('worker running')}")

            body = json.dumps({"workflow_id": WORKFLOW_ID})
            print(f"POST {base}/start-workflow {body}  (blocks until a person clicks)")
            request = _Request(f"{base}/start-workflow")
            request.start()

            link = _link(worker, request)
            if link is not None:
                print(f"[worker]  {_CLICK}{link}")
                print(f"[worker]  {worker.wait_for('blocked, waiting on human interaction')}")
                _click(link)
                print(f"[worker]  {worker.wait_for('unblocked, promise resolved')}")
            elif request.is_alive():
                # Started by an earlier, interrupted run on this server: its link was printed back then.
                print(f"(no new link: {WORKFLOW_ID} was already waiting on this server)")
                _click(f"{base}/resolve/{WORKFLOW_ID}:1")
            else:
                print(
                    f"({WORKFLOW_ID} had already completed on this server: the same answer came back at once)"
                )
            request.join(60)
            if request.status == 0:
                print(f"the workflow request failed: {request.error or 'no answer within 60 s'}")
                return 1
            print(f"POST /start-workflow -> {request.status} {request.body}")
            return 0 if request.status == 200 else 1


def _click(link: str) -> None:
    print("a person clicks the link...")
    clicked = httpx.get(link, timeout=30)
    print(f"GET {link} -> {clicked.status_code} {clicked.text}")


if __name__ == "__main__":
    sys.exit(main())
