"""``python -m cxm_scoring``: run the scoring service; ``python -m cxm_scoring
fit-churn-model --input purchases.csv --output model.json``: fit the BG/NBD churn model (point
``CXM_CHURN_MODEL_PATH`` at the output)."""

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "fit-churn-model":
        from cxm_scoring.cli import fit_churn_model

        raise SystemExit(fit_churn_model(sys.argv[2:]))
    from cxm_scoring.api import create_app
    from cxm_scoring.config import ScoringSettings
    from cxm_shared.runner import serve

    settings = ScoringSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
