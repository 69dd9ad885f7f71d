"""``python -m cxm_scoring``: run the scoring service."""

from cxm_scoring.api import create_app
from cxm_scoring.config import ScoringSettings
from cxm_shared.runner import serve


def main() -> None:
    settings = ScoringSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
