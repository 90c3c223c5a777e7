"""Turn the raw runs into the Markdown report: medians, paired ratios, targets.

Ratios are *paired per round*: within one round the servers ran back to back, so noise from
the machine (other tenants, thermal state) hits them alike; the ratio of that round cancels
most of it, and the median over rounds discards an outlier round. The median of per-server
values is shown too, but the ratio column is the one to compare against the targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .workloads import METRICS, WORKLOADS

SUBJECT: Final = "trio_asgi"
# Spelled as escapes: ruff (RUF001) flags the literal characters as look-alikes.
TIMES: Final = "\N{MULTIPLICATION SIGN}"
DASH: Final = "\N{EN DASH}"

Run = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A goal from issue 6: a ratio against a peer, or (``peer`` None) an absolute bound."""

    workload: str
    metric: str
    peer: str | None
    value: float

    def describe(self) -> str:
        label = METRICS[self.metric].label
        if self.peer is None:
            return f"{label} ≤ {self.value:g}"
        return f"{label} ≥ {self.value:g}{TIMES} {self.peer}"

    def met(self, measured: float) -> bool:
        if self.peer is None and not METRICS[self.metric].higher_is_better:
            return measured <= self.value
        return measured >= self.value


TARGETS: Final = (
    Target("ws-echo-small", "msgs_per_sec", "hypercorn-trio", 2.5),
    Target("ws-echo-small", "msgs_per_sec", "uvicorn-h11", 1.25),
    Target("http-hello", "req_per_sec", "hypercorn-trio", 4.5),
    Target("http-hello", "req_per_sec", "uvicorn-h11", 1.15),
    Target("ws-idle", "kib_per_conn", None, 12.0),
    Target("ws-idle", "handshakes_per_sec", "uvicorn-h11", 1.1),
    Target("ws-echo-large", "mib_per_sec", "hypercorn-trio", 1.3),
    Target("http-upload", "mib_per_sec", "uvicorn-h11", 1.2),
)


def ok_runs(runs: Sequence[Run], workload: str, server: str) -> list[Run]:
    return [r for r in runs if r["workload"] == workload and r["server"] == server and r["ok"]]


def median_metric(runs: Sequence[Run], workload: str, server: str, metric: str) -> float | None:
    runs = ok_runs(runs, workload, server)
    values = [r["metrics"][metric] for r in runs if metric in r["metrics"]]
    return statistics.median(values) if values else None


def paired_ratios(
    runs: Sequence[Run], workload: str, subject: str, peer: str, metric: str
) -> list[float]:
    """``subject ÷ peer`` for every round in which both produced the metric."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["workload"] == workload and r["ok"] and metric in r["metrics"]:
            by_round.setdefault(r["round"], {})[r["server"]] = r["metrics"][metric]
    ratios = []
    for values in by_round.values():
        if subject in values and peer in values and values[peer] > 0:
            ratios.append(values[subject] / values[peer])
    return ratios


def median_ratio(
    runs: Sequence[Run], workload: str, peer: str, metric: str, subject: str = SUBJECT
) -> float | None:
    ratios = paired_ratios(runs, workload, subject, peer, metric)
    return statistics.median(ratios) if ratios else None


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ratio(ratios: list[float]) -> str:
    if not ratios:
        return "—"
    mid = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{mid:.2f}{TIMES}"
    return f"{mid:.2f}{TIMES} ({min(ratios):.2f}{DASH}{max(ratios):.2f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _metrics_of(runs: Sequence[Run], workload: str) -> list[str]:
    """Metric columns of a workload: its primary first, then the rest in METRICS order."""
    seen: set[str] = set()
    for r in runs:
        if r["workload"] == workload and r["ok"]:
            seen.update(r["metrics"])
    primary = WORKLOADS[workload].primary
    return [primary] + [m for m in METRICS if m in seen and m != primary]


def summary_table(results: dict[str, Any]) -> list[str]:
    """trio_asgi ÷ each peer on every workload's main metric (and idle memory)."""
    runs = results["runs"]
    servers = results["meta"]["servers"]
    peers = [s for s in servers if s != SUBJECT]
    rows = []
    for name in results["meta"]["workloads"]:
        metrics = [WORKLOADS[name].primary] + (["kib_per_conn"] if name == "ws-idle" else [])
        for metric in metrics:
            subject = median_metric(runs, name, SUBJECT, metric)
            spec = METRICS[metric]
            row = [f"{name}", spec.label, fmt(subject, spec.digits)]
            for peer in peers:
                row.append(fmt_ratio(paired_ratios(runs, name, SUBJECT, peer, metric)))
            rows.append(row)
    header = ["workload", "metric", "trio_asgi"] + [f"÷ {peer}" for peer in peers]
    return _table(header, rows)


def cpu_cost_table(results: dict[str, Any]) -> list[str]:
    """Server CPU time per operation, peer ÷ trio_asgi (above 1: trio_asgi spends less).

    Unlike throughput, CPU time per operation moves little when another process shares the
    server's core, so this table is the steadier one on a busy machine.
    """
    runs = results["runs"]
    peers = [s for s in results["meta"]["servers"] if s != SUBJECT]
    rows = []
    for name in results["meta"]["workloads"]:
        subject = median_metric(runs, name, SUBJECT, "cpu_us_per_op")
        row = [name, WORKLOADS[name].op, fmt(subject, 1)]
        for peer in peers:
            row.append(fmt_ratio(paired_ratios(runs, name, peer, SUBJECT, "cpu_us_per_op")))
        rows.append(row)
    header = ["workload", "per", "trio_asgi CPU µs"] + [f"{peer} ÷ trio_asgi" for peer in peers]
    return _table(header, rows)


