"""Bar chart of a benchmark run: one panel per workload metric, one bar per server.

    python -m scripts.bench.chart bench-results.json bench.png

Runs in the peers venv (matplotlib is a benchmark tool, not a dependency of trio_asgi);
the harness calls it. Bars are medians over rounds; whiskers span the slowest and fastest
round, so a reader sees at a glance whether a gap is larger than the noise.
"""

from __future__ import annotations

import json
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a benchmark box
import matplotlib.pyplot as plt

from .report import SUBJECT, median_metric, median_ratio, ok_runs
from .workloads import METRICS, WORKLOADS

COLORS = {
    "trio_asgi": "#2a7ab9",
    "hypercorn-trio": "#8c8c8c",
    "uvicorn-h11": "#e0a030",
    "uvicorn-fast": "#c44e52",
}


def panels(results: dict[str, Any]) -> list[tuple[str, str]]:
    """``(workload, metric)`` pairs to draw: each workload's main metric, plus idle memory."""
    out = []
    for name in results["meta"]["workloads"]:
        out.append((name, WORKLOADS[name].primary))
        if name == "ws-idle":
            out.append((name, "kib_per_conn"))
    return out


def draw(results: dict[str, Any], png: Path) -> None:
    meta = results["meta"]
    runs = results["runs"]
    servers = meta["servers"]
    chosen = panels(results)
    columns = min(3, len(chosen))
    rows = (len(chosen) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows + 1.2))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, (workload, metric) in zip(flat, chosen, strict=False):
        spec = METRICS[metric]
        medians, lows, highs = [], [], []
        for server in servers:
            values = [r["metrics"][metric] for r in ok_runs(runs, workload, server)]
            mid = median_metric(runs, workload, server, metric) or 0.0
            medians.append(mid)
            lows.append(mid - min(values) if values else 0.0)
            highs.append(max(values) - mid if values else 0.0)
        x = range(len(servers))
        bars = ax.bar(
            x,
            medians,
            yerr=[lows, highs],
            capsize=3,
            color=[COLORS.get(s, "#555555") for s in servers],
        )
        for bar, server, value, high in zip(bars, servers, medians, highs, strict=True):
            if not ok_runs(runs, workload, server):
                # Not run for this workload (Hypercorn-trio cannot host asyncio apps).
                label = "not run"
            else:
                label = f"{value:,.{spec.digits}f}"
            ratio = median_ratio(runs, workload, server, metric) if server != SUBJECT else None
            if ratio is not None:
                label += f"\n{ratio:.2f}\N{MULTIPLICATION SIGN}"
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height() + high),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        direction = "higher is better" if spec.higher_is_better else "lower is better"
        ax.set_title(f"{workload}: {spec.label}\n({direction})", fontsize=9)
        ax.set_xticks(list(x), [s.replace("-", "-\n") for s in servers], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.25)
    for ax in flat[len(chosen) :]:
        ax.set_visible(False)
    machine = meta["machine"]
    versions = meta["versions"]
    peers = ", ".join(f"{k} {v}" for k, v in versions.get("peers", {}).items() if k != "matplotlib")
    others = [r["metrics"].get("other_load_pct", 0.0) for r in runs if r["ok"]]
    busy = ""
    if others:
        busy = f" (other processes: median {statistics.median(others):.0f}% of a core)"
    caption = (
        f"{meta['date']} | {machine['cpu']}, {machine['cores']} cores, one core per server{busy} | "
        f"Python {versions['python']}, trio_asgi {versions['trio_asgi']}"
        + (f" | {peers}" if peers else "")
        + f" | median of {meta['rounds']} interleaved rounds; whiskers: min-max; "
        "above each bar: the median, then trio_asgi \N{DIVISION SIGN} that server "
        "(median of the per-round ratios)"
    )
    fig.suptitle("trio_asgi and its peers, the same app on every server", fontsize=12)
    fig.text(0.5, 0.005, "\n".join(textwrap.wrap(caption, 150)), ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(png, dpi=110)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m scripts.bench.chart RESULTS.json OUT.png", file=sys.stderr)
        return 64
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
