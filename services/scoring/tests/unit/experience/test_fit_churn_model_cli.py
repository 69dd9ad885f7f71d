"""The fit-churn-model command fits BG/NBD on a purchases CSV and the worker loads the result."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from cxm_scoring.config import ScoringSettings
from cxm_scoring.domain.bgnbd import BgNbdParams
from cxm_scoring.experience.model_config import DEFAULT_BGNBD, load_bgnbd

DAY = 86_400


def test_fit_churn_model_writes_params_the_worker_loads(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = ["customer_id,occurred_at,amount"]
    start = 1_700_000_000
    for c in range(300):
        first = start + rng.randrange(60) * DAY
        rows.append(f"c{c},{first},10")
        t = first
        while rng.random() < 0.7:
            t += rng.randrange(3, 40) * DAY
            if t < start + 360 * DAY:
                rows.append(f"c{c},{t},10")
    csv_path = tmp_path / "purchases.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "model.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxm_scoring",
            "fit-churn-model",
            "--input",
            str(csv_path),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    params = BgNbdParams.from_json(out.read_text())
    assert params.n_customers == 300 and params.r > 0 and params.a > 0
    settings = ScoringSettings(churn_model_path=str(out))
    assert load_bgnbd(settings.churn_model_path) == params
    assert load_bgnbd(str(tmp_path / "absent.json")) == DEFAULT_BGNBD


def test_fit_churn_model_names_the_missing_column(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("customer,when\nc1,2025-01-01T00:00:00Z\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxm_scoring",
            "fit-churn-model",
            "--input",
            str(csv_path),
            "--output",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "customer_id" in result.stderr and "occurred_at" in result.stderr
