"""``python -m cxm_scoring fit-churn-model --input purchases.csv --output model.json``.

The CSV needs a ``customer_id`` column and an ``occurred_at`` column (RFC 3339, or seconds since
the epoch); other columns are ignored. The observation end defaults to the newest purchase.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime
from pathlib import Path

from cxm_scoring.domain.bgnbd import DEFAULT_PERIOD_DAYS, fit_from_purchases
from cxm_scoring.domain.errors import ScoringDomainError


def _timestamp(raw: str, *, line: int) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SystemExit(f"line {line}: occurred_at: not a time: {raw[:40]!r}") from exc
    if value.tzinfo is None:
        raise SystemExit(f"line {line}: occurred_at: must include a timezone offset")
    return value.timestamp()


def read_purchases(path: Path) -> list[tuple[str, float]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"customer_id", "occurred_at"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: missing column(s): {', '.join(sorted(missing))}")
        return [
            (row["customer_id"], _timestamp(row["occurred_at"], line=i))
            for i, row in enumerate(reader, start=2)
        ]


def fit_churn_model(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxm_scoring fit-churn-model")
    parser.add_argument("--input", required=True, type=Path, help="purchases CSV")
    parser.add_argument("--output", required=True, type=Path, help="model JSON to write")
    parser.add_argument("--observation-end", help="RFC 3339 end of the calibration period")
    parser.add_argument("--period-days", type=float, default=DEFAULT_PERIOD_DAYS)
    args = parser.parse_args(argv)
    purchases = read_purchases(args.input)
    if not purchases:
        raise SystemExit(f"{args.input}: no purchases")
    end = (
        _timestamp(args.observation_end, line=0)
        if args.observation_end
        else max(at for _, at in purchases)
    )
    try:
        params = fit_from_purchases(
            purchases=purchases,
            observation_end=end,
            period_days=args.period_days,
            fitted_at=time.time(),
        )
    except ScoringDomainError as exc:
        raise SystemExit(f"fit failed: {exc}") from exc
    args.output.write_text(params.to_json() + "\n")
    print(
        f"fitted r={params.r:.4f} alpha={params.alpha:.4f} a={params.a:.4f} b={params.b:.4f} "
        f"customers={params.n_customers} -> {args.output}",
        file=sys.stderr,
    )
    return 0
