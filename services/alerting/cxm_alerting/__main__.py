"""``python -m cxm_alerting``: run the alerting service."""

from cxm_alerting.api import create_app
from cxm_alerting.config import AlertingSettings
from cxm_shared.runner import serve


def main() -> None:
    settings = AlertingSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
