"""The peer comparison's report: one Markdown table (printed, and written with the raw figures as JSON).

Rows are the workloads' figures, columns the peers. Each peer's cell carries, in brackets, how many times
better its troth counterpart (the peer's ``versus``: troth local in memory for in-memory peers, troth
remote otherwise) did: ``(2.0×)`` means troth's latency was half the peer's, or its throughput twice;
below ``1.0×`` the peer was better. A cell never hides why it is empty: "cannot run", "impossible" and
"error" each come with a note under the table.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.peers.catalogue import BY_KEY
from benchmarks.peers.harness import Outcome, PeerReport
from benchmarks.peers.workloads import Params


@dataclass(frozen=True)
class Metric:
    workload: str
    field: str
    label: str
    unit: str
    higher_better: bool = False


def metrics(p: Params) -> list[Metric]:
    rows = [
        Metric("A", "p50_ms", "A 1-step workflow, p50", "ms"),
        Metric("A", "p99_ms", "A 1-step workflow, p99", "ms"),
        Metric(
            "B",
            "steps_per_s",
            f"B {p.b_workflows} × {p.b_steps} steps, {p.b_concurrency} in flight",
            "steps/s",
            higher_better=True,
        ),
    ]
    rows += [Metric("C", f"fan{n}_ms", f"C fan-out of {n}", "ms") for n, _ in p.c_sizes]
    sleeps = f"D {p.d_sleeps} × {p.d_seconds:g} s sleeps, lateness"
    rows += [Metric("D", "p50_ms", f"{sleeps} p50", "ms"), Metric("D", "p99_ms", f"{sleeps} p99", "ms")]
    rows.append(Metric("E", "median_ms", "E worker SIGKILLed → standby finishes", "ms"))
    return rows


def number(value: float, unit: str) -> str:
    if unit == "ms" and value >= 1000:
        return f"{value / 1000:.1f} s"
    if unit == "steps/s":
        return f"{value:,.0f} steps/s"
    digits = 2 if value < 10 else (1 if value < 100 else 0)
    return f"{value:,.{digits}f} {unit}"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


class Table:
    def __init__(self, reports: dict[str, PeerReport], params: Params) -> None:
        self.reports = reports
        self.params = params
        self.notes: list[str] = []

    def note(self, text: str) -> int:
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1

    def cell(self, report: PeerReport, metric: Metric) -> str:
        if report.unavailable is not None:
            return f"cannot run [{self.note(f'{report.peer.label}: cannot run: {report.unavailable}')}]"
        outcome = report.outcomes.get(metric.workload)
        if outcome is None:
            return "—"
        if outcome.unsupported is not None:
            return (
                f"impossible [{self.note(f'{report.peer.label}, {metric.workload}: {outcome.unsupported}')}]"
            )
        value = outcome.median(metric.field)
        if value is None:
            first = outcome.errors[0] if outcome.errors else "no figure"
            return f"error [{self.note(f'{report.peer.label}, {metric.workload}: {first}')}]"
        text = number(value, metric.unit)
        if metric.workload == "E" and any(r.get("restart") for r in outcome.runs):
            text += " (restart)"
        ratio = self.ratio(report, metric, value)
        if ratio is not None:
            text += f" ({ratio:.0f}×)" if ratio >= 10 else f" ({ratio:.{1 if ratio >= 1 else 2}f}×)"
        if outcome.errors:
            rounds = len(outcome.errors) + len(outcome.runs)
            why = (
                f"{report.peer.label}, {metric.workload}: failed in {len(outcome.errors)} of {rounds} rounds"
            )
            text += f" [{self.note(f'{why}: {outcome.errors[0]}')}]"
        return text

    def ratio(self, report: PeerReport, metric: Metric, value: float) -> float | None:
        versus = self.reports.get(report.peer.versus)
        if versus is None or versus is report or report.peer.key.startswith("troth-"):
            return None
        outcome = versus.outcomes.get(metric.workload)
        theirs = outcome.median(metric.field) if outcome else None
        if not theirs or not value:
            return None
        return theirs / value if metric.higher_better else value / theirs

    def markdown(self) -> str:
        columns = list(self.reports.values())
        lines = [
            "| workload | " + " | ".join(r.peer.label for r in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for metric in metrics(self.params):
            if not any(metric.workload in r.outcomes or r.unavailable for r in columns):
                continue
            lines.append(f"| {metric.label} | " + " | ".join(self.cell(r, metric) for r in columns) + " |")
        return "\n".join(lines)


def legend(reports: dict[str, PeerReport]) -> list[str]:
    pairs = [
        f"{r.peer.label} → {reports[r.peer.versus].peer.label}"
        for r in reports.values()
        if not r.peer.key.startswith("troth-") and r.peer.versus in reports
    ]
    out = []
    if pairs:
        out.append(
            "(n×): how many times better the peer's troth counterpart did (lower latency, higher "
            "throughput); below 1.0× the peer did better. Counterparts: " + "; ".join(pairs) + "."
        )
    e_runs = [run for r in reports.values() if "E" in r.outcomes for run in r.outcomes["E"].runs]
    if any(run.get("restart") for run in e_runs):
        out.append(
            "(restart): the system has no standby worker that takes over; a warm process opened the "
            "store after the kill and recovered the workflow."
        )
    for r in reports.values():
        bits = [f"{k} {v}" for k, v in r.info.items() if k not in ("system",)]
        install = f"; install: {r.install}" if r.install else ""
        if bits or install:
            out.append(f"{r.peer.label}: {', '.join(bits)}{install}.")
    return out


def render(
    reports: dict[str, PeerReport],
    params: Params,
    rounds: int,
    command: str,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    asked: int | None = None,
    stamp: str | None = None,
    box: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The Markdown report and the JSON record of a run (``stamp`` and ``box``: those of a saved run)."""
    table = Table(reports, params)
    body = table.markdown()
    when = stamp or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    box = box or machine()
    head = (
        f"Measured {stamp or when} on {box['cores']} cores ({box['cpu']}, {box['system']}), "
        f"load average {load[0][0]:.1f} at the start and {load[1][0]:.1f} at the end; "
        f"median of {rounds} interleaved round{'s' if rounds != 1 else ''}"
        + (f" ({asked} asked; the time budget stopped the rest)" if asked and asked > rounds else "")
        + f". Command: `{command}`"
    )
    notes = [f"[{i}] {text}" for i, text in enumerate(table.notes, 1)]
    markdown = "\n\n".join([head, body, "\n".join(f"- {x}" for x in legend(reports) + notes)]) + "\n"
    data = {
        "date": when,
        "machine": box,
        "load_average": {"start": load[0], "end": load[1]},
        "command": command,
        "rounds": rounds,
        "params": json.loads(params.to_json()),
        "peers": {
            key: {
                "label": r.peer.label,
                "versus": r.peer.versus,
                "install": r.install,
                "unavailable": r.unavailable,
                "info": r.info,
                "seconds_per_round": r.seconds,
                "workloads": {
                    name: {"runs": o.runs, "errors": o.errors, "unsupported": o.unsupported}
                    for name, o in r.outcomes.items()
                },
            }
            for key, r in reports.items()
        },
        "markdown": markdown,
    }
    return markdown, data


def rerender(path: Path) -> str:
    """The Markdown of a saved run (its ``.json``), with this version's formatting."""
    data = json.loads(path.read_text(encoding="utf-8"))
    reports: dict[str, PeerReport] = {}
    for key, raw in data["peers"].items():
        report = reports[key] = PeerReport(BY_KEY[key], raw["install"], raw["unavailable"], raw["info"])
        report.seconds = list(raw["seconds_per_round"])
        for name, o in raw["workloads"].items():
            report.outcomes[name] = Outcome(list(o["runs"]), list(o["errors"]), o["unsupported"])
    load = (tuple(data["load_average"]["start"]), tuple(data["load_average"]["end"]))
    params = Params.from_json(json.dumps(data["params"]))
    markdown, _ = render(
        reports, params, data["rounds"], data["command"], load, stamp=data["date"], box=data["machine"]
    )
    return markdown
