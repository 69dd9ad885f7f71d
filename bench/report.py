"""Summary of every benchmark: reads bench/results/*.json, writes bench/results/summary.md
(the table for the README) and bench/results/summary.png (each figure beside its bare
baseline and goal, log scale). Files whose shape it does not know are listed, not charted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"

# (benchmark, figure, unit, measured, bare baseline, goal, higher is better)
Row = tuple[str, str, str, float | None, float | None, float | None, bool]


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def pipeline(d: dict[str, Any]) -> list[Row]:
    goals = d.get("goals", {})
    lat, bare = d.get("latency", {}), d.get("bare_two_hop_ping", {})
    cpu = _get(d, "throughput", "cpu_us_per_event_at_sustainable") or {}
    rows: list[Row] = [
        (
            "pipeline",
            "sustained events/s (HTTP->alerting)",
            "events/s",
            _get(d, "throughput", "sustainable_events_per_s"),
            None,
            goals.get("events_per_s"),
            True,
        ),
        (
            "pipeline",
            "p99 to score visible (profile API)",
            "ms",
            _get(lat, "to_score_visible", "p99_ms"),
            bare.get("p99_ms"),
            goals.get("p99_score_ms"),
            False,
        ),
        (
            "pipeline",
            "p99 to alert at webhook",
            "ms",
            _get(lat, "to_alert_received", "p99_ms"),
            bare.get("p99_ms"),
            goals.get("p99_alert_ms"),
            False,
        ),
    ]
    rows += [
        ("pipeline", f"CPU per event: {name}", "us", value, None, None, False)
        for name, value in cpu.items()
    ]
    return rows


def ingest(d: dict[str, Any]) -> list[Row]:
    m, g = d.get("median_of_rounds", {}), d.get("goal", {})
    return [
        (
            "ingest",
            "batched events/s (1 worker)",
            "events/s",
            _get(m, "workers_1", "batched_events_per_second"),
            m.get("bare_send_each_events_per_second"),
            g.get("batched_events_per_second"),
            True,
        ),
        (
            "ingest",
            "single requests/s (1 worker)",
            "req/s",
            _get(m, "workers_1", "single_requests_per_second"),
            None,
            g.get("single_requests_per_second"),
            True,
        ),
    ]


def scoring(d: dict[str, Any]) -> list[Row]:
    m, g = d.get("median", {}), d.get("goal", {})
    return [
        (
            "scoring",
            "events per CPU-second",
            "events/s",
            m.get("scorer_faust_per_cpu_s"),
            m.get("bare_getmany_orjson_per_cpu_s"),
            g.get("per_core_events_s"),
            True,
        )
    ]


def profile(d: dict[str, Any]) -> list[Row]:
    r, lk = d.get("resolution", {}), d.get("lookup", {})
    return [
        (
            "profile",
            "resolution events/s",
            "events/s",
            r.get("median_agent_events_per_s"),
            r.get("median_bare_consumer_events_per_s"),
            None,
            True,
        ),
        (
            "profile",
            "lookup API max req/s",
            "req/s",
            lk.get("median_api_max_rps"),
            lk.get("median_raw_max_rps"),
            None,
            True,
        ),
        (
            "profile",
            "lookup p99 at 1,000 req/s",
            "ms",
            lk.get("median_api_p99_ms"),
            lk.get("median_raw_p99_ms"),
            10.0,
            False,
        ),
        (
            "profile",
            "decision p99 at 1,000 req/s",
            "ms",
            lk.get("median_decision_p99_ms"),
            lk.get("median_raw_p99_ms"),
            10.0,
            False,
        ),
    ]


def alerting(d: dict[str, Any]) -> list[Row]:
    rounds = d.get("rounds") or []

    def median(side: str, key: str) -> float | None:
        values = sorted(r[side][key] for r in rounds if side in r and key in r[side])
        return values[len(values) // 2] if values else None

    p99_bare = median("bare_consume_post", "p99_ms")
    return [
        (
            "alerting",
            "p99 signal -> webhook",
            "ms",
            median("service", "p99_ms"),
            p99_bare,
            2 * p99_bare if p99_bare else None,
            False,
        )
    ]


EXTRACTORS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "pipeline": pipeline,
    "ingest": ingest,
    "scoring": scoring,
    "profile": profile,
    "alerting": alerting,
}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def verdict(row: Row) -> str:
    _, _, _, value, _, goal, higher = row
    if value is None or goal is None:
        return ""
    return "met" if (value >= goal if higher else value <= goal) else "not met"


def main() -> None:
    rows: list[Row] = []
    skipped: list[str] = []
    loads: list[str] = []
    for path in sorted(RESULTS.glob("*.json")):
        extractor = EXTRACTORS.get(path.stem)
        if extractor is None:
            skipped.append(path.name)
            continue
        data = json.loads(path.read_text())
        rows += extractor(data)
        load = _get(data, "machine", "loadavg_before") or _get(
            data, "machine", "load_average_at_start"
        )
        if load:
            loads.append(f"{path.stem}: {load[0]}")
    lines = [
        "| benchmark | figure | measured | bare baseline | ratio | goal | status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        bench, figure, unit, value, bare, goal, _ = row
        ratio = f"{value / bare:.2f}" if value is not None and bare else "-"
        lines.append(
            f"| {bench} | {figure} ({unit}) | {fmt(value)} | {fmt(bare)} | {ratio} | "
            f"{fmt(goal)} | {verdict(row)} |"
        )
    if loads:
        lines.append("")
        lines.append("1-min load average when each run started: " + ", ".join(loads) + ".")
    if skipped:
        lines.append(f"Not tabulated (no summary shape known): {', '.join(skipped)}.")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")

    charted = [r for r in rows if r[3] is not None and (r[4] is not None or r[5] is not None)]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(charted) + 1.2))
    ys = range(len(charted))
    h = 0.28
    ax.barh([y - h for y in ys], [r[3] for r in charted], h, label="measured", color="#1f77b4")
    ax.barh(
        list(ys), [r[4] or 0 for r in charted], h, label="bare baseline (same run)", color="#aaa"
    )
    ax.barh([y + h for y in ys], [r[5] or 0 for r in charted], h, label="goal", color="#2ca02c")
    ax.set_yticks(list(ys), [f"{r[0]}: {r[1]} [{r[2]}]" for r in charted], fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_title("Each figure beside its bare baseline and goal (log scale)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3)
    fig.tight_layout()
    fig.savefig(RESULTS / "summary.png", dpi=110)
    print((RESULTS / "summary.md").read_text())


if __name__ == "__main__":
    main()
