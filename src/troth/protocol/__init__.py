"""Wire records, request envelopes and their validation (Resonate protocol ``2026-04-01``). No I/O."""

from troth.protocol.records import PROTOCOL_VERSION, Promise, Schedule, Task, Value

__all__ = ["PROTOCOL_VERSION", "Promise", "Schedule", "Task", "Value"]
