"""One command: ``python -m examples.async_http_api``.

Uses ``TROTH_URL`` when set, else an embedded server on a free loopback port; starts the gateway (on a free
port) and one worker (``WORK_DELAY_S`` defaults to 2 here so a few ``pending`` polls show); begins
``task-001`` and polls ``/wait`` until it is no longer pending, printing every poll; stops everything it
started; exits 0.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import httpx

from examples._common import Processes, line_buffered, server, url_from_env

JOB_ID = "task-001"
BODY = {"hello": "world"}
_LISTENING = re.compile(r"Gateway listening on (http://\S+)")


def main() -> int:
    line_buffered()
    with server() as url:
        print(f"troth server: {url}" + ("" if url_from_env() else " (embedded, in memory)"))
        with Processes(url) as procs:
            gateway = procs.start("examples.async_http_api.gateway", "--port", "0", name="gateway")
            listening = _LISTENING.search(gateway.wait_for("Gateway listening on"))
            assert listening is not None
            base = listening.group(1)
            print(f"[gateway] Gateway listening on {base}")
            delay = os.environ.get("WORK_DELAY_S", "2")
            worker = procs.start("examples.async_http_api.worker", env={"WORK_DELAY_S": delay}, name="worker")
            print(f"[worker]  {worker.wait_for('worker running')}")

            with httpx.Client(base_url=base, timeout=30) as http:
                begun = http.post("/begin", params={"id": JOB_ID}, json=BODY)
                print(f"POST /begin?id={JOB_ID} {json.dumps(BODY)} -> {begun.status_code} {begun.text}")
                if begun.status_code != 200:
                    return 1
                wait = begun.json()["wait"]
                deadline = time.monotonic() + 60
                while True:
                    polled = http.get(wait)
                    print(f"GET {wait} -> {polled.status_code} {polled.text}")
                    if polled.status_code != 200:
                        return 1
                    status = polled.json()["status"]
                    if status != "pending":
                        break
                    if time.monotonic() > deadline:
                        print(f"{JOB_ID} still pending after 60 s")
                        return 1
                    time.sleep(0.5)
            for line in worker.output[1:]:
                print(f"[worker]  {line}")
            return 0 if status == "resolved" else 1


if __name__ == "__main__":
    sys.exit(main())
