"""The run's table: printed, and written as JSON and markdown."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _recovery_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for k in report["recovery"]:
        note = ""
        if k.get("exited_with_it"):
            note = "exited meanwhile, restarted: " + ", ".join(k["exited_with_it"])
        if k.get("error"):
            note = (note + " " if note else "") + f"error: {k['error'][:80]}"
        rows.append((k["target"], _s(k["ready_s"]), _s(k["caught_up_s"]), note))
    return rows


def _per_service(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for k in report["recovery"]:
        by.setdefault(k["service"], []).append(k)

    def med(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.median(got) if got else None

    return {
        s: {
            "ready_median_s": med([k["ready_s"] for k in ks]),
            "ready_max_s": max(
                (k["ready_s"] for k in ks if k["ready_s"] is not None), default=None
            ),
            "caught_up_median_s": med([k["caught_up_s"] for k in ks]),
            "caught_up_max_s": max(
                (k["caught_up_s"] for k in ks if k["caught_up_s"] is not None), default=None
            ),
        }
        for s, ks in by.items()
    }


def markdown(report: dict[str, Any]) -> str:
    e = report["events"]
    t = report["throughput_events_per_s"]
    lines = [
        "# Chaos run",
        "",
        f"{'PASS' if report['ok'] else 'FAIL'}: {e['generated']:,} events"
        f" ({e['acknowledged']:,} acknowledged, {e['rejected']:,} rejected on purpose),"
        f" {report['machine']['cpus']} CPUs (load {report['machine']['load_5m_at_end']:.1f}"
        " at the end).",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| kills: {s} | {n} |" for s, n in report["kills"].items()),
        *(f"| restarts: {s} | {n} |" for s, n in report["restarts"].items()),
        f"| processes that exited on their own | {len(report['self_exits'])} |",
        f"| **lost** (acknowledged, absent) | **{report['lost']}** |",
        f"| **double-applied** (counted twice) | **{report['double_applied']}** |",
        f"| **phantom** (present, never acknowledged) | **{report['phantom']}** |",
        f"| pipeline drained | {report['drained']} |",
        f"| offered / acknowledged / end-to-end ev/s | {t['offered']:.0f} /"
        f" {t['acknowledged_during_load']:.0f} / {t['end_to_end']:.0f} |",
        f"| run time (s) | {report['timings_s']} |",
        "",
        "Where (sample of evidence in the JSON):",
        "",
        "| finding | timeline | scores | alerts |",
        "|---|---|---|---|",
    ]
    places = report["findings"]["by_place"]
    for name in ("lost", "double_applied", "phantom"):
        got = places[name]
        cells = [str(got.get(p, {}).get("count", 0)) for p in ("timeline", "scores", "alerts")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Recovery per kill (s from the SIGKILL): ready = the restarted process answers /readyz"
        " (broker/database: every service does); caught up = consumer lag back to its level"
        " before the kill.",
        "",
        "| target | ready | caught up | note |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _recovery_rows(report)),
        "",
    ]
    return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    """The same, for a terminal."""
    return markdown(report)


def write(report: dict[str, Any], *, json_path: Path, markdown_path: Path | None) -> None:
    report = report | {"recovery_by_service": _per_service(report)}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    if markdown_path is not None:
        markdown_path.write_text(markdown(report))