def targets_table(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    rows = []
    for target in TARGETS:
        if target.workload not in results["meta"]["workloads"]:
            continue
        if target.peer is None:
            measured = median_metric(runs, target.workload, SUBJECT, target.metric)
            shown = fmt(measured, METRICS[target.metric].digits)
        else:
            if target.peer not in results["meta"]["servers"]:
                continue
            measured = median_ratio(runs, target.workload, target.peer, target.metric)
            shown = "—" if measured is None else f"{measured:.2f}{TIMES}"
        if measured is None:
            status = "no data"
        elif target.met(measured):
            status = "met"
        else:
            status = "**not met**"
        rows.append([target.workload, target.describe(), shown, status])
    if not rows:
        return ["No target of issue 6 involves the servers and workloads of this run."]
    return _table(["workload", "target (issue 6)", "measured", "status"], rows)


def workload_section(results: dict[str, Any], name: str) -> list[str]:
    runs = results["runs"]
    workload = WORKLOADS[name]
    metrics = _metrics_of(runs, name)
    primary = METRICS[workload.primary]
    header = ["server"] + [METRICS[m].label for m in metrics]
    header += [f"{primary.label} per round", f"trio_asgi ÷ server ({primary.label})"]
    rows = []
    for server in results["meta"]["servers"]:
        row = [server]
        for metric in metrics:
            row.append(fmt(median_metric(runs, name, server, metric), METRICS[metric].digits))
        per_round = [
            fmt(r["metrics"].get(workload.primary), primary.digits)
            for r in sorted(ok_runs(runs, name, server), key=lambda r: r["round"])
        ]
        row.append(" / ".join(per_round) or "—")
        if server == SUBJECT:
            row.append("")
        else:
            row.append(fmt_ratio(paired_ratios(runs, name, SUBJECT, server, workload.primary)))
        rows.append(row)
    lines = [f"### {name}", "", workload.describe(_settings(results)) + ".", ""]
    lines += _table(header, rows)
    lines += ["", f"CPU µs/op: server CPU time per {workload.op} in the measured window."]
    return lines


def _settings(results: dict[str, Any]) -> Any:
    from .workloads import Settings

    return Settings(**results["meta"]["settings"])


def problems(results: dict[str, Any]) -> list[str]:
    lines = []
    notes: dict[str, list[str]] = {}
    for r in results["runs"]:
        if r.get("startup_notes") and r["server"] not in notes:
            notes[r["server"]] = r["startup_notes"]
    for server, logged in notes.items():
        lines.append(f"- {server} logged at startup: `{' '.join(logged)[:300]}`")
    for r in results["runs"]:
        where = f"{r['workload']} / {r['server']} / round {r['round'] + 1}"
        if not r["ok"]:
            lines.append(f"- **failed** {where}: {r['error']}")
        for complaint in r.get("complaints", [])[:5]:
            lines.append(f"- server log, {where}: `{complaint[:200]}`")
    return lines


def markdown(results: dict[str, Any], chart: str | None = None) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    versions = meta["versions"]
    out = ["# Benchmark results", ""]
    if meta.get("quick"):
        out += ["**Quick run** (short durations, small scale): for checking, not for quoting.", ""]
    out += [
        f"- Date: {meta['date']}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB "
        f"RAM, {machine['kernel']}",
        f"- Pinning: {meta['pinning']}",
        f"- Python {versions['python']}; trio_asgi {versions['trio_asgi']} with "
        + ", ".join(f"{k} {v}" for k, v in versions["trio_asgi_deps"].items()),
    ]
    if versions.get("peers"):
        out.append("- Peers venv: " + ", ".join(f"{k} {v}" for k, v in versions["peers"].items()))
    out += [
        f"- Load generators: wsload (scripts/bench/wsload.c, {versions['gcc']}), {versions['wrk']}",
        f"- Command: `{meta['command']}`",
        f"- {meta['rounds']} rounds, servers interleaved and their order rotated every round; "
        f"warm-up {meta['settings']['warmup']:g} s, measured {meta['settings']['duration']:g} s "
        "per run; every number is the median over rounds",
        "",
    ]
    others = sorted(
        r["metrics"]["other_load_pct"]
        for r in results["runs"]
        if r["ok"] and "other_load_pct" in r["metrics"]
    )
    if others:
        out[-1:-1] = [
            f"- Other processes on the machine used a median {statistics.median(others):.0f}% "
            f"of a core during the measured windows (max {others[-1]:.0f}%); see *other "
            "load %* per run below"
        ]
    if chart:
        out += [f"![benchmark chart]({chart})", ""]
    out += ["## trio_asgi ÷ peer", ""]
    out += [
        "Median of the per-round ratios (range over rounds in parentheses). Above 1 means "
        "trio_asgi is ahead, except for KiB/conn, where below 1 is better.",
        "",
    ]
    out += summary_table(results)
    out += ["", "### Server CPU time per operation", ""]
    out += [
        "Median of the per-round ratios *peer ÷ trio_asgi*: above 1 means trio_asgi spends "
        "less CPU per message, request or handshake. When other processes compete for the "
        "CPUs they take *time* from the server, which throughput shows in full; CPU time per "
        "operation only grows through shared caches and SMT siblings, so this ratio is the "
        "steadier one when the *other load* column is high.",
        "",
    ]
    out += cpu_cost_table(results)
    out += ["", "## Targets", ""]
    out += targets_table(results)
    out += ["", "## Per workload", ""]
    for name in meta["workloads"]:
        out += [*workload_section(results, name), ""]
    issues = problems(results)
    out += ["## Failures and server complaints", ""]
    out += issues or ["None: every run completed, every echo was verified, no server logged."]
    return "\n".join(out) + "\n"
